"""KoLeo / KoLeo-proto and the unique-prototype count against brute force and hand values."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse.csgraph
from jax.test_util import check_grads

from jaxssl.losses.koleo import count_unique_prototypes, koleo_loss, koleo_proto_loss


def _np_koleo(x, eps=1e-8):
    """Brute force in float64: all pairwise distances of the normalised rows."""
    x = np.asarray(x, np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(norms, 1e-12)
    dist = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
    np.fill_diagonal(dist, np.inf)
    return -np.mean(np.log(dist.min(axis=1) + eps))


def _np_components(x, threshold):
    x = np.asarray(x, np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
    return scipy.sparse.csgraph.connected_components(dist < threshold, directed=False)[0]


def _random(shape, seed, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale, jnp.float32)


def _unit(rng, n, dim):
    v = rng.normal(size=(n, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_hand_derived_value():
    # Unit vectors at 0, 60 and 180 degrees (rows scaled: normalisation is internal).
    a = math.pi / 3
    x = jnp.array([[3.0, 0.0], [0.5 * math.cos(a), 0.5 * math.sin(a)], [-2.0, 0.0]])
    # Chords: 0-60 deg = 1, 60-180 deg = sqrt(3), 0-180 deg = 2 -> d = (1, 1, sqrt(3)).
    expected = -(0.0 + 0.0 + 0.5 * math.log(3.0)) / 3
    np.testing.assert_allclose(float(koleo_loss(x, eps=0.0)), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("chunk_size", [None, 1, 8, 37, 100])
def test_matches_brute_force(chunk_size):
    x = _random((37, 5), 0)
    got = jax.jit(koleo_loss, static_argnames="chunk_size")(x, chunk_size=chunk_size)
    assert got.dtype == jnp.float32 and got.shape == ()
    np.testing.assert_allclose(float(got), _np_koleo(x), rtol=1e-5)


def test_chunked_equals_dense_value_and_gradient():
    x = _random((29, 6), 1)
    dense = jax.value_and_grad(koleo_loss)(x)
    chunked = jax.value_and_grad(lambda x: koleo_loss(x, chunk_size=4))(x)
    chex.assert_trees_all_close(dense, chunked, rtol=1e-6, atol=1e-7)


def test_resolves_distances_below_float32_cosine_resolution():
    # Neighbours at 1e-5 and 3e-5 from a base point: 1 - cos rounds to 0 for both in float32.
    rng = np.random.default_rng(2)
    base = _unit(rng, 20, 8)
    tangent = _unit(rng, 1, 8)[0]
    tangent -= (tangent @ base[0]) * base[0]
    tangent /= np.linalg.norm(tangent)
    near, far = base[0] + 1e-5 * tangent, base[0] - 3e-5 * tangent
    # far comes first so that a cosine arg-max alone (a tie at 1.0) would pick it for base[0].
    x = np.concatenate([base, far[None], near[None]]).astype(np.float32)
    for chunk_size in (None, 3):
        got = koleo_loss(jnp.asarray(x), chunk_size=chunk_size)
        np.testing.assert_allclose(float(got), _np_koleo(x), rtol=2e-3)


def test_gradient_matches_finite_differences():
    x = _random((9, 4), 3)
    check_grads(lambda x: koleo_loss(x, chunk_size=4), (x,), order=1, modes=("rev",),
                atol=2e-2, rtol=2e-2)


def test_exact_duplicates_and_zero_rows_are_finite():
    x = _random((6, 4), 4)
    # 2 x[0] normalises to exactly x[0] (a power-of-two scale), so d is exactly 0 for rows 0-2.
    x = x.at[1].set(x[0]).at[2].set(2.0 * x[0]).at[4].set(0.0).at[5].set(0.0)
    loss, grad = jax.value_and_grad(lambda x: koleo_loss(x, chunk_size=4))(x)
    chex.assert_tree_all_finite((loss, grad))
    # Rows 0, 1, 2 coincide and so do the zero rows 4 and 5: d = 0 there, 1e-8 inside the log;
    # row 3 has d <= 2.
    assert float(loss) >= (-5 * math.log(1e-8) - math.log(2.0 + 1e-8)) / 6
    np.testing.assert_allclose(float(loss), _np_koleo(x), rtol=1e-5)


@pytest.mark.parametrize("chunk_size", [None, 5])
def test_bfloat16_input(chunk_size):
    x = _random((12, 8), 5).astype(jnp.bfloat16)
    loss, grad = jax.value_and_grad(lambda x: koleo_loss(x, chunk_size=chunk_size))(x)
    assert loss.dtype == jnp.float32 and grad.dtype == jnp.bfloat16
    chex.assert_tree_all_finite((loss, grad))
    np.testing.assert_allclose(float(loss), _np_koleo(np.asarray(x, np.float32)), rtol=1e-4)


def test_chunked_never_builds_the_full_similarity_matrix():
    n = 2048
    x = _random((n, 8), 6)
    f = jax.jit(jax.value_and_grad(lambda x: koleo_loss(x, chunk_size=64)))
    memory = f.lower(x).compile().memory_analysis()
    if memory is None:
        pytest.skip("backend reports no memory analysis")
    # An [N, N] float32 matrix would take 16 MiB; the chunked search needs O(64 * N).
    assert memory.temp_size_in_bytes < n * n * 4 // 8


def test_koleo_proto_loss_is_koleo_on_prototypes():
    w = _random((17, 3), 7)
    np.testing.assert_allclose(
        float(koleo_proto_loss(w, chunk_size=5)), float(koleo_loss(w)), rtol=1e-6
    )
    np.testing.assert_allclose(float(koleo_proto_loss(w, eps=0.0)), _np_koleo(w, 0.0), rtol=1e-5)


def test_count_unique_finds_planted_duplicates():
    rng = np.random.default_rng(8)
    base = _unit(rng, 50, 16)
    copies = base[:10] * rng.uniform(0.5, 2.0, size=(10, 1))  # same direction, other norms
    offset = _unit(rng, 5, 16)
    offset -= np.sum(offset * base[10:15], axis=1, keepdims=True) * base[10:15]
    near = base[10:15] + 1e-5 * offset / np.linalg.norm(offset, axis=1, keepdims=True)
    w = rng.permutation(np.concatenate([base, copies, near])).astype(np.float32)
    assert count_unique_prototypes(w, 1e-4, chunk_size=16) == 50
    assert count_unique_prototypes(jnp.asarray(w), 1e-4) == 50
    # Below the near-copy distance only the exact copies merge.
    assert count_unique_prototypes(w, 2e-6, chunk_size=7) == 55
    # Far above the distance between random directions everything is one component.
    assert count_unique_prototypes(w, 2.5) == 1


def test_count_unique_links_chains():
    # a - b - c with |a-b| = |b-c| = 0.6 t, |a-c| = 1.2 t > t: one component through b.
    t = 1e-3
    angles = np.array([0.0, 0.6 * t, 1.2 * t, 1.0, 2.0])  # chord ~ angle at this scale
    w = np.stack([np.cos(angles), np.sin(angles), np.zeros(5)], axis=1).astype(np.float32)
    assert count_unique_prototypes(w, t, chunk_size=2) == 3
    # Without b the endpoints are separate.
    assert count_unique_prototypes(w[[0, 2, 3, 4]], t) == 4


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.8])
def test_count_unique_matches_brute_force(threshold):
    rng = np.random.default_rng(9)
    centres = _unit(rng, 6, 5)
    w = centres[rng.integers(0, 6, size=70)] + 0.1 * rng.normal(size=(70, 5))
    got = count_unique_prototypes(w.astype(np.float32), threshold, chunk_size=9)
    assert isinstance(got, np.int32)
    assert got == _np_components(w.astype(np.float32), threshold)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: koleo_loss(jnp.zeros(4)), "x must have rank 2"),
        (lambda: koleo_loss(jnp.zeros((1, 4))), "x needs at least 2 rows"),
        (lambda: koleo_loss(jnp.ones((4, 2)), chunk_size=0), "chunk_size"),
        (lambda: koleo_proto_loss(jnp.zeros((2, 3, 4))), "prototypes must have rank 2"),
        (lambda: koleo_proto_loss(jnp.ones((4, 2)), chunk_size=-1), "chunk_size"),
        (lambda: count_unique_prototypes(jnp.ones(4), 1e-4), "prototypes must have rank 2"),
        (lambda: count_unique_prototypes(jnp.ones((4, 2)), 0.0), "threshold"),
        (lambda: count_unique_prototypes(jnp.ones((4, 2)), 1e-4, chunk_size=0), "chunk_size"),
    ],
)
def test_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
