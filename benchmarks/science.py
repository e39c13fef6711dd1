"""Science harness: each paper's headline claim at small scale, side by side, with figures.

Run (about 80 minutes on an idle 2-core CPU at the default 300 steps and one seed):
  python benchmarks/science.py --out benchmarks/results/science/pilot_300_steps
  python benchmarks/science.py --out benchmarks/results/science/pilot_300_steps --seeds 0,1,2
  python benchmarks/science.py --out benchmarks/results/science/pilot_300_steps --peer  # + lightly

Every method (CARP, ExCB, DINO, DINO + KoLeo-proto, MSN, PMSN) trains its Fashion-MNIST CPU recipe
(configs/*_fashion_mnist.py: same 4-block ViT, same 2 x 28 + 2 x 14 px crops, batch 64) for the same
number of optimiser steps, on Fashion-MNIST and on its long-tailed version (imbalance ratio 100;
evaluated on the balanced test set). Extra runs: DINO at ExCB's K = 64 (claim 1) and ExCB / DINO
at batch 32 and 128 (claim 6). Each run is then evaluated by ``python -m jaxssl.eval`` (k-NN,
linear probe, arg-max prototype clusters: NMI and sizes, unique prototypes).

Writes OUT/results.json (every run), OUT/science.md (tables, mean +- std over seeds, and a
verdict per claim from the numbers, whichever way they fall) and OUT/claim{1..6}_*.png.
Finished runs are reused (OUT/runs/NAME/report_eval.json), so a killed harness resumes and more
seeds extend the table. ``--peer`` also runs benchmarks/peer_lightly.py (PyTorch + lightly's DINO,
MSN and PMSN losses, same model, crops, steps and k-NN protocol) and reports the wall-clock ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from logged_run import REPO, run_logged  # noqa: E402  (sibling benchmark module)

METHODS = ("carp", "excb", "dino", "dino_koleo", "msn", "pmsn")
DATASETS = ("fashion_mnist", "fashion_mnist:lt100")
# Cosine k-NN (k = 20) on raw pixels with all 60k train images (RESULTS.md, "Machine calibration").
RAW_PIXEL_KNN = 0.846
# The same ViT at random init, with the CPU recipes' eval feature "cls_avgpool" (RESULTS.md,
# "Evaluation feature"; 68.0 % with the CLS token alone, which results/science/pilot_300_steps/
# was measured with).
RANDOM_INIT_KNN = 0.6855
PEER_METHODS = ("dino", "msn", "pmsn")
BATCH = 64  # the CPU recipes' batch: every run but the claim-6 sweep


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: a method variant on a dataset at a batch size and seed."""

    variant: str  # a METHODS entry, or "dino_k64" (DINO at ExCB's K)
    dataset: str
    batch: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.variant}-{self.dataset.replace(':', '_')}-b{self.batch}-s{self.seed}"

    @property
    def key(self) -> tuple[str, str, int]:
        """Seeds of one key are aggregated into mean +- std."""
        return (self.variant, self.dataset, self.batch)


def plan_runs(seeds: list[int], *, batch_sweep: list[int]) -> list[Run]:
    """Every run of the study, cheapest-first within each seed.

    >>> runs = plan_runs([0], batch_sweep=[32, 128])
    >>> len(runs), runs[0].name
    (17, 'msn-fashion_mnist-b64-s0')
    """
    cheap_first = ("msn", "pmsn", "excb", "dino", "dino_koleo", "carp")
    runs = []
    for seed in seeds:
        for dataset in DATASETS:
            runs += [Run(m, dataset, BATCH, seed) for m in cheap_first]
        runs.append(Run("dino_k64", DATASETS[0], BATCH, seed))
        for batch in batch_sweep:
            if batch != BATCH:
                runs += [Run(m, DATASETS[0], batch, seed) for m in ("excb", "dino")]
    return runs


def train_command(run: Run, workdir: str, steps: int) -> list[str]:
    """``python -m jaxssl.train`` for ``run``: the method's CPU recipe, a fixed step count."""
    method = "dino" if run.variant == "dino_k64" else run.variant
    cmd = [sys.executable, "-m", "jaxssl.train",
           "--config", os.path.join(REPO, "configs", f"{method}_fashion_mnist.py"),
           "--workdir", workdir,
           # Equal budget means equal steps (hence epochs at equal batch), not equal wall-clock:
           # the methods' step times differ and the wall-clock is reported beside the results.
           "--config.train.time_budget_s=0", f"--config.train.num_steps={steps}",
           f"--config.train.batch_size={run.batch}", f"--config.seed={run.seed}",
           f"--config.data.dataset={run.dataset}", "--config.train.progress=False",
           "--config.eval.final_knn=False", "--config.train.log_every=25"]
    if run.variant == "dino_k64":
        cmd.append("--config.head.num_prototypes=64")
    return cmd


