"""Clustering scores against ground-truth classes: NMI, ARI, purity, Hungarian accuracy.

All scores come from the contingency matrix n_ij = #{points of class i in cluster j}. Labels
may be any integers (they are re-indexed). Implemented with numpy / scipy only.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def contingency_matrix(labels_true: np.ndarray, labels_pred: np.ndarray) -> np.ndarray:
    """Counts [num_classes, num_clusters] of (class, cluster) pairs, over the labels present.

    >>> contingency_matrix(np.array([0, 0, 1]), np.array([5, 7, 7])).tolist()
    [[1, 1], [0, 1]]
    """
    labels_true = np.asarray(labels_true).ravel()
    labels_pred = np.asarray(labels_pred).ravel()
    if labels_true.shape != labels_pred.shape or labels_true.size == 0:
        raise ValueError(
            f"labels_true and labels_pred must be equal-length and non-empty; got "
            f"{np.shape(labels_true)} and {np.shape(labels_pred)}"
        )
    _, ti = np.unique(labels_true, return_inverse=True)
    _, pi = np.unique(labels_pred, return_inverse=True)
    table = np.zeros((ti.max() + 1, pi.max() + 1), np.int64)
    np.add.at(table, (ti, pi), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log(p)))


def normalized_mutual_info(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """NMI = I(U; V) / ((H(U) + H(V)) / 2) (arithmetic normalisation); 1 for two trivial labellings.

    >>> print(round(normalized_mutual_info(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])), 4))
    1.0
    >>> print(round(normalized_mutual_info(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])), 4))
    0.0
    """
    table = contingency_matrix(labels_true, labels_pred)
    if table.shape[0] == table.shape[1] == 1:
        return 1.0  # one class and one cluster: identical partitions
    n = table.sum()
    nz = table > 0
    pij = table[nz] / n
    outer = np.outer(table.sum(axis=1), table.sum(axis=0))[nz] / (n * n)
    mi = float(np.sum(pij * (np.log(pij) - np.log(outer))))
    if mi <= 0.0:
        return 0.0
    h_true, h_pred = _entropy(table.sum(axis=1)), _entropy(table.sum(axis=0))
    return float(mi / max((h_true + h_pred) / 2.0, np.finfo(np.float64).eps))


def _pairs(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return float(np.sum(x * (x - 1.0) / 2.0))


def adjusted_rand_index(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Hubert-Arabie adjusted Rand index: (RI - E[RI]) / (max RI - E[RI]) over point pairs.

    >>> print(round(adjusted_rand_index(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])), 4))
    1.0
    """
    table = contingency_matrix(labels_true, labels_pred)
    n = table.sum()
    index = _pairs(table)
    sum_a, sum_b = _pairs(table.sum(axis=1)), _pairs(table.sum(axis=0))
    expected = sum_a * sum_b / (n * (n - 1) / 2.0) if n > 1 else 0.0
    maximum = (sum_a + sum_b) / 2.0
    if maximum == expected:
        return 1.0  # both partitions trivial in the same way (all-in-one or all-singletons)
    return float((index - expected) / (maximum - expected))


def purity(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Fraction of points whose cluster's majority class is their class.

    >>> purity(np.array([0, 0, 1, 1, 1]), np.array([0, 0, 0, 1, 1]))
    0.8
    """
    table = contingency_matrix(labels_true, labels_pred)
    return float(table.max(axis=0).sum() / table.sum())


def hungarian_accuracy(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Accuracy under the best one-to-one cluster -> class map (Hungarian algorithm).

    With more clusters than classes the unmatched clusters count as errors; with fewer,
    the unmatched classes do.

    >>> hungarian_accuracy(np.array([0, 0, 1, 1]), np.array([3, 3, 3, 2]))
    0.75
    """
    table = contingency_matrix(labels_true, labels_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def cluster_scores(labels_true: np.ndarray, labels_pred: np.ndarray) -> dict[str, float]:
    """All four scores in one dict: nmi, ari, purity, hungarian_accuracy.

    >>> cluster_scores(np.array([0, 1]), np.array([1, 0]))["hungarian_accuracy"]
    1.0
    """
    return {
        "nmi": normalized_mutual_info(labels_true, labels_pred),
        "ari": adjusted_rand_index(labels_true, labels_pred),
        "purity": purity(labels_true, labels_pred),
        "hungarian_accuracy": hungarian_accuracy(labels_true, labels_pred),
    }
