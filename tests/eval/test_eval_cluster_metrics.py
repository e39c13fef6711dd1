"""Clustering scores: scikit-learn parity for NMI / ARI, hand-computed purity and Hungarian."""

import itertools

import numpy as np
import pytest
from sklearn import metrics

from jaxssl.eval.cluster_metrics import (
    adjusted_rand_index,
    cluster_scores,
    contingency_matrix,
    hungarian_accuracy,
    normalized_mutual_info,
    purity,
)

_rng = np.random.default_rng(0)
CASES = [
    (_rng.integers(0, 5, 200), _rng.integers(0, 5, 200)),
    (_rng.integers(0, 3, 50), _rng.integers(0, 8, 50)),  # more clusters than classes
    (np.repeat(np.arange(4), 5), np.repeat(np.arange(4), 5)[::-1] * 10),  # perfect, renamed
    (np.arange(10), np.zeros(10, int)),  # one cluster, all classes distinct
    (np.zeros(10, int), np.zeros(10, int)),  # both trivial
    (np.arange(6), np.arange(6)),  # all singletons
    (np.array([0, 0, 1, 2]), np.array([0, 0, 0, 1])),
]


@pytest.mark.parametrize("true,pred", CASES)
def test_nmi_and_ari_match_sklearn(true, pred):
    assert normalized_mutual_info(true, pred) == pytest.approx(
        metrics.normalized_mutual_info_score(true, pred), abs=1e-10)
    assert adjusted_rand_index(true, pred) == pytest.approx(
        metrics.adjusted_rand_score(true, pred), abs=1e-10)


def _bruteforce_hungarian(true, pred):
    table = contingency_matrix(true, pred)
    best = 0
    rows, cols = table.shape
    if rows <= cols:
        for perm in itertools.permutations(range(cols), rows):
            best = max(best, sum(table[i, perm[i]] for i in range(rows)))
    else:
        for perm in itertools.permutations(range(rows), cols):
            best = max(best, sum(table[perm[j], j] for j in range(cols)))
    return best / table.sum()


def test_hungarian_accuracy():
    true = np.array([0, 0, 0, 1, 1, 2])
    assert hungarian_accuracy(true, np.array([2, 2, 2, 0, 0, 1])) == 1.0  # permuted names
    # class 0 -> cluster 1 (2 pts), class 1 -> cluster 0 (2), class 2 -> cluster 2 (1): 5 / 6
    assert hungarian_accuracy(true, np.array([1, 1, 0, 0, 0, 2])) == pytest.approx(5 / 6)
    assert hungarian_accuracy(np.array([0, 0, 1, 1]), np.arange(4)) == 0.5  # 4 clusters
    assert hungarian_accuracy(np.array([0, 1, 2, 2]), np.zeros(4, int)) == 0.5  # 1 cluster
    for true, pred in CASES[1:2] + CASES[6:]:
        assert hungarian_accuracy(true, pred) == pytest.approx(_bruteforce_hungarian(true, pred))


def test_purity_hand_computed():
    true = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 1])  # majorities: 2 of class 0, 2 of class 2
    assert purity(true, pred) == pytest.approx(4 / 6)
    assert purity(true, np.arange(6)) == 1.0  # singletons are trivially pure
    assert cluster_scores(true, pred)["purity"] == pytest.approx(4 / 6)


def test_bad_input_raises():
    with pytest.raises(ValueError, match=r"\(3,\) and \(2,\)"):
        purity(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="non-empty"):
        normalized_mutual_info(np.zeros(0), np.zeros(0))
