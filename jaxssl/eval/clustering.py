"""Clustering evaluation of frozen features: k-means with k = #classes, scored against labels."""

from __future__ import annotations

import jax
import numpy as np

from jaxssl.eval.cluster_metrics import cluster_scores
from jaxssl.ops.kmeans import kmeans


def kmeans_cluster_scores(
    key: jax.Array,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_clusters: int | None = None,
    num_iters: int = 50,
    spherical: bool = True,
) -> dict[str, float]:
    """k-means on ``features`` (k defaults to the number of classes) -> NMI, ARI, purity, acc.

    Spherical by default: SSL features are compared by cosine everywhere else (k-NN, heads).

    >>> x = np.array([[1, 0], [2, 0.1], [0, 1], [0.1, 3]], np.float32)
    >>> kmeans_cluster_scores(jax.random.key(0), x, np.array([0, 0, 1, 1]), num_iters=5)["nmi"]
    1.0
    """
    features = np.asarray(features, np.float32)
    labels = np.asarray(labels)
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(
            f"features must be [N, D] with labels [N]; got features {features.shape}, "
            f"labels {labels.shape}"
        )
    k = len(np.unique(labels)) if num_clusters is None else int(num_clusters)
    _, assign = kmeans(key, features, k, num_iters=num_iters, spherical=spherical)
    return cluster_scores(labels, np.asarray(assign))
