"""KoLeo differential-entropy regulariser and the unique-prototype count.

Sablayrolles et al., "Spreading vectors for similarity search" (ICLR 2019): the
Kozachenko-Leonenko estimator of the differential entropy of n points on the sphere gives their
KoLeo regulariser ``L_koleo = -1/n sum_i log(rho_{n,i})`` with
``rho_{n,i} = min_{j != i} |x_i - x_j|``.
Govindarajan et al., "On Partial Prototype Collapse in the DINO Family of Self-Supervised Methods"
(2024) apply it to the L2-normalised prototype rows (KoLeo-proto, ``L_KP`` with ``eps = 1e-8``)
so that prototypes do not collapse onto each other; the number of distinct prototypes is their
diagnostic.

Nearest neighbours are searched without gradient (the arg-min is not differentiated, the distance
is). Candidates are the ``_NUM_CANDIDATES`` largest cosines of each row (float32 ``HIGHEST``
precision), and the neighbour is the candidate at the smallest distance computed directly as
``|x_i - x_j|``, because ``1 - cos`` rounds to 0 in float32 below distances of about ``2e-4``.
The neighbour is therefore exact unless more than ``_NUM_CANDIDATES`` other rows tie at float32
cosine resolution (all within about ``2e-4``), where the chosen distance can exceed the true one by
at most that much.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from jaxssl.losses import _checks
from jaxssl.ops.normalize import l2_normalize

# Cosine candidates re-ranked by exact distance; covers ties at float32 cosine resolution.
_NUM_CANDIDATES = 8
# Pairs checked at once on the host by count_unique_prototypes (bounds its host memory).
_PAIRS_PER_BATCH = 1 << 20
# Rows below this squared norm have no direction: l2_normalize cannot bring them to unit
# length (it divides by max(|x|, 1e-12)), so count_unique_prototypes treats them as zero vectors.
_ZERO_ROW_SQ_NORM = 1e-24


def _safe_norm(v: jax.Array) -> jax.Array:
    """Euclidean norm over the last axis with a zero (not NaN) gradient at ``v == 0``."""
    sq = jnp.sum(v * v, axis=-1)
    positive = sq > 0
    # Double where: sqrt is never evaluated (nor differentiated) at 0.
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is not None:
        _checks.require_positive("chunk_size", chunk_size)


def _cosine_candidates(rows: jax.Array, row_ids: jax.Array, xn: jax.Array, k: int) -> jax.Array:
    """``[c, k]`` indices of the k largest cosines of each row to the other rows of ``xn``."""
    sims = jnp.dot(rows, xn.T, precision=jax.lax.Precision.HIGHEST)  # [c, N]
    # The point itself is not its own neighbour (mask the diagonal).
    sims = jnp.where(row_ids[:, None] == jnp.arange(xn.shape[0])[None, :], -jnp.inf, sims)
    return jax.lax.top_k(sims, k)[1]


def _map_row_chunks(search, xn: jax.Array, chunk_size: int | None) -> jax.Array:
    """``search(rows, row_ids)`` over chunks of ``chunk_size`` rows of ``xn`` (all at once if
    None), results concatenated along the rows: memory ``O(chunk_size * N)``."""
    n = xn.shape[0]
    if chunk_size is None or chunk_size >= n:
        return search(xn, jnp.arange(n))
    num_chunks = -(-n // chunk_size)
    # Pad the last chunk; padded rows are searched too but their results are dropped.
    padded = jnp.pad(xn, ((0, num_chunks * chunk_size - n), (0, 0)))
    row_chunks = padded.reshape(num_chunks, chunk_size, -1)
    id_chunks = jnp.arange(num_chunks * chunk_size).reshape(num_chunks, chunk_size)
    out = jax.lax.map(lambda args: search(*args), (row_chunks, id_chunks))
    return out.reshape(num_chunks * chunk_size, *out.shape[2:])[:n]


def nearest_candidates(
    xn: jax.Array, num_candidates: int = _NUM_CANDIDATES, chunk_size: int | None = None
) -> jax.Array:
    """``[N, min(num_candidates, N - 1)]`` indices of each row's largest cosines to other rows.

    The candidate search of :func:`koleo_loss`, shared with the nearest-neighbour distance
    diagnostic (``jaxssl.eval.prototypes``), which re-ranks the candidates in float64.

    >>> import jax.numpy as jnp
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    >>> print(nearest_candidates(x, 1, chunk_size=2).ravel())
    [2 2 1]
    """
    k = min(num_candidates, xn.shape[0] - 1)
    return _map_row_chunks(lambda rows, ids: _cosine_candidates(rows, ids, xn, k), xn,
                           chunk_size)


def _nearest_neighbours(xn: jax.Array, chunk_size: int | None) -> jax.Array:
    """Index of each row's nearest other row, ``[N]`` int32, memory ``O(chunk_size * N)``."""
    k = min(_NUM_CANDIDATES, xn.shape[0] - 1)

    def search(rows: jax.Array, row_ids: jax.Array) -> jax.Array:
        cand = _cosine_candidates(rows, row_ids, xn, k)  # [c, k]
        # Re-rank the candidates by the directly computed distance.
        sq_dist = jnp.sum(jnp.square(rows[:, None, :] - xn[cand]), axis=-1)
        best = jnp.argmin(sq_dist, axis=-1)
        return jnp.take_along_axis(cand, best[:, None], axis=1)[:, 0]

    return _map_row_chunks(search, xn, chunk_size)


