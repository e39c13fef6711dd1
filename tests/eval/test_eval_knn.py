"""k-NN classifier: hand-computed votes, a brute-force numpy reference, blocking and sharding."""

import math

import chex
import jax
import numpy as np
import pytest

from jaxssl.eval.knn import knn_classify, knn_votes, topk_accuracy

# A query [1, 0] and a bank of unit vectors whose cosine similarities are 1, 0.8, 0.6, 0, -1.
BANK = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1], [-1, 0]], np.float32)
BANK_LABELS = np.array([0, 1, 1, 0, 2])
QUERY = np.array([[2.0, 0.0]], np.float32)  # not unit length: the protocol normalises it


def _reference_votes(train, labels, query, num_classes, k, temperature):
    """Per-query loop: sort similarities, sum exp(sim / T) of the k nearest per label."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    out = np.zeros((len(query), num_classes))
    for i, q in enumerate(query):
        sims = train @ q
        for j in np.argsort(-sims, kind="stable")[:k]:
            out[i, labels[j]] += math.exp(sims[j] / temperature)
    return out


def test_hand_computed_votes_and_temperature_flips_the_decision():
    # k = 3 keeps sims 1 (label 0), 0.8 and 0.6 (label 1).
    votes = knn_votes(BANK, BANK_LABELS, QUERY, num_classes=3, k=3, temperature=0.5)
    expected = [[math.exp(2.0), math.exp(1.6) + math.exp(1.2), 0.0]]  # 7.39 < 4.95 + 3.32
    chex.assert_trees_all_close(votes, np.array(expected, np.float32), rtol=1e-5)
    assert knn_classify(BANK, BANK_LABELS, QUERY, [1], num_classes=3, k=3,
                        temperature=0.5)["top1"] == 1.0
    # At T = 0.07 the single sim-1 neighbour dominates: e^14.3 > e^11.4 + e^8.6.
    assert knn_classify(BANK, BANK_LABELS, QUERY, [0], num_classes=3, k=3,
                        temperature=0.07)["top1"] == 1.0


def test_top5_counts_label_ranked_below_first():
    # 7 classes; the true class 6 only gets the 2nd-nearest vote, so top-1 misses, top-5 hits.
    bank = np.array([[1, 0], [0.8, 0.6], [0, 1]], np.float32)
    res = knn_classify(bank, np.array([0, 6, 3]), QUERY, [6], num_classes=7, k=3)
    assert res == {"top1": 0.0, "top5": 1.0}


def test_matches_bruteforce_reference_and_blocking_is_invisible():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(37, 5)).astype(np.float32)
    labels = rng.integers(0, 4, size=37)
    query = rng.normal(size=(11, 5)).astype(np.float32)
    ref = _reference_votes(train, labels, query, 4, 6, 0.2)
    one_block = knn_votes(train, labels, query, num_classes=4, k=6, temperature=0.2,
                          block_size=1000)
    blocked = knn_votes(train, labels, query, num_classes=4, k=6, temperature=0.2, block_size=4)
    chex.assert_trees_all_close(one_block, ref.astype(np.float32), rtol=1e-5)
    chex.assert_trees_all_close(blocked, one_block, rtol=1e-6)


def test_sharded_bank_matches_single_device():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(45, 6)).astype(np.float32)  # 45 rows: padded to 48 on 8 devices
    labels = rng.integers(0, 5, size=45)
    query = rng.normal(size=(9, 6)).astype(np.float32)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    plain = knn_votes(train, labels, query, num_classes=5, k=10, temperature=0.1)
    sharded = knn_votes(train, labels, query, num_classes=5, k=10, temperature=0.1,
                        block_size=4, mesh=mesh)
    chex.assert_trees_all_close(sharded, plain, rtol=1e-5)


def test_well_separated_gaussian_clusters_are_perfect():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, 16)) * 20.0
    y_train, y_test = np.repeat(np.arange(6), 30), np.repeat(np.arange(6), 10)
    x_train = (centres[y_train] + rng.normal(size=(180, 16))).astype(np.float32)
    x_test = (centres[y_test] + rng.normal(size=(60, 16))).astype(np.float32)
    res = knn_classify(x_train, y_train, x_test, y_test, num_classes=6, block_size=16)
    assert res == {"top1": 1.0, "top5": 1.0}


def test_chance_level_for_label_independent_features():
    # With identical features every query sees the same neighbours, so it predicts one class
    # for all queries; balanced labels then give exactly 1 / C top-1.
    x = np.ones((40, 3), np.float32)
    y = np.tile(np.arange(4), 10)
    assert knn_classify(x, y, x, y, num_classes=4, k=20)["top1"] == 0.25


def test_topk_accuracy_ties_prefer_lower_class():
    assert topk_accuracy(np.array([[1.0, 1.0]]), np.array([0]), 1) == 1.0
    assert topk_accuracy(np.array([[1.0, 1.0]]), np.array([1]), 1) == 0.0


def test_errors_name_shapes():
    with pytest.raises(ValueError, match=r"\(5, 2\).*\(1, 3\)"):
        knn_votes(BANK, BANK_LABELS, np.ones((1, 3), np.float32), num_classes=3)
    with pytest.raises(ValueError, match="k must be"):
        knn_votes(BANK, BANK_LABELS, QUERY, num_classes=3, k=6)
    with pytest.raises(ValueError, match="non-empty"):
        knn_votes(BANK, BANK_LABELS, np.zeros((0, 2), np.float32), num_classes=3, k=1)
    with pytest.raises(ValueError, match="train_labels"):
        knn_votes(BANK, BANK_LABELS, QUERY, num_classes=2, k=1)


def test_bfloat16_and_zero_features_are_handled():
    import jax.numpy as jnp

    rng = np.random.default_rng(4)
    train = rng.normal(size=(30, 8)).astype(np.float32)
    labels = rng.integers(0, 3, size=30)
    query = np.r_[rng.normal(size=(4, 8)), np.zeros((1, 8))].astype(np.float32)
    ref = knn_votes(train, labels, query, num_classes=3, k=5)
    low = knn_votes(jnp.asarray(train, jnp.bfloat16), labels, jnp.asarray(query, jnp.bfloat16),
                    num_classes=3, k=5)
    assert np.isfinite(ref).all() and np.isfinite(low).all()
    # A zero query has similarity 0 to everything: its 5 votes are each exp(0) = 1.
    assert ref[-1].sum() == pytest.approx(5.0)
    np.testing.assert_array_equal(low.argmax(1)[:4], ref.argmax(1)[:4])
