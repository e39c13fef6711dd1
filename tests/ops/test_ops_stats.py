"""jaxssl.ops statistics (EMA, global reductions, L2 normalisation, cluster sizes, teacher
confidence) against hand-derived values, the formulas the losses used before they shared these
functions, and shard_map over the 8 fake CPU devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxssl.losses import update_center, update_cluster_sizes, update_patch_center
from jaxssl.ops.cluster_sizes import (
    EMPTY_RELATIVE_SIZE,
    assignment_fractions,
    cluster_size_diagnostics,
    relative_sizes,
)
from jaxssl.ops.collectives import global_count, global_row_mean, global_sum
from jaxssl.ops.confidence import teacher_confidence
from jaxssl.ops.ema import ema
from jaxssl.ops.normalize import l2_normalize


def _mesh():
    return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def _random(shape, seed, scale=1.0):
    return scale * jax.random.normal(jax.random.key(seed), shape, jnp.float32)


# EMA.


def test_ema_of_a_known_sequence():
    # a_0 = 1, x = 3, 5, -1 with m = 0.75: a_1 = 1.5, a_2 = 2.375, a_3 = 1.53125 (exact in binary).
    a = jnp.array([1.0])
    seen = []
    for x in (3.0, 5.0, -1.0):
        a = ema(a, jnp.array([x]), 0.75)
        seen.append(float(a[0]))
    assert seen == [1.5, 2.375, 1.53125]


def test_ema_momentum_ends_and_no_gradient():
    a, x = jnp.array([2.0, -1.0]), jnp.array([4.0, 6.0])
    np.testing.assert_array_equal(ema(a, x, 1.0), a)
    np.testing.assert_array_equal(ema(a, x, 0.0), x)
    grad = jax.grad(lambda a, x: jnp.sum(ema(a, x, 0.5)), argnums=(0, 1))(a, x)
    np.testing.assert_array_equal(grad[0], 0.0)
    np.testing.assert_array_equal(grad[1], 0.0)


def _old_center(center, logits, momentum, axes):
    """The body update_center / update_patch_center had before the shared pieces."""
    t = jax.lax.stop_gradient(jnp.asarray(logits, jnp.float32))
    total = jnp.sum(t, axis=axes)
    count = jnp.asarray(np.prod([logits.shape[a] for a in axes]), jnp.float32)
    c = jax.lax.stop_gradient(jnp.asarray(center, jnp.float32))
    return momentum * c + (1.0 - momentum) * (total / count)


@pytest.mark.parametrize("shape", [(5,), (2, 6, 5), (2, 3, 4, 5)])
def test_centre_ema_any_layout_equals_the_old_centre_updates(shape):
    c, t = _random((5,), 0), _random(shape, 1, 3.0)
    new = ema(c, global_row_mean(t, None), 0.9)
    axes = tuple(range(len(shape) - 1))
    np.testing.assert_array_equal(new, _old_center(c, t, 0.9, axes))
    # float64 hand formula: m c + (1 - m) mean over every leading axis.
    t64 = np.asarray(t, np.float64).reshape(-1, 5)
    np.testing.assert_allclose(new, 0.9 * np.asarray(c) + 0.1 * t64.mean(0), rtol=1e-6)
    if len(shape) == 3:
        np.testing.assert_array_equal(update_center(c, t, momentum=0.9), new)
    if len(shape) == 4:
        np.testing.assert_array_equal(update_patch_center(c, t, momentum=0.9), new)


def test_global_row_mean_under_shard_map_is_the_batch_mean():
    t = _random((2, 16, 3, 5), 2)
    sharded = jax.jit(jax.shard_map(
        lambda t: global_row_mean(t, "data"), mesh=_mesh(),
        in_specs=P(None, "data"), out_specs=P()))(t)
    np.testing.assert_allclose(sharded, global_row_mean(t, None), rtol=1e-6)
    np.testing.assert_allclose(sharded, np.asarray(t).reshape(-1, 5).mean(0), rtol=1e-5)


def test_global_sum_and_count_over_devices():
    x = jnp.arange(16.0)
    total, count = jax.jit(jax.shard_map(
        lambda x: (global_sum(jnp.sum(x), "data"), jnp.float32(global_count(x.shape[0], "data"))),
        mesh=_mesh(), in_specs=P("data"), out_specs=(P(), P())))(x)
    assert (float(total), float(count)) == (120.0, 16.0)
    assert global_count(3, None) == 3


# L2 normalisation.


def test_l2_normalize_hand_values_zero_vector_and_gradient():
    x = jnp.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]])
    np.testing.assert_allclose(l2_normalize(x), [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]], rtol=1e-6)
    # Column 1 is (4, 0, -2), of norm 2 sqrt(5).
    np.testing.assert_allclose(l2_normalize(x, axis=0)[:, 1], np.array([2.0, 0.0, -1.0]) / 5**0.5,
                               rtol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(l2_normalize(x) * jnp.array([1.0, 2.0])))(x)
    assert np.all(np.isfinite(grad))
    # d/dx (x / |x|) . v = (v - u (u . v)) / |x| with u = x / |x|: for x = (3, 4), v = (1, 2).
    u, v = np.array([0.6, 0.8]), np.array([1.0, 2.0])
    np.testing.assert_allclose(grad[0], (v - u * (u @ v)) / 5.0, rtol=1e-5)
    # A vector shorter than eps is scaled by 1 / eps, not normalised.
    np.testing.assert_allclose(l2_normalize(jnp.array([1e-3, 0.0]), eps=1e-2), [0.1, 0.0])
    assert l2_normalize(jnp.ones(2, jnp.bfloat16)).dtype == jnp.float32


# Cluster sizes.


def test_assignment_fractions_and_relative_sizes_by_hand():
    labels = jnp.array([[0, 3, 3], [3, 1, 3]])
    np.testing.assert_allclose(assignment_fractions(labels, 4), [1 / 6, 1 / 6, 0.0, 4 / 6],
                               rtol=1e-6)
    np.testing.assert_allclose(relative_sizes(jnp.array([1.0, 1.0, 0.0, 4.0])),
                               [2 / 3, 2 / 3, 0.0, 8 / 3], rtol=1e-6)
    # All-zero sizes are "all empty" with a finite gradient, not 0 / 0.
    np.testing.assert_array_equal(relative_sizes(jnp.zeros(3)), 0.0)
    assert np.all(np.isfinite(jax.grad(lambda s: jnp.sum(relative_sizes(s)))(jnp.zeros(3))))


def test_cluster_size_ema_of_a_known_sequence_is_update_cluster_sizes():
    # K = 2, c_0 = (1/2, 1/2), m = 1/2; batches all in cluster 0, then half-half, then all in 1:
    # c_1 = (3/4, 1/4), c_2 = (5/8, 3/8), c_3 = (5/16, 11/16).
    sims = [jnp.array([[1.0, 0.0], [1.0, 0.0]]), jnp.array([[1.0, 0.0], [0.0, 1.0]]),
            jnp.array([[0.0, 1.0], [0.0, 1.0]])]
    expected = [[0.75, 0.25], [0.625, 0.375], [0.3125, 0.6875]]
    sizes = public = jnp.array([0.5, 0.5])
    for z, want in zip(sims, expected):
        sizes = ema(sizes, assignment_fractions(jnp.argmax(z, -1), 2), 0.5)
        public = update_cluster_sizes(public, z, momentum=0.5)
        np.testing.assert_array_equal(sizes, want)
        np.testing.assert_array_equal(public, want)


def test_assignment_fractions_under_shard_map_are_global():
    labels = jax.random.randint(jax.random.key(3), (2, 16), 0, 5)
    sharded = jax.jit(jax.shard_map(
        lambda a: assignment_fractions(a, 5, "data"), mesh=_mesh(),
        in_specs=P(None, "data"), out_specs=P()))(labels)
    np.testing.assert_allclose(sharded, np.bincount(np.ravel(labels), minlength=5) / 32,
                               rtol=1e-6)


def test_cluster_size_diagnostics_by_hand():
    # Relative sizes 4 * (0.5, 0.3, 0.198, 0.002) = (2, 1.2, 0.792, 0.008).
    d = cluster_size_diagnostics(jnp.array([0.5, 0.3, 0.198, 0.002]), EMPTY_RELATIVE_SIZE)
    assert set(d) == {"min_relative_size", "max_relative_size", "empty_fraction"}
    np.testing.assert_allclose([d["min_relative_size"], d["max_relative_size"]], [0.008, 2.0],
                               rtol=1e-5)
    assert float(d["empty_fraction"]) == 0.25
    assert float(cluster_size_diagnostics(jnp.array([0.5, 0.3, 0.198, 0.002]), 0.8)[
        "empty_fraction"]) == 0.5
    # Counts: any threshold in (0, K / N] counts exactly the zero counts.
    d = cluster_size_diagnostics(jnp.array([3.0, 1.0, 0.0, 0.0]), 4 / 4)
    assert (float(d["empty_fraction"]), float(d["max_relative_size"])) == (0.5, 3.0)


# Teacher confidence.


def test_teacher_confidence_by_hand_and_over_devices():
    q = jnp.array([[[0.7, 0.3], [0.5, 0.5]], [[0.1, 0.9], [1.0, 0.0]]])
    np.testing.assert_allclose(teacher_confidence(q), (0.7 + 0.5 + 0.9 + 1.0) / 4, rtol=1e-6)
    probs = jax.nn.softmax(_random((2, 16, 6), 4, 3.0), axis=-1)
    sharded = jax.jit(jax.shard_map(
        lambda p: teacher_confidence(p, "data"), mesh=_mesh(),
        in_specs=P(None, "data"), out_specs=P()))(probs)
    np.testing.assert_allclose(sharded, np.asarray(probs).max(-1).mean(), rtol=1e-6)
