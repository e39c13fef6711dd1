"""k-means and spherical k-means in JAX (Lloyd iterations under jit, chunked assignment).

Used for clustering evaluation (k = number of classes) and, in its spherical form, by the ExCB
trainer to initialise the K centroids from teacher projections (ExCB section 3: "restart until
no cluster is empty"; see ``spherical_kmeans(..., max_restarts=...)``).

Distances are squared Euclidean; the spherical variant L2-normalises the points and the
centroids, so its squared distance is 2 - 2 cos and its assignment is the arg-max cosine.
The nearest-centroid search runs over row chunks, so memory is O(chunk * k), never O(N * k).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _normalise(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _nearest(x: jax.Array, c: jax.Array, chunk: int) -> tuple[jax.Array, jax.Array]:
    """(index, squared distance) of each row's nearest centroid, computed chunk by chunk."""
    n = x.shape[0]
    pad = (-n) % chunk
    xp = jnp.pad(x, ((0, pad), (0, 0))).reshape(-1, chunk, x.shape[1])
    c_sq = jnp.sum(c * c, axis=1)

    def one(xb):
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; the |x|^2 term does not change the arg-min.
        d = c_sq[None, :] - 2.0 * jnp.matmul(xb, c.T, precision=jax.lax.Precision.HIGHEST)
        idx = jnp.argmin(d, axis=1)
        dist = jnp.take_along_axis(d, idx[:, None], axis=1)[:, 0] + jnp.sum(xb * xb, axis=1)
        return idx.astype(jnp.int32), jnp.maximum(dist, 0.0)

    idx, dist = jax.lax.map(one, xp)
    return idx.reshape(-1)[:n], dist.reshape(-1)[:n]


def _kmeans_pp_init(key, x, k):
    """k-means++ seeding (Arthur & Vassilvitskii 2007): next centre drawn prop. to D(x)^2."""
    n = x.shape[0]
    k0, key = jax.random.split(key)
    first = jax.random.randint(k0, (), 0, n)
    centres = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
    d2 = jnp.sum((x - x[first]) ** 2, axis=1)

    def body(i, carry):
        centres, d2 = carry
        total = jnp.sum(d2)
        # All points already coincide with a centre: fall back to a uniform draw.
        logits = jnp.where(total > 0, jnp.log(jnp.maximum(d2, 1e-30)), 0.0)
        logits = jnp.where((total > 0) & (d2 <= 0), -jnp.inf, logits)
        j = jax.random.categorical(jax.random.fold_in(key, i), logits)
        centres = centres.at[i].set(x[j])
        return centres, jnp.minimum(d2, jnp.sum((x - x[j]) ** 2, axis=1))

    centres, _ = jax.lax.fori_loop(1, k, body, (centres, d2))
    return centres


@functools.partial(
    jax.jit, static_argnames=("k", "num_iters", "init", "spherical", "chunk_size"))
def _lloyd(key, x, *, k, num_iters, init, spherical, chunk_size):
    x = x.astype(jnp.float32)
    if spherical:
        x = _normalise(x)
    n = x.shape[0]
    if init == "k-means++":
        c = _kmeans_pp_init(key, x, k)
    else:
        c = x[jax.random.choice(key, n, (k,), replace=False)]

    def step(_, c):
        assign, dist = _nearest(x, c, chunk_size)
        sums = jax.ops.segment_sum(x, assign, num_segments=k)
        counts = jax.ops.segment_sum(jnp.ones((n,), jnp.float32), assign, num_segments=k)
        new = sums / jnp.maximum(counts, 1.0)[:, None]
        if spherical:
            new = _normalise(new)
        # Empty clusters are re-seeded deterministically: the r-th empty cluster takes the
        # r-th farthest point from its current centroid (distinct points, as n >= k).
        empty = counts == 0
        rank = jnp.cumsum(empty) - 1
        far = jnp.argsort(-dist)
        reseed = x[far[jnp.clip(rank, 0, n - 1)]]
        return jnp.where(empty[:, None], reseed, new)

    c = jax.lax.fori_loop(0, num_iters, step, c)
    assign, _ = _nearest(x, c, chunk_size)
    return c, assign


