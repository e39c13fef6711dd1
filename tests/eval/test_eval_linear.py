"""Linear probe: accuracy on separable data, determinism, selection on train only."""

import jax
import numpy as np
import pytest

from jaxssl.eval.linear import (
    fit_softmax_regression,
    linear_probe,
    predict_logits,
    standardise,
)


def _blobs(seed, n_per_class, num_classes=4, dim=8, spread=4.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(100).normal(size=(num_classes, dim)) * spread
    y = np.repeat(np.arange(num_classes), n_per_class)
    x = centres[y] + rng.normal(size=(len(y), dim))
    return x.astype(np.float32), y.astype(np.int32)


def test_separable_data_above_95_percent_and_best_pair_is_first_maximum():
    train_x, train_y = _blobs(0, 50)
    test_x, test_y = _blobs(1, 25)
    res = linear_probe(train_x, train_y, test_x, test_y, num_classes=4, lrs=(1e-6, 0.05),
                       weight_decays=(0.0,), epochs=30, seed=0)
    assert res["top1"] > 0.95
    assert res["top5"] == 1.0  # only 4 classes
    assert [(r["lr"], r["weight_decay"]) for r in res["sweep"]] == [(1e-6, 0.0), (0.05, 0.0)]
    scores = [r["val_top1"] for r in res["sweep"]]
    best = res["sweep"][int(np.argmax(scores))]  # argmax returns the first maximum
    assert (res["best_lr"], res["val_top1"]) == (best["lr"], max(scores))


def test_mini_batch_training_also_separates_and_is_deterministic():
    x, y = _blobs(2, 40)
    fits = [fit_softmax_regression(x, y, num_classes=4, learning_rate=0.05, epochs=10,
                                   batch_size=32, key=jax.random.key(7)) for _ in range(2)]
    np.testing.assert_array_equal(np.asarray(fits[0]["w"]), np.asarray(fits[1]["w"]))
    other = fit_softmax_regression(x, y, num_classes=4, learning_rate=0.05, epochs=10,
                                   batch_size=32, key=jax.random.key(8))
    assert not np.array_equal(np.asarray(other["w"]), np.asarray(fits[0]["w"]))
    assert np.mean(predict_logits(fits[0], x).argmax(1) == y) > 0.95


def test_deterministic_in_seed_and_test_labels_do_not_affect_selection():
    train_x, train_y = _blobs(3, 20, spread=1.0)  # overlapping classes: the sweep matters
    test_x, test_y = _blobs(4, 10, spread=1.0)
    kw = dict(num_classes=4, lrs=(1e-3, 0.1), weight_decays=(0.0, 0.1), epochs=30, seed=3)
    a = linear_probe(train_x, train_y, test_x, test_y, **kw)
    b = linear_probe(train_x, train_y, test_x, test_y, **kw)
    assert a == b
    shuffled = linear_probe(train_x, train_y, test_x, np.roll(test_y, 7), **kw)
    assert shuffled["sweep"] == a["sweep"]
    assert shuffled["best_lr"] == a["best_lr"]


def test_standardise_uses_train_statistics_only():
    train = np.array([[1.0, 5.0], [3.0, 5.0]])
    test = np.array([[5.0, 7.0]])
    s_train, s_test = standardise(train, test)
    np.testing.assert_allclose(s_train, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(s_test, [[3.0, 2.0]])  # (5-2)/1; constant column only centred


def test_errors_name_shapes():
    x, y = _blobs(0, 5)
    with pytest.raises(ValueError, match=r"\(20, 8\).*\(3, 5\)"):
        linear_probe(x, y, np.zeros((3, 5), np.float32), np.zeros(3), num_classes=4)
    with pytest.raises(ValueError, match="num_classes=3"):
        fit_softmax_regression(x, y, num_classes=3, learning_rate=0.1)
