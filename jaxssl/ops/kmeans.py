"""k-means and spherical k-means (Lloyd iterations under jit), chunked and shardable.

Lloyd's algorithm alternates an assignment step (each point to its nearest centroid) and an update
step (each centroid to the mean of its points). Distances are squared Euclidean; the spherical
variant L2-normalises points and centroids, so ``|x - c|^2 = 2 - 2 x.c``, the assignment is the
arg-max cosine and the updated centroid is the normalised sum of its points.

Scale (ExCB's centroid initialisation: n = 500,000 points, K = 65,536, D = 256, 50 iterations):

* the assignment runs over row chunks, so the ``[n, K]`` score matrix is never built: at most
  ``[S, chunk, K]`` exists at a time, with ``chunk`` from ``default_chunk_size`` (256 MiB of
  float32 scores per device);
* with ``mesh=``, the rows are sharded over the mesh's ``"data"`` axis (``NamedSharding``; XLA's
  GSPMD partitioner places the work): every device scores and sums its own rows, and the centroid
  update is one global sum of per-device ``[K, D]`` partial sums;
* the initial centroids are k distinct data points drawn uniformly ("random"); k-means++ seeding
  (Arthur & Vassilvitskii, 2007) makes k sequential passes over the data, so ``init="auto"`` uses
  it only for ``k <= KMEANS_PP_MAX_K`` (evaluation clustering with k = number of classes).

An update that leaves a cluster empty re-seeds it on a far point (the r-th empty cluster takes the
r-th farthest point from its centroid), unless ``reseed_empty=False``, where it keeps its previous
centroid. ``spherical_kmeans(..., max_restarts=R)`` additionally restarts with fresh keys until
the final assignment leaves no cluster empty, and raises if R restarts do not achieve it.

The results do not depend on the mesh: the initial draws are made in the original row order, so
a sharded run equals an unsharded one up to the float summation order of the centroid sums.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxssl.ops.normalize import l2_normalize

DATA_AXIS = "data"
# k-means++ seeding is k sequential passes over all n points: O(k n D) work in k dependent
# steps. Above this k, init="auto" draws the initial centroids uniformly from the data instead.
KMEANS_PP_MAX_K = 1024
# Bytes of float32 scores [chunk, k] one device holds at a time in the assignment step.
SCORE_BLOCK_BYTES = 256 * 2**20
MAX_CHUNK = 4096
INITS = ("auto", "k-means++", "random")


def resolve_init(init: str, k: int) -> str:
    """The seeding ``init`` names for ``k`` clusters: "auto" is k-means++ up to
    ``KMEANS_PP_MAX_K`` clusters and a uniform draw of k distinct points ("random") above.

    >>> resolve_init("auto", 10), resolve_init("auto", 65536), resolve_init("random", 10)
    ('k-means++', 'random', 'random')
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}; got {init!r}")
    if init == "auto":
        return "k-means++" if k <= KMEANS_PP_MAX_K else "random"
    return init


