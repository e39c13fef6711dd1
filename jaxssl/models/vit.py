"""Vision Transformer backbone (pre-norm, CLS token) with MSN patch dropping and iBOT masking.

Parameter paths follow timm / DINO's ``VisionTransformer`` names (Flax ``a/b`` -> torch ``a.b``):
``patch_embed_proj/kernel`` [p, p, 3, D] (torch ``patch_embed.proj.weight`` [D, 3, p, p]),
``cls_token`` [1, 1, D], ``pos_embed`` [1, 1 + N, D], ``mask_token`` [1, 1, D] (iBOT),
``blocks_{i}/norm1``, ``blocks_{i}/attn/qkv``, ``blocks_{i}/attn/proj``, ``blocks_{i}/norm2``,
``blocks_{i}/mlp/fc1``, ``blocks_{i}/mlp/fc2`` (torch ``blocks.{i}...``; Dense kernels are the
transposed torch weights; LayerNorm ``scale`` is torch ``weight``), and ``norm``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxssl.models.attention_cpu import attention_heads_first
from jaxssl.models.gelu import gelu_erf
from jaxssl.models.layer_norm import LayerNorm
from jaxssl.models.linear import dense_dot_general

# timm / DINO initialise linear layers and the position embedding with trunc_normal(std=0.02).
_TRUNC_NORMAL = nn.initializers.truncated_normal(stddev=0.02)


def _layer_norm(module: nn.Module, name: str) -> LayerNorm:
    # eps 1e-6 as in timm's ViT; computed in float32 even when the model runs in bfloat16. The
    # fused-backward LayerNorm has nn.LayerNorm's parameters (scale, bias) and values.
    return LayerNorm(epsilon=1e-6, param_dtype=module.param_dtype, name=name)


def _dense(module: nn.Module, features: int, name: str) -> nn.Dense:
    return nn.Dense(
        features,
        kernel_init=_TRUNC_NORMAL,
        bias_init=nn.initializers.zeros,
        dtype=module.dtype,
        param_dtype=module.param_dtype,
        dot_general=dense_dot_general,
        name=name,
    )


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample with probability ``rate``.

    Survivors are scaled by 1 / (1 - rate) so the expectation is unchanged. Needs a ``"dropout"``
    rng when not ``deterministic`` and ``rate > 0``; identity otherwise.

    >>> import jax, jax.numpy as jnp
    >>> DropPath(rate=0.5).apply({}, jnp.ones((2, 3)), deterministic=True).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """

    rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        keep_prob = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        keep = jax.random.bernoulli(self.make_rng("dropout"), keep_prob, shape)
        return jnp.where(keep, x / keep_prob, jnp.zeros_like(x))


class Attention(nn.Module):
    """Multi-head self-attention: fused qkv projection (with bias), then an output projection.

    The projections run on the 2-D [B*N, D] view of the tokens; the attention itself is
    ``jax.nn.dot_product_attention`` with ``implementation=None`` on GPU/TPU (cuDNN's fused kernel
    where the dtype and shapes allow) and, on CPU only, :func:`attention_heads_first` (heads moved
    first once, a backward of plain GEMMs); logits and softmax in float32 either way.
    """

    num_heads: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, d = x.shape
        if d % self.num_heads:
            raise ValueError(
                f"Attention: embed dim {d} not divisible by num_heads {self.num_heads}"
            )
        qkv = _dense(self, 3 * d, "qkv")(x.reshape(b * n, d))
        qkv = qkv.reshape(b, n, 3, self.num_heads, d // self.num_heads)
        out = lax.platform_dependent(qkv, cpu=attention_heads_first, default=_attention_fused)
        return _dense(self, d, "proj")(out.reshape(b * n, d)).reshape(b, n, d)


def _attention_fused(qkv: jax.Array) -> jax.Array:
    # softmax(q k^T / sqrt(head_dim)) v per head (Vaswani et al., eq. 1), [B, N, H, hd]; on GPU
    # jax.nn.dot_product_attention may pick cuDNN's fused kernel.
    return jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])