def eval_command(workdir: str, args: argparse.Namespace) -> list[str]:
    """``python -m jaxssl.eval`` with the protocols every claim needs."""
    return [sys.executable, "-m", "jaxssl.eval", "--workdir", workdir,
            "--protocols", "knn,linear,cluster,prototypes",
            "--train-limit", str(args.train_limit), "--test-limit", str(args.test_limit),
            "--linear-epochs", str(args.linear_epochs), "--no-plots"]


def read_metrics(workdir: str) -> list[dict[str, Any]]:
    """The training curves (metrics.jsonl rows) of a workdir."""
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def summarise(run: Run, report: dict[str, Any], metrics: list[dict[str, Any]],
              train_s: float) -> dict[str, Any]:
    """The per-run row of the results table."""
    pa = report["cluster"].get("prototype_assignments", {})
    unique = report.get("prototypes", {}).get("unique", {})
    speeds = [r["images_per_s"] for r in metrics if "images_per_s" in r and r["step"] > 50]
    last = metrics[-1]
    row = {**dataclasses.asdict(run), "name": run.name, "steps": int(last["step"]),
           "knn": report["knn"]["top1"], "linear": report["linear"]["top1"],
           "nmi": pa.get("nmi"), "num_prototypes": pa.get("num_prototypes"),
           "num_used": pa.get("num_used"), "frac_empty": pa.get("frac_empty"),
           "min_relative": pa.get("min_relative"), "max_relative": pa.get("max_relative"),
           "relative_sizes": pa.get("relative_sizes"),
           "unique_1e-1": unique.get("0.1"), "unique_1e-2": unique.get("0.01"),
           "train_wall_s": train_s,
           "images_per_s": float(np.median(speeds)) if speeds else None,
           "final_loss": last.get("loss")}
    for k in ("entropy", "consistency", "mean_max_prob", "min_relative_size",
              "max_relative_size", "empty_fraction", "teacher_confidence"):
        if k in last:
            row[f"train_{k}"] = last[k]
    return row


def execute(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    """Trains and evaluates ``run`` unless its report exists; returns its summary row."""
    workdir = os.path.join(args.out, "runs", run.name)
    report_path = os.path.join(workdir, "report_eval.json")
    timing_path = os.path.join(workdir, "train_wall_s.json")
    if not (os.path.exists(report_path) and os.path.exists(timing_path)):
        if os.path.exists(workdir):  # a half-finished run: start it again from scratch
            shutil.rmtree(workdir)
        os.makedirs(workdir)
        print(f"[{time.strftime('%H:%M:%S')}] train {run.name}", flush=True)
        train_s = run_logged(train_command(run, workdir, args.steps),
                             os.path.join(workdir, "train.log"))
        run_logged(eval_command(workdir, args), os.path.join(workdir, "eval.log"))
        with open(timing_path, "w", encoding="utf-8") as f:
            json.dump({"train_wall_s": train_s}, f)
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    with open(timing_path, encoding="utf-8") as f:
        train_s = json.load(f)["train_wall_s"]
    row = summarise(run, report, read_metrics(workdir), train_s)
    print(f"    {run.name}: k-NN {100 * row['knn']:.2f} %, linear {100 * row['linear']:.2f} %, "
          f"NMI {row['nmi']:.3f}, train {train_s:.0f} s", flush=True)
    return row


def execute_peer(method: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """benchmarks/peer_lightly.py for ``method`` unless its result exists."""
    out = os.path.join(args.out, "peer", f"{method}-s{seed}.json")
    if os.path.exists(out):
        with open(out, encoding="utf-8") as f:
            return json.load(f)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] peer {method} seed {seed}", flush=True)
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", "peer_lightly.py"),
           "--method", method, "--steps", str(args.steps), "--batch", str(BATCH),
           "--seed", str(seed), "--train-limit", str(args.train_limit),
           "--test-limit", str(args.test_limit), "--out", out]
    wall = run_logged(cmd, out + ".log")
    with open(out, encoding="utf-8") as f:
        result = json.load(f)
    result["wall_s"] = wall
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return result


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value).

    >>> mean_std([1.0, 3.0])
    (2.0, 1.4142135623730951)
    """
    v = np.asarray(values, np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def aggregate(rows: list[dict[str, Any]], field: str) -> dict[tuple, tuple[float, float, int]]:
    """{(variant, dataset, batch): (mean, std, n)} of ``field`` over seeds (missing skipped)."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        if r.get(field) is not None:
            groups.setdefault((r["variant"], r["dataset"], r["batch"]), []).append(r[field])
    return {k: (*mean_std(v), len(v)) for k, v in groups.items()}


