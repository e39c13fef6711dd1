"""What :func:`jaxssl.train.loop.train` tells its callers while it runs: the typed events of the
``on_log`` and ``on_end`` callbacks.

The trainer does not evaluate: whoever calls it passes the probes in (the entry point
``python -m jaxssl.train`` passes the online k-NN probe and the final evaluation of
:mod:`jaxssl.eval.final`), so the train layer never imports the eval layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import ml_collections

from jaxssl.methods.base import Method
from jaxssl.train.state import TrainState


class LogEvent(NamedTuple):
    """A logged step: ``on_log(event)`` returns entries to add to that step's metrics row.

    Attributes:
      step: optimiser steps done.
      state: the train state after ``step`` steps (replicated over ``mesh``).
      method / config / mesh: the run's method, config and data mesh.
    """

    step: int
    state: TrainState
    method: Method
    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh


class EndEvent(NamedTuple):
    """The end of a run that finished (not one stopped by a signal or ``stop_after``):
    ``on_end(event)`` returns entries to add to the summary ``train`` returns.

    Attributes:
      workdir: the run's directory (its final checkpoint is saved).
      step / state / method / config / mesh: as in :class:`LogEvent`.
      train_seconds: wall-clock seconds of this process's training (this session).
      images_per_s: the last logged throughput.
      is_main: whether this is process 0 (the one that writes files and prints).
    """

    workdir: str
    step: int
    state: TrainState
    method: Method
    config: ml_collections.ConfigDict
    mesh: jax.sharding.Mesh
    train_seconds: float
    images_per_s: float
    is_main: bool


OnLog = Callable[[LogEvent], dict[str, Any]]
OnEnd = Callable[[EndEvent], dict[str, Any]]