class Mlp(nn.Module):
    """Transformer MLP on the 2-D [B*N, D] view: fc1 (hidden) -> GELU -> fc2.

    GELU is exact (erf), as the ViT / DINO papers and timm; ``gelu_approximate`` selects the tanh
    approximation (cheaper on CPU, a different function: not a drop-in for trained weights).
    """

    hidden_dim: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    gelu_approximate: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        h = _dense(self, self.hidden_dim, "fc1")(x.reshape(-1, d))
        # Exact GELU through gelu_erf (same function as nn.gelu's erfc form, cheaper derivative).
        h = nn.gelu(h, approximate=True) if self.gelu_approximate else gelu_erf(h)
        return _dense(self, d, "fc2")(h).reshape(x.shape)


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x))).

    ``deterministic`` is positional so that ``nn.remat(Block, static_argnums=(2,))`` can treat it
    as a compile-time constant (argument 0 of a lifted module call is the module itself).
    """

    num_heads: int
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    gelu_approximate: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        branches = (
            ("1", Attention(self.num_heads, self.dtype, self.param_dtype, name="attn")),
            ("2", Mlp(int(x.shape[-1] * self.mlp_ratio), self.dtype, self.param_dtype,
                      self.gelu_approximate, name="mlp")),
        )
        for i, branch in branches:  # the two residual branches differ only in their module
            y = branch(_layer_norm(self, f"norm{i}")(x))
            x = x + DropPath(self.drop_path, name=f"drop_path{i}")(
                y, deterministic=deterministic
            ).astype(x.dtype)
        return x


def interpolate_pos_embed(pos_embed: jax.Array, h: int, w: int) -> tuple[jax.Array, jax.Array]:
    """Splits ``pos_embed`` [1, 1 + g*g, D] into (cls [1, 1, D], patches [1, h*w, D]).

    The patch table is stored for a square g x g grid; an h x w grid other than g x g gets a
    bicubic resize of it on the grid (as DINO's ``interpolate_pos_encoding``), computed in
    float32. The CLS entry has no position and is returned unchanged.

    >>> import jax.numpy as jnp
    >>> table = jnp.concatenate([jnp.zeros((1, 1, 2)), jnp.ones((1, 4, 2))], axis=1)  # g = 2
    >>> cls, patches = interpolate_pos_embed(table, 3, 3)
    >>> cls.shape, patches.shape, float(patches.min()), float(patches.max())
    ((1, 1, 2), (1, 9, 2), 1.0, 1.0)
    """
    n = pos_embed.shape[1] - 1
    g = int(round(n**0.5))
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1 or g * g != n:
        raise ValueError(
            f"interpolate_pos_embed: pos_embed must be [1, 1 + g*g, D], got {pos_embed.shape}"
        )
    d = pos_embed.shape[-1]
    pos = pos_embed.astype(jnp.float32)
    cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
    if (h, w) != (g, g):
        grid = jax.image.resize(patch_pos.reshape(1, g, g, d), (1, h, w, d), method="bicubic")
        patch_pos = grid.reshape(1, h * w, d)
    return cls_pos, patch_pos


def _patch_grid(x: jax.Array, p: int) -> tuple[int, int, int]:
    """(B, h, w): the batch size and patch grid of images x [B, H, W, C] with patch size p."""
    if x.ndim != 4:
        raise ValueError(f"VisionTransformer: x must be [B, H, W, C], got shape {x.shape}")
    b, height, width, _ = x.shape
    if height % p or width % p:
        raise ValueError(
            f"VisionTransformer: image size {height}x{width} is not a multiple of patch_size {p}"
        )
    return b, height // p, width // p


def _keep_tokens(tokens: jax.Array, keep: jax.Array) -> jax.Array:
    """MSN patch dropping: the tokens [B, N, D] at ``keep`` [n_keep] or [B, n_keep]."""
    if keep.ndim == 1:
        return jnp.take(tokens, keep, axis=1)
    if keep.ndim == 2 and keep.shape[0] == tokens.shape[0]:
        return jnp.take_along_axis(tokens, keep[..., None], axis=1)
    raise ValueError(
        "VisionTransformer: keep_indices must be [n_keep] or [B, n_keep] with "
        f"B = {tokens.shape[0]}, got shape {keep.shape}"
    )


class VisionTransformer(nn.Module):
    """ViT backbone returning the final-norm CLS feature [B, D] (optionally the patch tokens too).

    Attributes:
      patch_size: p; the input height and width must be multiples of p.
      embed_dim, depth, num_heads, mlp_ratio: transformer sizes (D, blocks, heads, MLP ratio).
      img_size: the image size the position embedding is laid out for ((img_size / p)^2 patches);
        other input sizes interpolate it bicubically on the patch grid (96 px locals, 224 config).
      drop_path_rate: stochastic-depth rate of the last block; block i uses
        ``rate * i / (depth - 1)`` (timm / DINO: linear from 0 over depth, so a depth-1 ViT has
        none). Active only when the call is not ``deterministic``; then it needs a ``"dropout"``
        rng.
      remat: rematerialise each block's activations in the backward pass (``nn.remat``): the
        forward pass of a block is recomputed instead of stored, trading ~1/3 more compute for
        activation memory. Outputs, gradients and parameter paths are unchanged.
      use_mask_token: create the learnable iBOT ``mask_token`` [1, 1, D] (zeros init). Without it
        the parameter count equals timm's; passing ``mask`` then raises ValueError.
      gelu_approximate: the blocks' MLP GELU as the tanh approximation instead of the exact erf
        form of the ViT / DINO papers (cheaper on CPU; a different function, so not for weights
        trained with the other one). Parameters are the same either way.
      dtype / param_dtype: compute and storage dtypes; LayerNorm and softmax run in float32.

    Call: ``__call__(x, *, train=False, deterministic=None, keep_indices=None, mask=None,
    return_patch_tokens=False)``
      x: float [B, H, W, C] images.
      train: accepted for a uniform backbone interface (ResNet: BatchNorm batch statistics); the
        ViT has no BatchNorm, so it only sets the default of ``deterministic``.
      deterministic: stochastic depth off. ``None`` means ``not train``. An EMA teacher runs with
        ``deterministic=True`` (DINO's teacher applies no stochastic depth), the student with
        ``False`` and a ``"dropout"`` rng.
      keep_indices: int [n_keep] or [B, n_keep] -- MSN patch dropping: only these patch tokens are
        kept (after the position embedding is added, so each kept token keeps its position); the
        CLS token is always kept.
      mask: bool [B, N] -- iBOT masking: masked patch embeddings are replaced by ``mask_token``
        before the position embedding is added.
      return_patch_tokens: also return the final-norm patch tokens [B, N', D] (N' = n_keep when
        dropping, else N).
    Returns float32 CLS features [B, D], or ``(cls, patch_tokens)``.

    >>> import jax, jax.numpy as jnp
    >>> vit = VisionTransformer(patch_size=4, embed_dim=16, depth=1, num_heads=2, img_size=8)
    >>> vit.num_features
    16
    >>> variables = jax.eval_shape(vit.init, jax.random.key(0), jnp.ones((1, 8, 8, 3)))
    >>> cls, patches = jax.eval_shape(  # a 12 px input: 3 x 3 patches, interpolated positions
    ...     lambda v: vit.apply(v, jnp.ones((2, 12, 12, 3)), return_patch_tokens=True), variables)
    >>> cls.shape, patches.shape
    ((2, 16), (2, 9, 16))
    """

    patch_size: int = 16
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    img_size: int = 224
    drop_path_rate: float = 0.0
    use_mask_token: bool = True
    remat: bool = False
    gelu_approximate: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def num_features(self) -> int:
        """Dimension of the CLS output."""
        return self.embed_dim

    @property
    def drop_path_rates(self) -> tuple[float, ...]:
        """Stochastic-depth rate of each block: linear from 0 to ``drop_path_rate`` over depth."""
        return tuple(self.drop_path_rate * i / max(self.depth - 1, 1) for i in range(self.depth))

    @property
    def grid_size(self) -> int:
        """Side of the patch grid the position embedding is stored for."""
        return self.img_size // self.patch_size

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        *,
        train: bool = False,
        deterministic: bool | None = None,
        keep_indices: jax.Array | None = None,
        mask: jax.Array | None = None,
        return_patch_tokens: bool = False,
    ) -> jax.Array | tuple[jax.Array, jax.Array]:
        b, h, w = _patch_grid(x, self.patch_size)
        p, n = self.patch_size, h * w

        # Patch embedding: a p x p stride-p convolution == a linear map of each flattened patch.
        tokens = nn.Conv(
            self.embed_dim,
            (p, p),
            strides=(p, p),
            padding="VALID",
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="patch_embed_proj",
        )(x.astype(self.dtype))
        tokens = tokens.reshape(b, n, self.embed_dim)

        if self.use_mask_token:
            mask_token = self.param(
                "mask_token", nn.initializers.zeros, (1, 1, self.embed_dim), self.param_dtype
            )
        if mask is not None:
            if not self.use_mask_token:
                raise ValueError("VisionTransformer: mask given but use_mask_token=False")
            if mask.shape != (b, n):
                raise ValueError(
                    f"VisionTransformer: mask must have shape (B, N) = {(b, n)}, got {mask.shape}"
                )
            # iBOT: masked patches lose their content before positions are added.
            tokens = jnp.where(mask[..., None], mask_token.astype(tokens.dtype), tokens)

        g = self.grid_size
        pos = self.param(
            "pos_embed", _TRUNC_NORMAL, (1, 1 + g * g, self.embed_dim), self.param_dtype
        )
        cls_pos, patch_pos = interpolate_pos_embed(pos, h, w)
        tokens = tokens + patch_pos.astype(tokens.dtype)

        if keep_indices is not None:
            tokens = _keep_tokens(tokens, jnp.asarray(keep_indices))

        cls = self.param("cls_token", _TRUNC_NORMAL, (1, 1, self.embed_dim), self.param_dtype)
        cls = (cls.astype(jnp.float32) + cls_pos).astype(tokens.dtype)
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, self.embed_dim)), tokens], axis=1)

        deterministic = not train if deterministic is None else deterministic
        # nn.remat keeps the module's name, so parameter paths are the same with or without it.
        block_cls = nn.remat(Block, static_argnums=(2,)) if self.remat else Block
        for i, rate in enumerate(self.drop_path_rates):
            x = block_cls(self.num_heads, self.mlp_ratio, rate, self.dtype, self.param_dtype,
                          self.gelu_approximate, name=f"blocks_{i}")(x, bool(deterministic))
        x = _layer_norm(self, "norm")(x)  # float32 output
        if return_patch_tokens:
            return x[:, 0], x[:, 1:]
        return x[:, 0]


def vit_tiny(patch_size: int = 16, **overrides: Any) -> VisionTransformer:
    """ViT-Tiny: D = 192, depth 12, 3 heads.

    >>> vit_tiny().num_features
    192
    """
    return VisionTransformer(
        **{"patch_size": patch_size, "embed_dim": 192, "depth": 12, "num_heads": 3, **overrides}
    )


def vit_small(patch_size: int = 16, **overrides: Any) -> VisionTransformer:
    """ViT-Small: D = 384, depth 12, 6 heads.

    >>> vit_small(patch_size=8).num_features
    384
    """
    return VisionTransformer(
        **{"patch_size": patch_size, "embed_dim": 384, "depth": 12, "num_heads": 6, **overrides}
    )


def vit_base(patch_size: int = 16, **overrides: Any) -> VisionTransformer:
    """ViT-Base: D = 768, depth 12, 12 heads.

    >>> vit_base().num_features
    768
    """
    return VisionTransformer(
        **{"patch_size": patch_size, "embed_dim": 768, "depth": 12, "num_heads": 12, **overrides}
    )


def vit_nano(patch_size: int = 4, **overrides: Any) -> VisionTransformer:
    """Matmul-bound CPU ViT for Fashion-MNIST: D = 128, depth 6, 4 heads, patch 4, 28 px.

    28 px / patch 4 gives a 7 x 7 grid (49 tokens + CLS). Smaller local crops must be a multiple of
    the patch size (e.g. 12 or 16 px: a 3 x 3 or 4 x 4 grid, position embedding interpolated).

    >>> vit_nano().num_features, vit_nano().grid_size
    (128, 7)
    """
    return VisionTransformer(
        **{
            "patch_size": patch_size,
            "embed_dim": 128,
            "depth": 6,
            "num_heads": 4,
            "img_size": 28,
            **overrides,
        }
    )
