"""Registries: names, overrides, errors."""

import jax.numpy as jnp
import pytest

from jaxssl.models import BACKBONES, create_backbone

EXPECTED_BACKBONES = {
    "resnet18": 512,
    "resnet50": 2048,
    "resnet_tiny": 256,
    "vit_tiny": 192,
    "vit_small": 384,
    "vit_base": 768,
    "vit_nano": 128,
}


def test_backbone_names_and_feature_dims():
    assert set(BACKBONES) == set(EXPECTED_BACKBONES)
    for name, dim in EXPECTED_BACKBONES.items():
        assert create_backbone(name).num_features == dim


def test_backbone_overrides_reach_the_module():
    vit = create_backbone("vit_small", patch_size=8, img_size=96, drop_path_rate=0.1)
    assert (vit.patch_size, vit.img_size, vit.drop_path_rate, vit.grid_size) == (8, 96, 0.1, 12)
    rn = create_backbone("resnet50", small_stem=True, zero_init_residual=True, dtype=jnp.bfloat16)
    assert rn.small_stem and rn.zero_init_residual and rn.dtype == jnp.bfloat16


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match="unknown backbone name 'resnet51'") as info:
        create_backbone("resnet51")
    for name in EXPECTED_BACKBONES:
        assert name in str(info.value)
