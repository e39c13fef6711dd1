"""Powered claims: the papers' claims 2, 3 and 6 re-run with seeds, a difference +- its standard
error and a verdict that says when the runs cannot tell.

Run (estimates of ``--dry-run`` on an idle 2-core CPU; the runs are long, so start with it):
  python benchmarks/claims.py --out benchmarks/results/claims --dry-run   # the plan, minutes
  python benchmarks/claims.py --out benchmarks/results/claims             # 60 runs, ~11.9 h
  python benchmarks/claims.py --out benchmarks/results/claims --peer      # 72 runs, ~14.6 h
  python benchmarks/claims.py --out benchmarks/results/claims --claims 3 --seeds 0,1   # ~4.6 h
  python benchmarks/claims.py --out benchmarks/results/claims --report-only   # tables, figures
(claims 2 / 3 / 6 alone at 3 seeds: ~1.5 / ~6.8 / ~3.5 h.)

benchmarks/science.py ran each claim once at 300 steps (a third of an epoch), where every method is
within ~2 pt of its random-init k-NN and one seed cannot separate a 0.3 pt gap from noise. This
harness runs three claims at thousands of steps and several seeds:

* Claim 2 (KoLeo-proto, Govindarajan et al. 2024): DINO + KoLeo-proto keeps more prototypes
  distinct than DINO (unique prototypes at 1e-2 and 1e-3, at the end and over training), without
  lowering k-NN; beside it, the mechanism: the prototypes' median nearest-neighbour distance at
  the end. Arms ``dino_kK`` and ``dino_koleo_kK`` for each ``--claim2-k``.
* Claim 3 (PMSN, Assran et al. 2023): a power-law prior beats MSN's uniform prior on long-tailed
  pretraining data, and the uniform prior is the right one on balanced data. Arms ``msn``,
  ``pmsn`` (KL(p_bar || prior), the recipe's direction) and ``pmsn_rev`` (KL(prior || p_bar),
  lightly's, ``loss.prior_direction=prior_to_mean``) on Fashion-MNIST and its long-tailed
  versions lt100, lt50, lt10 (same steps; evaluated on the balanced test set).
* Claim 6 (ExCB, Maniadis Metaxas et al. 2024): ExCB stays good at small batches where DINO does
  not. Arms ``excb``, ``dino`` at batch 32, 64, 128 for the same number of epochs.
* ``--peer``: benchmarks/peer_lightly.py (lightly's DINO, MSN, PMSN losses in PyTorch) at claim 3's
  steps on balanced Fashion-MNIST, beside jaxssl's msn / pmsn / pmsn_rev and a ``dino`` arm.

Every run is ``python -m jaxssl.train`` of the method's CPU recipe (configs/*_fashion_mnist.py) for
a fixed number of steps, then ``python -m jaxssl.eval`` with the fixed protocol: cosine k-NN (k =
20, T = 0.07) fitted on all 60,000 train images and tested on all 10,000 test images, the linear
probe, arg-max clusters and unique prototypes, of the feature the run's config names
(``eval.features``). Runs go seed-major (every arm of seed 0, then seed 1, ...), so a harness
stopped part-way still has paired comparisons; a finished run (report_eval.json and
train_wall_s.json in OUT/runs/NAME) is reused. A run whose folder is gone (another machine, a
cleaned disk) counts from the row an earlier results.json kept for it (``--rows-from``; the new
results.json copies the row and names its file). A run stopped part-way (a killed harness, a
session that ended) resumes from its newest checkpoint: the trainer restores the state, the data
iterator and the step count exactly, so the run equals one that was never stopped. Its
``train_wall_s`` is then the trainer's own clock summed over the sessions and its row says how
many there were (``sessions``). A workdir without a checkpoint is restarted from scratch.

Writes OUT/results.json (every run's row), OUT/claims.md (per claim: each arm's mean +- std (n),
the difference +- SE, the verdict) and OUT/claim2_unique_prototypes.png,
OUT/claim3_pmsn_vs_msn.png, OUT/claim6_batch.png. Statistics: see ``contrast``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from logged_run import REPO, run_logged  # noqa: E402  (sibling benchmark module)

BATCH = 64  # the CPU recipes' batch: every run but claim 6's sweep
TRAIN_IMAGES = 60_000  # Fashion-MNIST's train split: claim 6's epochs -> steps
BALANCED = "fashion_mnist"
CLAIM3_DATASETS = (BALANCED, "fashion_mnist:lt100", "fashion_mnist:lt50", "fashion_mnist:lt10")
CLAIM6_BATCHES = (32, 64, 128)
# Claim 6's equal-epoch runs are held to this many steps at the largest batch: science.py's 300-step
# runs all sat within ~2 pt of random init, where no batch-size effect can show.
CLAIM6_MIN_STEPS = 2000
PEER_METHODS = ("dino", "msn", "pmsn")
PROTOTYPE_DIAG_EVERY = 250
ALL_CLAIMS = (2, 3, 6)

# Optimiser steps per second at batch 64 on an idle 2-core CPU, per config (the brief's figures
# from the CPU recipes' 9-minute runs; benchmarks/RESULTS.md, "Training on the CPU"). A step's
# time is taken as linear in the batch. DINO at K = 4096 has a 0.5M-weight last layer instead of
# 65k, which is not modelled: claim 2's estimate is on the low side. The lightly peer uses the same
# table (RESULTS.md's peer_speed has its DINO step at 117 ms on 2 threads, 8.5 steps/s).
STEPS_PER_S_B64 = {"excb": 7.2, "msn": 11.0, "pmsn": 10.0, "dino": 8.0, "dino_koleo": 7.5}
OVERHEAD_MIN = 2.5  # per run: process start-up, compilation and the full evaluation
CLS_KNN_MIN = 1.0  # the extra CLS-feature k-NN of a peer-compared run (features != "cls" only)


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm of a comparison: a configs/<config>_fashion_mnist.py recipe plus overrides."""

    name: str
    config: str  # the configs/ stem, also the key of STEPS_PER_S_B64
    overrides: tuple[str, ...] = ()


MSN = Arm("msn", "msn")
PMSN = Arm("pmsn", "pmsn")  # loss.prior_direction = "mean_to_prior": KL(p_bar || prior)
PMSN_REV = Arm("pmsn_rev", "pmsn", ("--config.loss.prior_direction=prior_to_mean",))
EXCB = Arm("excb", "excb")
DINO = Arm("dino", "dino")


def claim2_arms(k: int) -> tuple[Arm, Arm]:
    """DINO and DINO + KoLeo-proto at ``k`` prototypes, with the prototype diagnostics on.

    >>> [a.name for a in claim2_arms(4096)]
    ['dino_k4096', 'dino_koleo_k4096']
    """
    extra = (f"--config.head.num_prototypes={k}",
             f"--config.train.prototype_diag_every={PROTOTYPE_DIAG_EVERY}")
    return Arm(f"dino_k{k}", "dino", extra), Arm(f"dino_koleo_k{k}", "dino_koleo", extra)


@dataclasses.dataclass(frozen=True)
class Run:
    """One jaxssl training run: an arm on a dataset at a batch, seed and step count."""

    arm: Arm
    dataset: str
    seed: int
    steps: int
    batch: int = BATCH

    @property
    def name(self) -> str:
        """Folder name under OUT/runs; the step count is part of it, so runs of another
        length are never mistaken for these."""
        return (f"{self.arm.name}-{self.dataset.replace(':', '_')}-b{self.batch}"
                f"-st{self.steps}-s{self.seed}")


