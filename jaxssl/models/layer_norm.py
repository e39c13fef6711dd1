"""LayerNorm over the last axis with a hand-written, fused backward pass.

Autodiff of ``flax.linen.LayerNorm`` differentiates each of its steps (two means, a variance, an
rsqrt, broadcasts of the statistics and of ``scale``) and XLA:CPU runs the result as many small
reductions and materialised broadcasts: on the CPU recipe LayerNorm was ~10 % of the gradient
step's thunk time, as much as its forward (profile in benchmarks/RESULTS.md, "ViT backward,
round 2"). :class:`LayerNorm` computes the same function (Ba et al., 2016, eq. 4:
``y = (x - mu) / sqrt(var + eps) * scale + bias``) with the textbook gradient

  dx = rstd * (g' - mean(g') - xhat * mean(g' * xhat)),  g' = g * scale,
  dscale = sum(g * xhat),  dbias = sum(g),

(sums over every leading axis), two row reductions and one fused elementwise pass. Parameter
names, shapes and initialisers are those of ``nn.LayerNorm`` (``scale`` ones, ``bias`` zeros).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def _stats(x: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    # Two-pass variance mean((x - mu)^2): no cancellation, unlike E[x^2] - E[x]^2.
    xc = x - jnp.mean(x, axis=-1, keepdims=True)
    rstd = lax.rsqrt(jnp.mean(xc * xc, axis=-1, keepdims=True) + eps)
    return xc * rstd, rstd


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    return _layer_norm_fwd(x, scale, bias, eps)[0]


def _layer_norm_fwd(x: jax.Array, scale: jax.Array, bias: jax.Array,
                    eps: float) -> tuple[jax.Array, tuple]:
    xhat, rstd = _stats(x, eps)
    return xhat * scale + bias, (xhat, rstd, scale)


def _layer_norm_bwd(eps: float, res: tuple, g: jax.Array) -> tuple:
    del eps  # only the forward needs it
    xhat, rstd, scale = res
    gs = g * scale
    dx = rstd * (gs - jnp.mean(gs, axis=-1, keepdims=True)
                 - xhat * jnp.mean(gs * xhat, axis=-1, keepdims=True))
    lead = tuple(range(g.ndim - 1))
    return dx, jnp.sum(g * xhat, axis=lead), jnp.sum(g, axis=lead)


_layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = 1e-6) -> jax.Array:
    """``(x - mean) / sqrt(var + eps) * scale + bias`` over the last axis, in float32.

    >>> import jax.numpy as jnp
    >>> layer_norm(jnp.array([[1.0, 3.0]]), jnp.ones(2), jnp.zeros(2)).round(3).tolist()
    [[-1.0, 1.0]]
    """
    f32 = jnp.float32
    return _layer_norm(x.astype(f32), scale.astype(f32), bias.astype(f32), eps)


class LayerNorm(nn.Module):
    """Drop-in for ``nn.LayerNorm(epsilon, dtype=float32)``: same parameters, fused backward.

    >>> import jax, jax.numpy as jnp
    >>> ln = LayerNorm(epsilon=1e-6)
    >>> jax.tree.map(jnp.shape, ln.init(jax.random.key(0), jnp.ones((2, 4))))["params"]
    {'bias': (4,), 'scale': (4,)}
    """

    epsilon: float = 1e-6
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (d,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (d,), self.param_dtype)
        return layer_norm(x, scale, bias, self.epsilon)
