"""Numerical edge cases of public loss helpers (issue 13, item 11): zero prototypes in the
unique-prototype count, and the gradient of ``sinkhorn`` at one-hot input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.losses import count_unique_prototypes, sinkhorn

# ------------------------------------------------------------------ count_unique_prototypes


@pytest.mark.parametrize("num", [2, 5, 300])
def test_all_zero_prototypes_are_one_group(num):
    # Every zero row normalises to the zero vector: pairwise distance 0, one component.
    w = np.zeros((num, 8), np.float32)
    assert count_unique_prototypes(w, 1e-2, chunk_size=64) == 1


def test_zero_rows_are_one_group_apart_from_unit_rows():
    # Rows 0, 3, 5 are zero (one group); 1, 2, 4 point in three different directions
    # (pairwise distance sqrt(2)), each at distance 1 from the zero vector.
    w = np.zeros((6, 3), np.float32)
    w[1], w[2], w[4] = [2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.5]
    assert count_unique_prototypes(w, 1e-2) == 4
    # threshold 1.2: the zero vector (at distance 1 < 1.2) links all; sqrt(2) > 1.2 alone would
    # not, so without the zero rows the count stays 3.
    assert count_unique_prototypes(w, 1.2) == 1
    assert count_unique_prototypes(w[[1, 2, 4]], 1.2) == 3


def test_rows_below_the_normalisation_floor_count_as_zero():
    # |w| = 1e-13 < 1e-12: no direction, grouped with the exact zero row.
    w = np.array([[1e-13, 0.0], [0.0, 0.0], [1.0, 0.0]], np.float32)
    assert count_unique_prototypes(w, 1e-3) == 2


# ------------------------------------------------------------------ sinkhorn gradient


def sinkhorn_reference(p: np.ndarray, num_iters: int) -> np.ndarray:
    """float64 Sinkhorn-Knopp written from the MSN recipe: Q = P^T / sum P, alternate
    normalising prototype rows to 1/K and sample columns to 1/B, return (B Q)^T."""
    q = p.T / p.sum()
    k, b = q.shape

    def normalise(q, axis, target):  # an empty prototype (all-zero row of Q) stays 0
        mass = q.sum(axis=axis, keepdims=True)
        return np.divide(q, mass * target, out=np.zeros_like(q), where=mass > 0)

    for _ in range(num_iters):
        q = normalise(q, 1, k)
        q = normalise(q, 0, b)
    return (b * q).T


def test_sinkhorn_gradient_matches_float64_finite_differences():
    rng = np.random.default_rng(0)
    probs = jax.nn.softmax(jnp.asarray(rng.normal(size=(5, 4)), jnp.float32), axis=-1)
    weights = rng.normal(size=(5, 4))
    grad = jax.grad(lambda p: jnp.sum(jnp.asarray(weights, jnp.float32)
                                      * sinkhorn(p, num_iters=3)))(probs)

    p64, h = np.asarray(probs, np.float64), 1e-6
    expected = np.zeros_like(p64)
    for idx in np.ndindex(p64.shape):
        step = np.zeros_like(p64)
        step[idx] = h
        expected[idx] = (np.sum(weights * sinkhorn_reference(p64 + step, 3))
                         - np.sum(weights * sinkhorn_reference(p64 - step, 3))) / (2 * h)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=2e-3, atol=2e-4)
    # The values themselves are those of the reference.
    np.testing.assert_allclose(np.asarray(sinkhorn(probs, num_iters=3)),
                               sinkhorn_reference(p64, 3), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("labels", [[0, 0, 1], [0, 0, 0, 0], [2, 2, 0, 0]])
def test_sinkhorn_gradient_is_finite_for_one_hot_input(labels):
    # One-hot rows with unused prototypes: a zero prototype mass used to give 0/0 = NaN.
    probs = jax.nn.one_hot(jnp.asarray(labels), 3)
    weights = jax.random.normal(jax.random.key(1), probs.shape)
    out = sinkhorn(probs, num_iters=3)
    grad = jax.grad(lambda p: jnp.sum(weights * sinkhorn(p, num_iters=3)))(probs)
    assert np.all(np.isfinite(np.asarray(grad)))
    # Values unchanged: each sample keeps its prototype (mass 1), unused prototypes stay 0.
    np.testing.assert_allclose(np.asarray(out), np.asarray(probs), atol=1e-6)


def test_sinkhorn_gradient_at_one_hot_matches_the_used_entries():
    # Entries of used prototypes: the gradient equals the finite-difference derivative of the
    # float64 reference restricted to those entries (the empty prototype is held at 0).
    probs = np.array([[0.0, 1.0, 0.0], [0.0, 0.3, 0.7], [0.0, 0.6, 0.4]])
    weights = np.random.default_rng(2).normal(size=probs.shape)
    grad = np.asarray(jax.grad(lambda p: jnp.sum(jnp.asarray(weights, jnp.float32)
                                                 * sinkhorn(p, num_iters=2)))(
        jnp.asarray(probs, jnp.float32)))
    assert np.all(np.isfinite(grad))
    # The empty prototype: zero by convention (up to the rounding of the scale-invariant total).
    np.testing.assert_allclose(grad[:, 0], 0.0, atol=1e-6)
    h = 1e-6
    for idx in [(0, 1), (1, 1), (1, 2), (2, 2)]:
        step = np.zeros_like(probs)
        step[idx] = h
        fd = (np.sum(weights * sinkhorn_reference(probs + step, 2))
              - np.sum(weights * sinkhorn_reference(probs - step, 2))) / (2 * h)
        np.testing.assert_allclose(grad[idx], fd, rtol=2e-3, atol=2e-4)
