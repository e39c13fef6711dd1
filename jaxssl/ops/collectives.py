"""Global batch reductions: sums and counts over the devices of a mapped axis.

Inside ``jax.shard_map`` every device holds a slice of the batch; a batch statistic (a mean, a
count, a centre) is global only when its numerator and its denominator are summed over the mapped
axis. Outside a mapped axis (``axis_name=None``) every function here is the identity reduction, so
the same code serves one device and many.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def global_sum(x: jax.Array, axis_name: str | None) -> jax.Array:
    """Sums ``x`` over the devices of ``axis_name`` (``jax.lax.psum``); ``x`` itself when None.

    >>> import jax.numpy as jnp
    >>> print(global_sum(jnp.array([1.0, 2.0]), None))
    [1. 2.]
    """
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def global_count(n: int, axis_name: str | None) -> int:
    """The number of rows over all devices when each of them holds ``n`` (a static int).

    >>> global_count(8, None)
    8
    """
    return n if axis_name is None else n * jax.lax.axis_size(axis_name)


def global_row_mean(x: jax.Array, axis_name: str | None) -> jax.Array:
    """Float32 mean of ``[..., K]`` rows over every leading axis and the devices: ``[K]``.

    The sum and the row count are reduced separately, so the result is the mean of the
    concatenated batch.

    >>> import jax.numpy as jnp
    >>> print(global_row_mean(jnp.array([[[1.0, 3.0]], [[3.0, 5.0]]]), None))  # [2, 1, 2]
    [2. 4.]
    """
    x = jnp.asarray(x, jnp.float32)
    total = jnp.sum(x, axis=tuple(range(x.ndim - 1)))
    count = jnp.asarray(x.size // x.shape[-1], jnp.float32)
    return global_sum(total, axis_name) / global_sum(count, axis_name)
