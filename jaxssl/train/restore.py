"""Restoring a finished training checkpoint for evaluation and export: one function.

``python -m jaxssl.eval`` needs the whole typed ``TrainState`` (to run the method's ``embed``
and ``assign``); ``python -m jaxssl.export`` needs only the backbone's arrays and must work
where the method cannot be rebuilt. Both go through :func:`restore_checkpoint` (``raw=True``
for export), so they find the checkpoint, reject a missing workdir or step, and name an
unreadable checkpoint (suggesting ``--step``) with the same messages. Resuming training is a
different job (it skips and moves aside a corrupt checkpoint): :mod:`jaxssl.train.resume`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections

from jaxssl.methods.base import Method
from jaxssl.methods.registry import build_method
from jaxssl.train import mesh as mesh_lib
from jaxssl.train.checkpoint import Checkpointer, abstract_like, check_state_shapes
from jaxssl.train.init_state import create_train_state
from jaxssl.train.optim import make_optimizer

HOW_TO_TRAIN = ("Produce one with `python -m jaxssl.train --config configs/quickstart.py "
                "--workdir DIR`.")


@dataclasses.dataclass(frozen=True)
class RestoredCheckpoint:
    """One checkpoint of a workdir.

    Attributes:
      state: the ``TrainState`` replicated on every device, or (``raw=True``) the saved state
        as nested dicts of host arrays.
      config: the config the model was built from (the saved one unless one was passed).
      step: the checkpoint's step.
      workdir: the absolute workdir.
      method: the rebuilt method; None for a raw restore.
    """

    state: Any
    config: ml_collections.ConfigDict
    step: int
    workdir: str
    method: Method | None = None


def checkpoints_dir(workdir: str) -> str:
    """``workdir/checkpoints``; FileNotFoundError naming the workdir when there is none.

    >>> checkpoints_dir("/nonexistent/run")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no checkpoints directory in workdir /nonexistent/run (it does not exist)...
    """
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        why = ("it does not exist" if not os.path.exists(workdir) else
               "it is a file, not a training workdir" if not os.path.isdir(workdir) else
               f"expected {directory}")
        raise FileNotFoundError(f"no checkpoints directory in workdir {workdir} ({why}). "
                                f"{HOW_TO_TRAIN}")
    return directory


def _chosen_step(ckpt: Checkpointer, step: int | None) -> int:
    steps = ckpt.all_steps()
    if not steps:
        raise FileNotFoundError(f"no finished checkpoint in {ckpt.directory}. {HOW_TO_TRAIN}")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise FileNotFoundError(f"no checkpoint for step {step} in {ckpt.directory}; "
                                f"available steps: {steps}")
    return int(step)


def _restore_typed(ckpt: Checkpointer, step: int, config: ml_collections.ConfigDict
                   ) -> tuple[Any, Method]:
    """The TrainState of ``step``, replicated, on a target built from ``config`` with
    ``jax.eval_shape`` (no parameter is initialised); shapes are compared first, since orbax's
    own mismatch errors do not name the field."""
    try:
        saved = ckpt.saved_shapes(step)
    except Exception as e:  # orbax / tensorstore read errors have no common base class
        raise ckpt.unreadable(step, e) from e
    method = build_method(config)
    tx = make_optimizer(config.optim)
    abstract = jax.eval_shape(
        lambda k: create_train_state(method, config, tx, k, int(config.train.num_steps)),
        jax.random.key(0))
    check_state_shapes(saved, abstract, f"checkpoint {ckpt.path(step)}")
    replicated = mesh_lib.replicated(mesh_lib.make_data_mesh())
    try:
        return ckpt.restore(abstract_like(abstract, replicated), step=step), method
    except Exception as e:
        raise ckpt.unreadable(step, e) from e


def restore_checkpoint(
    workdir: str | os.PathLike,
    *,
    step: int | None = None,
    config: ml_collections.ConfigDict | None = None,
    raw: bool = False,
) -> RestoredCheckpoint:
    """Restores the newest (or ``step``'s) checkpoint of a ``python -m jaxssl.train`` workdir.

    Args:
      workdir: the training run's ``--workdir``.
      step: a checkpoint step; None takes the newest.
      config: build the model from this config instead of the one saved in the checkpoint.
      raw: return the saved arrays as nested dicts without rebuilding the method (export).

    Raises:
      FileNotFoundError: no workdir, no checkpoint, or no checkpoint at ``step``.
      ValueError: a model whose shapes differ from the checkpoint's (the message names both
        shapes), or an unreadable checkpoint
        (:class:`~jaxssl.train.checkpoint.CorruptCheckpointError`, naming it and the other
        steps to pass as ``--step``).

    >>> restore_checkpoint("/nonexistent/run")
    Traceback (most recent call last):
    ...
    FileNotFoundError: no checkpoints directory in workdir /nonexistent/run (it does not exist)...
    """
    workdir = os.path.abspath(os.fspath(workdir))
    checkpoints_dir(workdir)
    ckpt = Checkpointer(workdir)
    try:
        step = _chosen_step(ckpt, step)
        try:
            config = ckpt.restore_config(step) if config is None else config
            state = ckpt.restore_raw(step) if raw else None
        except Exception as e:  # orbax / tensorstore read errors have no common base class
            raise ckpt.unreadable(step, e) from e
        method = None
        if not raw:
            state, method = _restore_typed(ckpt, step, config)
    finally:
        ckpt.close()
    return RestoredCheckpoint(state=state, config=config, step=step, workdir=workdir,
                              method=method)
