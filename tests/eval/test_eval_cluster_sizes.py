"""Cluster-size diagnostics: hand-computed relative sizes, dataset counting, agreement."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.eval.cluster_sizes import (
    argmax_agreement,
    cluster_size_stats,
    count_assignments,
    mean_max_probability,
)


def test_relative_sizes_hand_computed():
    # K = 5, N = 10: counts [4, 0, 3, 3, 0] -> r = 5 * n / 10 = [2, 0, 1.5, 1.5, 0].
    a = np.array([0, 0, 0, 0, 2, 2, 2, 3, 3, 3])
    s = cluster_size_stats(a, 5)
    np.testing.assert_allclose(s["relative_sizes"], [2.0, 1.5, 1.5, 0.0, 0.0])
    assert s["relative_sizes"].mean() == pytest.approx(1.0)  # sum r_k = K always
    assert (s["num_empty"], s["frac_empty"]) == (2, 0.4)
    assert (s["min_relative"], s["max_relative"]) == (0.0, 2.0)
    scores = np.eye(5)[a] * 3.0  # arg-max of scores gives the same assignment
    np.testing.assert_array_equal(cluster_size_stats(scores, 5)["counts"], [4, 0, 3, 3, 0])


def test_count_assignments_skips_padding_and_uses_mesh():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    assign = jax.jit(lambda im: jnp.eye(4)[im[:, 0, 0, 0] % 4])  # scores [B, 4]
    rng = np.random.default_rng(0)
    values = rng.integers(0, 255, size=19)
    batches = []
    for lo in range(0, 24, 8):
        chunk = np.zeros(8, np.uint8)
        part = values[lo:lo + 8]
        chunk[:len(part)] = part
        batches.append({"image": chunk.reshape(8, 1, 1, 1),
                        "valid": np.arange(lo, lo + 8) < 19})
    counts = count_assignments(assign, batches, num_clusters=4, mesh=mesh)
    np.testing.assert_array_equal(counts, np.bincount(values % 4, minlength=4))


def test_agreement_and_confidence():
    a = np.array([[0.1, 0.9], [0.6, 0.4], [0.3, 0.7]])
    b = np.array([[0.2, 0.8], [0.1, 0.9], [0.0, 1.0]])
    assert argmax_agreement(a, b) == pytest.approx(2 / 3)
    assert mean_max_probability(a) == pytest.approx((0.9 + 0.6 + 0.7) / 3)


def test_errors():
    with pytest.raises(ValueError, match=r"num_clusters=2.*\[0, 3\]"):
        cluster_size_stats(np.array([0, 3]), 2)
    with pytest.raises(ValueError, match=r"\(2,\) and \(3,\)"):
        argmax_agreement(np.zeros(2, int), np.zeros(3, int))