def kmeans(
    key: jax.Array,
    x: jax.Array | np.ndarray,
    k: int,
    *,
    num_iters: int = 50,
    init: str = "k-means++",
    spherical: bool = False,
    chunk_size: int = 4096,
) -> tuple[jax.Array, jax.Array]:
    """Lloyd's k-means for a fixed number of iterations; returns (centroids [k, D], assign [N]).

    Args:
      key: the only source of randomness (initial centres).
      x: points [N, D] with N >= k.
      k: number of clusters.
      num_iters: Lloyd iterations (assign, then mean); the returned assignment is recomputed
        against the returned centroids.
      init: "k-means++" or "random" (k distinct points). k-means++ makes k sequential
        passes over x (O(k N D)); for very large k (ExCB's K = 65536) "random" is the
        practical choice, and the empty-cluster reseeding below repairs poor draws.
      spherical: L2-normalise points and centroids (cosine k-means).
      chunk_size: rows per nearest-centroid block.

    >>> x = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]], np.float32)
    >>> c, a = kmeans(jax.random.key(0), x, 2, num_iters=5)
    >>> bool(a[0] == a[1]) and bool(a[2] == a[3]) and bool(a[0] != a[2])
    True
    """
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be [N, D]; got shape {x.shape}")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be in [1, N={x.shape[0]}] for x of shape {x.shape}; got {k}")
    if init not in ("k-means++", "random"):
        raise ValueError(f"init must be 'k-means++' or 'random'; got {init!r}")
    if num_iters < 0:
        raise ValueError(f"num_iters must be >= 0; got {num_iters}")
    chunk = max(1, min(int(chunk_size), x.shape[0]))
    return _lloyd(key, x, k=int(k), num_iters=int(num_iters), init=init,
                  spherical=bool(spherical), chunk_size=chunk)


def count_empty(assignments: jax.Array | np.ndarray, k: int) -> int:
    """Number of the k clusters that no point is assigned to.

    >>> count_empty(np.array([0, 0, 2]), 4)
    2
    """
    return int(np.sum(np.bincount(np.asarray(assignments), minlength=k)[:k] == 0))


def spherical_kmeans(
    key: jax.Array,
    x: jax.Array | np.ndarray,
    k: int,
    *,
    num_iters: int = 20,
    init: str = "k-means++",
    max_restarts: int = 0,
    chunk_size: int = 4096,
) -> tuple[jax.Array, jax.Array]:
    """Cosine k-means: unit-norm centroids [k, D] and arg-max-cosine assignments [N].

    With ``max_restarts > 0`` it reruns with keys ``jax.random.fold_in(key, r)``, r = 1, 2, ...
    until no cluster is empty (the ExCB centroid initialisation); if every attempt leaves an
    empty cluster it raises ValueError naming the best empty count, so a caller never silently
    starts training from a dead centroid.

    >>> x = np.array([[1.0, 0.1], [2.0, 0.0], [0.0, 3.0], [0.1, 1.0]], np.float32)
    >>> c, a = spherical_kmeans(jax.random.key(0), x, 2, num_iters=5, max_restarts=3)
    >>> a.tolist() in ([0, 0, 1, 1], [1, 1, 0, 0]), np.round(np.linalg.norm(c, axis=1), 4)
    (True, array([1., 1.], dtype=float32))
    """
    if max_restarts < 0:
        raise ValueError(f"max_restarts must be >= 0; got {max_restarts}")
    best = None
    for r in range(max_restarts + 1):
        attempt_key = key if r == 0 else jax.random.fold_in(key, r)
        c, a = kmeans(attempt_key, x, k, num_iters=num_iters, init=init, spherical=True,
                      chunk_size=chunk_size)
        empty = count_empty(a, k)
        if best is None or empty < best[0]:
            best = (empty, c, a)
        if empty == 0 or max_restarts == 0:
            break
    empty, c, a = best
    if empty and max_restarts:
        raise ValueError(
            f"spherical_kmeans: {empty} of k={k} clusters still empty after {max_restarts} "
            f"restarts for x of shape {np.shape(x)}; use more points or fewer clusters"
        )
    return c, a
