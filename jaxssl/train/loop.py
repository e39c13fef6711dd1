"""``train(config, workdir)``: the pretraining loop around the jitted step.

It validates the config, locks the workdir (one trainer per workdir, :mod:`.workdir_lock`),
builds the mesh, method, optimiser and data, resumes from the newest checkpoint that restores
(:mod:`.resume`: config drift refused or recorded, corrupt checkpoints moved aside), and then runs
the step with logging, periodic and preemption checkpoints, a NaN guard that never saves a
non-finite state (:mod:`.finite`) and (optionally) a wall-clock budget. At the end it saves,
evaluates the teacher with k-NN, and writes ``report.json`` and plots.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl.methods.registry import build_method
from jaxssl.output_paths import prepare_dir
from jaxssl.train import mesh as mesh_lib
from jaxssl.train.budget import BudgetPlanner
from jaxssl.train.checkpoint import Checkpointer, abstract_like
from jaxssl.train.finite import (
    NonFiniteLossError,
    clear_marker,
    non_finite_parts,
    read_marker,
    write_marker,
)
from jaxssl.train.hyper import hyperparams
from jaxssl.train.init_state import create_train_state
from jaxssl.train.metrics_log import MetricsLogger
from jaxssl.train.optim import make_optimizer
from jaxssl.train.resume import Resumed, restore_newest_good
from jaxssl.train.resume_config import record_config, resumed_total_steps
from jaxssl.train.step import make_train_step
from jaxssl.train.validate import validate_config
from jaxssl.train.workdir_lock import hold_workdir

__all__ = ["NonFiniteLossError", "train"]


class _StopFlag:
    """Turns SIGTERM / SIGINT (preemption, Ctrl-C) into a save-and-exit at the next step."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        del frame
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _ibot_mask(config, method, step: int, local_batch: int) -> np.ndarray:
    from jaxssl.data.masks import ibot_masks

    g = config.data.global_crops
    side = g.size // method.model.backbone.patch_size
    seed = config.seed * 1_000_003 + jax.process_index()
    lcfg = config.loss
    return ibot_masks(seed, step, local_batch, g.num, (side, side),
                      ratio_range=tuple(lcfg.mask_ratio), mask_probability=lcfg.mask_probability)


def _non_finite_stop(workdir: str, ckpt: Checkpointer, step: int, what: str,
                     newest_finite: int | None, is_main: bool) -> NonFiniteLossError:
    """The error of a NaN stop at ``step``; records the stop so the next resume may change
    ``optim.*``."""
    where = (f"the newest finite checkpoint, {ckpt.path(newest_finite)}, is intact"
             if newest_finite is not None else "no checkpoint was saved")
    if is_main:
        write_marker(workdir, step, newest_finite)
    return NonFiniteLossError(
        f"{what} at step {step}; stopping without saving it: {where}. Lower optim.lr (the next "
        "run in this workdir may change optim.*) or check the data, then run again to resume.")


def _apply_resume(resumed: Resumed, config: ml_collections.ConfigDict, workdir: str,
                  ckpt: Checkpointer, rep, is_main: bool):
    """The restored state with the accepted config changes applied (the total step count), and
    whether a wall-clock budget is re-planned; prints and records what changed."""
    state = resumed.state
    step = int(state.step)
    total, replan = resumed_total_steps(int(state.total_steps), step, resumed.changes, config,
                                        spent_s=resumed.train_seconds)
    if total != int(state.total_steps):
        state = state.replace(total_steps=jax.device_put(jnp.int32(total), rep))
    print(f"Resumed from {ckpt.path(resumed.step)} at step {step}"
          + (f" (skipped {', '.join(resumed.set_aside)})." if resumed.set_aside else "."))
    if resumed.changes:
        changed = "; ".join(str(c) for c in resumed.changes)
        print(f"Config changes applied from step {step}: {changed}; the run now ends at step "
              f"{total}" + (" until the wall-clock budget re-plans it" if replan else "") + ".")
    if is_main:
        kept = record_config(workdir, config, step=step, changes=resumed.changes)
        if kept:
            print(f"The previous config is kept as {os.path.join(workdir, kept)}.")
    return state, replan


