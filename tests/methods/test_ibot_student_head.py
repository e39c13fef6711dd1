"""iBOT's student runs its head on the masked patch tokens only (jaxssl.methods.dino). Its loss
and gradients must equal the dense formulation, the head on every patch token with the
unmasked ones weighted 0 (iBOT's L_MIM, Sec. 3.2)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.data.masks import ibot_masks
from jaxssl.methods import dino as dino_module
from jaxssl.methods.base import LossInputs
from jaxssl.methods.dino import DINO
from jaxssl.train.recipes import tiny

BATCH = 8


def _inputs(method, params, seed):
    c = method.config
    g = c.data.global_crops
    rng = np.random.default_rng(seed)
    side = g.size // c.model.backbone_kwargs.patch_size
    # Masks as the trainer draws them, but every crop masked, so most crops carry patch loss.
    mask = ibot_masks(seed, 0, BATCH, g.num, (side, side), mask_probability=1.0)
    views = {"global": jnp.asarray(rng.normal(size=(BATCH, g.num, g.size, g.size, 3)),
                                   jnp.float32),
             "mask": jnp.asarray(mask)}
    teacher, _ = method.teacher(params, {}, views, {})
    hyper = {"teacher_temp": jnp.float32(0.04)}
    targets = method.targets(params, teacher, method.initial_state(), hyper, {})
    state = {"center": 0.1 * jnp.asarray(rng.normal(size=(c.head.num_prototypes,)),
                                         jnp.float32),
             "patch_center": 0.1 * jnp.asarray(rng.normal(size=(c.head.num_prototypes,)),
                                               jnp.float32)}
    return LossInputs(views, targets.per_sample, {}, state, hyper, {}, jax.random.key(seed)), mask


@pytest.mark.parametrize("seed", [0, 1])
def test_masked_token_head_gives_the_dense_loss_and_gradients(seed):
    c = tiny("ibot")
    c.data.local_crops.num = 0  # the patch loss concerns the global views only
    method = DINO(c)
    assert method.student_patch_tokens == 8  # int(0.5 * 16): half of the 4 x 4 patches
    g = c.data.global_crops
    example = {"global": jnp.zeros((2, g.num, g.size, g.size, 3))}
    params, _, _ = method.init(jax.random.key(seed), example)
    inputs, mask = _inputs(method, params, seed)
    assert mask.sum(-1).max() > 1 and (mask.sum(-1) < mask.shape[-1]).all()

    def run(tokens):
        method.student_patch_tokens = tokens
        (loss, out), grads = jax.value_and_grad(
            lambda p: (lambda o: (o.loss, o))(method.loss(p, inputs)), has_aux=True)(params)
        return loss, out.metrics["patch_loss"], grads

    loss_m, patch_m, grads_m = run(8)
    loss_d, patch_d, grads_d = run(None)
    assert float(patch_d) > 0.1  # a real patch loss, not an empty mask
    np.testing.assert_allclose(float(patch_m), float(patch_d), rtol=1e-5)
    np.testing.assert_allclose(float(loss_m), float(loss_d), rtol=1e-5)
    chex.assert_trees_all_close(grads_m, grads_d, rtol=2e-4, atol=1e-6)


def test_student_head_sees_every_token_where_the_bound_saves_nothing_or_bn_is_on():
    c = tiny("ibot")
    c.loss.mask_ratio = (0.1, 1.0)
    assert DINO(c).student_patch_tokens is None  # a crop may be fully masked
    c = tiny("ibot")
    c.head.use_bn = True
    assert DINO(c).student_patch_tokens is None  # a subset would change the BN statistics
    assert DINO(tiny("dino")).student_patch_tokens is None


def test_prepare_batch_refuses_masks_above_the_bound(monkeypatch):
    c = tiny("ibot")
    method = DINO(c)
    monkeypatch.setattr(dino_module, "ibot_masks",
                        lambda seed, step, b, v, grid, **kw: np.ones((b, v, grid[0] * grid[1]),
                                                                     bool))
    with pytest.raises(ValueError, match=r"16 masked patches, more than the 8"):
        method.prepare_batch({"index": np.arange(4)}, 7)
