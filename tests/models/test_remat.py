"""``remat=True`` (activation rematerialisation, ``model.remat``) changes memory, not results:
same parameter tree, same outputs, same gradients and BatchNorm statistics."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.models import ResNet, VisionTransformer
from jaxssl.train.defaults import base_config


def _grads(model, variables, x, **kwargs):
    """(output, d sum(out^2) / d params, new batch_stats) of one forward + backward pass."""
    mutable = ["batch_stats"] if "batch_stats" in variables else False

    def loss(params):
        out = model.apply({**variables, "params": params}, x, mutable=mutable, **kwargs)
        out, updates = out if mutable else (out, {})
        return jnp.sum(jnp.square(out.astype(jnp.float32))), (out, updates)

    (_, (out, updates)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
        variables["params"])
    return out, grads, updates


def test_vit_remat_same_outputs_and_gradients_with_drop_path():
    kw = dict(patch_size=4, embed_dim=16, depth=2, num_heads=2, img_size=16, drop_path_rate=0.5)
    plain, remat = VisionTransformer(**kw), VisionTransformer(**kw, remat=True)
    x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
    variables = plain.init(jax.random.key(0), x)
    # Same parameter paths and shapes: checkpoints and exports do not see the switch.
    chex.assert_trees_all_equal_shapes(variables, remat.init(jax.random.key(0), x))
    rngs = {"dropout": jax.random.key(2)}  # stochastic depth active in the second block
    ref = _grads(plain, variables, x, deterministic=False, rngs=rngs)
    out = _grads(remat, variables, x, deterministic=False, rngs=rngs)
    # Rematerialisation recomputes the same operations with the same dropout key.
    chex.assert_trees_all_close(out, ref, rtol=1e-6, atol=1e-7)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(ref[1])) > 0
    # A different key gives a different result, so the comparison above saw drop path at work.
    other = _grads(plain, variables, x, deterministic=False, rngs={"dropout": jax.random.key(5)})
    assert not np.allclose(other[0], ref[0], atol=1e-5)


def test_resnet_bottleneck_remat_same_outputs_gradients_and_batch_stats():
    kw = dict(stage_sizes=(1, 1), block="bottleneck", width=4, small_stem=True)
    plain, remat = ResNet(**kw), ResNet(**kw, remat=True)
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
    variables = plain.init(jax.random.key(0), x)
    chex.assert_trees_all_equal_shapes(variables, remat.init(jax.random.key(0), x))
    ref = _grads(plain, variables, x, train=True)
    out = _grads(remat, variables, x, train=True)
    chex.assert_trees_all_close(out, ref, rtol=1e-6, atol=1e-7)
    # The running statistics moved (batch-statistics mode ran inside the rematerialised blocks).
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                         ref[2]["batch_stats"], variables["batch_stats"])
    assert max(jax.tree.leaves(moved)) > 0
    # Eval mode too.
    chex.assert_trees_all_close(remat.apply(variables, x), plain.apply(variables, x),
                                rtol=1e-6, atol=1e-7)


def test_config_switch_reaches_the_backbone():
    from jaxssl.methods.common import build_backbone

    c = base_config()
    assert c.model.remat is False
    assert build_backbone(c).remat is False
    c.model.remat = True
    assert build_backbone(c).remat is True
    c.model.backbone = "resnet_tiny"
    assert build_backbone(c).remat is True


def test_validation_names_the_fields():
    from jaxssl.train.validate import validate_config

    c = base_config()
    c.model.remat = None
    with pytest.raises(ValueError, match=r"config\.model\.remat: must be True or False"):
        validate_config(c)
    c.model.remat = False
    c.model.drop_path_rate = 1.0
    with pytest.raises(ValueError, match=r"config\.model\.drop_path_rate: got 1\.0, allowed"):
        validate_config(c)
