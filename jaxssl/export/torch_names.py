"""Pure numpy mapping of jaxssl backbone variables to PyTorch state-dict names and layouts.

ResNets map to torchvision's ``resnet18`` / ``resnet50`` keys, ViTs to timm's
``vit_small_patch16_224`` (``num_classes=0``) keys; the naming tables are in the docstrings of
``jaxssl/models/resnet.py`` and ``jaxssl/models/vit.py``. Layout changes:

* convolution kernels: Flax HWIO [kh, kw, in, out] -> torch OIHW [out, in, kh, kw];
* dense kernels: Flax [in, out] -> torch ``nn.Linear.weight`` [out, in];
* the fused ``qkv`` projection needs only that transpose: our Attention reshapes its 3 * D outputs
  as (3, heads, head_dim), the order timm's ``qkv(x).reshape(B, N, 3, heads, head_dim)`` uses;
* LayerNorm / BatchNorm ``scale`` -> ``weight``; BatchNorm ``mean`` / ``var`` ->
  ``running_mean`` / ``running_var``, plus torch's ``num_batches_tracked`` counter.

Nothing here imports torch, so the mapping is testable without it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

RESNET_BACKBONES = ("resnet18", "resnet50", "resnet_tiny")
VIT_BACKBONES = ("vit_tiny", "vit_small", "vit_base", "vit_nano")


def backbone_family(name: str) -> str:
    """``"resnet"`` or ``"vit"`` for a registered backbone name; ValueError otherwise.

    >>> backbone_family("resnet50"), backbone_family("vit_small")
    ('resnet', 'vit')
    """
    if name in RESNET_BACKBONES:
        return "resnet"
    if name in VIT_BACKBONES:
        return "vit"
    raise ValueError(
        f"export: unsupported backbone {name!r}; torch export supports "
        f"{', '.join(RESNET_BACKBONES + VIT_BACKBONES)}"
    )


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts -> ``{"a/b/c": numpy array}`` in the tree's own key order.

    >>> flatten({"a": {"b": 1, "c": {"d": 2.0}}})
    {'a/b': array(1), 'a/c/d': array(2.)}
    """
    out: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, path))
        else:
            out[path] = np.asarray(value)
    return out


def _conv_weight(kernel: np.ndarray, path: str) -> np.ndarray:
    if kernel.ndim != 4:
        raise ValueError(f"export: {path} must be a 4-D HWIO conv kernel, got shape {kernel.shape}")
    return np.transpose(kernel, (3, 2, 0, 1))


def _linear_weight(kernel: np.ndarray, path: str) -> np.ndarray:
    if kernel.ndim != 2:
        raise ValueError(f"export: {path} must be a 2-D dense kernel, got shape {kernel.shape}")
    return kernel.T


_RESNET_MODULE = re.compile(r"^(conv\d|bn\d|layer\d+_\d+|downsample_conv|downsample_bn)$")
_BN_BUFFERS = {"mean": "running_mean", "var": "running_var"}


def _resnet_module_name(parts: list[str], path: str) -> str:
    names = []
    for part in parts:
        if not _RESNET_MODULE.match(part):
            raise ValueError(f"export: unexpected ResNet parameter path {path!r} (at {part!r})")
        # layer2_0 -> layer2.0; the shortcut is torchvision's Sequential(conv, bn).
        part = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(part, part)
        names.append(re.sub(r"^(layer\d+)_(\d+)$", r"\1.\2", part))
    return ".".join(names)


def resnet_state_dict(
    params: Mapping[str, Any], batch_stats: Mapping[str, Any], num_batches_tracked: int = 0
) -> dict[str, np.ndarray]:
    """torchvision ResNet state dict (no ``fc``) from our ResNet ``params`` and ``batch_stats``.

    ``num_batches_tracked`` fills torch's int64 BN counters (torch only reads them when its BN
    momentum is None). Keys come out in torchvision's registration order.

    >>> import numpy as np
    >>> p = {"conv1": {"kernel": np.zeros((7, 7, 3, 8))}, "bn1": {"scale": np.ones(8),
    ...      "bias": np.zeros(8)}}
    >>> s = {"bn1": {"mean": np.zeros(8), "var": np.ones(8)}}
    >>> {k: v.shape for k, v in resnet_state_dict(p, s).items()}  # doctest: +NORMALIZE_WHITESPACE
    {'conv1.weight': (8, 3, 7, 7), 'bn1.weight': (8,), 'bn1.bias': (8,),
     'bn1.running_mean': (8,), 'bn1.running_var': (8,), 'bn1.num_batches_tracked': ()}
    """
    out: dict[str, np.ndarray] = {}
    bn_modules = set()
    for path, value in flatten(params).items():
        *parts, leaf = path.split("/")
        module = _resnet_module_name(parts, path)
        if leaf == "kernel":
            out[f"{module}.weight"] = _conv_weight(value, path)
        elif leaf in ("scale", "bias"):
            out[f"{module}.{'weight' if leaf == 'scale' else 'bias'}"] = value
            bn_modules.add(module)
        else:
            raise ValueError(f"export: unexpected ResNet parameter {path!r}")
    for path, value in flatten(batch_stats).items():
        *parts, leaf = path.split("/")
        if leaf not in _BN_BUFFERS:
            raise ValueError(f"export: unexpected ResNet batch statistic {path!r}")
        out[f"{_resnet_module_name(parts, path)}.{_BN_BUFFERS[leaf]}"] = value
    for module in bn_modules:
        for buffer in _BN_BUFFERS.values():
            if f"{module}.{buffer}" not in out:
                raise ValueError(f"export: batch_stats lack {module} {buffer} (BN {module!r})")
        out[f"{module}.num_batches_tracked"] = np.asarray(num_batches_tracked, np.int64)
    return dict(sorted(out.items(), key=lambda kv: _torchvision_order(kv[0])))


