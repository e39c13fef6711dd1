"""Name -> factory registry of the backbones (``config.model.backbone``).

Backbones: ``resnet18``, ``resnet50``, ``resnet_tiny``, ``vit_tiny``, ``vit_small``, ``vit_base``,
``vit_nano``. Heads have no registry: each method builds its own (``jaxssl.methods``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn

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
