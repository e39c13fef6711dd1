"""Name -> factory registries for backbones and heads, used by configs and recipes.

Backbones: ``resnet18``, ``resnet50``, ``resnet_tiny``, ``vit_tiny``, ``vit_small``, ``vit_base``,
``vit_nano``. Heads: ``dino``, ``carp``, ``excb_projector``, ``excb_predictor``, ``centroids``,
``msn``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn

from jaxssl.models.heads import (
    CARPHead,
    CentroidLayer,
    DINOHead,
    ExCBPredictor,
    ExCBProjector,
    MSNHead,
)
from jaxssl.models.resnet import resnet18, resnet50, resnet_tiny
from jaxssl.models.vit import vit_base, vit_nano, vit_small, vit_tiny

BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnet_tiny": resnet_tiny,
    "vit_tiny": vit_tiny,
    "vit_small": vit_small,
    "vit_base": vit_base,
    "vit_nano": vit_nano,
}

HEADS: dict[str, Callable[..., nn.Module]] = {
    "dino": DINOHead,
    "carp": CARPHead,
    "excb_projector": ExCBProjector,
    "excb_predictor": ExCBPredictor,
    "centroids": CentroidLayer,
    "msn": MSNHead,
}


def _lookup(kind: str, table: dict[str, Callable[..., nn.Module]], name: str) -> Callable:
    if name not in table:
        raise ValueError(f"unknown {kind} name {name!r}; valid names: {', '.join(sorted(table))}")
    return table[name]


def create_backbone(name: str, **overrides: Any) -> nn.Module:
    """Builds the backbone registered as ``name``; ``overrides`` set its attributes.

    >>> create_backbone("vit_small", patch_size=8, drop_path_rate=0.1).num_features
    384
    >>> create_backbone("resnet_tiny").num_features
    256
    """
    return _lookup("backbone", BACKBONES, name)(**overrides)


def create_head(name: str, **kwargs: Any) -> nn.Module:
    """Builds the head registered as ``name`` with constructor arguments ``kwargs``.

    >>> create_head("dino", num_prototypes=16).norm_last_layer
    True
    """
    return _lookup("head", HEADS, name)(**kwargs)
