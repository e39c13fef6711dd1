"""The exponential moving average that every running statistic of jaxssl uses.

DINO's and iBOT's teacher centres (DINO eq. (4)) and ExCB's cluster sizes (ExCB Eq. 9) are all
``a <- m a + (1 - m) x`` of a batch statistic ``x`` (the mean teacher output, the assignment
fractions). The batch statistic is computed by the loss side (``global_row_mean``,
``assignment_fractions``); the average is updated here, once per optimiser step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ema(average: jax.Array, value: jax.Array, momentum) -> jax.Array:
    """``momentum * average + (1 - momentum) * value`` in float32, without gradient.

    Args:
      average: the running average (any shape).
      value: this step's batch statistic, shaped like ``average``.
      momentum: m in [0, 1] (may be traced); 1 keeps ``average``, 0 returns ``value``.

    Returns:
      float32 array shaped like ``average``.

    >>> import jax.numpy as jnp
    >>> a = jnp.zeros(2)
    >>> for x in ([4.0, 8.0], [0.0, 8.0]):
    ...     a = ema(a, jnp.array(x), 0.5)
    >>> print(a)  # 0.5 (0.5 * 0 + 0.5 x1) + 0.5 x2
    [1. 6.]
    """
    a = jax.lax.stop_gradient(jnp.asarray(average, jnp.float32))
    x = jax.lax.stop_gradient(jnp.asarray(value, jnp.float32))
    return momentum * a + (1.0 - momentum) * x
