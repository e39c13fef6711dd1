"""Teacher confidence: the mean over rows of the largest target probability.

Near 1/K it means a uniform (collapsing) teacher, near 1 a sharp (possibly one-cluster) one. ExCB
reports it as Eq. 11; the losses return it in their aux under the name their API fixes
(``teacher_confidence``, ``target_confidence``, ``mean_max_prob``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxssl.ops.collectives import global_count, global_sum


def teacher_confidence(probs: jax.Array, axis_name: str | None = None) -> jax.Array:
    """``mean_rows max_k probs[..., k]`` over every leading axis and the devices, in float32.

    Args:
      probs: ``[..., K]`` probabilities (any leading axes; each ``[K]`` vector is one row).
      axis_name: mapped batch axis (inside ``jax.shard_map``) for a global mean, or None.

    Returns:
      float32 scalar.

    >>> import jax.numpy as jnp
    >>> print(teacher_confidence(jnp.array([[0.5, 0.5], [1.0, 0.0]])))
    0.75
    """
    p = jnp.asarray(probs, jnp.float32)
    rows = math.prod(p.shape[:-1])
    return global_sum(jnp.sum(jnp.max(p, axis=-1)), axis_name) / global_count(rows, axis_name)
