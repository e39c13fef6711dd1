"""Partial-prototype-collapse diagnostics (KoLeo-proto; docs/methods.md).

* the number of unique prototypes at several thresholds: connected components of the graph
  "normalised Euclidean distance < threshold" (``jaxssl.losses.koleo.count_unique_prototypes``);
* each prototype's distance to its nearest other prototype, and a histogram of those distances.

Everything is chunked over prototype rows: at K = 65536 a K x K float32 matrix would be 17 GB.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.eval.knn import l2_normalise_rows
from jaxssl.losses.koleo import count_unique_prototypes, nearest_candidates

DEFAULT_THRESHOLDS = (1e-1, 1e-2, 1e-3, 1e-4)


def _check_prototypes(prototypes) -> np.ndarray:
    w = np.asarray(prototypes, np.float32)
    if w.ndim != 2 or w.shape[0] < 2:
        raise ValueError(f"prototypes must be [K, D] with K >= 2; got shape {w.shape}")
    return w


def unique_prototype_counts(
    prototypes: np.ndarray | jax.Array,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    *,
    chunk_size: int = 256,
) -> dict[float, int]:
    """{threshold: number of unique prototypes} for each threshold (rows L2-normalised).

    >>> w = np.array([[1.0, 0.0], [1.0, 1e-3], [0.0, 1.0]], np.float32)
    >>> unique_prototype_counts(w, (1e-2, 1e-4))
    {0.01: 2, 0.0001: 3}
    """
    w = _check_prototypes(prototypes)
    return {float(t): int(count_unique_prototypes(w, float(t), chunk_size=chunk_size))
            for t in thresholds}


_candidates = jax.jit(nearest_candidates, static_argnames=("num_candidates", "chunk_size"))


def nearest_neighbour_distances(
    prototypes: np.ndarray | jax.Array, *, chunk_size: int = 1024
) -> np.ndarray:
    """Distance [K] from each L2-normalised prototype to its nearest other one.

    Candidates come from the largest cosines (chunked on device); the reported distance is
    |w_k - w_l| computed directly in float64, so near-duplicates far below float32 cosine
    resolution (~2e-4) get their true distance and exact copies get 0.

    >>> w = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]], np.float32)
    >>> np.round(nearest_neighbour_distances(w), 4).tolist()
    [0.0, 0.0, 1.4142]
    """
    w = _check_prototypes(prototypes).astype(np.float64)
    wn = l2_normalise_rows(w)
    chunk = max(1, min(int(chunk_size), wn.shape[0]))
    # Cosine candidates (koleo's search, 8 per row) re-ranked by exact distance: float32 cosines
    # cannot order distances < ~2e-4.
    cand = np.asarray(_candidates(jnp.asarray(wn, jnp.float32), chunk_size=chunk))
    out = np.empty(wn.shape[0])
    for lo in range(0, wn.shape[0], chunk):  # host memory O(chunk * candidates * D)
        diff = wn[lo:lo + chunk, None, :] - wn[cand[lo:lo + chunk]]
        out[lo:lo + chunk] = np.linalg.norm(diff, axis=-1).min(axis=1)
    return out


def nn_distance_histogram(
    prototypes: np.ndarray | jax.Array,
    *,
    bins: Sequence[float] | None = None,
    chunk_size: int = 1024,
) -> dict[str, list[float] | list[int] | float]:
    """Histogram of nearest-neighbour distances with log-spaced bins (JSON-ready lists).

    Default edges: 0, then 10^-6 ... 2 (25 log-spaced edges); the first bin [0, 1e-6)
    collects exact and near duplicates. Also reports min / median / max distance.

    >>> w = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    >>> h = nn_distance_histogram(w, bins=[0.0, 1e-6, 1.0, 2.0])
    >>> h["counts"], h["min"]
    ([2, 0, 1], 0.0)
    """
    d = nearest_neighbour_distances(prototypes, chunk_size=chunk_size)
    edges = (np.concatenate([[0.0], np.logspace(-6, np.log10(2.0), 25)])
             if bins is None else np.asarray(bins, np.float64))
    counts, edges = np.histogram(np.clip(d, edges[0], edges[-1]), bins=edges)
    return {"edges": edges.tolist(), "counts": counts.astype(int).tolist(),
            "min": float(d.min()), "median": float(np.median(d)), "max": float(d.max())}
