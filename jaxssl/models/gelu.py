"""Exact (erf) GELU with a hand-written derivative: one cheap erf and one exp per element.

``jax.nn.gelu(x, approximate=False)`` evaluates ``x * erfc(-x / sqrt(2)) / 2``. XLA expands
``erfc`` into two rational approximations joined by selects plus an ``exp``, and autodiff of it
adds a second ``exp(-x^2 / 2)`` pass and the selects' own derivative: on the CPU recipe the
exact-GELU forward and backward were ~15 % of the gradient step's thunk time (profile in
benchmarks/RESULTS.md, "ViT backward, round 2"). :func:`gelu_erf` computes the same function as
Hendrycks & Gimpel (2016), eq. GELU(x) = x Phi(x) with Phi(x) = (1 + erf(x / sqrt(2))) / 2 (the
form timm / PyTorch use), and its derivative Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) /
sqrt(2 pi), in one fused pass. The two forms differ only by float32 rounding (absolute error
< 1e-6 where Phi underflows in ``1 + erf``); the same on every backend, so no platform switch.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@jax.custom_vjp
def gelu_erf(x: jax.Array) -> jax.Array:
    """Exact GELU ``x * Phi(x)`` (Phi the standard normal CDF) with a hand-written derivative.

    Reverse mode only (``jax.grad`` / ``jax.vjp``): the forward keeps just ``x`` and computes the
    value alone; the backward recomputes ``Phi`` and ``phi`` from ``x`` in the one pass that
    multiplies the cotangent. (With a custom JVP the linearised forward wrote both the value and
    the derivative [M, hidden] arrays, and the backward read the derivative back: two extra
    passes over the MLP's widest tensor.)

    >>> import jax, jax.numpy as jnp
    >>> round(float(gelu_erf(jnp.float32(1.0))), 5)  # 1 * Phi(1)
    0.84134
    >>> round(float(jax.grad(gelu_erf)(jnp.float32(0.0))), 5)  # Phi(0) + 0 * phi(0)
    0.5
    """
    return x * _phi_cdf(x)


def _phi_cdf(x: jax.Array) -> jax.Array:
    # Phi(x) = (1 + erf(x / sqrt 2)) / 2, computed in x's dtype.
    return (1.0 + lax.erf(x * _INV_SQRT2)) * 0.5


def _gelu_erf_fwd(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return x * _phi_cdf(x), x


def _gelu_erf_bwd(x: jax.Array, g: jax.Array) -> tuple[jax.Array]:
    # d/dx [x Phi(x)] = Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    deriv = _phi_cdf(x) + x * (jnp.exp(-0.5 * x * x) * _INV_SQRT_2PI)
    return (g * deriv,)


gelu_erf.defvjp(_gelu_erf_fwd, _gelu_erf_bwd)
