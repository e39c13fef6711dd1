"""Loading a pretrained model from a training workdir for frozen-feature evaluation.

The trainer saves the whole ``TrainState`` and the config as JSON in every checkpoint
(``jaxssl.train.checkpoint``), so the method is rebuilt from the saved config, the restore target
is built with ``jax.eval_shape`` (no parameters are initialised) and the saved arrays land
replicated on every device, as in the training loop.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxssl.methods.base import Method
from jaxssl.train.checkpoint import check_state_shapes, shapes_by_name  # noqa: F401 (re-export)

WHICH = ("teacher", "student")
_HOW_TO_TRAIN = ("Produce one with `python -m jaxssl.train --config configs/quickstart.py "
                 "--workdir DIR`.")


@dataclasses.dataclass(frozen=True)
class Pretrained:
    """A restored model: its config and method, one set of weights and the checkpoint step."""

    config: ml_collections.ConfigDict
    method: Method
    params: Any
    batch_stats: Any
    step: int
    which: str
    workdir: str

    def feature_dim(self) -> int:
        """Width D of ``method.embed`` features, from shapes only (nothing is computed)."""
        size = int(self.config.data.global_crops.size)
        images = jax.ShapeDtypeStruct((1, size, size, 3), np.float32)
        out = jax.eval_shape(lambda x: self.method.embed(self.params, self.batch_stats, x),
                             images)
        return int(out.shape[-1])


def _checkpoint_dir(workdir: str) -> str:
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"workdir {workdir} does not exist. {_HOW_TO_TRAIN}")
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoints in workdir {workdir} (expected {directory}). "
                                f"{_HOW_TO_TRAIN}")
    return directory


def load_pretrained(
    workdir: str | os.PathLike,
    *,
    which: str = "teacher",
    step: int | None = None,
    config: ml_collections.ConfigDict | None = None,
) -> Pretrained:
    """Restores the newest (or ``step``'s) checkpoint of a training workdir.

    Args:
      workdir: the ``--workdir`` of a ``python -m jaxssl.train`` run.
      which: "teacher" (the EMA network the papers evaluate) or "student".
      step: a checkpoint step; None takes the newest.
      config: build the model from this config instead of the one saved in the checkpoint.

    Raises:
      FileNotFoundError: no workdir, no checkpoint, or no checkpoint at ``step``.
      ValueError: an unknown ``which``, a model whose shapes differ from the checkpoint's (the
        message names both shapes), or an unreadable checkpoint
        (:class:`~jaxssl.train.checkpoint.CorruptCheckpointError`, naming it and the other
        steps to pass as ``step``).

    >>> load_pretrained("/nonexistent/run")
    Traceback (most recent call last):
    ...
    FileNotFoundError: workdir /nonexistent/run does not exist. Produce one with ...
    """
    from jaxssl.methods.registry import build_method
    from jaxssl.train import mesh as mesh_lib
    from jaxssl.train.checkpoint import Checkpointer, abstract_like
    from jaxssl.train.init_state import create_train_state
    from jaxssl.train.optim import make_optimizer

    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}; got {which!r}")
    workdir = os.path.abspath(os.fspath(workdir))
    directory = _checkpoint_dir(workdir)
    ckpt = Checkpointer(workdir)
    try:
        steps = ckpt.all_steps()
        if not steps:
            raise FileNotFoundError(f"no finished checkpoint in {directory}. {_HOW_TO_TRAIN}")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise FileNotFoundError(f"no checkpoint for step {step} in {directory}; "
                                    f"available steps: {steps}")
        try:
            if config is None:
                config = ckpt.restore_config(step)
            saved = ckpt.saved_shapes(step)
        except Exception as e:  # orbax / tensorstore read errors have no common base class
            raise ckpt.unreadable(step, e) from e
        method = build_method(config)
        tx = make_optimizer(config.optim)
        abstract = jax.eval_shape(
            lambda k: create_train_state(method, config, tx, k, int(config.train.num_steps)),
            jax.random.key(0))
        # Compare shapes before restoring: orbax's own mismatch errors do not name the field.
        check_state_shapes(saved, abstract, f"checkpoint {ckpt.path(step)}")
        replicated = mesh_lib.replicated(mesh_lib.make_data_mesh())
        try:
            state = ckpt.restore(abstract_like(abstract, replicated), step=step)
        except Exception as e:
            raise ckpt.unreadable(step, e) from e
    finally:
        ckpt.close()
    if which == "teacher":
        params, batch_stats = state.teacher_params, state.teacher_batch_stats
    else:
        params, batch_stats = state.params, state.batch_stats
    return Pretrained(config=config, method=method, params=params, batch_stats=batch_stats,
                      step=int(step), which=which, workdir=workdir)
