"""ResNet-18/50 backbones in torchvision's layout, returning the pooled feature vector.

Parameter paths mirror torchvision's state-dict keys so an exporter can map them one to one
(Flax ``a/b/c`` -> torch ``a.b.c``):

==========================================  ====================================================
Flax path                                   torchvision key
==========================================  ====================================================
``conv1/kernel`` [kh, kw, in, out]          ``conv1.weight`` [out, in, kh, kw] (transpose 3,2,0,1)
``bn1/scale``, ``bn1/bias``                 ``bn1.weight``, ``bn1.bias``
``batch_stats: bn1/mean``, ``bn1/var``      ``bn1.running_mean``, ``bn1.running_var``
``layer{i}_{j}/conv{k}``, ``.../bn{k}``     ``layer{i}.{j}.conv{k}``, ``layer{i}.{j}.bn{k}``
``layer{i}_{j}/downsample_conv``            ``layer{i}.{j}.downsample.0``
``layer{i}_{j}/downsample_bn``              ``layer{i}.{j}.downsample.1``
==========================================  ====================================================

(i = 1..4, j = block index from 0, k = 1..2 for basic and 1..3 for bottleneck blocks; the
classifier ``fc`` is absent. torchvision's ``num_batches_tracked`` buffers have no counterpart.)
Bottleneck blocks put the stride on the 3x3 convolution (torchvision's "ResNet v1.5").
One numerical difference from torch remains in training mode: Flax's running variance averages
the biased batch variance, torch's the unbiased one (a factor n / (n - 1), n = B * H * W values
per channel, negligible at these sizes); the normalisation itself uses the biased variance in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxssl.models.batch_norm import torch_batch_norm

# torchvision initialises convolutions with kaiming_normal_(mode="fan_out", nonlinearity="relu").
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class _Layers:
    """The conv layer builder shared by the blocks and the stem (BN: ``torch_batch_norm``)."""

    @staticmethod
    def conv(module: nn.Module, features: int, kernel: int, stride: int, name: str) -> nn.Conv:
        pad = kernel // 2  # torchvision pads (k - 1) / 2 on both sides, not "SAME"
        return nn.Conv(
            features,
            (kernel, kernel),
            strides=(stride, stride),
            padding=((pad, pad), (pad, pad)),
            use_bias=False,
            kernel_init=_CONV_INIT,
            dtype=module.dtype,
            param_dtype=module.param_dtype,
            name=name,
        )


class _ResidualBlock(nn.Module):
    """conv -> BN (-> ReLU) for each of ``convs()``, no ReLU after the last BN, plus the shortcut,
    then ReLU. Layers are named ``conv{i}`` / ``bn{i}`` (torchvision's names) from 1."""

    planes: int
    stride: int = 1
    zero_init_residual: bool = False
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    expansion = 1

    def convs(self) -> tuple[tuple[int, int, int], ...]:
        """(features, kernel, stride) of each convolution."""
        raise NotImplementedError

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        # ``train`` is positional so nn.remat(..., static_argnums=(2,)) can keep it static.
        convs = self.convs()
        out = x
        for i, (features, kernel, stride) in enumerate(convs, start=1):
            out = _Layers.conv(self, features, kernel, stride, f"conv{i}")(out)
            last = i == len(convs)
            zero = last and self.zero_init_residual
            out = torch_batch_norm(self, train, f"bn{i}", zero_scale=zero)(out)
            out = out if last else nn.relu(out)
        return nn.relu(out + _shortcut(self, x, convs[-1][0], train))


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34). Output width = ``planes``."""

    expansion = 1

    def convs(self) -> tuple[tuple[int, int, int], ...]:
        return (self.planes, 3, self.stride), (self.planes, 3, 1)


class Bottleneck(_ResidualBlock):
    """1x1 reduce, 3x3 (strided), 1x1 expand (x4) with a residual connection (ResNet-50/101)."""

    expansion = 4

    def convs(self) -> tuple[tuple[int, int, int], ...]:
        return (self.planes, 1, 1), (self.planes, 3, self.stride), (self.planes * 4, 1, 1)


def _shortcut(block: nn.Module, x: jax.Array, out_features: int, train: bool) -> jax.Array:
    """Identity, or a strided 1x1 conv + BN when the shape changes (torchvision's downsample)."""
    if block.stride == 1 and x.shape[-1] == out_features:
        return x
    y = _Layers.conv(block, out_features, 1, block.stride, "downsample_conv")(x)
    return torch_batch_norm(block, train, "downsample_bn")(y)


_BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """ResNet backbone without classifier: returns globally average-pooled features [B, D].

    Attributes:
      stage_sizes: number of blocks in layer1..layer4, e.g. (2, 2, 2, 2) for ResNet-18.
      block: "basic" or "bottleneck".
      width: channels of the stem and of layer1 (64 in the published models); stage i has
        ``width * 2**i`` planes.
      small_stem: 3x3 stride-1 stem conv and no max-pool, for 28-64 px inputs (CIFAR-style);
        otherwise torchvision's 7x7 stride-2 conv + 3x3 stride-2 max-pool.
      zero_init_residual: initialise the last BN scale of every block to zero so each residual
        branch starts as the identity (Goyal et al. 2017; torchvision's option of the same name).
      bn_axis_name: mapped axis name for cross-device BN under ``shard_map``; under plain ``jit``
        with a sharded batch the statistics are already global.
      remat: rematerialise each residual block's activations in the backward pass (``nn.remat``),
        trading recomputation for activation memory; outputs, gradients, BatchNorm statistics
        and parameter paths are unchanged.
      dtype / param_dtype: compute and storage dtypes; batch norm always computes in float32.

    Call: ``model.apply(variables, x, train=..., mutable=["batch_stats"] if train else False)``
    with ``x`` float [B, H, W, C]. ``train=True`` normalises with batch statistics and updates the
    running averages; ``train=False`` uses the running averages. ``deterministic`` is accepted for
    the interface the ViT shares (stochastic depth); a ResNet has nothing stochastic.
    ``num_features`` (the output dimension) is available without init.

    >>> import jax, jax.numpy as jnp
    >>> model = ResNet(stage_sizes=(1, 1), block="basic", width=4, small_stem=True)
    >>> model.num_features
    8
    >>> x = jnp.ones((2, 8, 8, 3))
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only, no compute
    >>> feats, updates = jax.eval_shape(
    ...     lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]), variables)
    >>> feats.shape, feats.dtype, sorted(updates)
    ((2, 8), dtype('float32'), ['batch_stats'])
    """

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: str = "basic"
    width: int = 64
    small_stem: bool = False
    zero_init_residual: bool = False
    bn_axis_name: str | None = None
    remat: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def num_features(self) -> int:
        """Dimension of the pooled output: last stage planes x block expansion."""
        return self.width * 2 ** (len(self.stage_sizes) - 1) * self._block_cls().expansion

    def _block_cls(self) -> type[nn.Module]:
        if self.block not in _BLOCKS:
            raise ValueError(f"ResNet: block must be one of {sorted(_BLOCKS)}, got {self.block!r}")
        return _BLOCKS[self.block]

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, deterministic: bool | None = None
    ) -> jax.Array:
        del deterministic  # no dropout or stochastic depth in a ResNet
        if x.ndim != 4:
            raise ValueError(f"ResNet: x must be [B, H, W, C], got shape {x.shape}")
        block_cls = self._block_cls()
        if self.remat:
            # nn.remat keeps the block's name, so parameter and batch_stats paths are unchanged.
            block_cls = nn.remat(block_cls, static_argnums=(2,))
        x = x.astype(self.dtype)
        if self.small_stem:
            x = _Layers.conv(self, self.width, 3, 1, "conv1")(x)
            x = nn.relu(torch_batch_norm(self, train, "bn1")(x))
        else:
            x = _Layers.conv(self, self.width, 7, 2, "conv1")(x)
            x = nn.relu(torch_batch_norm(self, train, "bn1")(x))
            # torch pads max-pool with -inf, as flax's max_pool does with explicit padding.
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for i, num_blocks in enumerate(self.stage_sizes):
            for j in range(num_blocks):
                x = block_cls(
                    planes=self.width * 2**i,
                    stride=2 if (i > 0 and j == 0) else 1,
                    zero_init_residual=self.zero_init_residual,
                    bn_axis_name=self.bn_axis_name,
                    dtype=self.dtype,
                    param_dtype=self.param_dtype,
                    name=f"layer{i + 1}_{j}",
                )(x, bool(train))
        # Pool in float32: the features feed heads and k-NN evaluation.
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def resnet18(**overrides: Any) -> ResNet:
    """ResNet-18 (basic blocks, 2-2-2-2), 512-d features; ``overrides`` set ResNet attributes.

    >>> resnet18().num_features
    512
    """
    return ResNet(**{"stage_sizes": (2, 2, 2, 2), "block": "basic", **overrides})


def resnet50(**overrides: Any) -> ResNet:
    """ResNet-50 (bottleneck blocks, 3-4-6-3), 2048-d features.

    >>> resnet50().num_features
    2048
    """
    return ResNet(**{"stage_sizes": (3, 4, 6, 3), "block": "bottleneck", **overrides})


def resnet_tiny(**overrides: Any) -> ResNet:
    """CPU test/recipe ResNet: basic blocks 1-1-1-1, widths 32-64-128-256, small-image stem.

    >>> resnet_tiny().num_features
    256
    """
    return ResNet(
        **{
            "stage_sizes": (1, 1, 1, 1),
            "block": "basic",
            "width": 32,
            "small_stem": True,
            **overrides,
        }
    )