def koleo_loss(
    x: jax.Array, *, eps: float = 1e-8, chunk_size: int | None = None
) -> jax.Array:
    """KoLeo regulariser ``L_koleo`` (Sablayrolles et al. 2019): ``-mean_i log(d_i + eps)``.

    ``d_i = min_{j != i} |x_i / |x_i| - x_j / |x_j||``. Rows are L2-normalised inside (a zero row
    stays zero). The nearest-neighbour index is chosen without gradient; the distance to it is
    differentiated, with a zero (finite) gradient for exact duplicates.

    Args:
      x: ``[N, D]`` vectors, ``N >= 2``; any float dtype (computed in float32).
      eps: added to the distance inside the log.
      chunk_size: rows searched at once; when set, the ``[N, N]`` similarity matrix is never built
        (memory ``O(chunk_size * N)``); it need not divide ``N``.

    Returns:
      float32 scalar loss.

    Example:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
      >>> print(round(float(koleo_loss(x)), 4))  # every neighbour at sqrt(2): -log(sqrt(2))
      -0.3466
    """
    _checks.require_rank("x", x, 2, "[N, D]")
    if jnp.shape(x)[0] < 2:
        raise ValueError(f"x needs at least 2 rows to have neighbours, got shape {jnp.shape(x)}.")
    _check_chunk_size(chunk_size)
    xn = l2_normalize(x)
    nn = _nearest_neighbours(jax.lax.stop_gradient(xn), chunk_size)
    distance = _safe_norm(xn - xn[nn])
    return -jnp.mean(jnp.log(distance + eps))


def koleo_proto_loss(
    prototypes: jax.Array, *, eps: float = 1e-8, chunk_size: int | None = None
) -> jax.Array:
    """KoLeo-proto regulariser ``L_KP`` (Govindarajan et al. 2024) on the prototype matrix.

    The KoLeo estimator of :func:`koleo_loss` (``L_koleo``, Sablayrolles et al. 2019) applied to the
    L2-normalised prototype rows: ``-1/K sum_k log(min_{l != k} |w_k - w_l| + eps)``.

    Args:
      prototypes: ``[K, D]`` prototype matrix (rows need not be normalised).
      eps: added to the distance inside the log.
      chunk_size: prototype rows searched at once (bounds memory to ``O(chunk_size * K)``).

    Returns:
      float32 scalar loss.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.array([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0]])  # rows 1, 2 coincide once normalised
      >>> # -(log sqrt(2) + 2 log 1e-8) / 3
      >>> print(round(float(koleo_proto_loss(w, chunk_size=2)), 4))
      12.1649
    """
    _checks.require_rank("prototypes", prototypes, 2, "[K, D]")
    if jnp.shape(prototypes)[0] < 2:
        raise ValueError(
            f"prototypes needs at least 2 rows to have neighbours, got shape "
            f"{jnp.shape(prototypes)}."
        )
    return koleo_loss(prototypes, eps=eps, chunk_size=chunk_size)