@dataclasses.dataclass(frozen=True)
class PeerRun:
    """One benchmarks/peer_lightly.py run (balanced Fashion-MNIST, batch 64)."""

    method: str
    seed: int
    steps: int

    @property
    def name(self) -> str:
        return f"peer_{self.method}-{BALANCED}-b{BATCH}-st{self.steps}-s{self.seed}"

    @property
    def arm(self) -> Arm:
        """The jaxssl arm trained on the same objective: lightly's PMSNLoss matches
        KL(prior || p_bar), jaxssl's ``pmsn_rev`` (peer_lightly.py, difference 3)."""
        return {"dino": DINO, "msn": MSN, "pmsn": PMSN_REV}[self.method]


Job = Run | PeerRun


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to run: the claims, seeds and each claim's length."""

    claims: tuple[int, ...] = ALL_CLAIMS
    seeds: tuple[int, ...] = (0, 1, 2)
    claim2_k: tuple[int, ...] = (4096,)
    claim2_steps: int = 6000
    claim3_steps: int = 5500  # >= the 9-minute budget of PMSN (~10 steps/s), the slower arm
    claim6_epochs: float = 4.5
    peer: bool = False


def claim6_steps(epochs: float, batch: int) -> int:
    """Steps of ``epochs`` passes over the 60k train images at ``batch``.

    >>> [claim6_steps(4.5, b) for b in (32, 64, 128)]
    [8438, 4219, 2109]
    """
    return round(epochs * TRAIN_IMAGES / batch)


def check_claim6_epochs(epochs: float) -> None:
    """Raises ValueError (naming --claim6-epochs) when the largest batch would train fewer than
    CLAIM6_MIN_STEPS steps.

    >>> check_claim6_epochs(4.0)
    Traceback (most recent call last):
    ...
    ValueError: --claim6-epochs 4.0 gives 1875 steps at batch 128, ... use --claim6-epochs >= 4.27
    """
    batch = max(CLAIM6_BATCHES)
    steps = claim6_steps(epochs, batch)
    if steps < CLAIM6_MIN_STEPS:
        need = math.ceil((CLAIM6_MIN_STEPS - 0.5) * batch / TRAIN_IMAGES * 100) / 100
        raise ValueError(f"--claim6-epochs {epochs} gives {steps} steps at batch {batch}, below "
                         f"the {CLAIM6_MIN_STEPS}-step floor of claim 6; use --claim6-epochs "
                         f">= {need:.2f}")


def plan(s: Settings) -> list[Job]:
    """Every run of ``s``, seed-major: all of seed 0's runs (claims in the order 2, 3, 6, then the
    peer), then seed 1's, ...; a run that two claims share is listed once.

    >>> jobs = plan(Settings(claims=(3,), seeds=(0, 1)))
    >>> len(jobs), jobs[0].name, jobs[-1].name
    (24, 'msn-fashion_mnist-b64-st5500-s0', 'pmsn_rev-fashion_mnist_lt10-b64-st5500-s1')
    """
    if 6 in s.claims:
        check_claim6_epochs(s.claim6_epochs)
    jobs: list[Job] = []
    for seed in s.seeds:
        if 2 in s.claims:
            for k in s.claim2_k:
                jobs += [Run(arm, BALANCED, seed, s.claim2_steps) for arm in claim2_arms(k)]
        if 3 in s.claims:
            # Dataset-major within the seed: each dataset's three arms finish together.
            jobs += [Run(arm, d, seed, s.claim3_steps)
                     for d in CLAIM3_DATASETS for arm in (MSN, PMSN, PMSN_REV)]
        if 6 in s.claims:
            jobs += [Run(arm, BALANCED, seed, claim6_steps(s.claim6_epochs, b), b)
                     for b in CLAIM6_BATCHES for arm in (EXCB, DINO)]
        if s.peer:
            jobs += [Run(arm, BALANCED, seed, s.claim3_steps) for arm in (DINO, MSN, PMSN,
                                                                           PMSN_REV)]
            jobs += [PeerRun(m, seed, s.claim3_steps) for m in PEER_METHODS]
    return list(dict.fromkeys(jobs))  # drops repeats, keeps the first position


def select(jobs: Sequence[Job], only: str) -> list[Job]:
    """The jobs ``--only`` names (comma-separated run names or arm names; '' = all), in plan
    order; ValueError for a name that matches nothing.

    >>> jobs = plan(Settings(claims=(3,), seeds=(0,)))
    >>> [j.name for j in select(jobs, "pmsn_rev,msn-fashion_mnist-b64-st5500-s0")][:2]
    ['msn-fashion_mnist-b64-st5500-s0', 'pmsn_rev-fashion_mnist-b64-st5500-s0']
    """
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    if not wanted:
        return list(jobs)

    def names(j: Job) -> set[str]:
        return {j.name, j.arm.name if isinstance(j, Run) else f"peer_{j.method}"}

    unknown = [w for w in wanted if not any(w in names(j) for j in jobs)]
    if unknown:
        raise ValueError(f"--only names no planned run or arm: {unknown}")
    return [j for j in jobs if names(j) & set(wanted)]


def estimate_minutes(job: Job, s: Settings) -> float:
    """Wall minutes of ``job`` on an idle 2-core CPU (STEPS_PER_S_B64 scaled to the batch, plus
    OVERHEAD_MIN; plus CLS_KNN_MIN for a run the peer is compared with, when ``s.peer``).

    >>> round(estimate_minutes(Run(EXCB, BALANCED, 0, 2109, 128), Settings()), 2)
    12.26
    """
    if isinstance(job, PeerRun):
        config, batch = job.method, BATCH  # the method names are also config stems
    else:
        config, batch = job.arm.config, job.batch
    step_s = batch / BATCH / STEPS_PER_S_B64[config]
    extra = CLS_KNN_MIN if isinstance(job, Run) and is_peer_compared(job, s) else 0.0
    return job.steps * step_s / 60.0 + OVERHEAD_MIN + extra


def is_peer_compared(run: Run, s: Settings) -> bool:
    """Whether ``--peer`` sets ``run`` beside a lightly run (balanced, batch 64, claim 3's steps).

    >>> is_peer_compared(Run(DINO, BALANCED, 0, 5500), Settings(peer=True))
    True
    >>> is_peer_compared(Run(DINO, BALANCED, 0, 4219), Settings(peer=True))  # claim 6's run
    False
    """
    return (s.peer and run.dataset == BALANCED and run.batch == BATCH
            and run.steps == s.claim3_steps and run.arm in (DINO, MSN, PMSN, PMSN_REV))


# ----------------------------------------------------------------------------------- commands


def merge_overrides(base: Sequence[str], extra: Sequence[str]) -> list[str]:
    """``base`` with each ``--config.FIELD=VALUE`` of ``extra`` replacing the same FIELD's (in
    place) or appended; one value per field, so nothing depends on which repeat a flag parser
    keeps.

    >>> merge_overrides(["--config.a=1", "--config.b=2"], ["--config.b=3", "--config.c=4"])
    ['--config.a=1', '--config.b=3', '--config.c=4']
    """
    out = list(base)
    for flag in extra:
        field = flag.split("=", 1)[0]
        hits = [i for i, f in enumerate(out) if f.split("=", 1)[0] == field]
        if hits:
            out[hits[0]] = flag
        else:
            out.append(flag)
    return out