# torchvision registers conv1, bn1, conv2, bn2, (conv3, bn3), downsample, then the stages; BN
# tensors as weight, bias, running_mean, running_var, num_batches_tracked.
_MODULE_RANK = {"conv1": 0, "bn1": 1, "conv2": 2, "bn2": 3, "conv3": 4, "bn3": 5, "downsample": 6}
_LEAF_RANK = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3,
              "num_batches_tracked": 4}


def _torchvision_order(key: str) -> tuple:
    rank = []
    for part in key.split("."):
        if part.isdigit():
            rank.append(int(part))
        elif part in _LEAF_RANK:
            rank.append(_LEAF_RANK[part])
        elif part.startswith("layer"):
            rank.append(100 + int(part[5:]))
        else:
            rank.append(_MODULE_RANK[part])
    return tuple(rank)


_VIT_LEAVES = {"kernel": "weight", "scale": "weight", "bias": "bias"}


def vit_state_dict(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """timm ``VisionTransformer(num_classes=0)`` state dict from our ViT ``params``.

    The iBOT ``mask_token`` has no timm counterpart and is left out.

    >>> import numpy as np
    >>> p = {"patch_embed_proj": {"kernel": np.zeros((16, 16, 3, 384)), "bias": np.zeros(384)},
    ...      "cls_token": np.zeros((1, 1, 384)), "pos_embed": np.zeros((1, 197, 384)),
    ...      "blocks_0": {"attn": {"qkv": {"kernel": np.zeros((384, 1152)),
    ...                                    "bias": np.zeros(1152)}}}}
    >>> {k: v.shape for k, v in vit_state_dict(p).items()}  # doctest: +NORMALIZE_WHITESPACE
    {'cls_token': (1, 1, 384), 'pos_embed': (1, 197, 384),
     'patch_embed.proj.weight': (384, 3, 16, 16), 'patch_embed.proj.bias': (384,),
     'blocks.0.attn.qkv.weight': (1152, 384), 'blocks.0.attn.qkv.bias': (1152,)}
    """
    tokens: dict[str, np.ndarray] = {}
    embed: dict[str, np.ndarray] = {}
    blocks: dict[tuple[int, str], np.ndarray] = {}
    final: dict[str, np.ndarray] = {}
    for path, value in flatten(params).items():
        parts = path.split("/")
        if path in ("cls_token", "pos_embed"):
            tokens[path] = value
        elif path == "mask_token":
            continue
        elif parts[0] == "patch_embed_proj" and len(parts) == 2 and parts[1] in _VIT_LEAVES:
            conv = _conv_weight(value, path) if parts[1] == "kernel" else value
            embed[f"patch_embed.proj.{_VIT_LEAVES[parts[1]]}"] = conv
        elif re.match(r"^blocks_\d+$", parts[0]) and len(parts) >= 3 and parts[-1] in _VIT_LEAVES:
            index = int(parts[0].split("_")[1])
            module = ".".join(parts[1:-1])
            if module not in ("norm1", "norm2", "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
                raise ValueError(f"export: unexpected ViT parameter path {path!r}")
            is_dense = parts[-1] == "kernel"
            weight = _linear_weight(value, path) if is_dense else value
            blocks[(index, f"{module}.{_VIT_LEAVES[parts[-1]]}")] = weight
        elif parts[0] == "norm" and len(parts) == 2 and parts[1] in ("scale", "bias"):
            final[f"norm.{_VIT_LEAVES[parts[1]]}"] = value
        else:
            raise ValueError(f"export: unexpected ViT parameter path {path!r}")
    # timm's registration order: tokens, patch embedding, blocks (norm1, attn, norm2, mlp), norm.
    block_rank = {name: r for r, name in enumerate(
        f"{m}.{leaf}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
        for leaf in ("weight", "bias"))}
    out = dict(sorted(tokens.items()))
    out.update(sorted(embed.items(), reverse=True))  # weight before bias
    for index, name in sorted(blocks, key=lambda k: (k[0], block_rank[k[1]])):
        out[f"blocks.{index}.{name}"] = blocks[(index, name)]
    out.update(sorted(final.items(), reverse=True))  # norm.weight, norm.bias
    return out


def torch_state_dict(
    backbone: str,
    params: Mapping[str, Any],
    batch_stats: Mapping[str, Any] | None = None,
    num_batches_tracked: int = 0,
) -> dict[str, np.ndarray]:
    """The torch-named state dict (numpy arrays) of registered backbone ``backbone``.

    >>> import numpy as np
    >>> sd = torch_state_dict("vit_small", {"norm": {"scale": np.ones(3), "bias": np.zeros(3)}})
    >>> list(sd)
    ['norm.weight', 'norm.bias']
    """
    family = backbone_family(backbone)
    if family == "resnet":
        if "conv1" not in params:
            raise ValueError(
                f"export: backbone {backbone!r} params have no 'conv1'; got keys {sorted(params)}"
            )
        return resnet_state_dict(params, batch_stats or {}, num_batches_tracked)
    return vit_state_dict(params)
