"""Cluster-size diagnostics of a teacher's arg-max assignments (ExCB; docs/methods.md).

The relative size of cluster k over a dataset of N points is r_k = K n_k / N (1 = balanced);
ExCB reports the fraction of empty clusters (1.6 % vs 74.7 % for DINO) and min / max r_k (the
training-time ``jaxssl.ops.cluster_sizes.relative_sizes``, here in float64 on dataset counts).
The teacher confidence is ``jaxssl.ops.confidence.teacher_confidence``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np

from jaxssl.eval.features import put_on_mesh
from jaxssl.ops.confidence import teacher_confidence


def _as_assignments(x: np.ndarray | jax.Array, name: str) -> np.ndarray:
    """[N] cluster indices as given, or the arg-max of [N, K] scores."""
    x = np.asarray(x)
    if x.ndim == 2:
        return x.argmax(axis=1)
    if x.ndim != 1:
        raise ValueError(f"{name} must be indices [N] or scores [N, K]; got shape {x.shape}")
    return x


def cluster_size_stats(
    assignments: np.ndarray | jax.Array, num_clusters: int
) -> dict[str, Any]:
    """Relative sizes K n_k / N sorted descending, empty count / fraction, min and max.

    ``assignments`` are cluster indices [N] or scores [N, K] (arg-max taken).

    >>> s = cluster_size_stats(np.array([0, 0, 0, 1]), 4)
    >>> s["relative_sizes"].tolist(), s["num_empty"], s["frac_empty"], s["max_relative"]
    ([3.0, 1.0, 0.0, 0.0], 2, 0.5, 3.0)
    """
    a = _as_assignments(assignments, "assignments")
    if a.size == 0:
        raise ValueError("assignments is empty (shape (0,)); need at least one point")
    if a.min() < 0 or a.max() >= num_clusters:
        raise ValueError(
            f"assignments must lie in [0, num_clusters={num_clusters}); got "
            f"[{a.min()}, {a.max()}]"
        )
    counts = np.bincount(a, minlength=num_clusters)
    return cluster_size_stats_from_counts(counts)


def cluster_size_stats_from_counts(counts: np.ndarray) -> dict[str, Any]:
    """Same statistics from per-cluster counts [K] (e.g. accumulated over a dataset).

    >>> cluster_size_stats_from_counts(np.array([2, 2]))["min_relative"]
    1.0
    """
    counts = np.asarray(counts, np.int64)
    if counts.ndim != 1 or counts.sum() <= 0:
        raise ValueError(f"counts must be [K] with a positive total; got shape {counts.shape}, "
                         f"total {counts.sum()}")
    k, n = counts.shape[0], counts.sum()
    # r_k = K n_k / N, largest first: ops.cluster_sizes.relative_sizes on the host in float64
    # (the float32 jax version would break sum_k r_k = K beyond 1e-7 on a dataset's counts).
    relative = np.sort(k * counts / n)[::-1]
    empty = int(np.sum(counts == 0))
    return {
        "relative_sizes": relative,
        "counts": counts,
        "num_empty": empty,
        "frac_empty": empty / k,
        "min_relative": float(relative[-1]),
        "max_relative": float(relative[0]),
        "num_points": int(n),
    }


def count_assignments(
    assign_fn: Callable[[jax.Array], jax.Array],
    batches: Iterable[Mapping[str, Any]],
    *,
    num_clusters: int,
    mesh: jax.sharding.Mesh | None = None,
) -> np.ndarray:
    """Per-cluster counts [K] of ``assign_fn`` (images -> indices [B] or scores [B, K]).

    Batches follow ``extract_features``: rows whose "valid" is False are not counted.

    >>> fn = lambda im: im[:, 0, 0, 0].astype(np.int32)
    >>> b = {"image": np.array([1, 1, 2], np.uint8).reshape(3, 1, 1, 1),
    ...      "valid": np.array([True, True, False])}
    >>> count_assignments(fn, [b], num_clusters=3).tolist()
    [0, 2, 0]
    """
    counts = np.zeros(num_clusters, np.int64)
    for batch in batches:
        out = assign_fn(put_on_mesh(np.asarray(batch["image"]), mesh))
        a = _as_assignments(jax.device_get(out), "assign_fn output")
        if "valid" in batch:
            a = a[np.asarray(batch["valid"], bool)]
        if a.size and (a.min() < 0 or a.max() >= num_clusters):
            raise ValueError(
                f"assign_fn returned clusters outside [0, {num_clusters}): [{a.min()}, {a.max()}]"
            )
        counts += np.bincount(a, minlength=num_clusters)
    return counts


def argmax_agreement(a: np.ndarray | jax.Array, b: np.ndarray | jax.Array) -> float:
    """Fraction of rows where two views pick the same cluster (indices [N] or scores [N, K]).

    >>> argmax_agreement(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([0, 0]))
    0.5
    """
    ia, ib = _as_assignments(a, "a"), _as_assignments(b, "b")
    if ia.shape != ib.shape or ia.size == 0:
        raise ValueError(
            f"views must have the same non-zero number of rows; got {np.shape(a)} and "
            f"{np.shape(b)}"
        )
    return float(np.mean(ia == ib))


def mean_max_probability(probs: np.ndarray | jax.Array) -> float:
    """Teacher confidence: mean over rows of max_k q_k for probabilities [N, K].

    The checked host-side name of :func:`jaxssl.ops.confidence.teacher_confidence` (float32).

    >>> mean_max_probability(np.array([[0.5, 0.5], [1.0, 0.0]]))
    0.75
    """
    if np.ndim(probs) != 2 or np.shape(probs)[0] == 0:
        raise ValueError(f"probs must be [N, K] with N > 0; got shape {np.shape(probs)}")
    return float(teacher_confidence(probs))