def train_command(run: Run, workdir: str, extra: Sequence[str] = ()) -> list[str]:
    """``python -m jaxssl.train`` for ``run``: its recipe for a fixed step count, its overrides,
    then ``extra`` (smoke tests only)."""
    flags = ["--config.train.time_budget_s=0", f"--config.train.num_steps={run.steps}",
             f"--config.train.batch_size={run.batch}", f"--config.seed={run.seed}",
             f"--config.data.dataset={run.dataset}", "--config.train.progress=False",
             "--config.eval.final_knn=False", "--config.train.log_every=25", *run.arm.overrides]
    return [sys.executable, "-m", "jaxssl.train",
            "--config", os.path.join(REPO, "configs", f"{run.arm.config}_fashion_mnist.py"),
            "--workdir", workdir, *merge_overrides(flags, extra)]


def eval_command(workdir: str, extra: Sequence[str] = ()) -> list[str]:
    """``python -m jaxssl.eval`` with the fixed protocol (all 60k train, all 10k test images),
    then ``extra`` (smoke tests only; argparse keeps the last of a repeated option)."""
    return [sys.executable, "-m", "jaxssl.eval", "--workdir", workdir,
            "--protocols", "knn,linear,cluster,prototypes", "--train-limit", "0",
            "--test-limit", "0", "--no-plots", *extra]


def cls_knn_command(workdir: str, extra: Sequence[str] = ()) -> list[str]:
    """k-NN of the CLS feature alone, as the lightly peer measures it, into report_knn_cls.json."""
    return [*eval_command(workdir, extra), "--protocols", "knn", "--features", "cls",
            "--out", os.path.join(workdir, "report_knn_cls.json")]


def peer_command(peer: PeerRun, out: str) -> list[str]:
    """benchmarks/peer_lightly.py for ``peer`` with the same k-NN protocol (0 = all images)."""
    return [sys.executable, os.path.join(REPO, "benchmarks", "peer_lightly.py"),
            "--method", peer.method, "--steps", str(peer.steps), "--batch", str(BATCH),
            "--seed", str(peer.seed), "--dataset", BALANCED, "--train-limit", "0",
            "--test-limit", "0", "--out", out]


# -------------------------------------------------------------------------------- execution


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_json(path: str, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)


def read_metrics(workdir: str) -> list[dict[str, Any]]:
    """The metrics.jsonl rows of a training workdir."""
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def is_finished(job: Job, out: str) -> bool:
    """Whether ``job``'s results exist under ``out`` (a run: its eval report and timing file)."""
    if isinstance(job, PeerRun):
        return os.path.exists(os.path.join(out, "peer", job.name + ".json"))
    workdir = os.path.join(out, "runs", job.name)
    return all(os.path.exists(os.path.join(workdir, f))
               for f in ("report_eval.json", "train_wall_s.json"))