def fmt(stat: tuple[float, float, int] | None, scale: float = 100.0, digits: int = 1) -> str:
    """'mean +- std' (or the single value) of an aggregate.

    >>> fmt((0.7512, 0.004, 3)), fmt((0.75, 0.0, 1)), fmt(None)
    ('75.1 +- 0.4', '75.0', '-')
    """
    if stat is None:
        return "-"
    m, s, n = stat
    return f"{scale * m:.{digits}f}" + (f" +- {scale * s:.{digits}f}" if n > 1 else "")


def verdicts(rows: list[dict[str, Any]], train_limit: int = 0) -> list[tuple[str, str, str]]:
    """(claim, "holds" or "does not hold", the numbers) for each of claims 1-6 whose runs exist.

    ``train_limit`` is the k-NN train subset size (0: all), quoted beside claim 5.
    """
    agg = {f: aggregate(rows, f) for f in ("knn", "linear", "frac_empty", "min_relative",
                                           "max_relative", "unique_1e-2", "unique_1e-1",
                                           "num_used", "nmi", "train_entropy")}
    fm, lt = DATASETS
    out = []

    def get(field, variant, dataset=fm, batch=BATCH):
        s = agg[field].get((variant, dataset, batch))
        return None if s is None else s[0]

    if all(get("frac_empty", v) is not None for v in ("excb", "dino_k64", "dino")):
        band = {v: get("max_relative", v) - get("min_relative", v)
                for v in ("excb", "dino_k64", "dino")}
        holds = (get("frac_empty", "excb") < get("frac_empty", "dino_k64")
                 and band["excb"] < band["dino_k64"])
        out.append(("1. ExCB: narrow cluster-size band, fewer empty clusters than DINO at the "
                    "same K", "holds" if holds else "does not hold",
                    f"K = 64, test arg-max: empty {100 * get('frac_empty', 'excb'):.1f} % vs "
                    f"{100 * get('frac_empty', 'dino_k64'):.1f} % (DINO K = 512: "
                    f"{100 * get('frac_empty', 'dino'):.1f} %); max - min relative size "
                    f"{band['excb']:.2f} vs {band['dino_k64']:.2f} (K = 512: {band['dino']:.2f})"))
    if get("knn", "dino") is not None and get("knn", "dino_koleo") is not None:
        more = get("unique_1e-1", "dino_koleo") > get("unique_1e-1", "dino") or (
            get("unique_1e-2", "dino_koleo") > get("unique_1e-2", "dino"))
        dk = 100 * (get("knn", "dino_koleo") - get("knn", "dino"))
        out.append(("2. KoLeo-proto: more unique prototypes than DINO, k-NN not hurt",
                    "holds" if more and dk >= -1.0 else "does not hold",
                    f"unique @ 1e-1: {get('unique_1e-1', 'dino_koleo')} vs "
                    f"{get('unique_1e-1', 'dino')}, @ 1e-2: {get('unique_1e-2', 'dino_koleo')} "
                    f"vs {get('unique_1e-2', 'dino')}; prototypes used by test arg-max "
                    f"{get('num_used', 'dino_koleo'):.0f} vs {get('num_used', 'dino'):.0f}; "
                    f"k-NN {dk:+.1f} pt (tolerance -1 pt)"))
    if all(get("knn", m, d) is not None for m in ("msn", "pmsn") for d in DATASETS):
        lt_ok = get("knn", "pmsn", lt) >= get("knn", "msn", lt)
        bal_ok = get("knn", "msn", fm) >= get("knn", "pmsn", fm)
        out.append(("3. PMSN >= MSN on long-tailed; uniform prior >= PMSN on balanced",
                    "holds" if lt_ok and bal_ok else "does not hold",
                    f"k-NN lt100: PMSN {100 * get('knn', 'pmsn', lt):.1f} vs MSN "
                    f"{100 * get('knn', 'msn', lt):.1f}; balanced: MSN "
                    f"{100 * get('knn', 'msn', fm):.1f} vs PMSN {100 * get('knn', 'pmsn', fm):.1f}"
                    f" (linear lt100 {100 * get('linear', 'pmsn', lt):.1f} vs "
                    f"{100 * get('linear', 'msn', lt):.1f})"))
    if get("knn", "carp") is not None:
        used, ent = get("num_used", "carp"), get("train_entropy", "carp")
        holds = used is not None and used > 10 and get("knn", "carp") > RANDOM_INIT_KNN
        out.append(("4. CARP trains without collapse", "holds" if holds else "does not hold",
                    f"final entropy term {ent:.3f}; {used:.0f} prototypes used by the test "
                    f"arg-max (10 classes); NMI {get('nmi', 'carp'):.3f}; k-NN "
                    f"{100 * get('knn', 'carp'):.1f} % vs {100 * RANDOM_INIT_KNN:.1f} % at "
                    "random init"))
    knns = {m: get("knn", m) for m in METHODS if get("knn", m) is not None}
    if knns:
        out.append((f"5. Every method beats raw-pixel k-NN ({100 * RAW_PIXEL_KNN:.1f} %)",
                    "holds" if min(knns.values()) > RAW_PIXEL_KNN else "does not hold",
                    ", ".join(f"{m} {100 * v:.1f}" for m, v in knns.items())
                    + (f" (k-NN fitted on a {train_limit}-image train subset; the 84.6 % "
                       "uses all 60k)" if train_limit else " (k-NN fitted on all 60k)")))
    batches = sorted({r["batch"] for r in rows})
    sweep = {m: [get("knn", m, fm, b) for b in batches] for m in ("excb", "dino")}
    if len(batches) > 1 and all(v is not None for vs in sweep.values() for v in vs):
        spread = {m: max(v) - min(v) for m, v in sweep.items()}
        holds = spread["excb"] < spread["dino"] and min(sweep["excb"]) > min(sweep["dino"])
        out.append(("6. ExCB stable at small batch where DINO is not",
                    "holds" if holds else "does not hold",
                    "; ".join(f"{m} k-NN at batch {'/'.join(map(str, batches))}: "
                              + "/".join(f"{100 * v:.1f}" for v in vs)
                              for m, vs in sweep.items())))
    return out