def train(config: ml_collections.ConfigDict, workdir: str, *, stop_after: int | None = None
          ) -> dict:
    """Pretrains ``config.method`` in ``workdir`` (resuming from its newest checkpoint).

    ``stop_after`` stops (with a checkpoint) once that many steps are done in total, as a
    preemption would; tests use it to check that resuming reproduces an uninterrupted run.
    Returns a summary dict (steps, images/s, final k-NN accuracy when evaluated; ``preempted``
    when SIGTERM/SIGINT stopped it after saving).

    Raises WorkdirLockedError when another trainer holds ``workdir``, ResumeConfigError when the
    config differs from the checkpoint's in a field that may not change on resume, and
    NonFiniteLossError on a NaN/Inf loss or state (nothing non-finite is ever saved).
    """
    mesh_lib.maybe_initialize_distributed()
    validate_config(config)
    prepare_dir(workdir, what="workdir")  # a file, read-only or uncreatable workdir: one line
    with hold_workdir(workdir):
        return _train_locked(config, workdir, stop_after)


def _train_locked(config: ml_collections.ConfigDict, workdir: str, stop_after: int | None
                  ) -> dict:
    from jaxssl.data.delivery import to_global_batch
    from jaxssl.data.pipeline import make_train_iterator

    is_main = jax.process_index() == 0
    mesh = mesh_lib.make_data_mesh()
    rep = mesh_lib.replicated(mesh)
    method = build_method(config)
    tx = make_optimizer(config.optim)
    key = jax.random.key(config.seed)
    k_init, k_step, k_kmeans = jax.random.split(key, 3)

    # total_steps is an argument, not a constant, so one compiled init serves every num_steps.
    init = jax.jit(lambda k, total: create_train_state(method, config, tx, k, total),
                   out_shardings=rep)
    num_steps = jnp.int32(config.train.num_steps)
    data_it = make_train_iterator(config.data, global_batch_size=config.train.batch_size,
                                  seed=config.seed, process_index=jax.process_index(),
                                  process_count=jax.process_count())
    ckpt = Checkpointer(workdir, keep=config.train.keep_checkpoints, cleanup_tmp=True)
    after_nan = read_marker(workdir) is not None
    # Resuming needs only the state's shapes: the initialisation is compiled for fresh runs only.
    abstract = abstract_like(init.eval_shape(k_init, num_steps), rep)
    found = restore_newest_good(ckpt, abstract, data_it, config, after_non_finite=after_nan)
    resumed = found is not None
    replan = False
    if resumed:
        state, replan = _apply_resume(found, config, workdir, ckpt, rep, is_main)
    else:
        state = init(k_init, num_steps)
        if config.method == "excb" and config.loss.kmeans_init:
            from jaxssl.train.excb_init import kmeans_init_centroids

            state = jax.device_put(
                kmeans_init_centroids(method, state, config, k_kmeans, mesh=mesh), rep)
        if is_main:
            record_config(workdir, config, step=None, changes=[])
    if after_nan and is_main and (not resumed or found.changes):
        clear_marker(workdir)  # the fix is in: later resumes refuse optim.* changes again

    step_fn = make_train_step(method, config, tx)
    step = int(state.step)
    total = int(state.total_steps)
    spent_before = (found.train_seconds or 0.0) if resumed else 0.0
    planner = (BudgetPlanner(config.train.time_budget_s, start_step=step, spent_s=spent_before,
                             max_steps=config.train.num_steps, log_every=config.train.log_every)
               if config.train.time_budget_s and (not resumed or replan) else None)
    local_batch = config.train.batch_size // jax.process_count()
    log = MetricsLogger(workdir, total_steps=total, batch_size=config.train.batch_size,
                        initial_step=step, progress=config.train.progress, enabled=is_main)
    t_start = time.perf_counter()
    last_saved = found.step if resumed else None
    summary = {"resumed": resumed}
    compiled = False
    images_per_s = float("nan")

    def save(at: int) -> None:
        nonlocal last_saved
        if last_saved != at:
            bad = non_finite_parts(state)
            if bad:
                log.close()
                raise _non_finite_stop(workdir, ckpt, at, f"the state is not finite "
                                       f"({', '.join(bad)})", last_saved, is_main)
            ckpt.save(at, state, data_it, config,
                      train_seconds=spent_before + time.perf_counter() - t_start)
            last_saved = at

    with _StopFlag() as stop:
        while step < total:
            batch = next(data_it)
            # Order-sensitive checksum of this process's examples: lets tests and users check
            # that a resumed run sees exactly the batches of an uninterrupted one.
            fingerprint = int(np.sum(np.asarray(batch["index"], np.int64)
                                     * np.arange(1, len(batch["index"]) + 1)) % 1_000_003)
            if config.method == "ibot":
                batch = {**batch, "mask": _ibot_mask(config, method, step, local_batch)}
            batch = to_global_batch(batch, mesh)
            hyper = hyperparams(config, step, total)
            if not compiled:
                # Compile before the first execution and let every process finish compiling
                # before any runs a collective (see mesh.sync_processes); the call below then
                # reuses this executable.
                step_fn.lower(state, batch, hyper, k_step).compile()
                mesh_lib.sync_processes("jaxssl_train_step_compiled")
                compiled = True
            state, metrics = step_fn(state, batch, hyper, k_step)
            step += 1
            loss = float(metrics["loss"])
            if not math.isfinite(loss):
                log.close()
                raise _non_finite_stop(workdir, ckpt, step, f"the loss is {loss}", last_saved,
                                       is_main)
            log.advance()
            # A wall-clock budget re-plans the step count (and so the schedules' end) as it goes.
            planned = planner.after_step(step, total) if planner is not None else None
            if planned is not None:
                total = planned
                state = state.replace(total_steps=jax.device_put(jnp.int32(total), rep))
                log.set_total(total)
            if step % config.train.log_every == 0 or step == total:
                images_per_s = log.images_per_second(step)
                row = {k: v for k, v in jax.device_get(metrics).items()}
                row["images_per_s"] = images_per_s
                row["data_fingerprint"] = fingerprint
                if config.train.prototype_diag_every and (
                        step % config.train.prototype_diag_every == 0 or step == total):
                    protos = method.prototypes(state.teacher_params)
                    if protos is not None:
                        from jaxssl.losses.koleo import count_unique_prototypes

                        row["unique_prototypes_1e-2"] = int(
                            count_unique_prototypes(protos, 1e-2))
                if config.train.online_knn_every and step % config.train.online_knn_every == 0:
                    from jaxssl.train.final_eval import knn_accuracy

                    row["online_knn_top1"] = knn_accuracy(
                        method, state, config, mesh,
                        train_limit=config.train.online_knn_train_size,
                        test_limit=config.train.online_knn_test_size)["top1"]
                log.write(step, row)
            if step % config.train.checkpoint_every == 0:
                save(step)
            if stop.signum is not None or (stop_after is not None and step >= stop_after):
                save(step)
                why = f"signal {stop.signum}" if stop.signum is not None else "stop_after"
                print(f"Stopped at step {step} ({why}); checkpoint {ckpt.path(step)}. "
                      "Run the same command again to resume.")
                log.close()
                ckpt.close()
                return {**summary, "step": step, "stopped": True, "state": state,
                        "preempted": stop.signum is not None}
        save(step)
    log.close()
    summary.update(step=step, stopped=False, images_per_s=images_per_s,
                   train_seconds=time.perf_counter() - t_start, state=state)

    if config.eval.final_knn:
        from jaxssl.train.final_eval import cluster_sizes, knn_accuracy, write_report_and_plots

        t0 = time.perf_counter()
        acc = knn_accuracy(method, state, config, mesh,
                           train_limit=int(config.eval.knn_train_size))
        sizes = cluster_sizes(method, state, config)
        report = {"method": config.method, "dataset": config.data.dataset, "steps": step,
                  "knn_top1": acc["top1"], "knn_top5": acc["top5"],
                  "train_seconds": summary["train_seconds"], "images_per_s": images_per_s,
                  "eval_seconds": time.perf_counter() - t0}
        if sizes is not None:
            report.update(min_relative_cluster_size=float(sizes.min()),
                          max_relative_cluster_size=float(sizes.max()),
                          empty_cluster_fraction=float(np.mean(sizes == 0)))
        if is_main:
            written = write_report_and_plots(workdir, report, sizes if config.eval.plots else None)
            print(json.dumps({k: v for k, v in report.items()}, indent=2))
            print(f"k-NN top-1 (k={config.eval.knn_k}) on {config.data.dataset} test: "
                  f"{100 * acc['top1']:.2f}%  |  wrote {', '.join(written)}")
        summary.update(knn_top1=acc["top1"], knn_top5=acc["top5"], report=report)
    ckpt.close()
    return summary
