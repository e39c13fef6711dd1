"""Loading a pretrained model from a training workdir for frozen-feature evaluation.

The trainer saves the whole ``TrainState`` and the config as JSON in every checkpoint; the one
restore function shared with export (:func:`jaxssl.train.restore.restore_checkpoint`) rebuilds the
method from the saved config and puts the saved arrays replicated on every device, as in the
training loop. ``Pretrained`` keeps one of its two networks.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxssl.methods.base import Method
from jaxssl.train.restore import restore_checkpoint

WHICH = ("teacher", "student")


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


def load_pretrained(
    workdir: str | os.PathLike,
    *,
    which: str = "teacher",
    step: int | None = None,
    config: ml_collections.ConfigDict | None = None,
) -> Pretrained:
    """Restores the newest (or ``step``'s) checkpoint of a training workdir
    (:func:`jaxssl.train.restore.restore_checkpoint`) and keeps the ``which`` network.

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
    FileNotFoundError: no checkpoints directory in workdir /nonexistent/run (it does not exist)...
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}; got {which!r}")
    restored = restore_checkpoint(workdir, step=step, config=config)
    state = restored.state
    if which == "teacher":
        params, batch_stats = state.teacher_params, state.teacher_batch_stats
    else:
        params, batch_stats = state.params, state.batch_stats
    return Pretrained(config=restored.config, method=restored.method, params=params,
                      batch_stats=batch_stats, step=restored.step, which=which,
                      workdir=restored.workdir)