def read_rows_from(paths: Sequence[str], extra_override: Sequence[str],
                   eval_extra: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Finished rows (runs and peers) of earlier harnesses' results.json files, by run name:
    ``{name: (path, row)}``. Use: a run whose folder is gone (another machine, a cleaned disk)
    still counts, from the row it left. ValueError naming the file: not a harness results.json,
    run with other --extra-override / --eval-extra than this harness (a smoke test's rows never
    mix with the protocol's), or a run name that two files both hold.

    >>> read_rows_from([], [], [])
    {}
    """
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for path in paths:
        try:
            result = _read_json(path)
        except (OSError, ValueError) as err:
            raise ValueError(f"--rows-from {path}: cannot read it as JSON ({err})") from err
        if not isinstance(result, dict) or not isinstance(result.get("runs"), list):
            raise ValueError(f"--rows-from {path}: not a claims.py results.json (no 'runs' list)")
        for field, ours in (("extra_override", list(extra_override)),
                            ("eval_extra", list(eval_extra))):
            if list(result.get(field) or []) != ours:
                raise ValueError(f"--rows-from {path}: its runs had {field} "
                                 f"{result.get(field)!r}, this harness has {ours!r}")
        for row in [*result["runs"], *(result.get("peer") or [])]:
            name = row.get("name") if isinstance(row, dict) else None
            if not isinstance(name, str):
                raise ValueError(f"--rows-from {path}: a row without a 'name'")
            if name in found:
                raise ValueError(f"--rows-from: run {name} is in both {found[name][0]} and "
                                 f"{path}")
            found[name] = (path, row)
    return found


def unique_curve(metrics: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """[step, unique @1e-2, unique @1e-3] at every diagnostic step of a run's metrics.

    >>> unique_curve([{"step": 25}, {"step": 250, "unique_prototypes_1e-2": 60,
    ...                              "unique_prototypes_1e-3": 64}])
    [[250, 60, 64]]
    """
    return [[int(r["step"]), int(r["unique_prototypes_1e-2"]),
             int(r["unique_prototypes_1e-3"])]
            for r in metrics if "unique_prototypes_1e-2" in r and "unique_prototypes_1e-3" in r]


def summarise(run: Run, report: Mapping[str, Any], metrics: Sequence[Mapping[str, Any]],
              train_s: float, features: str, cls_knn: float | None) -> dict[str, Any]:
    """The results.json row of a finished run."""
    pa = report.get("cluster", {}).get("prototype_assignments", {})
    protos = report.get("prototypes", {})
    unique, nn = protos.get("unique", {}), protos.get("nn_distance_histogram", {})
    # The first logged window holds the compilation of the step: leave it out of the speed.
    speeds = [r["images_per_s"] for r in metrics[1:] if r.get("images_per_s")]
    return {
        "name": run.name, "arm": run.arm.name, "method": run.arm.config,
        "overrides": list(run.arm.overrides), "dataset": run.dataset, "batch": run.batch,
        "seed": run.seed, "planned_steps": run.steps, "steps": int(metrics[-1]["step"]),
        "features": features, "num_train": report.get("num_train"),
        "num_test": report.get("num_test"),
        "knn_top1": report["knn"]["top1"], "knn_top5": report["knn"]["top5"],
        "knn_cls_top1": cls_knn, "linear_top1": report.get("linear", {}).get("top1"),
        "nmi": pa.get("nmi"), "num_prototypes": pa.get("num_prototypes"),
        "prototypes_used": pa.get("num_used"), "prototypes_empty": pa.get("frac_empty"),
        "unique_1e-1": unique.get("0.1"), "unique_1e-2": unique.get("0.01"),
        "unique_1e-3": unique.get("0.001"),
        # Each prototype's distance to its nearest other prototype (L2-normalised): the geometry
        # KoLeo-proto acts on, which moves long before any pair becomes a duplicate.
        "nn_distance_median": nn.get("median"), "nn_distance_min": nn.get("min"),
        "train_wall_s": train_s,
        "images_per_s": float(np.median(speeds)) if speeds else None,
        "final_loss": metrics[-1].get("loss"),
        "unique_curve": unique_curve(metrics),
    }


def has_checkpoint(workdir: str) -> bool:
    """Whether ``workdir`` holds a finished trainer checkpoint (an orbax step directory under
    ``checkpoints/``; unfinished saves are temporary directories with other names).

    The steps :meth:`jaxssl.train.checkpoint.Checkpointer.all_steps` would list, read from the
    directory names: the harness only launches the trainer and does not import jax or orbax, and
    the trainer itself decides which of those checkpoints it can restore."""
    ckpts = os.path.join(workdir, "checkpoints")
    return os.path.isdir(ckpts) and any(d.isdigit() for d in os.listdir(ckpts))


def session_logs(workdir: str) -> list[str]:
    """The train logs of ``workdir``'s earlier sessions, in order: train.log, then
    train.resume1.log, train.resume2.log, ...

    >>> session_logs("/nonexistent")
    []
    """
    logs, n = [], 0
    while os.path.exists(os.path.join(workdir, _train_log_name(n))):
        logs.append(_train_log_name(n))
        n += 1
    return logs


def _train_log_name(session: int) -> str:
    return "train.log" if session == 0 else f"train.resume{session}.log"


def execute(run: Run, args: argparse.Namespace, *, need_cls: bool) -> dict[str, Any]:
    """Trains and evaluates ``run`` unless finished (a run stopped part-way resumes from its
    newest checkpoint; a workdir without one is deleted and the run started again); with
    ``need_cls``, also the CLS k-NN when the run's feature is another. Returns the run's row."""
    workdir = os.path.join(args.out, "runs", run.name)
    timing = os.path.join(workdir, "train_wall_s.json")
    if not is_finished(run, args.out):
        session = 0
        if has_checkpoint(workdir):
            session = len(session_logs(workdir))
        elif os.path.exists(workdir):  # nothing saved yet: start again from scratch
            shutil.rmtree(workdir)
        os.makedirs(workdir, exist_ok=True)
        verb = "train" if session == 0 else f"resume (session {session + 1})"
        print(f"[{time.strftime('%H:%M:%S')}] {verb} {run.name}", flush=True)
        train_s = run_logged(train_command(run, workdir, args.extra_override),
                             os.path.join(workdir, _train_log_name(session)))
        if session:  # the trainer's clock counts the training seconds of every session
            train_s = float(read_metrics(workdir)[-1]["train_seconds"])
        run_logged(eval_command(workdir, args.eval_extra), os.path.join(workdir, "eval.log"))
        # Last: it marks the run finished.
        _write_json(timing, {"train_wall_s": train_s, "sessions": session + 1})
    features = _read_json(os.path.join(workdir, "config.json"))["eval"]["features"]
    cls_path = os.path.join(workdir, "report_knn_cls.json")
    if features == "cls":
        cls_path = os.path.join(workdir, "report_eval.json")
    elif need_cls and not os.path.exists(cls_path):
        run_logged(cls_knn_command(workdir, args.eval_extra),
                   os.path.join(workdir, "eval_knn_cls.log"))
    cls_knn = _read_json(cls_path)["knn"]["top1"] if os.path.exists(cls_path) else None
    timed = _read_json(timing)
    row = summarise(run, _read_json(os.path.join(workdir, "report_eval.json")),
                    read_metrics(workdir), timed["train_wall_s"], features, cls_knn)
    row["sessions"] = int(timed.get("sessions", 1))
    print(f"    {run.name}: k-NN {100 * row['knn_top1']:.2f} %, train {row['train_wall_s']:.0f} s",
          flush=True)
    return row


def execute_peer(peer: PeerRun, args: argparse.Namespace) -> dict[str, Any]:
    """benchmarks/peer_lightly.py for ``peer`` unless its JSON exists; returns its row."""
    out = os.path.join(args.out, "peer", peer.name + ".json")
    if not os.path.exists(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        print(f"[{time.strftime('%H:%M:%S')}] peer {peer.name}", flush=True)
        tmp = out + ".partial"  # renamed when complete, so a killed run is redone
        wall = run_logged(peer_command(peer, tmp), out + ".log")
        result = _read_json(tmp)
        result["wall_s"] = wall
        _write_json(tmp, result)
        os.replace(tmp, out)
    result = _read_json(out)
    return {"name": peer.name, "arm": f"peer_{peer.method}", "method": peer.method,
            "dataset": BALANCED, "batch": BATCH, "seed": peer.seed, "steps": peer.steps,
            "features": "cls", "knn_top1": result["knn_top1"], "knn_top5": result["knn_top5"],
            "images_per_s": result.get("images_per_s"),
            "train_seconds": result.get("train_seconds"), "wall_s": result.get("wall_s"),
            "final_loss": result.get("loss_last")}


# ------------------------------------------------------------------------------- statistics

HOLDS, REVERSED, NO_DIFF, FEW_SEEDS, NOT_RUN = ("holds", "reversed",
                                                "no detectable difference at this scale",
                                                "needs >= 2 seeds", "not run yet")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; nan for one value).

    >>> [round(x, 6) for x in mean_std([0.80, 0.82])]
    [0.81, 0.014142]
    """
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan


def verdict(diff: float, se: float, min_n: int) -> str:
    """The verdict on a difference oriented so that the claim says ``diff > 0``: "holds" when
    it exceeds 2 SE, "reversed" when it is below -2 SE, otherwise no detectable difference;
    "needs >= 2 seeds" when an arm has fewer than 2 (``min_n``: the smallest arm's n).

    >>> verdict(0.10, 0.008165, 3), verdict(-0.10, 0.008165, 3), verdict(0.01, 0.008165, 3)
    ('holds', 'reversed', 'no detectable difference at this scale')
    >>> verdict(0.10, float("nan"), 1)
    'needs >= 2 seeds'
    """
    if min_n < 2:
        return FEW_SEEDS
    if diff > 2.0 * se:
        return HOLDS
    if diff < -2.0 * se:
        return REVERSED
    return NO_DIFF


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A contrast of arm means: its value and SE (unpaired: used for the verdict), the same
    contrast paired by seed where every arm has the same seeds, and the verdict."""

    diff: float
    se: float
    paired_diff: float | None
    paired_se: float | None
    n_pairs: int
    min_n: int
    verdict: str


def contrast(plus: Sequence[Mapping[int, float]],
             minus: Sequence[Mapping[int, float]]) -> Comparison:
    """Sum of the ``plus`` arms' means minus the ``minus`` arms' (each arm: {seed: value}),
    claimed > 0.

    SE (unpaired, the verdict's): sqrt(sum over arms of s^2 / n), s the sample std over seeds,
    so arms with different seeds compare too. Paired: when every arm has the same seeds (n >= 2),
    the contrast is also formed seed by seed, and its mean and std / sqrt(n) are reported beside
    it (runs of one seed share the initialisation and data order, which pairing would remove from
    the noise; the verdict keeps the simpler, more conservative unpaired SE).

    >>> c = contrast([{0: 0.80, 1: 0.81, 2: 0.82}], [{0: 0.70, 1: 0.71, 2: 0.72}])
    >>> round(c.diff, 6), round(c.se, 6), c.verdict, round(c.paired_se, 6), c.n_pairs
    (0.1, 0.008165, 'holds', 0.0, 3)
    """
    arms = [*plus, *minus]
    if not arms or any(len(a) == 0 for a in arms):  # an arm with no finished run
        return Comparison(math.nan, math.nan, None, None, 0, 0, NOT_RUN)
    stats = [mean_std(list(a.values())) for a in arms]
    signs = [1.0] * len(plus) + [-1.0] * len(minus)
    diff = sum(s * m for s, (m, _) in zip(signs, stats))
    min_n = min(len(a) for a in arms)
    se = (math.sqrt(sum(sd ** 2 / len(a) for a, (_, sd) in zip(arms, stats)))
          if min_n >= 2 else math.nan)
    seeds = sorted(arms[0])
    paired_diff = paired_se = None
    n_pairs = 0
    if len(seeds) >= 2 and all(sorted(a) == seeds for a in arms):
        per_seed = [sum(s * a[seed] for s, a in zip(signs, arms)) for seed in seeds]
        paired_diff, sd = mean_std(per_seed)
        paired_se, n_pairs = sd / math.sqrt(len(seeds)), len(seeds)
    return Comparison(diff, se, paired_diff, paired_se, n_pairs, min_n,
                      verdict(diff, se, min_n))


def compare(a: Mapping[int, float], b: Mapping[int, float]) -> Comparison:
    """``contrast([a], [b])``: mean(a) - mean(b), claimed > 0."""
    return contrast([a], [b])


# ---------------------------------------------------------------------------------- reports


def by_seed(rows: Sequence[Mapping[str, Any]], field: str, **where: Any) -> dict[int, float]:
    """{seed: row[field]} of the rows matching every ``where`` item (rows without it skipped).

    >>> by_seed([{"arm": "a", "seed": 1, "knn_top1": 0.5}, {"arm": "b", "seed": 1}], "knn_top1",
    ...         arm="a")
    {1: 0.5}
    """
    return {int(r["seed"]): float(r[field]) for r in rows
            if all(r.get(k) == v for k, v in where.items()) and r.get(field) is not None}


def fmt_arm(values: Mapping[int, float], scale: float = 100.0, digits: int = 2) -> str:
    """'mean ± std (n)' of one arm over seeds ('-' without runs; no std for one seed).

    >>> fmt_arm({0: 0.80, 1: 0.82}), fmt_arm({0: 512}, 1, 0), fmt_arm({})
    ('81.00 ± 1.41 (2)', '512 (1)', '-')
    """
    if not values:
        return "-"
    m, s = mean_std(list(values.values()))
    n = len(values)
    return f"{scale * m:.{digits}f}" + (f" ± {scale * s:.{digits}f}" if n > 1 else "") + f" ({n})"


def fmt_comparison(c: Comparison, scale: float = 100.0, digits: int = 2,
                   unit: str = "pt") -> tuple[str, str]:
    """('diff ± SE unit', 'paired diff ± SE (n pairs)') cells of a comparison ('-' if none).

    >>> fmt_comparison(contrast([{0: 0.80, 1: 0.81, 2: 0.82}], [{0: 0.70, 1: 0.71, 2: 0.72}]))
    ('+10.00 ± 0.82 pt', '+10.00 ± 0.00 (3 pairs)')
    """
    if math.isnan(c.diff):
        return "-", "-"
    unpaired = f"{scale * c.diff:+.{digits}f}" + (
        "" if math.isnan(c.se) else f" ± {scale * c.se:.{digits}f}") + f" {unit}"
    paired = ("-" if c.paired_diff is None else
              f"{scale * c.paired_diff:+.{digits}f} ± {scale * c.paired_se:.{digits}f} "
              f"({c.n_pairs} pairs)")
    return unpaired, paired


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One line of a claim's verdict table."""

    claim: int
    what: str  # e.g. "lt100: pmsn - msn, k-NN"
    comparison: Comparison
    unit: str = "pt"  # "pt" (accuracies, x 100), "count" (unique prototypes) or "dist"


UNIT_FORMAT = {"pt": (100.0, 2), "count": (1.0, 1), "dist": (1.0, 3)}  # unit -> (scale, digits)
# Claim 2's arm table, after the arm's name: (results.json field, unit), in column order.
CLAIM2_ARM_COLUMNS = (("knn_top1", "pt"), ("linear_top1", "pt"), ("unique_1e-1", "count"),
                      ("unique_1e-2", "count"), ("unique_1e-3", "count"),
                      ("nn_distance_median", "dist"), ("nn_distance_min", "dist"),
                      ("prototypes_used", "count"))


def _cmp_row(v: Verdict) -> str:
    scale, digits = UNIT_FORMAT[v.unit]
    unpaired, paired = fmt_comparison(v.comparison, scale, digits, v.unit)
    return f"| {v.what} | {unpaired} | {paired} | **{v.comparison.verdict}** |"


CMP_HEAD = ["| comparison (claimed > 0) | difference ± SE | paired by seed | verdict |",
            "|---|---|---|---|"]


def claim2_verdicts(rows: Sequence[Mapping[str, Any]], s: Settings) -> list[Verdict]:
    """Claim 2 at each K: KoLeo - DINO unique prototypes at 1e-2 and 1e-3, k-NN, and the
    median nearest-neighbour distance between prototypes (the mechanism, not the claim)."""
    out = []
    for k in s.claim2_k:
        dino, koleo = (a.name for a in claim2_arms(k))
        for field, unit in (("unique_1e-2", "count"), ("unique_1e-3", "count"),
                            ("knn_top1", "pt"), ("nn_distance_median", "dist")):
            c = compare(by_seed(rows, field, arm=koleo, steps=s.claim2_steps),
                        by_seed(rows, field, arm=dino, steps=s.claim2_steps))
            out.append(Verdict(2, f"K = {k}: {koleo} - {dino}, {field}", c, unit))
    return out


def dino_collapse(rows: Sequence[Mapping[str, Any]], k: int, steps: int) -> str:
    """Whether DINO's prototypes collapsed at all at ``k`` (any seed, at the end or at any
    diagnostic step, fewer than ``k`` unique at 1e-2 or 1e-3), in words.

    >>> r = {"arm": "dino_k64", "steps": 10, "seed": 0, "unique_1e-2": 64, "unique_1e-3": 64,
    ...      "unique_curve": [[5, 64, 64], [10, 64, 64]]}
    >>> dino_collapse([r], 64, 10)[:47]
    'DINO did not collapse: all 64 prototypes unique'
    """
    arm = claim2_arms(k)[0].name
    mine = [r for r in rows if r["arm"] == arm and r["steps"] == steps]
    if not mine:
        return f"No finished DINO run at K = {k}."
    lows = {}
    for t, col in (("1e-2", 1), ("1e-3", 2)):
        seen = [(r[f"unique_{t}"], r["seed"], "end") for r in mine
                if r.get(f"unique_{t}") is not None]
        seen += [(p[col], r["seed"], f"step {p[0]}") for r in mine for p in r["unique_curve"]]
        lows[t] = min(seen) if seen else None
    if all(low is None or low[0] >= k for low in lows.values()):
        return (f"DINO did not collapse: all {k} prototypes unique at 1e-2 and 1e-3 in every seed "
                f"({len(mine)}), at the end and at every diagnostic step, so at K = {k} and "
                f"{steps} steps there was nothing for KoLeo-proto to undo; the comparison of "
                "unique prototypes cannot test the claim here.")
    parts = [f"{low[0]} of {k} at {t} (seed {low[1]}, {low[2]})"
             for t, low in lows.items() if low is not None]
    return "DINO collapsed partially: fewest unique prototypes " + "; ".join(parts) + "."


def claim3_verdicts(rows: Sequence[Mapping[str, Any]], s: Settings) -> list[Verdict]:
    """Claim 3 per dataset, k-NN: PMSN (each direction) - MSN on the long-tailed sets, MSN -
    PMSN on the balanced one."""
    out = []
    for d in CLAIM3_DATASETS:
        tag = d.split(":")[1] if ":" in d else "balanced"
        msn = by_seed(rows, "knn_top1", arm="msn", dataset=d, steps=s.claim3_steps)
        for arm in ("pmsn", "pmsn_rev"):
            p = by_seed(rows, "knn_top1", arm=arm, dataset=d, steps=s.claim3_steps)
            if d == BALANCED:
                out.append(Verdict(3, f"{tag}: msn - {arm}, k-NN", compare(msn, p)))
            else:
                out.append(Verdict(3, f"{tag}: {arm} - msn, k-NN", compare(p, msn)))
    return out


def claim6_verdicts(rows: Sequence[Mapping[str, Any]], s: Settings) -> list[Verdict]:
    """Claim 6: ExCB - DINO k-NN at each batch, and DINO's drop minus ExCB's drop from the
    largest batch to the smallest."""

    def knn(arm: str, batch: int) -> dict[int, float]:
        return by_seed(rows, "knn_top1", arm=arm, dataset=BALANCED, batch=batch,
                       steps=claim6_steps(s.claim6_epochs, batch))

    out = [Verdict(6, f"batch {b}: excb - dino, k-NN", compare(knn("excb", b), knn("dino", b)))
           for b in CLAIM6_BATCHES]
    lo, hi = min(CLAIM6_BATCHES), max(CLAIM6_BATCHES)
    # drop(m) = knn(m, hi) - knn(m, lo); claimed drop(dino) - drop(excb) > 0.
    out.append(Verdict(6, f"drop {hi} -> {lo}: dino's drop - excb's drop, k-NN",
                       contrast([knn("dino", hi), knn("excb", lo)],
                                [knn("dino", lo), knn("excb", hi)])))
    return out


def peer_reading(c: Comparison) -> str:
    """The peer comparison has no claimed direction: which side is higher, if detectably.

    >>> peer_reading(compare({0: 0.8, 1: 0.81}, {0: 0.7, 1: 0.71}))
    'jaxssl higher'
    """
    return {HOLDS: "jaxssl higher", REVERSED: "lightly higher"}.get(c.verdict, c.verdict)


def _protocol_line(rows: Sequence[Mapping[str, Any]]) -> str:
    trains = sorted({r.get("num_train") for r in rows if r.get("num_train") is not None})
    tests = sorted({r.get("num_test") for r in rows if r.get("num_test") is not None})
    feats = sorted({r["features"] for r in rows if "num_train" in r})
    return (f"k-NN: cosine, k = 20, T = 0.07, bank of {'/'.join(map(str, trains)) or '-'} train "
            f"images, {'/'.join(map(str, tests)) or '-'} test images (balanced test split, also "
            f"for long-tailed pretraining), feature {'/'.join(feats) or '-'} (the runs' "
            "eval.features). Long-tailed train sets are the same subset in every seed "
            "(data.subset_seed): seeds vary the initialisation, data order and augmentation.")


def markdown(rows: Sequence[Mapping[str, Any]], peers: Sequence[Mapping[str, Any]],
             s: Settings, command: str, planned: int, *, smoke: bool = False,
             reused: Mapping[str, Sequence[str]] | None = None) -> str:
    """OUT/claims.md: the command, the protocol, then each claim's arms and verdicts
    (``smoke``: the runs had --extra-override / --eval-extra, which the page says first;
    ``reused``: --rows-from file -> the run names whose rows came from it)."""
    lines = ["# Claims 2, 3 and 6 with seeds (`benchmarks/claims.py`)", "",
             f"Command: `{command}`", ""]
    if smoke:
        lines += ["**Smoke test**: --extra-override / --eval-extra changed the recipes or the "
                  "evaluation protocol of these runs; nothing here tests a claim.", ""]
    lines += [
        f"{len(rows) + len(peers)} of {planned} planned runs finished; seeds "
        f"{sorted({r['seed'] for r in [*rows, *peers]})}. {_protocol_line(rows)}", ""]
    for path, names in (reused or {}).items():
        lines += [f"{len(names)} of them are rows of `{path}` (earlier runs whose folders are "
                  f"not under the results folder): {', '.join(names)}.", ""]
    lines += [
        "Each arm: mean ± sample std over seeds (n). Difference: of the arm means, ± its "
        "standard error sqrt(s_a^2/n_a + s_b^2/n_b) (claim 6's drop: the sum over its four "
        "arms). Verdict, from that unpaired SE: **holds** if the difference in the claimed "
        "direction exceeds 2 SE, **reversed** if it exceeds 2 SE the other way, otherwise "
        "**no detectable difference at this scale**; **needs >= 2 seeds** when an arm has "
        "fewer; **not run yet** when an arm has no finished run. The paired-by-seed "
        "difference (mean ± std/sqrt(n) of the per-seed differences, where the arms share "
        "their seeds) is shown beside it, not used."]
    if 2 in s.claims:
        lines += ["", "## Claim 2: KoLeo-proto keeps more prototypes distinct than DINO, k-NN not"
                  " lower", "",
                  f"{s.claim2_steps} steps at batch {BATCH}, balanced Fashion-MNIST. Unique "
                  "prototypes: connected components of |w_k - w_l| < threshold over the "
                  "L2-normalised teacher prototypes (eval's prototypes protocol at the end; the "
                  f"trainer every {PROTOTYPE_DIAG_EVERY} steps for the curve).", "",
                  "| arm | k-NN % | linear % | unique @1e-1 | unique @1e-2 | unique @1e-3 | "
                  "nearest-neighbour distance, median | min | used by test arg-max |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for k in s.claim2_k:
            for arm in claim2_arms(k):
                w = dict(arm=arm.name, steps=s.claim2_steps)
                cells = [fmt_arm(by_seed(rows, field, **w), *UNIT_FORMAT[unit])
                         for field, unit in CLAIM2_ARM_COLUMNS]
                lines.append(f"| {arm.name} | " + " | ".join(cells) + " |")
        lines += ["", *CMP_HEAD, *map(_cmp_row, claim2_verdicts(rows, s)), ""]
        lines += ["The k-NN row tests \"not lower\": only **reversed** contradicts it. The "
                  "nearest-neighbour row is the mechanism, not the claim: KoLeo-proto maximises "
                  "the log of each prototype's distance to its nearest neighbour (L2-normalised "
                  "prototypes; 0 = a duplicate, sqrt 2 = orthogonal), so it can spread the "
                  "prototypes detectably where no pair is near a duplicate.", ""]
        lines += [f"- K = {k}: {dino_collapse(rows, k, s.claim2_steps)}" for k in s.claim2_k]
    if 3 in s.claims:
        lines += ["", "## Claim 3: PMSN >= MSN on long-tailed data, MSN >= PMSN on balanced", "",
                  f"{s.claim3_steps} steps at batch {BATCH} on every dataset (so more epochs of "
                  "the smaller long-tailed sets). pmsn: KL(p_bar || prior) (recipe); pmsn_rev: "
                  "KL(prior || p_bar) (lightly's; `loss.prior_direction=prior_to_mean`).", "",
                  "| dataset | msn k-NN % | pmsn k-NN % | pmsn_rev k-NN % | msn linear % | "
                  "pmsn linear % | pmsn_rev linear % |", "|---|---|---|---|---|---|---|"]
        for d in CLAIM3_DATASETS:
            cells = [fmt_arm(by_seed(rows, f, arm=a, dataset=d, steps=s.claim3_steps))
                     for f in ("knn_top1", "linear_top1") for a in ("msn", "pmsn", "pmsn_rev")]
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
        lines += ["", *CMP_HEAD, *map(_cmp_row, claim3_verdicts(rows, s))]
    if 6 in s.claims:
        lines += ["", "## Claim 6: ExCB stable at small batch where DINO is not", "",
                  f"{s.claim6_epochs:g} epochs at every batch (steps = round(epochs x 60000 / "
                  "batch)), balanced Fashion-MNIST.", "",
                  "| batch | steps | excb k-NN % | dino k-NN % |", "|---|---|---|---|"]
        for b in CLAIM6_BATCHES:
            st = claim6_steps(s.claim6_epochs, b)
            w = dict(dataset=BALANCED, batch=b, steps=st)
            lines.append(f"| {b} | {st} | {fmt_arm(by_seed(rows, 'knn_top1', arm='excb', **w))}"
                         f" | {fmt_arm(by_seed(rows, 'knn_top1', arm='dino', **w))} |")
        lo, hi = min(CLAIM6_BATCHES), max(CLAIM6_BATCHES)
        drops = []
        for m in ("excb", "dino"):
            c = compare(*(by_seed(rows, "knn_top1", arm=m, dataset=BALANCED, batch=b,
                                  steps=claim6_steps(s.claim6_epochs, b)) for b in (hi, lo)))
            drops.append(f"{m} {fmt_comparison(c)[0]}")
        lines += ["", f"k-NN drop from batch {hi} to {lo} (mean at {hi} - mean at {lo}): "
                  + ", ".join(drops) + ".", "", *CMP_HEAD,
                  *map(_cmp_row, claim6_verdicts(rows, s))]
    if s.peer:
        lines += ["", *peer_markdown(rows, peers, s)]
    return "\n".join(lines) + "\n"


def peer_markdown(rows: Sequence[Mapping[str, Any]], peers: Sequence[Mapping[str, Any]],
                  s: Settings) -> list[str]:
    """The lightly peer beside jaxssl's arm of the same objective (CLS-feature k-NN on both
    sides, as the peer measures it)."""
    lines = ["## Peer: lightly (PyTorch) at the same steps, balanced Fashion-MNIST", "",
             f"{s.claim3_steps} steps at batch {BATCH}. The peer's k-NN uses the CLS feature, so "
             "jaxssl's is given for the CLS feature as well (its own feature beside it). lightly's"
             " PMSNLoss is KL(prior || p_bar): jaxssl's pmsn_rev (the recipe's pmsn is listed "
             "too). images/s: medians after the first logged window (jaxssl) / every step after "
             "the fifth (peer).", "",
             "| peer | jaxssl arm | jaxssl k-NN % (own feature) | jaxssl k-NN % (CLS) | lightly "
             "k-NN % (CLS) | jaxssl - lightly (CLS) ± SE | reading | jaxssl img/s | lightly "
             "img/s |", "|---|---|---|---|---|---|---|---|---|"]
    for m in PEER_METHODS:
        theirs = by_seed(peers, "knn_top1", method=m, steps=s.claim3_steps)
        their_speed = by_seed(peers, "images_per_s", method=m, steps=s.claim3_steps)
        arms = [PeerRun(m, 0, s.claim3_steps).arm.name] + (["pmsn"] if m == "pmsn" else [])
        for arm in arms:
            w = dict(arm=arm, dataset=BALANCED, batch=BATCH, steps=s.claim3_steps)
            mine_cls = by_seed(rows, "knn_cls_top1", **w)
            c = compare(mine_cls, theirs)
            lines.append(
                f"| {m} | {arm} | {fmt_arm(by_seed(rows, 'knn_top1', **w))} | "
                f"{fmt_arm(mine_cls)} | {fmt_arm(theirs)} | {fmt_comparison(c)[0]} | "
                f"{peer_reading(c) if arm == arms[0] else 'other objective'} | "
                f"{fmt_arm(by_seed(rows, 'images_per_s', **w), 1, 0)} | "
                f"{fmt_arm(their_speed, 1, 0)} |")
    return lines


# ---------------------------------------------------------------------------------- figures


def plot_all(rows: Sequence[Mapping[str, Any]], s: Settings, out: str) -> list[str]:
    """The claims' PNGs that have runs behind them; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name: str) -> None:
        path = os.path.join(out, name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    def se(values: Mapping[int, float]) -> float:
        return mean_std(list(values.values()))[1] / math.sqrt(len(values)) if len(values) > 1 \
            else 0.0

    curves = {(k, a.name): [r["unique_curve"] for r in rows
                            if r["arm"] == a.name and r["steps"] == s.claim2_steps
                            and r["unique_curve"]]
              for k in s.claim2_k for a in claim2_arms(k)} if 2 in s.claims else {}
    if any(curves.values()):
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        for (_k, arm), per_seed in curves.items():
            if not per_seed:
                continue
            # Steps every seed logged (runs of one plan log at the same steps).
            steps = sorted(set.intersection(*({p[0] for p in c} for c in per_seed)))
            for ax, col in zip(axes, (1, 2)):
                v = np.array([[dict((p[0], p[col]) for p in c)[st] for st in steps]
                              for c in per_seed], np.float64)
                line, = ax.plot(steps, v.mean(0), label=f"{arm} (n = {len(per_seed)})")
                ax.fill_between(steps, v.min(0), v.max(0), color=line.get_color(), alpha=0.2)
        for ax, t in zip(axes, ("1e-2", "1e-3")):
            for k in s.claim2_k:
                ax.axhline(k, color="k", lw=0.6, ls=":")
            ax.set(xlabel="step", ylabel=f"unique prototypes @ {t}",
                   title=f"unique @ {t}: mean over seeds, band min-max")
            ax.legend(fontsize=8)
        fig.suptitle("Claim 2: KoLeo-proto vs DINO, unique prototypes over training")
        save(fig, "claim2_unique_prototypes.png")
    if 3 in s.claims:
        arms = ("msn", "pmsn", "pmsn_rev")
        knn = {(a, d): by_seed(rows, "knn_top1", arm=a, dataset=d, steps=s.claim3_steps)
               for a in arms for d in CLAIM3_DATASETS}
        if any(knn.values()):
            fig, ax = plt.subplots(figsize=(7.5, 3.8))
            x = np.arange(len(CLAIM3_DATASETS))
            lo = []
            for i, a in enumerate(arms):
                vals = [100 * mean_std(list(knn[a, d].values()))[0] if knn[a, d] else np.nan
                        for d in CLAIM3_DATASETS]
                errs = [100 * se(knn[a, d]) if knn[a, d] else 0.0 for d in CLAIM3_DATASETS]
                ax.bar(x + 0.27 * (i - 1), vals, 0.27, yerr=errs, capsize=3, label=a)
                lo += [v for v in vals if not np.isnan(v)]
            ax.set_xticks(x, [d.replace("fashion_mnist", "FMNIST") for d in CLAIM3_DATASETS])
            ax.set(ylabel="k-NN top-1 % (balanced test)", ylim=(min(lo) - 3, max(lo) + 2),
                   title=f"Claim 3: PMSN vs MSN, {s.claim3_steps} steps (mean ± SE over seeds)")
            ax.legend(fontsize=8)
            save(fig, "claim3_pmsn_vs_msn.png")
    if 6 in s.claims:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        drawn = False
        for m in ("excb", "dino"):
            pts = [(b, by_seed(rows, "knn_top1", arm=m, dataset=BALANCED, batch=b,
                               steps=claim6_steps(s.claim6_epochs, b))) for b in CLAIM6_BATCHES]
            pts = [(b, v) for b, v in pts if v]
            if pts:
                drawn = True
                ax.errorbar([b for b, _ in pts],
                            [100 * mean_std(list(v.values()))[0] for _, v in pts],
                            yerr=[100 * se(v) for _, v in pts], marker="o", capsize=3, label=m)
        if drawn:
            ax.set_xscale("log", base=2)
            ax.set_xticks(CLAIM6_BATCHES, [str(b) for b in CLAIM6_BATCHES])
            ax.set(xlabel="batch size", ylabel="k-NN top-1 %",
                   title=f"Claim 6: {s.claim6_epochs:g} epochs at each batch (mean ± SE)")
            ax.legend()
            save(fig, "claim6_batch.png")
        else:
            plt.close(fig)
    return written


# ------------------------------------------------------------------------------ command line


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise ValueError(f"{flag} takes comma-separated integers, got {text!r}") from err
    if not values:
        raise ValueError(f"{flag} is empty")
    return values


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from parsed flags; ValueError naming the bad flag."""
    claims = _ints(args.claims, "--claims")
    bad = sorted(set(claims) - set(ALL_CLAIMS))
    if bad:
        raise ValueError(f"--claims: {bad} not among {list(ALL_CLAIMS)}")
    seeds = _ints(args.seeds, "--seeds")
    if min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds must be distinct integers >= 0, got {args.seeds!r}")
    ks = _ints(args.claim2_k, "--claim2-k")
    if min(ks) < 2:
        raise ValueError(f"--claim2-k values must be >= 2, got {args.claim2_k!r}")
    for flag, v in (("--claim2-steps", args.claim2_steps), ("--claim3-steps", args.claim3_steps)):
        if v < 1:
            raise ValueError(f"{flag} must be >= 1, got {v}")
    if 6 in claims:
        check_claim6_epochs(args.claim6_epochs)
    return Settings(claims=tuple(sorted(claims)), seeds=seeds, claim2_k=ks,
                    claim2_steps=args.claim2_steps, claim3_steps=args.claim3_steps,
                    claim6_epochs=args.claim6_epochs, peer=args.peer)


def build_parser() -> argparse.ArgumentParser:
    """The harness's command line.

    >>> a = build_parser().parse_args(["--out", "o"])
    >>> a.claims, a.seeds, a.claim2_k, a.claim2_steps, a.claim3_steps, a.claim6_epochs
    ('2,3,6', '0,1,2', '4096', 6000, 5500, 4.5)
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="results folder (runs/, peer/, results.json, "
                   "claims.md, PNGs)")
    p.add_argument("--claims", default="2,3,6", help="comma-separated claims among 2, 3, 6")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (>= 2 for verdicts)")
    p.add_argument("--only", default="", help="comma-separated run names or arm names to run "
                   "(default: the whole plan)")
    p.add_argument("--claim2-k", default="4096", help="comma-separated prototype counts")
    p.add_argument("--claim2-steps", type=int, default=6000)
    p.add_argument("--claim3-steps", type=int, default=5500, help="also the peer's steps")
    p.add_argument("--claim6-epochs", type=float, default=4.5,
                   help=f"epochs at every batch; >= {CLAIM6_MIN_STEPS} steps at batch "
                        f"{max(CLAIM6_BATCHES)}")
    p.add_argument("--peer", action="store_true", help="also benchmarks/peer_lightly.py (needs "
                   "torch and lightly) and jaxssl's dino arm at claim 3's steps")
    p.add_argument("--rows-from", action="append", default=[], metavar="RESULTS_JSON",
                   help="an earlier harness's results.json (repeatable): a planned run that is "
                        "not finished under --out takes its row from there instead of running")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its estimated "
                   "minutes; run nothing")
    p.add_argument("--report-only", action="store_true", help="claims.md, results.json and PNGs "
                   "from finished runs; train nothing")
    p.add_argument("--extra-override", action="append", default=[], metavar="FLAG",
                   help="smoke tests only: a --config.FIELD=VALUE for every train command "
                        "(replaces the harness's value of FIELD); the results are then not the "
                        "claims' protocol")
    p.add_argument("--eval-extra", default="", metavar="ARGS",
                   help="smoke tests only: extra jaxssl.eval arguments, one shell-quoted string "
                        "(e.g. '--train-limit 200 --test-limit 100'); the protocol line of "
                        "claims.md shows the image counts used")
    return p


def print_plan(jobs: Sequence[Job], s: Settings, out: str,
               earlier: Mapping[str, Any] | None = None) -> float:
    """Prints every job (name, steps, estimated minutes, done or not: finished under ``out``, or
    a row in ``earlier``, the --rows-from rows by name); returns the total."""
    total = 0.0
    print(f"{'#':>3}  {'run':<52} {'steps':>6} {'batch':>5} {'est. min':>8}")
    for i, j in enumerate(jobs, 1):
        minutes = estimate_minutes(j, s)
        total += minutes
        batch = j.batch if isinstance(j, Run) else BATCH
        done = ("  (finished)" if is_finished(j, out)
                else "  (row from --rows-from)" if j.name in (earlier or {}) else "")
        print(f"{i:>3}  {j.name:<52} {j.steps:>6} {batch:>5} {minutes:>8.1f}{done}")
    print(f"total: {len(jobs)} runs, ~{total:.0f} min (~{total / 60:.1f} h) on an idle 2-core CPU")
    return total


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        s = settings_from(args)
        args.eval_extra = shlex.split(args.eval_extra)
        jobs = select(plan(s), args.only)
        earlier = read_rows_from(args.rows_from, args.extra_override, args.eval_extra)
        if s.peer and not args.dry_run and not args.report_only:
            import importlib.util

            missing = [m for m in ("torch", "lightly") if importlib.util.find_spec(m) is None]
            if missing:
                raise ValueError(f"--peer needs {' and '.join(missing)} (pip install -e "
                                 "'.[torch]'; pip install --no-deps lightly==1.6.0)")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print_plan(jobs, s, args.out, earlier)
        return 0
    os.makedirs(args.out, exist_ok=True)
    command = shlex.join(["python", "benchmarks/claims.py", *argv])
    planned = len(jobs)
    rows: list[dict[str, Any]] = []
    peers: list[dict[str, Any]] = []
    reused: dict[str, list[str]] = {}  # --rows-from file -> the names its rows stood in for

    def write_reports() -> None:
        _write_json(os.path.join(args.out, "results.json"),
                    {"command": command, "settings": dataclasses.asdict(s),
                     "extra_override": args.extra_override, "eval_extra": args.eval_extra,
                     "runs": rows, "peer": peers, "rows_from": reused})
        with open(os.path.join(args.out, "claims.md"), "w", encoding="utf-8") as f:
            f.write(markdown(rows, peers, s, command, planned,
                             smoke=bool(args.extra_override or args.eval_extra),
                             reused=reused))

    for job in jobs:
        if not is_finished(job, args.out) and job.name in earlier:
            path, row = earlier[job.name]
            (peers if isinstance(job, PeerRun) else rows).append(row)
            reused.setdefault(path, []).append(job.name)
            continue
        if args.report_only and not is_finished(job, args.out):
            continue
        if isinstance(job, PeerRun):
            peers.append(execute_peer(job, args))
        else:
            rows.append(execute(job, args, need_cls=is_peer_compared(job, s)))
        write_reports()  # after every run: a long harness stopped part-way keeps its tables
    write_reports()
    figures = plot_all(rows, s, args.out)
    with open(os.path.join(args.out, "claims.md"), encoding="utf-8") as f:
        print(f.read())
    print("figures: " + (", ".join(figures) or "none (no finished runs)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
