"""DINO loss and centre: hand-derived values, an explicit pair loop, gradients, sharding, errors."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from jaxssl.losses.dino import dino_loss, update_center


def _np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _np_dino_loss(student, teacher, center, student_temp, teacher_temp):
    """Explicit double loop over (teacher view t, student view s != t) pairs, float64."""
    student, teacher, center = (np.asarray(a, np.float64) for a in (student, teacher, center))
    q = np.exp(_np_log_softmax((teacher - center) / teacher_temp))
    log_p = _np_log_softmax(student / student_temp)
    losses = []
    for t in range(teacher.shape[0]):
        for s in range(student.shape[0]):
            if s == t:
                continue
            losses.append(np.mean(-np.sum(q[t] * log_p[s], axis=-1)))
    return np.mean(losses)


def _random(shape, seed, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale, jnp.float32)


def test_hand_derived_two_prototypes():
    # S=3, T=2, B=1, K=2, both temperatures 1, zero centre.
    s = jnp.array([[[2.0, 0.0]], [[0.0, 2.0]], [[1.0, 1.0]]])
    t = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    e = math.e
    q_hi, q_lo = e / (e + 1), 1 / (e + 1)  # softmax([1, 0])
    lp_hi, lp_lo = -math.log(1 + math.exp(-2)), -math.log(1 + math.exp(2))  # log_softmax([2, 0])
    # Pairs (t=0,s=1) and (t=1,s=0) are mirror images; (t,s=2) is against uniform p: log 2.
    h_cross = -(q_hi * lp_lo + q_lo * lp_hi)
    expected = (2 * h_cross + 2 * math.log(2)) / 4
    got = dino_loss(s, t, jnp.zeros(2), student_temp=1.0, teacher_temp=1.0)
    assert got.dtype == jnp.float32 and got.shape == ()
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)


def test_hand_derived_centre_and_temperatures():
    # One teacher view, two student views; the centre cancels the teacher logits -> uniform q.
    t = jnp.array([[[3.0, 1.0, 2.0]]])
    s = jnp.array([[[9.0, 9.0, 9.0]], [[0.0, 0.0, 0.1]]])
    got = dino_loss(s, t, jnp.array([3.0, 1.0, 2.0]), student_temp=0.1, teacher_temp=0.04)
    # Only pair (t=0, s=1): log p = [0, 0, 1] - logsumexp([0, 0, 1]); H(uniform, p) = lse - 1/3.
    lse = math.log(2 + math.e)
    np.testing.assert_allclose(float(got), lse - 1 / 3, rtol=1e-6)


@pytest.mark.parametrize("num_student,num_teacher", [(4, 2), (3, 3), (2, 1)])
def test_matches_explicit_pair_loop(num_student, num_teacher):
    s = _random((num_student, 3, 7), 0, 3.0)
    t = _random((num_teacher, 3, 7), 1, 0.3)
    c = _random((7,), 2, 0.1)
    got = jax.jit(dino_loss)(s, t, c)
    expected = _np_dino_loss(s, t, c, 0.1, 0.04)
    np.testing.assert_allclose(float(got), expected, rtol=2e-5)


def test_gradient_matches_finite_differences():
    t, c = _random((2, 2, 4), 1), _random((4,), 2, 0.1)
    f = lambda s: dino_loss(s, t, c, student_temp=0.5, teacher_temp=0.3)
    check_grads(f, (_random((3, 2, 4), 0),), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


def test_no_gradient_to_teacher_or_centre():
    s, t, c = _random((3, 2, 4), 0), _random((2, 2, 4), 1), _random((4,), 2)
    g_t, g_c = jax.grad(dino_loss, argnums=(1, 2))(s, t, c)
    chex.assert_trees_all_equal((g_t, g_c), (jnp.zeros_like(t), jnp.zeros_like(c)))


def test_traced_teacher_temperature_under_jit():
    s, t, c = _random((3, 2, 4), 0), _random((2, 2, 4), 1), jnp.zeros(4)
    f = jax.jit(lambda temp: dino_loss(s, t, c, teacher_temp=temp))
    np.testing.assert_allclose(float(f(0.07)), _np_dino_loss(s, t, c, 0.1, 0.07), rtol=2e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_extreme_logits_are_finite(dtype):
    # One-hot teacher/student probabilities; student puts ~0 mass on the teacher's class.
    s = jnp.array([[[1e4, -1e4, 0.0]], [[-1e4, 1e4, 0.0]], [[0.0, 0.0, 1e4]]], dtype)
    t = jnp.array([[[1e4, -1e4, 0.0]], [[-1e4, 1e4, 0.0]]], dtype)
    loss, grad = jax.value_and_grad(dino_loss)(s, t, jnp.zeros(3, dtype))
    assert loss.dtype == jnp.float32
    chex.assert_tree_all_finite((loss, grad))
    assert grad.dtype == dtype
    # Pairs (0,1), (1,0): H = (1e4 - (-1e4)) / 0.1 = 2e5; pairs with s=2: 1e5 each.
    np.testing.assert_allclose(float(loss), (2 * 2e5 + 2 * 1e5) / 4, rtol=1e-2)


def test_bfloat16_matches_float32():
    s, t, c = _random((4, 3, 5), 0), _random((2, 3, 5), 1), _random((5,), 2)
    f32 = dino_loss(s, t, c)
    bf16 = dino_loss(s.astype(jnp.bfloat16), t.astype(jnp.bfloat16), c.astype(jnp.bfloat16))
    assert bf16.dtype == jnp.float32
    np.testing.assert_allclose(float(bf16), float(f32), rtol=5e-2)


def test_update_center_matches_numpy():
    t = _random((2, 5, 3), 0)
    c = _random((3,), 1)
    got = jax.jit(update_center, static_argnames="momentum")(c, t, momentum=0.8)
    expected = 0.8 * np.asarray(c) + 0.2 * np.asarray(t).reshape(-1, 3).mean(0)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
    # Momentum 1 keeps the centre, 0 replaces it by the batch mean.
    np.testing.assert_allclose(np.asarray(update_center(c, t, momentum=1.0)), np.asarray(c))
    np.testing.assert_allclose(
        np.asarray(update_center(c, t, momentum=0.0)), np.asarray(t).mean((0, 1)), rtol=1e-6
    )


def _mesh():
    return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def test_shard_map_equals_single_device():
    s, t, c = _random((3, 16, 5), 0, 2.0), _random((2, 16, 5), 1), _random((5,), 2, 0.1)

    def per_device(s, t, c):
        loss, grad = jax.value_and_grad(
            lambda s: dino_loss(s, t, c, axis_name="data")
        )(s)
        return loss, grad, update_center(c, t, axis_name="data")

    sharded = jax.jit(jax.shard_map(
        per_device, mesh=_mesh(),
        in_specs=(P(None, "data"), P(None, "data"), P()),
        out_specs=(P(), P(None, "data"), P()),
    ))
    loss, grad, center = sharded(s, t, c)
    ref_loss, ref_grad = jax.value_and_grad(dino_loss)(s, t, c)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
    # Each shard's gradient is the single-device gradient restricted to that shard.
    np.testing.assert_allclose(np.asarray(grad), np.asarray(ref_grad), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(center), np.asarray(update_center(c, t)), rtol=1e-6)


def test_sharded_loss_without_axis_name_is_local():
    # Guard against a silently global loss: without axis_name each device sees only its shard.
    s, t, c = _random((3, 16, 5), 0, 2.0), _random((2, 16, 5), 1), jnp.zeros(5)
    local = jax.jit(jax.shard_map(
        lambda s, t, c: dino_loss(s, t, c)[None], mesh=_mesh(),
        in_specs=(P(None, "data"), P(None, "data"), P()), out_specs=P("data"),
    ))(s, t, c)
    expected = [float(dino_loss(s[:, 2 * i:2 * i + 2], t[:, 2 * i:2 * i + 2], c)) for i in range(8)]
    np.testing.assert_allclose(np.asarray(local), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(student_logits=jnp.zeros((3, 4))), "student_logits"),
        (dict(teacher_logits=jnp.zeros((2, 2, 2, 4))), "teacher_logits"),
        (dict(center=jnp.zeros((1, 4))), "center"),
        (dict(teacher_logits=jnp.zeros((2, 3, 4))), "batch size"),
        (dict(center=jnp.zeros(5)), "center"),
        (dict(teacher_logits=jnp.zeros((2, 2, 5)), center=jnp.zeros(5)), "teacher_logits"),
        (dict(student_logits=jnp.zeros((1, 2, 4))), "student_logits"),
        (dict(student_logits=jnp.zeros((1, 2, 4)), teacher_logits=jnp.zeros((1, 2, 4))),
         "student_logits"),
        (dict(teacher_logits=jnp.zeros((0, 2, 4))), "teacher_logits"),
        (dict(student_temp=0.0), "student_temp"),
        (dict(teacher_temp=-0.04), "teacher_temp"),
    ],
)
def test_dino_loss_value_errors(kwargs, match):
    args = dict(
        student_logits=jnp.zeros((3, 2, 4)), teacher_logits=jnp.zeros((2, 2, 4)),
        center=jnp.zeros(4),
    )
    args.update(kwargs)
    s, t, c = args.pop("student_logits"), args.pop("teacher_logits"), args.pop("center")
    with pytest.raises(ValueError, match=match):
        dino_loss(s, t, c, **args)


@pytest.mark.parametrize(
    "center,teacher,momentum,match",
    [
        (jnp.zeros(4), jnp.zeros((2, 2, 4)), 1.5, "momentum"),
        (jnp.zeros(4), jnp.zeros((2, 2, 4)), -0.1, "momentum"),
        (jnp.zeros(5), jnp.zeros((2, 2, 4)), 0.9, "center"),
        (jnp.zeros((4, 1)), jnp.zeros((2, 2, 4)), 0.9, "center"),
        (jnp.zeros(4), jnp.zeros((2, 4)), 0.9, "teacher_logits"),
    ],
)
def test_update_center_value_errors(center, teacher, momentum, match):
    with pytest.raises(ValueError, match=match):
        update_center(center, teacher, momentum=momentum)
