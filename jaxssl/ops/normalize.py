"""L2 normalisation that is safe for zero vectors (values and gradients)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, axis: int = -1, *, eps: float = 1e-12) -> jax.Array:
    """``x / max(|x|, eps)`` along ``axis`` in float32; a zero vector stays zero.

    Written as ``x * rsqrt(max(|x|^2, eps^2))``: there is no division by zero, and ``max`` routes
    the gradient of a (near-)zero vector to the constant, so it is finite (not NaN) too. Vectors
    shorter than ``eps`` are scaled by ``1 / eps`` instead of normalised.

    Args:
      x: array of any float dtype.
      axis: the axis that holds the vectors.
      eps: the smallest norm divided by (> 0).

    Returns:
      float32 array shaped like ``x``.

    >>> import jax.numpy as jnp
    >>> print(l2_normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]])))
    [[0.6 0.8]
     [0.  0. ]]
    """
    x = jnp.asarray(x, jnp.float32)
    sq_norm = jnp.sum(x * x, axis=axis, keepdims=True)
    return x * jax.lax.rsqrt(jnp.maximum(sq_norm, eps * eps))
