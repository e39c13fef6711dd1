"""Pieces several methods share: building the backbone and a backbone + head model."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.methods.base import EVAL_FEATURES
from jaxssl.models import create_backbone
from jaxssl.ops import confidence

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config: ml_collections.ConfigDict):
    """The configured compute dtype (parameters always stay float32)."""
    return DTYPES[config.model.dtype]


def build_backbone(config: ml_collections.ConfigDict) -> nn.Module:
    """The backbone named by ``config.model.backbone`` with the configured dtype and overrides."""
    kwargs = dict(config.model.backbone_kwargs)
    kwargs.setdefault("dtype", compute_dtype(config))
    if config.model.drop_path_rate:
        kwargs.setdefault("drop_path_rate", config.model.drop_path_rate)
    if config.model.remat:
        kwargs.setdefault("remat", True)
    if config.model.gelu_approximate:  # ViT only (validated)
        kwargs.setdefault("gelu_approximate", True)
    return create_backbone(config.model.backbone, **kwargs)


def backbone_head(config: ml_collections.ConfigDict, head: type[nn.Module], **head_kwargs
                  ) -> BackboneHead:
    """The configured backbone followed by ``head(num_prototypes=K, hidden_dim=..., dtype=...,
    **head_kwargs)`` with K, the hidden width and the compute dtype from the config."""
    h = config.head
    return BackboneHead(backbone=build_backbone(config),
                        head=head(num_prototypes=h.num_prototypes, hidden_dim=h.hidden_dim,
                                  dtype=compute_dtype(config), **head_kwargs))


def is_vit(backbone: nn.Module) -> bool:
    """Whether the backbone takes patch tokens (MSN patch dropping, iBOT masking)."""
    return hasattr(backbone, "patch_size")


def config_is_vit(config: ml_collections.ConfigDict) -> bool:
    """Whether ``config.model.backbone`` names a ViT, read from the config alone (validation runs
    before anything is built).

    >>> from ml_collections import ConfigDict
    >>> config_is_vit(ConfigDict({"model": {"backbone": "vit_small"}}))
    True
    """
    return config.model.backbone.startswith("vit")


def eval_features_problem(features: str, config: ml_collections.ConfigDict) -> str | None:
    """Why ``features`` cannot be the evaluation feature of ``config``'s backbone; None when it
    can. The one check behind both ``eval.features`` validation and ``jaxssl.eval --features``.

    >>> from ml_collections import ConfigDict
    >>> eval_features_problem("cls_avgpool", ConfigDict({"model": {"backbone": "vit_tiny"}}))
    >>> print(eval_features_problem("cls_avgpool", ConfigDict({"model": {"backbone": "resnet18"}})))
    must be one of ('cls', 'cls_avgpool') ('cls_avgpool': ViT backbones only; backbone is
    'resnet18'), got 'cls_avgpool'.
    """
    if features not in EVAL_FEATURES or (features == "cls_avgpool"
                                         and not config_is_vit(config)):
        return (f"must be one of {EVAL_FEATURES} ('cls_avgpool': ViT backbones only; backbone "
                f"is {config.model.backbone!r}), got {features!r}.")
    return None


class BackboneFeatures:
    """Mixin for a method's Flax model with a ``backbone`` field: ``features`` returns the
    backbone's output, the representation that evaluation and export read (``Method.embed``).

    Backbone keyword arguments pass through, e.g. ``return_patch_tokens=True`` (ViT) for
    ``eval.features="cls_avgpool"``.
    """

    def features(self, x, *, train: bool = False, deterministic: bool | None = None,
                 **backbone_kwargs):
        return self.backbone(x, train=train, deterministic=deterministic, **backbone_kwargs)


class BackboneHead(BackboneFeatures, nn.Module):
    """Backbone followed by a head; the backbone's ViT-only keyword arguments pass through.

    ``train`` selects BatchNorm batch statistics, ``deterministic`` turns stochastic depth off
    (``None``: ``not train``); only the backbone has stochastic layers. ``patches=True`` (ViT)
    returns ``(head(CLS) [B, K], head(patch tokens) [B, N, K])``; with ``patch_index`` (int
    ``[B, M]``) the second is ``[B, M, K]``, the head run on those patch tokens only.
    """

    backbone: nn.Module
    head: nn.Module

    def __call__(self, x, *, train: bool = False, deterministic: bool | None = None,
                 patches: bool = False, patch_index: jax.Array | None = None,
                 **backbone_kwargs):
        if patches:
            cls, tokens = self.backbone(x, train=train, deterministic=deterministic,
                                        return_patch_tokens=True, **backbone_kwargs)
            if patch_index is not None:
                # Only these tokens [B, M] go through the head (iBOT's student: the masked ones,
                # the only patches its loss reads); the backbone still sees every token.
                tokens = jnp.take_along_axis(tokens, patch_index[..., None], axis=1)
            return self.head(cls, train=train), self.head(tokens, train=train)
        feats = self.backbone(x, train=train, deterministic=deterministic, **backbone_kwargs)
        return self.head(feats, train=train)


def teacher_confidence(logits: jax.Array, temperature: jax.Array) -> jax.Array:
    """Mean over rows of the largest teacher probability: near 1/K means uniform collapse,
    near 1 means a sharp (possibly one-cluster) teacher. The one confidence function,
    ``jaxssl.ops.confidence.teacher_confidence``, of ``softmax(logits / temperature)``."""
    probs = jax.nn.softmax(logits.astype(jnp.float32) / temperature, axis=-1)
    return confidence.teacher_confidence(probs)
