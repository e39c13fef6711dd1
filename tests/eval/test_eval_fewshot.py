"""Few-shot evaluation: exact shots per class, seeded splits, accuracy on separable data."""

import numpy as np
import pytest

from jaxssl.eval.fewshot import few_shot, few_shot_indices

LABELS = np.repeat(np.arange(5), 20)[np.random.default_rng(0).permutation(100)]


@pytest.mark.parametrize("shots", [1, 2, 5, 13])
def test_exactly_n_distinct_shots_per_class(shots):
    idx = few_shot_indices(LABELS, shots, seed=0)
    assert len(np.unique(idx)) == len(idx) == 5 * shots
    np.testing.assert_array_equal(np.bincount(LABELS[idx], minlength=5), [shots] * 5)


def test_splits_deterministic_in_seed_and_split():
    a = few_shot_indices(LABELS, 5, seed=1, split=2)
    np.testing.assert_array_equal(a, few_shot_indices(LABELS, 5, seed=1, split=2))
    assert not np.array_equal(a, few_shot_indices(LABELS, 5, seed=2, split=2))
    assert not np.array_equal(a, few_shot_indices(LABELS, 5, seed=1, split=3))


def test_too_few_examples_raises():
    with pytest.raises(ValueError, match=r"classes \[1\] have only \[1\]"):
        few_shot_indices(np.array([0, 0, 1]), 2, seed=0)


def test_separable_clusters_and_report_shape():
    rng = np.random.default_rng(5)
    centres = np.eye(6, 16, dtype=np.float32) * 5.0  # orthogonal directions: cosine-separable
    train_y, test_y = np.repeat(np.arange(6), 15), np.repeat(np.arange(6), 10)
    train_x = centres[train_y] + 0.3 * rng.normal(size=(90, 16)).astype(np.float32)
    test_x = centres[test_y] + 0.3 * rng.normal(size=(60, 16)).astype(np.float32)
    res = few_shot(train_x, train_y, test_x, test_y, shots=(1, 2), num_splits=3, epochs=30)
    assert set(res) == {"1shot", "2shot"}
    for r in res.values():
        assert len(r["per_split"]) == 3
        assert r["mean"] == 1.0 and r["std"] == 0.0
    again = few_shot(train_x, train_y, test_x, test_y, shots=(1, 2), num_splits=3, epochs=30)
    assert again == res


def test_few_shot_std_reflects_split_variation():
    # Noisy overlapping classes: different splits give different accuracies; the std must equal
    # numpy's population std of the reported per-split values.
    rng = np.random.default_rng(6)
    train_y, test_y = np.repeat(np.arange(3), 20), np.repeat(np.arange(3), 20)
    centres = rng.normal(size=(3, 4))
    train_x = (centres[train_y] + rng.normal(size=(60, 4))).astype(np.float32)
    test_x = (centres[test_y] + rng.normal(size=(60, 4))).astype(np.float32)
    r = few_shot(train_x, train_y, test_x, test_y, shots=(1,), num_splits=4, epochs=30)["1shot"]
    assert r["std"] == pytest.approx(np.std(r["per_split"]))
    assert r["mean"] == pytest.approx(np.mean(r["per_split"]))
    assert len(set(r["per_split"])) > 1
