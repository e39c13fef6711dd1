"""Cluster-size statistics of hard assignments (ExCB, Maniadis Metaxas et al., 2024).

Three pieces, each written once and used by the ExCB loss, the ExCB method and the evaluation:

- :func:`assignment_fractions`, the batch statistic f_k of paper Eq. 8 (its EMA, Eq. 9, is
  :func:`jaxssl.ops.ema.ema`);
- :func:`relative_sizes`, r_k = K c_k / sum_j c_j (1 = the fair size 1/K, 0 = empty), which the
  balancing operator (Eq. 10) and every size diagnostic read;
- :func:`cluster_size_diagnostics`, the min / max relative size and the fraction of clusters whose
  relative size is below a threshold.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxssl.ops.collectives import global_sum

# A cluster counts as empty when its relative size is below this. With the EMA momentum 0.999 of
# ExCB a cluster of fair size falls below 0.01 only after about 4,600 steps without a single
# assignment; a per-batch count would be useless because a batch holds far fewer rows than K.
EMPTY_RELATIVE_SIZE = 0.01


def relative_sizes(cluster_sizes: jax.Array) -> jax.Array:
    """r_k = K c_k / sum_j c_j over the last axis, in float32; all-zero sizes give r = 0.

    An all-zero size vector would divide 0 by 0; dividing by 1 instead makes it "every cluster
    empty" (r = 0) with a finite gradient (a tiny floor would overflow the gradient).

    >>> import jax.numpy as jnp
    >>> print(relative_sizes(jnp.array([0.125, 0.25, 0.375, 0.25])))
    [0.5 1.  1.5 1. ]
    """
    sizes = jnp.asarray(cluster_sizes, jnp.float32)
    total = jnp.sum(sizes)
    return sizes.shape[-1] * sizes / jnp.where(total > 0, total, 1.0)


def assignment_fractions(labels: jax.Array, num_clusters: int,
                         axis_name: str | None = None) -> jax.Array:
    """Paper Eq. 8: the fraction f_k of (global) rows whose hard assignment ``labels`` is k.

    Args:
      labels: integer cluster indices of any shape (every entry is one row).
      num_clusters: K.
      axis_name: mapped axis to count over (inside ``jax.shard_map``), or None.

    Returns:
      float32 ``[K]`` summing to 1.

    >>> import jax.numpy as jnp
    >>> print(assignment_fractions(jnp.array([[0, 0], [2, 0]]), 4))
    [0.75 0.   0.25 0.  ]
    """
    counts = jnp.zeros((num_clusters,), jnp.float32).at[jnp.reshape(labels, -1)].add(1.0)
    counts = global_sum(counts, axis_name)
    # Every row lands in exactly one cluster, so the counts sum to the global number of rows.
    return counts / jnp.sum(counts)


def cluster_size_diagnostics(
    cluster_sizes: jax.Array, threshold: float = EMPTY_RELATIVE_SIZE
) -> dict[str, jax.Array]:
    """Min / max relative size and the fraction of clusters with relative size < ``threshold``.

    Args:
      cluster_sizes: ``[K]`` non-negative sizes or counts (any scale).
      threshold: relative size below which a cluster counts as empty (0 < threshold; pass
        anything in (0, K / N] with counts of N points to count exactly the zero counts).

    Returns:
      float32 scalars ``min_relative_size``, ``max_relative_size`` and ``empty_fraction``.

    >>> import jax.numpy as jnp
    >>> d = cluster_size_diagnostics(jnp.array([3.0, 1.0, 0.0, 0.0]), 0.01)
    >>> print({k: float(v) for k, v in d.items()})
    {'min_relative_size': 0.0, 'max_relative_size': 3.0, 'empty_fraction': 0.5}
    """
    relative = relative_sizes(cluster_sizes)
    return {
        "min_relative_size": jnp.min(relative),
        "max_relative_size": jnp.max(relative),
        "empty_fraction": jnp.mean((relative < threshold).astype(jnp.float32)),
    }
