"""iBOT patch loss and patch centre: explicit loops over masked patches, sharding, edge cases."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from jaxssl.losses.ibot import ibot_patch_loss, update_patch_center


def _np_ibot_loss(student, teacher, masks, center, student_temp, teacher_temp):
    """Explicit loops: per image, mean H(q, p) over its masked patches; then mean over images."""
    student, teacher, center = (np.asarray(a, np.float64) for a in (student, teacher, center))
    masks = np.asarray(masks)
    num_views, batch, num_patches, _ = student.shape
    per_image = []
    for g in range(num_views):
        for b in range(batch):
            terms = []
            for n in range(num_patches):
                if not masks[g, b, n]:
                    continue
                t = (teacher[g, b, n] - center) / teacher_temp
                q = np.exp(t - t.max()) / np.exp(t - t.max()).sum()
                s = student[g, b, n] / student_temp
                log_p = s - s.max() - np.log(np.exp(s - s.max()).sum())
                terms.append(-np.sum(q * log_p))
            per_image.append(np.mean(terms) if terms else 0.0)
    return np.mean(per_image)


def _random(shape, seed, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale, jnp.float32)


def _masks(shape, seed, ratio=0.4):
    return jnp.asarray(np.random.default_rng(seed).random(shape) < ratio)


def test_hand_derived_value():
    # G=1, B=2, N=2, K=2, temperatures 1. Image 0: both patches masked; image 1: none.
    s = jnp.array([[[[0.0, 0.0], [1.0, 0.0]], [[5.0, 5.0], [5.0, 5.0]]]])
    t = jnp.array([[[[1.0, 0.0], [0.0, 0.0]], [[9.0, 0.0], [9.0, 0.0]]]])
    m = jnp.array([[[True, True], [False, False]]])
    got = ibot_patch_loss(s, t, m, jnp.zeros(2), student_temp=1.0, teacher_temp=1.0)
    # Patch 0: student uniform -> log 2. Patch 1: q uniform, log p = [1, 0] - log(1 + e).
    patch1 = math.log(1 + math.e) - 0.5
    expected = ((math.log(2) + patch1) / 2 + 0.0) / 2  # image 1 contributes 0, still counted
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)


def test_matches_explicit_loops():
    shape = (2, 3, 5, 6)
    s, t, c = _random(shape, 0, 3.0), _random(shape, 1, 0.3), _random((6,), 2, 0.1)
    masks = _masks(shape[:3], 3).at[0, 1].set(False)  # one image with no masked patch
    got = jax.jit(ibot_patch_loss)(s, t, masks, c)
    np.testing.assert_allclose(float(got), _np_ibot_loss(s, t, masks, c, 0.1, 0.04), rtol=2e-5)


def test_only_masked_patches_matter():
    shape = (2, 2, 4, 3)
    s, t, c = _random(shape, 0), _random(shape, 1), jnp.zeros(3)
    masks = _masks(shape[:3], 2, 0.5)
    changed = jnp.where(masks[..., None], s, s + 100.0 * _random(shape, 4))
    np.testing.assert_allclose(
        float(ibot_patch_loss(changed, t, masks, c)), float(ibot_patch_loss(s, t, masks, c)),
        rtol=1e-6,
    )


def test_all_false_masks_give_zero_without_nan():
    shape = (2, 2, 3, 4)
    s, t = _random(shape, 0), _random(shape, 1)
    masks = jnp.zeros(shape[:3], bool)
    loss, grad = jax.value_and_grad(ibot_patch_loss)(s, t, masks, jnp.zeros(4))
    assert float(loss) == 0.0
    chex.assert_trees_all_equal(grad, jnp.zeros_like(s))


def test_gradients():
    shape = (1, 2, 3, 4)
    t, c = _random(shape, 1), _random((4,), 2, 0.1)
    masks = jnp.array([[[True, False, True], [False, True, True]]])
    f = lambda s: ibot_patch_loss(s, t, masks, c, student_temp=0.5, teacher_temp=0.3)
    check_grads(f, (_random(shape, 0),), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)
    s = _random(shape, 0)
    g_t, g_c = jax.grad(ibot_patch_loss, argnums=(1, 3))(s, t, masks, c)
    chex.assert_trees_all_equal((g_t, g_c), (jnp.zeros_like(t), jnp.zeros_like(c)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_extreme_logits_are_finite(dtype):
    s = jnp.array([[[[1e4, -1e4], [-1e4, 1e4]]]], dtype)
    t = jnp.array([[[[-1e4, 1e4], [-1e4, 1e4]]]], dtype)
    masks = jnp.array([[[True, True]]])
    loss, grad = jax.value_and_grad(ibot_patch_loss)(s, t, masks, jnp.zeros(2, dtype))
    assert loss.dtype == jnp.float32
    chex.assert_tree_all_finite((loss, grad))
    # Patch 0: the student gives the teacher's class log p = -2e4 / 0.1; patch 1 is exact.
    np.testing.assert_allclose(float(loss), 2e5 / 2, rtol=1e-2)


def test_update_patch_center_matches_numpy():
    t, c = _random((2, 3, 4, 5), 0), _random((5,), 1)
    got = update_patch_center(c, t, momentum=0.7)
    expected = 0.7 * np.asarray(c) + 0.3 * np.asarray(t).reshape(-1, 5).mean(0)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)


def test_shard_map_equals_single_device():
    shape = (2, 16, 3, 5)
    s, t, c = _random(shape, 0, 2.0), _random(shape, 1), _random((5,), 2, 0.1)
    masks = _masks(shape[:3], 3).at[1, 5].set(False)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))

    def per_device(s, t, m, c):
        loss, grad = jax.value_and_grad(
            lambda s: ibot_patch_loss(s, t, m, c, axis_name="data")
        )(s)
        return loss, grad, update_patch_center(c, t, axis_name="data")

    batch = P(None, "data")
    sharded = jax.jit(jax.shard_map(
        per_device, mesh=mesh, in_specs=(batch, batch, batch, P()), out_specs=(P(), batch, P()),
    ))
    loss, grad, center = sharded(s, t, masks, c)
    ref_loss, ref_grad = jax.value_and_grad(ibot_patch_loss)(s, t, masks, c)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(ref_grad), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        np.asarray(center), np.asarray(update_patch_center(c, t)), rtol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(student=jnp.zeros((2, 2, 3))), "student_patch_logits"),
        (dict(teacher=jnp.zeros((2, 2, 3))), "teacher_patch_logits"),
        (dict(teacher=jnp.zeros((1, 2, 3, 4))), "teacher_patch_logits"),
        (dict(masks=jnp.zeros((2, 2, 4), bool)), "masks"),
        (dict(masks=jnp.zeros((2, 2), bool)), "masks"),
        (dict(center=jnp.zeros(5)), "center"),
        (dict(center=jnp.zeros((4, 1))), "center"),
        (dict(student_temp=0.0), "student_temp"),
        (dict(teacher_temp=-1.0), "teacher_temp"),
    ],
)
def test_ibot_patch_loss_value_errors(kwargs, match):
    args = dict(
        student=jnp.zeros((2, 2, 3, 4)), teacher=jnp.zeros((2, 2, 3, 4)),
        masks=jnp.zeros((2, 2, 3), bool), center=jnp.zeros(4),
    )
    args.update(kwargs)
    arrays = [args.pop(k) for k in ("student", "teacher", "masks", "center")]
    with pytest.raises(ValueError, match=match):
        ibot_patch_loss(*arrays, **args)


@pytest.mark.parametrize(
    "center,teacher,momentum,match",
    [
        (jnp.zeros(4), jnp.zeros((1, 2, 3, 4)), 2.0, "momentum"),
        (jnp.zeros(3), jnp.zeros((1, 2, 3, 4)), 0.9, "center"),
        (jnp.zeros(4), jnp.zeros((2, 3, 4)), 0.9, "teacher_patch_logits"),
    ],
)
def test_update_patch_center_value_errors(center, teacher, momentum, match):
    with pytest.raises(ValueError, match=match):
        update_patch_center(center, teacher, momentum=momentum)