def count_unique_prototypes(
    prototypes: jax.Array, threshold: float, *, chunk_size: int = 256
) -> np.int32:
    """Number of distinct prototypes: connected components of ``|w_k - w_l| < threshold``.

    The diagnostic of Govindarajan et al. (2024) for partial prototype collapse: prototype rows
    are L2-normalised and two prototypes closer than ``threshold`` (Euclidean) are linked; the
    count is the number of connected components. Distances are ``|w_k - w_l|`` computed directly,
    since ``sqrt(2 - 2 cos)`` cannot resolve 1e-4 in float32.

    Zero rows. A row with ``|w| < 1e-12`` (in particular an all-zero row) has no direction; it is
    normalised to the zero vector, as in the loss. Zero rows are therefore at distance 0 from each
    other (all of them count as one prototype) and at distance 1 from every unit-length row (so
    they join the others only when ``threshold > 1``).

    Not jit-able: jax computes the cosine similarities of ``chunk_size`` rows at a time (no
    ``K x K`` matrix), pairs whose cosine could mean a distance below ``threshold`` (with a margin
    for float32 rounding) and that are not yet in one component are checked exactly on the host
    with numpy, and scipy's ``connected_components`` merges the components.

    Args:
      prototypes: ``[K, D]`` prototype matrix.
      threshold: distance below which two normalised prototypes count as one, > 0.
      chunk_size: rows compared at once (memory ``O(chunk_size * K)``).

    Returns:
      ``np.int32`` number of connected components.

    Example:
      >>> import numpy as np
      >>> w = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 1.0 + 1e-3]], np.float32)
      >>> print(count_unique_prototypes(w, 1e-4))  # 0~1 and 2~3 after normalisation
      2
      >>> print(count_unique_prototypes(np.zeros((5, 3), np.float32), 1e-4))  # one zero vector
      1
    """
    _checks.require_rank("prototypes", prototypes, 2, "[K, D]")
    _checks.require_positive("threshold", threshold)
    _checks.require_positive("chunk_size", chunk_size)
    num, dim = jnp.shape(prototypes)
    xn_dev = jax.jit(l2_normalize)(prototypes)
    xn = np.asarray(xn_dev)
    # Zero rows (see the docstring) never pass the cosine filter below (their cosine is 0), so
    # they are linked here: to each other at distance 0, to every other row at distance 1.
    sq_norm = np.sum(np.square(np.asarray(prototypes, np.float64)), axis=-1)
    zero = np.flatnonzero(sq_norm < _ZERO_ROW_SQ_NORM)
    if len(zero):
        xn = np.where((sq_norm < _ZERO_ROW_SQ_NORM)[:, None], 0.0, xn).astype(xn.dtype)
        xn_dev = jnp.asarray(xn)
    # |w_k - w_l|^2 = 2 - 2 cos; the float32 dot of two unit vectors is off by at most ~dim * 2^-24.
    cos_cut = 1.0 - 0.5 * float(threshold) ** 2 - (2.0 * dim * 2.0**-24 + 1e-6)
    labels = np.arange(num)  # each component is labelled by its smallest member

    def merge(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        nodes = np.arange(num)
        graph = scipy.sparse.coo_matrix(
            (np.ones(len(rows) + num, np.int8),
             (np.concatenate([rows, nodes]), np.concatenate([cols, labels]))),
            shape=(num, num),
        )
        _, comp = scipy.sparse.csgraph.connected_components(graph, directed=False)
        smallest = np.full(comp.max() + 1, num)
        np.minimum.at(smallest, comp, nodes)
        return smallest[comp]

    @jax.jit
    def candidates(xn_dev, start, labels):
        rows = jax.lax.dynamic_slice_in_dim(xn_dev, start, chunk_size)
        row_ids = start + jnp.arange(chunk_size)
        sims = jnp.dot(rows, xn_dev.T, precision=jax.lax.Precision.HIGHEST)
        row_labels = jax.lax.dynamic_slice_in_dim(labels, start, chunk_size)
        # Each unordered pair once (col > row), and only pairs not already in one component.
        return (sims >= cos_cut) & (jnp.arange(num)[None, :] > row_ids[:, None]) & (
            row_labels[:, None] != labels[None, :]
        )

    if len(zero):
        # Every zero row to the first; with threshold > 1 every row (a self-edge is harmless).
        linked = np.arange(num) if threshold > 1.0 else zero
        labels = merge(labels, linked, np.full(len(linked), zero[0]))
    if chunk_size > num:
        chunk_size = num
    for start in range(0, num, chunk_size):
        # The last chunk is shifted back to stay full-size (its repeated rows are harmless).
        start = min(start, num - chunk_size)
        rows, cols = np.nonzero(np.asarray(candidates(xn_dev, start, jnp.asarray(labels))))
        rows = rows + start
        for lo in range(0, len(rows), _PAIRS_PER_BATCH):
            r, c = rows[lo:lo + _PAIRS_PER_BATCH], cols[lo:lo + _PAIRS_PER_BATCH]
            # Pairs joined by an earlier batch need no distance.
            keep = labels[r] != labels[c]
            r, c = r[keep], c[keep]
            if len(r) == 0:
                continue
            diff = (xn[r] - xn[c]).astype(np.float64)
            close = np.sqrt(np.sum(diff * diff, axis=-1)) < threshold
            if np.any(close):
                labels = merge(labels, r[close], c[close])
    return np.int32(len(np.unique(labels)))
