"""``eval.features``: what Method.embed returns, checked against the backbone run by hand.

"cls" is the backbone's output; "cls_avgpool" (ViT only) is that CLS token next to the mean of
the final-norm patch tokens, which the test computes independently from the backbone module
applied alone with ``return_patch_tokens=True``. ExCB has its own model class, DINO the shared
``BackboneHead``: both are covered. A ResNet with "cls_avgpool" is refused up front.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.methods.registry import build_method
from jaxssl.train.init_state import create_train_state
from jaxssl.train.optim import make_optimizer
from jaxssl.train.recipes import tiny
from jaxssl.train.validate import validate_config


@pytest.mark.parametrize("method", ["dino", "excb"])
def test_cls_avgpool_is_cls_next_to_mean_patch_token(method):
    c = tiny(method)
    c.eval.features = "cls"  # tiny ViTs embed "cls_avgpool" by default, like the CPU recipes
    m = build_method(c)
    state = create_train_state(m, c, make_optimizer(c.optim), jax.random.key(0), 10)
    p, bs = state.teacher_params, state.teacher_batch_stats
    x = jax.random.normal(jax.random.key(1), (3, 16, 16, 3))
    cls = np.asarray(m.embed(p, bs, x))
    c.eval.features = "cls_avgpool"
    both = np.asarray(build_method(c).embed(p, bs, x))
    d = cls.shape[1]
    assert both.shape == (3, 2 * d)
    # The backbone alone, run by hand: its CLS output and the mean of its patch tokens.
    vit_cls, tokens = m.model.backbone.apply({"params": p["backbone"]}, x, train=False,
                                             deterministic=True, return_patch_tokens=True)
    np.testing.assert_allclose(both[:, :d], vit_cls, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(both[:, :d], cls, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(both[:, d:], jnp.mean(tokens, axis=1), rtol=1e-5, atol=1e-6)
    assert tokens.shape[1] > 1 and not np.allclose(both[:, d:], both[:, :d])


def test_cls_avgpool_needs_a_vit():
    c = tiny("excb")
    assert c.eval.features == "cls_avgpool"  # a ViT recipe's default
    c.model.backbone = "resnet18"
    with pytest.raises(ValueError, match="eval.features"):
        validate_config(c, num_devices=1, num_processes=1)
    c.eval.features = "mean"
    c.model.backbone = tiny("excb").model.backbone
    with pytest.raises(ValueError, match="eval.features.*got 'mean'"):
        validate_config(c, num_devices=1, num_processes=1)