def write_markdown(rows, peers, args, path: str) -> None:
    """OUT/science.md: the per-method table on each dataset, the sweeps, the claims, the peer."""
    fields = ("knn", "linear", "nmi", "unique_1e-2", "num_used", "frac_empty", "min_relative",
              "max_relative", "train_wall_s")
    agg = {f: aggregate(rows, f) for f in fields}
    seeds = sorted({r["seed"] for r in rows})
    train_set = (f"a seeded {args.train_limit}-image subset of the" if args.train_limit
                 else "all 60,000 images of the balanced")
    test_set = f"{args.test_limit} test images" if args.test_limit else "the 10,000 test images"
    lines = [f"Steps {args.steps} at batch {BATCH} (the batch sweep: same steps), seeds {seeds}; "
             f"k-NN (k = 20) and linear probe ({args.linear_epochs} epochs) fitted on "
             f"{train_set} train split, tested on {test_set}; cluster figures from the "
             "teacher's arg-max prototype on those test images.", ""]
    head = ("| method | dataset | batch | k-NN % | linear % | NMI | unique @1e-2 | used / K | "
            "empty % | min / max rel. size | train wall s |")
    lines += [head, "|---" * (head.count("|") - 1) + "|"]
    for key in sorted(agg["knn"], key=lambda k: (k[1], k[2], k[0])):
        k_proto = next(r["num_prototypes"] for r in rows
                       if (r["variant"], r["dataset"], r["batch"]) == key)
        g = {f: agg[f].get(key) for f in fields}
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {fmt(g['knn'])} | {fmt(g['linear'])} | "
            f"{fmt(g['nmi'], 1, 3)} | {fmt(g['unique_1e-2'], 1, 0)} | "
            f"{fmt(g['num_used'], 1, 0)} / {k_proto} | {fmt(g['frac_empty'])} | "
            f"{fmt(g['min_relative'], 1, 2)} / {fmt(g['max_relative'], 1, 2)} | "
            f"{fmt(g['train_wall_s'], 1, 0)} |")
    lines += ["", "| claim | verdict | numbers |", "|---|---|---|"]
    lines += [f"| {c} | **{v}** | {n} |" for c, v, n in verdicts(rows, args.train_limit)]
    if peers:
        # Steady-state images/s is the like-for-like speed figure: both exclude start-up, and
        # jaxssl's train process also spends its first tens of seconds compiling the step.
        lines += ["", "| method | jaxssl k-NN % | lightly (PyTorch) k-NN % | jaxssl img/s | "
                  "PyTorch img/s | speed jaxssl / PyTorch | jaxssl train process s (start-up "
                  "+ compile) | PyTorch train loop s |", "|---|---|---|---|---|---|---|---|"]
        for p in peers:
            mine = [r for r in rows if (r["variant"], r["dataset"], r["batch"], r["seed"])
                    == (p["method"], DATASETS[0], BATCH, p["seed"])]
            if mine:
                m = mine[0]
                loop_s = m["steps"] * m["batch"] / m["images_per_s"]
                lines.append(
                    f"| {p['method']} (seed {p['seed']}) | {100 * m['knn']:.1f} | "
                    f"{100 * p['knn_top1']:.1f} | {m['images_per_s']:.0f} | "
                    f"{p['images_per_s']:.0f} | {m['images_per_s'] / p['images_per_s']:.2f} | "
                    f"{m['train_wall_s']:.0f} (~{m['train_wall_s'] - loop_s:.0f}) | "
                    f"{p['train_seconds']:.0f} |")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def plot_claims(rows: list[dict[str, Any]], out: str) -> list[str]:
    """One PNG per claim from the first seed's runs (and mean over seeds for bar charts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fm, lt = DATASETS
    written = []
    # The lowest seed's run of each key (later entries overwrite earlier ones).
    by = {(r["variant"], r["dataset"], r["batch"]): r
          for r in sorted(rows, key=lambda r: -r["seed"])}
    knn = aggregate(rows, "knn")

    def save(fig, name):
        path = os.path.join(out, name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    runs1 = [by.get((v, fm, BATCH)) for v in ("excb", "dino_k64", "dino")]
    if all(runs1):
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        for r, label in zip(runs1, ("ExCB K=64", "DINO K=64", "DINO K=512")):
            s = np.sort(np.asarray(r["relative_sizes"]))[::-1]
            ax.plot(np.linspace(0, 1, len(s)), s,
                    label=f"{label} (empty {100 * r['frac_empty']:.0f} %)")
        ax.axhline(1.0, color="k", lw=0.6)
        # symlog: linear near 0 so that empty clusters show, logarithmic for the giant ones.
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set(xlabel="cluster rank / K", ylabel="relative size (1 = uniform)", ylim=(0, None),
               title="Claim 1: test arg-max cluster sizes, sorted")
        ax.legend(fontsize=8)
        save(fig, "claim1_cluster_sizes.png")
    pair = [by.get((v, fm, BATCH)) for v in ("dino", "dino_koleo")]
    if all(pair):
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
        labels = ("DINO", "DINO + KoLeo")
        for i, (field, title) in enumerate((("unique_1e-1", "unique prototypes @ 1e-1"),
                                            ("num_used", "prototypes used (test arg-max)"))):
            axes[i].bar(labels, [r[field] for r in pair], color=("C0", "C1"))
            axes[i].set_title(title)
        fig.suptitle("Claim 2: KoLeo-proto vs DINO, K = 512 (k-NN "
                     f"{100 * pair[0]['knn']:.1f} vs {100 * pair[1]['knn']:.1f} %)")
        save(fig, "claim2_koleo_prototypes.png")
    if all((m, d, BATCH) in knn for m in ("msn", "pmsn") for d in DATASETS):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        x = np.arange(2)
        for i, m in enumerate(("msn", "pmsn")):
            vals = [100 * knn[(m, d, BATCH)][0] for d in DATASETS]
            errs = [100 * knn[(m, d, BATCH)][1] for d in DATASETS]
            ax.bar(x + 0.38 * i, vals, 0.38, yerr=errs, label=m.upper())
        ax.set_xticks(x + 0.19, ["balanced", "long-tailed (lt100)"])
        ax.set(ylabel="k-NN top-1 % (balanced test)", title="Claim 3: PMSN vs MSN",
               ylim=(min(100 * v[0] for v in knn.values()) - 5, None))
        ax.legend()
        save(fig, "claim3_pmsn_vs_msn.png")
    carp = by.get(("carp", fm, BATCH))
    if carp is not None:
        curves = read_metrics(os.path.join(out, "runs", carp["name"]))
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for k in ("entropy", "consistency", "mean_max_prob"):
            pts = [(r["step"], r[k]) for r in curves if k in r]
            if pts:
                ax.plot(*zip(*pts), label=k)
        ax.set(xlabel="step", yscale="log",
               title=f"Claim 4: CARP training terms ({carp['num_used']} of "
                     f"{carp['num_prototypes']} prototypes used, NMI {carp['nmi']:.2f})")
        ax.legend(fontsize=8)
        save(fig, "claim4_carp_terms.png")
    present = [m for m in METHODS if (m, fm, BATCH) in knn]
    if present:
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        ax.bar(present, [100 * knn[(m, fm, BATCH)][0] for m in present],
               yerr=[100 * knn[(m, fm, BATCH)][1] for m in present], color="C2")
        ax.axhline(100 * RAW_PIXEL_KNN, color="r", ls="--", label="raw pixels 84.6 %")
        ax.axhline(100 * RANDOM_INIT_KNN, color="gray", ls=":",
                   label=f"random init {100 * RANDOM_INIT_KNN:.1f} %")
        ax.set(ylabel="k-NN top-1 %", ylim=(50, 90), title="Claim 5: k-NN on Fashion-MNIST")
        ax.legend(fontsize=8)
        save(fig, "claim5_knn_vs_pixels.png")
    batches = sorted({b for (_, d, b) in knn if d == fm})
    if len(batches) > 1:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for m in ("excb", "dino"):
            pts = [(b, 100 * knn[(m, fm, b)][0]) for b in batches if (m, fm, b) in knn]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=m)
        ax.set(xscale="log", xlabel="batch size", ylabel="k-NN top-1 %",
               title="Claim 6: k-NN vs batch size (same steps)")
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.legend()
        save(fig, "claim6_batch_sweep.png")
    return written


def build_parser() -> argparse.ArgumentParser:
    """The harness's command line.

    >>> build_parser().parse_args(["--out", "o"]).steps
    300
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="results folder (runs/, results.json, PNGs)")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps of every run")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--batch-sweep", default="32,64,128", help="claim 6 batch sizes ('' = none)")
    p.add_argument("--only", default="", help="comma-separated run names to run (default: all)")
    p.add_argument("--train-limit", type=int, default=10000, help="k-NN / linear train subset")
    p.add_argument("--test-limit", type=int, default=5000, help="test subset")
    p.add_argument("--linear-epochs", type=int, default=30)
    p.add_argument("--peer", action="store_true", help="also run benchmarks/peer_lightly.py")
    p.add_argument("--report-only", action="store_true", help="tables and figures from finished"
                   " runs; train nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s]
        sweep = [int(b) for b in args.batch_sweep.split(",") if b]
    except ValueError as err:
        print(f"error: --seeds and --batch-sweep are comma-separated integers ({err})",
              file=sys.stderr)
        return 2
    if args.steps < 30 or not seeds or any(b < 8 for b in sweep):
        print("error: need --steps >= 30, at least one seed and batch sizes >= 8",
              file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    runs = plan_runs(seeds, batch_sweep=sweep)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {r.name for r in runs}
        if unknown:
            print(f"error: --only names no planned run: {sorted(unknown)}", file=sys.stderr)
            return 2
        runs = [r for r in runs if r.name in wanted]
    rows = []
    for run in runs:
        done = os.path.exists(os.path.join(args.out, "runs", run.name, "train_wall_s.json"))
        if args.report_only and not done:
            continue
        rows.append(execute(run, args))
    peers = []
    if args.peer:
        for seed in seeds:
            for m in PEER_METHODS:
                done = os.path.exists(os.path.join(args.out, "peer", f"{m}-s{seed}.json"))
                if args.report_only and not done:
                    continue
                peers.append({**execute_peer(m, seed, args), "seed": seed})
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"steps": args.steps, "runs": rows, "peer": peers}, f, indent=1,
                  default=lambda x: None if isinstance(x, float) and math.isnan(x) else x)
    write_markdown(rows, peers, args, os.path.join(args.out, "science.md"))
    figures = plot_claims(rows, args.out)
    with open(os.path.join(args.out, "science.md"), encoding="utf-8") as f:
        print(f.read())
    print("figures: " + ", ".join(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
