"""Parameter counts and output shapes of the full-size backbones, via jax.eval_shape (no real init).

The expected counts are the published ones: torchvision / timm totals minus their classifier,
counting weights and BN scale/bias but not buffers (BN running statistics).
"""

import jax
import jax.numpy as jnp
import pytest

from jaxssl.models import resnet18, resnet50, vit_base, vit_small


def _abstract_variables(model, image_size):
    return jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((2, image_size, image_size, 3)))
    )


def _num_params(variables):
    return sum(leaf.size for leaf in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize(
    "factory, expected",
    [
        (resnet50, 25_557_032 - 2_049_000),  # torchvision resnet50 minus fc (2048*1000 + 1000)
        (resnet18, 11_689_512 - 513_000),  # torchvision resnet18 minus fc (512*1000 + 1000)
    ],
)
def test_resnet_param_count_matches_torchvision(factory, expected):
    assert _num_params(_abstract_variables(factory(), 224)) == expected


@pytest.mark.parametrize(
    "factory, expected, dim",
    [
        (vit_small, 21_665_664, 384),  # timm vit_small_patch16_224 without its 1000-class head
        (vit_base, 86_567_656 - 769_000, 768),  # timm vit_base_patch16_224 minus 768*1000 + 1000
    ],
)
def test_vit_param_count_matches_timm(factory, expected, dim):
    assert _num_params(_abstract_variables(factory(use_mask_token=False), 224)) == expected
    # The iBOT mask token adds exactly one D-vector.
    assert _num_params(_abstract_variables(factory(), 224)) == expected + dim


def test_resnet_batch_stats_are_not_params():
    variables = _abstract_variables(resnet50(), 224)
    # 53 BN layers in ResNet-50 (1 stem + 16 blocks x 3 + 4 downsample), each with mean and var.
    bn_stats = jax.tree.leaves(variables["batch_stats"])
    assert len(bn_stats) == 2 * 53


@pytest.mark.parametrize("image_size", [224, 96])
@pytest.mark.parametrize(
    "factory, dim", [(resnet50, 2048), (resnet18, 512), (vit_small, 384), (vit_base, 768)]
)
def test_full_size_output_shapes(factory, dim, image_size):
    model = factory()
    assert model.num_features == dim
    # The 224-px model is initialised once and applied to both sizes (96 px = multi-crop locals).
    variables = _abstract_variables(model, 224)
    x = jax.ShapeDtypeStruct((3, image_size, image_size, 3), jnp.float32)
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
    assert out.shape == (3, dim)
    assert out.dtype == jnp.float32


def test_vit_patch_token_shapes_at_96px():
    model = vit_small()
    variables = _abstract_variables(model, 224)
    x = jax.ShapeDtypeStruct((2, 96, 96, 3), jnp.float32)
    cls, tokens = jax.eval_shape(
        lambda v, x: model.apply(v, x, return_patch_tokens=True), variables, x
    )
    assert cls.shape == (2, 384)
    assert tokens.shape == (2, (96 // 16) ** 2, 384)
