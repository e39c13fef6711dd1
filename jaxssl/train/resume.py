"""Resuming a run from the newest checkpoint that restores, falling back past corrupt ones.

For each checkpoint, newest first, :func:`restore_newest_good` reads its config, checks that the
new config may resume it (:mod:`jaxssl.train.resume_config`: a refused change stops here), compares
the saved array shapes with the model's (a mismatch stops here too, naming the arrays), restores
state and data-iterator position and checks the state is finite. A checkpoint that cannot be read
(a truncated or missing file, an unreadable config) or holds NaN/Inf is skipped with a message
saying why; once an older one restores, the skipped ones are moved aside to
``checkpoints/<step>.corrupt-<time>`` (kept, but no longer listed by orbax). When none restores,
nothing is moved and the run stops with every reason, rather than starting again from scratch.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections

from jaxssl.train import mesh as mesh_lib
from jaxssl.train.checkpoint import Checkpointer, check_state_shapes, describe_error
from jaxssl.train.finite import non_finite_parts
from jaxssl.train.resume_config import Change, check_resume_config


class NoRestorableCheckpointError(ValueError):
    """Every checkpoint of the workdir failed to restore; the message lists why, per step."""


@dataclasses.dataclass
class Resumed:
    """The outcome of a resume.

    Attributes:
      step: the checkpoint's step.
      state: the restored TrainState (the data iterator was moved in place).
      changes: the config changes accepted for this resume (safe fields only).
      train_seconds: training seconds spent before this checkpoint (None if not recorded).
      set_aside: "<step> -> <new path> (<why>)" for each checkpoint skipped and moved aside.
    """

    step: int
    state: Any
    changes: list[Change]
    train_seconds: float | None
    set_aside: list[str]


class _Unreadable(Exception):
    """Internal: this checkpoint cannot be used; try the next older one."""


def _try_checkpoint(ckpt: Checkpointer, step: int, abstract_state: Any, data_iterator,
                    config: ml_collections.ConfigDict, *, after_non_finite: bool
                    ) -> tuple[Any, list[Change]]:
    where = f"{os.path.dirname(ckpt.directory)} from checkpoint {step}"
    try:
        saved_config = ckpt.restore_config(step)
    except Exception as e:  # orbax / tensorstore errors share no base class
        raise _Unreadable(f"its config cannot be read: {describe_error(e)}") from e
    changes = check_resume_config(saved_config, config, where=where,
                                  after_non_finite=after_non_finite)
    try:
        shapes = ckpt.saved_shapes(step)
    except Exception as e:
        raise _Unreadable(f"its state metadata cannot be read: {describe_error(e)}") from e
    check_state_shapes(shapes, abstract_state, f"checkpoint {ckpt.path(step)}")
    try:
        state = ckpt.restore(abstract_state, data_iterator, step=step)
    except Exception as e:
        raise _Unreadable(f"its state cannot be read: {describe_error(e)}") from e
    bad = non_finite_parts(state)
    if bad:
        raise _Unreadable(f"its state is not finite: {', '.join(bad)}")
    return state, changes


def restore_newest_good(ckpt: Checkpointer, abstract_state: Any, data_iterator,
                        config: ml_collections.ConfigDict, *, after_non_finite: bool = False
                        ) -> Resumed | None:
    """Restores the newest usable checkpoint of ``ckpt`` (None when there is none at all).

    Args:
      ckpt: the workdir's checkpoints.
      abstract_state: ShapeDtypeStructs (with shardings) of the TrainState to restore into.
      data_iterator: the grain iterator, moved to the checkpoint's position in place.
      config: the config of the run that resumes; checked against each checkpoint's.
      after_non_finite: the previous run stopped on a NaN (``optim.*`` may change).

    Raises:
      ResumeConfigError: the config differs in a field that may not change on resume.
      ValueError: the model's array shapes differ from the checkpoint's (names both).
      NoRestorableCheckpointError: checkpoints exist but none restores (nothing is moved).
    """
    skipped: list[tuple[int, str]] = []
    for step in reversed(ckpt.all_steps()):
        try:
            state, changes = _try_checkpoint(ckpt, step, abstract_state, data_iterator, config,
                                             after_non_finite=after_non_finite)
        except _Unreadable as e:
            print(f"Skipping checkpoint {ckpt.path(step)}: {e}")
            skipped.append((step, str(e)))
            continue
        # Every process restored the same step; only then does process 0 move the bad ones.
        mesh_lib.sync_processes(f"jaxssl_restored_{step}")
        moved = []
        for bad, why in skipped:
            if jax.process_index() == 0:
                target = ckpt.set_aside(bad, why)
                print(f"Moved unusable checkpoint {bad} aside to {target}.")
            moved.append(f"{bad} ({why})")
        mesh_lib.sync_processes(f"jaxssl_set_aside_{step}")
        if jax.process_index() != 0:
            ckpt.manager.reload()
        return Resumed(step=step, state=state, changes=changes,
                       train_seconds=ckpt.train_seconds(step), set_aside=moved)
    if skipped:
        reasons = "; ".join(f"{s}: {why}" for s, why in skipped)
        raise NoRestorableCheckpointError(
            f"no checkpoint in {ckpt.directory} restores ({reasons}). Nothing was moved; fix or "
            "remove them, or use a new --workdir.")
    return None