def default_chunk_size(k: int) -> int:
    """Rows per assignment chunk so one device's ``[chunk, k]`` float32 scores stay within
    ``SCORE_BLOCK_BYTES`` (at most ``MAX_CHUNK`` rows).

    >>> default_chunk_size(10), default_chunk_size(65536)
    (4096, 1024)
    """
    return max(1, min(MAX_CHUNK, SCORE_BLOCK_BYTES // (4 * int(k))))


def _shard(mesh: Mesh | None, a: jax.Array, *spec) -> jax.Array:
    """Pins ``a``'s sharding (a no-op without a mesh)."""
    if mesh is None:
        return a
    return jax.lax.with_sharding_constraint(a, NamedSharding(mesh, PartitionSpec(*spec)))


@dataclasses.dataclass(frozen=True)
class _Rows:
    """The points inside ``_lloyd`` (traced arrays and their static layout).

    The S = |data axis| shards hold L = ``rows`` = n_pad / S consecutive rows each, viewed as
    ``xs`` [S, Lc, D] (each shard's rows padded to Lc = ``blocks * chunk``), so row ``i`` of
    ``x`` is ``xs[i // L, i % L]``; ``valid`` [S, Lc] marks the real rows (not padding). Every
    per-row computation maps over the sharded leading axis.
    """

    xs: jax.Array
    valid: jax.Array
    n: int
    k: int
    rows: int
    chunk: int
    spherical: bool
    mesh: Mesh | None
    precision: Any

    @classmethod
    def lay_out(cls, x: jax.Array, *, n: int, k: int, chunk: int, spherical: bool,
                mesh: Mesh | None, precision: Any) -> _Rows:
        """``x`` [n_pad, D] (rows >= n are padding) in the [S, Lc, D] layout, normalised when
        ``spherical``."""
        s_count = mesh.shape[DATA_AXIS] if mesh is not None else 1
        n_pad, d = x.shape
        rows = n_pad // s_count
        rows_c = math.ceil(rows / chunk) * chunk
        xs = x.astype(jnp.float32).reshape(s_count, rows, d)
        if spherical:
            xs = l2_normalize(xs)
        xs = jnp.pad(xs, ((0, 0), (0, rows_c - rows), (0, 0)))
        xs = _shard(mesh, xs, DATA_AXIS, None, None)
        position = jnp.arange(rows_c)
        valid = ((position[None, :] < rows)
                 & (jnp.arange(s_count)[:, None] * rows + position[None, :] < n))
        return cls(xs, _shard(mesh, valid, DATA_AXIS, None), n, k, rows, chunk, spherical, mesh,
                   precision)

    @property
    def weight(self) -> jax.Array:
        return self.valid.astype(jnp.float32)

    def take(self, idx: jax.Array) -> jax.Array:
        """Rows ``x[idx]`` (original row indices): each shard contributes the rows it holds,
        then one sum over shards (a masked local gather and an all-reduce)."""
        s, j = idx // self.rows, idx % self.rows

        def local(xs_s, s_id):
            return jnp.where((s == s_id)[:, None], xs_s[j], 0.0)

        return jnp.sum(jax.vmap(local)(self.xs, jnp.arange(self.xs.shape[0])), axis=0)

    def nearest(self, c: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(index [S, Lc], squared distance [S, Lc]) of each row's nearest centroid, one
        [S, chunk, k] score block at a time: the [n, k] matrix is never built."""
        s_count, rows_c, d = self.xs.shape
        c_sq = jnp.sum(c * c, axis=1)
        blocks = self.xs.reshape(s_count, rows_c // self.chunk, self.chunk, d).swapaxes(0, 1)

        def one(xb):  # xb: [S, chunk, D]
            xb = _shard(self.mesh, xb, DATA_AXIS, None, None)
            dots = jnp.einsum("scd,kd->sck", xb, c, precision=self.precision)
            # Spherical: arg-max cosine. Euclidean: |x - c|^2 = |x|^2 - (2 x.c - |c|^2).
            score = dots if self.spherical else 2.0 * dots - c_sq
            idx = jnp.argmax(score, axis=-1)
            best = jnp.max(score, axis=-1)
            dist = 2.0 - 2.0 * best if self.spherical else jnp.sum(xb * xb, axis=-1) - best
            return idx.astype(jnp.int32), jnp.maximum(dist, 0.0)

        idx, dist = jax.lax.map(one, blocks)
        return (_shard(self.mesh, idx.swapaxes(0, 1).reshape(s_count, rows_c), DATA_AXIS, None),
                _shard(self.mesh, dist.swapaxes(0, 1).reshape(s_count, rows_c), DATA_AXIS, None))

    def segment_sums(self, values: jax.Array, idx: jax.Array) -> jax.Array:
        """Per-cluster sums of ``values`` [S, Lc, ...]: each shard sums its rows, then one
        global sum over the shards (an all-reduce of [S, k, ...] partial sums)."""
        partial = jax.vmap(lambda v, a: jax.ops.segment_sum(v, a, num_segments=self.k))(values,
                                                                                       idx)
        return jnp.sum(partial, axis=0)


def _kmeans_pp_init(key: jax.Array, pts: _Rows) -> jax.Array:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007), drawn in the original row order."""
    k0, key = jax.random.split(key)
    first = pts.take(jax.random.randint(k0, (1,), 0, pts.n))[0]
    d2 = jnp.where(pts.valid, jnp.sum((pts.xs - first) ** 2, axis=-1), 0.0)

    def seed_step(i, carry):
        c, d2 = carry
        flat = d2[:, :pts.rows].reshape(-1)[:pts.n]
        total = jnp.sum(flat)
        # Next centre drawn with probability prop. to D(x)^2; if every point already sits
        # on a centre, uniformly.
        logits = jnp.where(flat > 0, jnp.log(jnp.maximum(flat, 1e-30)), -jnp.inf)
        logits = jnp.where(total > 0, logits, 0.0)
        j = jax.random.categorical(jax.random.fold_in(key, i), logits)
        ci = pts.take(j[None])[0]
        d2 = jnp.minimum(d2, jnp.where(pts.valid, jnp.sum((pts.xs - ci) ** 2, axis=-1), 0.0))
        return c.at[i].set(ci), d2

    c = jnp.zeros((pts.k, pts.xs.shape[-1]), jnp.float32).at[0].set(first)
    c, _ = jax.lax.fori_loop(1, pts.k, seed_step, (c, d2))
    return c


def _lloyd_step(pts: _Rows, c: jax.Array, reseed_empty: bool) -> jax.Array:
    """One assignment + update; a cluster left empty is re-seeded on a far point (or keeps
    ``c``'s centroid without ``reseed_empty``)."""
    assign, dist = pts.nearest(c)
    weight = pts.weight
    sums = pts.segment_sums(pts.xs * weight[..., None], assign)
    counts = pts.segment_sums(weight, assign)
    new = l2_normalize(sums) if pts.spherical else sums / jnp.maximum(counts, 1.0)[:, None]
    empty = counts == 0
    if reseed_empty:
        # The r-th empty cluster takes the r-th farthest point from its centroid (distinct
        # points, as n >= k); argsort is stable and padding sorts last.
        rank = jnp.clip(jnp.cumsum(empty) - 1, 0, pts.n - 1)
        far = jnp.argsort(-jnp.where(pts.valid, dist, -jnp.inf).reshape(-1))[rank]
        rows_c = pts.xs.shape[1]
        replacement = pts.take((far // rows_c) * pts.rows + far % rows_c)
    else:
        replacement = c
    return _shard(pts.mesh, jnp.where(empty[:, None], replacement, new))


@functools.partial(jax.jit, static_argnames=(
    "k", "n", "num_iters", "init", "spherical", "chunk", "mesh", "reseed_empty", "precision"))
def _lloyd(key, x, *, k, n, num_iters, init, spherical, chunk, mesh, reseed_empty, precision):
    """Lloyd on ``x`` [n_pad, D] (rows >= n are padding): (centroids, assign [n_pad], #empty)."""
    pts = _Rows.lay_out(x, n=n, k=k, chunk=chunk, spherical=spherical, mesh=mesh,
                        precision=precision)
    # Initial centroids, drawn in the original row order so that they do not depend on S.
    if init == "k-means++":
        c = _kmeans_pp_init(key, pts)
    else:
        c = pts.take(jax.random.choice(key, n, (k,), replace=False))
    c = jax.lax.fori_loop(0, num_iters, lambda _, c: _lloyd_step(pts, c, reseed_empty),
                          _shard(mesh, c))
    assign, _ = pts.nearest(c)
    num_empty = jnp.sum(pts.segment_sums(pts.weight, assign) == 0)
    assign = _shard(mesh, assign[:, :pts.rows].reshape(-1), DATA_AXIS)
    return c, assign, num_empty


def _check(x, k: int, num_iters: int, chunk_size: int | None, mesh: Mesh | None) -> None:
    if len(x.shape) != 2:
        raise ValueError(f"x must be [N, D]; got shape {tuple(x.shape)}")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be in [1, N={x.shape[0]}] for x of shape {tuple(x.shape)}; "
                         f"got {k}")
    if num_iters < 0:
        raise ValueError(f"num_iters must be >= 0; got {num_iters}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 (or None for the default); got {chunk_size}")
    if mesh is not None and DATA_AXIS not in mesh.axis_names:
        raise ValueError(f"mesh must have a {DATA_AXIS!r} axis; got axis names {mesh.axis_names}")


def _run(key, x, k, *, num_iters, init, spherical, chunk_size, mesh, reseed_empty, precision):
    """Validates, pads the rows to a multiple of the data-axis size, shards, runs ``_lloyd``;
    returns (centroids [k, D], assign [N], number of empty clusters as a device scalar)."""
    if not isinstance(x, jax.Array):
        x = np.asarray(x, np.float32)
    _check(x, k, num_iters, chunk_size, mesh)
    init = resolve_init(init, k)
    n = int(x.shape[0])
    shards = mesh.shape[DATA_AXIS] if mesh is not None else 1
    pad = (-n) % shards
    if pad:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            raise ValueError(f"x has {n} rows spread over several processes; the rows must be "
                             f"a multiple of the {shards} devices of the mesh's data axis")
        x = np.pad(np.asarray(x, np.float32), ((0, pad), (0, 0)))
    if mesh is not None:
        x = jax.device_put(x, NamedSharding(mesh, PartitionSpec(DATA_AXIS, None)))
    per_shard = (n + pad) // shards
    chunk = min(int(chunk_size or default_chunk_size(k)), per_shard)
    c, assign, empty = _lloyd(key, x, k=int(k), n=n, num_iters=int(num_iters), init=init,
                              spherical=bool(spherical), chunk=chunk, mesh=mesh,
                              reseed_empty=bool(reseed_empty), precision=precision)
    return c, (assign[:n] if pad else assign), empty


def kmeans(
    key: jax.Array,
    x: jax.Array | np.ndarray,
    k: int,
    *,
    num_iters: int = 50,
    init: str = "auto",
    spherical: bool = False,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    reseed_empty: bool = True,
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST,
) -> tuple[jax.Array, jax.Array]:
    """Lloyd's k-means for a fixed number of iterations; returns (centroids [k, D], assign [N]).

    Args:
      key: the only source of randomness (the initial centres).
      x: points [N, D] with N >= k (host or device array; a global array sharded over several
        processes needs N divisible by the mesh's data-axis size).
      k: number of clusters.
      num_iters: Lloyd iterations (assign, then mean); the returned assignment is recomputed
        against the returned centroids.
      init: "auto" (k-means++ for k <= ``KMEANS_PP_MAX_K``, else "random"), "k-means++", or
        "random" (k distinct points drawn uniformly).
      spherical: L2-normalise points and centroids (cosine k-means).
      chunk_size: rows per assignment block per device; None: ``default_chunk_size(k)``.
      mesh: shard the rows over this mesh's "data" axis (every device computes its part);
        None runs on the default device.
      reseed_empty: re-seed a cluster that an update leaves empty on a far point (else it keeps
        its previous centroid).
      precision: matmul precision of the scores (HIGHEST: float32, no TF32/bf16 passes).

    >>> x = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]], np.float32)
    >>> c, a = kmeans(jax.random.key(0), x, 2, num_iters=5)
    >>> bool(a[0] == a[1]) and bool(a[2] == a[3]) and bool(a[0] != a[2])
    True
    """
    c, assign, _ = _run(key, x, k, num_iters=num_iters, init=init, spherical=spherical,
                        chunk_size=chunk_size, mesh=mesh, reseed_empty=reseed_empty,
                        precision=precision)
    return c, assign


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
    init: str = "auto",
    max_restarts: int = 0,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    reseed_empty: bool = True,
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST,
) -> tuple[jax.Array, jax.Array]:
    """Cosine k-means: unit-norm centroids [k, D] and arg-max-cosine assignments [N].

    With ``max_restarts > 0`` it reruns with keys ``jax.random.fold_in(key, r)``, r = 1, 2, ...
    until no cluster is empty (the ExCB centroid initialisation); if every attempt leaves an
    empty cluster it raises ValueError naming the best empty count, so a caller never silently
    starts training from a dead centroid. Other arguments as in ``kmeans``.

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
        c, a, empty = _run(attempt_key, x, k, num_iters=num_iters, init=init, spherical=True,
                           chunk_size=chunk_size, mesh=mesh, reseed_empty=reseed_empty,
                           precision=precision)
        empty = int(empty)  # a replicated scalar: readable on every process
        if best is None or empty < best[0]:
            best = (empty, c, a)
        if empty == 0 or max_restarts == 0:
            break
    empty, c, a = best
    if empty and max_restarts:
        raise ValueError(
            f"spherical_kmeans: {empty} of k={k} clusters still empty after {max_restarts} "
            f"restarts for x of shape {tuple(np.shape(x))}; use more points or fewer clusters"
        )
    return c, a
