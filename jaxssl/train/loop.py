"""``train(config, workdir)``: the pretraining loop around the jitted step.

It validates the config, locks the workdir (one trainer per workdir, :mod:`.workdir_lock`),
builds the mesh, method, optimiser and data, resumes from the newest checkpoint that restores
(:mod:`.resume`: config drift refused or recorded, corrupt checkpoints moved aside), and then runs
the step with logging, periodic and preemption checkpoints, a NaN guard that never saves a
non-finite state (:mod:`.finite`) and (optionally) a wall-clock budget. Evaluation is the
caller's: typed ``on_log`` / ``on_end`` callbacks (:mod:`.callbacks`) add probes at logged steps
and at the end (the CLI passes the online k-NN probe and the final k-NN of
:mod:`jaxssl.eval.final`). The method's special cases come in through its hooks
(:class:`jaxssl.methods.base.Method`): ``post_init`` after a fresh initialisation,
``prepare_batch`` on every host batch.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl.data.delivery import to_global_batch
from jaxssl.data.pipeline import make_train_iterator
from jaxssl.losses.koleo import count_unique_prototypes
from jaxssl.methods.base import Method
from jaxssl.methods.registry import build_method
from jaxssl.output_paths import prepare_dir
from jaxssl.train import mesh as mesh_lib
from jaxssl.train.budget import BudgetPlanner
from jaxssl.train.callbacks import EndEvent, LogEvent, OnEnd, OnLog
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
from jaxssl.train.state import TrainState
from jaxssl.train.step import make_train_step
from jaxssl.train.validate import validate_config
from jaxssl.train.workdir_lock import hold_workdir

__all__ = ["EndEvent", "LogEvent", "NonFiniteLossError", "train"]


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


def train(config: ml_collections.ConfigDict, workdir: str, *, stop_after: int | None = None,
          on_log: OnLog | None = None, on_end: OnEnd | None = None) -> dict:
    """Pretrains ``config.method`` in ``workdir`` (resuming from its newest checkpoint).

    ``stop_after`` stops (with a checkpoint) once that many steps are done in total, as a
    preemption would; tests use it to check that resuming reproduces an uninterrupted run.
    ``on_log(LogEvent)`` runs at every logged step and returns entries for its metrics row (the
    online k-NN probe); ``on_end(EndEvent)`` runs once a run has finished and returns entries for
    the summary (the final evaluation: :func:`jaxssl.eval.final.final_evaluation`). Returns a
    summary dict (steps, images/s, the final state, what ``on_end`` added; ``preempted`` when
    SIGTERM/SIGINT stopped it after saving).

    Raises WorkdirLockedError when another trainer holds ``workdir``, ResumeConfigError when the
    config differs from the checkpoint's in a field that may not change on resume, and
    NonFiniteLossError on a NaN/Inf loss or state (nothing non-finite is ever saved).
    """
    mesh_lib.maybe_initialize_distributed()
    validate_config(config)
    prepare_dir(workdir, what="workdir")  # a file, read-only or uncreatable workdir: one line
    with hold_workdir(workdir):
        run = _Run.setup(config, workdir, stop_after, on_log, on_end)
        return run.loop()


@dataclasses.dataclass
class _Run:
    """One training session in a locked workdir, in phases: :meth:`setup` (build and restore or
    initialise), :meth:`loop` (steps, logging, checkpoints), :meth:`finish`."""

    config: ml_collections.ConfigDict
    workdir: str
    stop_after: int | None
    on_log: OnLog | None
    on_end: OnEnd | None
    mesh: jax.sharding.Mesh
    method: Method
    data_it: Any
    ckpt: Checkpointer
    state: TrainState
    found: Resumed | None
    replan: bool
    k_step: jax.Array
    step_fn: Any = None
    log: MetricsLogger | None = None
    planner: BudgetPlanner | None = None
    last_saved: int | None = None
    t_start: float = 0.0
    compiled: bool = False
    images_per_s: float = float("nan")

    @property
    def is_main(self) -> bool:
        return jax.process_index() == 0

    @property
    def spent_before(self) -> float:
        """Training seconds of the earlier sessions of this run (0 for a fresh run)."""
        return (self.found.train_seconds or 0.0) if self.found is not None else 0.0

    @property
    def train_clock(self) -> float:
        """Training seconds of this run so far, earlier sessions of a resumed run included."""
        return self.spent_before + time.perf_counter() - self.t_start

    @classmethod
    def setup(cls, config, workdir, stop_after, on_log, on_end) -> _Run:
        """Builds mesh, method, optimiser and data; restores the newest good checkpoint or
        initialises (then the method's ``post_init``)."""
        is_main = jax.process_index() == 0
        mesh = mesh_lib.make_data_mesh()
        rep = mesh_lib.replicated(mesh)
        method = build_method(config)
        tx = make_optimizer(config.optim)
        k_init, k_step, k_post = jax.random.split(jax.random.key(config.seed), 3)

        # total_steps is an argument, not a constant, so one compiled init serves every
        # num_steps.
        init = jax.jit(lambda k, total: create_train_state(method, config, tx, k, total),
                       out_shardings=rep)
        num_steps = jnp.int32(config.train.num_steps)
        data_it = make_train_iterator(config.data, global_batch_size=config.train.batch_size,
                                      seed=config.seed, process_index=jax.process_index(),
                                      process_count=jax.process_count())
        ckpt = Checkpointer(workdir, keep=config.train.keep_checkpoints, cleanup_tmp=True)
        after_nan = read_marker(workdir) is not None
        # Resuming needs only the state's shapes: the initialisation is compiled for fresh runs.
        abstract = abstract_like(init.eval_shape(k_init, num_steps), rep)
        found = restore_newest_good(ckpt, abstract, data_it, config, after_non_finite=after_nan)
        replan = False
        if found is not None:
            state, replan = _apply_resume(found, config, workdir, ckpt, rep, is_main)
        else:
            state = init(k_init, num_steps)
            initialised = method.post_init(state, k_post, mesh)  # e.g. ExCB's k-means
            if initialised is not state:
                state = jax.device_put(initialised, rep)
            if is_main:
                record_config(workdir, config, step=None, changes=[])
        if after_nan and is_main and (found is None or found.changes):
            clear_marker(workdir)  # the fix is in: later resumes refuse optim.* changes again
        run = cls(config=config, workdir=workdir, stop_after=stop_after, on_log=on_log,
                  on_end=on_end, mesh=mesh, method=method, data_it=data_it, ckpt=ckpt,
                  state=state, found=found, replan=replan, k_step=k_step)
        run.step_fn = make_train_step(method, config, tx)
        return run

    def loop(self) -> dict:
        """Runs the steps to the end (or a stop); returns the summary."""
        c, step = self.config, int(self.state.step)
        total = int(self.state.total_steps)
        resumed = self.found is not None
        self.planner = (BudgetPlanner(c.train.time_budget_s, start_step=step,
                                      spent_s=self.spent_before, max_steps=c.train.num_steps,
                                      log_every=c.train.log_every)
                        if c.train.time_budget_s and (not resumed or self.replan) else None)
        self.log = MetricsLogger(self.workdir, total_steps=total,
                                 batch_size=c.train.batch_size, initial_step=step,
                                 progress=c.train.progress, enabled=self.is_main)
        self.t_start = time.perf_counter()
        self.last_saved = self.found.step if resumed else None
        with _StopFlag() as stop:
            while step < total:
                total = self.one_step(step, total)
                step += 1
                if step % c.train.checkpoint_every == 0:
                    self.save(step)
                if stop.signum is not None or (self.stop_after is not None
                                               and step >= self.stop_after):
                    return self.stopped(step, stop.signum)
            self.save(step)
        self.log.close()
        return self.finish(step)

    def one_step(self, step: int, total: int) -> int:
        """Runs optimiser step ``step`` (and logs it if due); returns the planned total."""
        batch = next(self.data_it)
        # Order-sensitive checksum of this process's examples: lets tests and users check that a
        # resumed run sees exactly the batches of an uninterrupted one.
        fingerprint = int(np.sum(np.asarray(batch["index"], np.int64)
                                 * np.arange(1, len(batch["index"]) + 1)) % 1_000_003)
        batch = to_global_batch(self.method.prepare_batch(batch, step), self.mesh)
        hyper = hyperparams(self.config, step, total)
        if not self.compiled:
            # Compile before the first execution and let every process finish compiling before
            # any runs a collective (see mesh.sync_processes); the call below then reuses this
            # executable.
            self.step_fn.lower(self.state, batch, hyper, self.k_step).compile()
            mesh_lib.sync_processes("jaxssl_train_step_compiled")
            self.compiled = True
        self.state, metrics = self.step_fn(self.state, batch, hyper, self.k_step)
        step += 1
        loss = float(metrics["loss"])
        if not math.isfinite(loss):
            self.log.close()
            raise _non_finite_stop(self.workdir, self.ckpt, step, f"the loss is {loss}",
                                   self.last_saved, self.is_main)
        self.log.advance()
        # A wall-clock budget re-plans the step count (and so the schedules' end) as it goes.
        planned = self.planner.after_step(step, total) if self.planner is not None else None
        if planned is not None:
            total = planned
            self.state = self.state.replace(total_steps=jax.device_put(
                jnp.int32(total), mesh_lib.replicated(self.mesh)))
            self.log.set_total(total)
        if step % self.config.train.log_every == 0 or step == total:
            self.write_row(step, total, metrics, fingerprint)
        return total

    def write_row(self, step: int, total: int, metrics: dict, fingerprint: int) -> None:
        """The metrics row of a logged step: the step's metrics, throughput, the data
        fingerprint, the training seconds so far, prototype diagnostics when due, and what
        ``on_log`` adds."""
        c = self.config.train
        self.images_per_s = self.log.images_per_second(step)
        row = {k: v for k, v in jax.device_get(metrics).items()}
        row["images_per_s"] = self.images_per_s
        row["data_fingerprint"] = fingerprint
        # Wall-clock seconds of training so far, earlier sessions of a resumed run included (the
        # x axis of a learning curve against time); measured before this row's probes run.
        row["train_seconds"] = self.train_clock
        if c.prototype_diag_every and (step % c.prototype_diag_every == 0 or step == total):
            protos = self.method.prototypes(self.state.teacher_params)
            if protos is not None:
                # Two thresholds, so that a curve shows whether prototypes merge or only come
                # close (1e-3 counts pairs 1e-3..1e-2 apart as distinct; benchmarks/claims.py).
                for name, threshold in (("1e-2", 1e-2), ("1e-3", 1e-3)):
                    row[f"unique_prototypes_{name}"] = int(
                        count_unique_prototypes(protos, threshold))
        if self.on_log is not None:
            row.update(self.on_log(LogEvent(step=step, state=self.state, method=self.method,
                                            config=self.config, mesh=self.mesh)))
        self.log.write(step, row)

    def save(self, at: int) -> None:
        """Checkpoints step ``at`` (once); a non-finite state stops the run instead."""
        if self.last_saved != at:
            bad = non_finite_parts(self.state)
            if bad:
                self.log.close()
                raise _non_finite_stop(self.workdir, self.ckpt, at, f"the state is not finite "
                                       f"({', '.join(bad)})", self.last_saved, self.is_main)
            self.ckpt.save(at, self.state, self.data_it, self.config,
                           train_seconds=self.train_clock)
            self.last_saved = at

    def stopped(self, step: int, signum: int | None) -> dict:
        """Saves and returns the summary of a run stopped by a signal or ``stop_after``."""
        self.save(step)
        why = f"signal {signum}" if signum is not None else "stop_after"
        print(f"Stopped at step {step} ({why}); checkpoint {self.ckpt.path(step)}. "
              "Run the same command again to resume.")
        self.log.close()
        self.ckpt.close()
        return {"resumed": self.found is not None, "step": step, "stopped": True,
                "state": self.state, "preempted": signum is not None}

    def finish(self, step: int) -> dict:
        """The summary of a finished run, with what ``on_end`` adds (the final evaluation)."""
        summary = {"resumed": self.found is not None, "step": step, "stopped": False,
                   "images_per_s": self.images_per_s,
                   "train_seconds": time.perf_counter() - self.t_start, "state": self.state}
        if self.on_end is not None:
            summary.update(self.on_end(EndEvent(
                workdir=self.workdir, step=step, state=self.state, method=self.method,
                config=self.config, mesh=self.mesh, train_seconds=summary["train_seconds"],
                images_per_s=self.images_per_s, is_main=self.is_main)))
        self.ckpt.close()
        return summary
