"""The train state: one pytree that is sharded, donated, checkpointed and restored as a whole."""

from __future__ import annotations

from typing import Any

import flax
import jax


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue bit-for-bit after a restore.

    Attributes:
      step: optimiser steps taken (int32 scalar).
      total_steps: the planned length of the run, fixed once (a wall-clock budget measures it), so
        a resumed run follows the same schedules.
      params / batch_stats: the student's parameters and BatchNorm running statistics.
      teacher_params / teacher_batch_stats: the EMA teacher. Only parameters are averaged; the
        teacher's BatchNorm statistics come from its own forward passes in train mode.
      opt_state: optax state, including the injected learning rate and weight decay.
      method_state: EMA statistics of the method: DINO/iBOT centres, ExCB cluster sizes.
    """

    step: jax.Array
    total_steps: jax.Array
    params: Any
    batch_stats: Any
    teacher_params: Any
    teacher_batch_stats: Any
    opt_state: Any
    method_state: Any


def ema_update(teacher: Any, student: Any, momentum: jax.Array) -> Any:
    """theta_t <- m theta_t + (1 - m) theta_s (docs/methods.md §0), leaf by leaf.

    Leaf by leaf on purpose: one raveled update (concatenate, update, split) measured slower on
    CPU, as the concatenations cost more memory traffic than the per-leaf kernels.

    >>> import jax.numpy as jnp
    >>> ema_update({"w": jnp.zeros(2)}, {"w": jnp.ones(2)}, 0.75)["w"].tolist()
    [0.25, 0.25]
    """
    return jax.tree.map(
        lambda t, s: (momentum * t + (1.0 - momentum) * s).astype(t.dtype), teacher, student
    )
