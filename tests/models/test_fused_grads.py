"""GELU and LayerNorm with hand-written derivatives against independent references.

References: the float64 closed forms (GELU = x Phi(x), its derivative Phi + x phi, via scipy's
erf) and flax's own ``nn.LayerNorm`` differentiated by autodiff.
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import erf

from jaxssl.models.gelu import gelu_erf
from jaxssl.models.layer_norm import LayerNorm


def test_gelu_erf_values_and_derivative_match_float64_closed_form():
    x = np.linspace(-9.0, 9.0, 4001)
    cdf = 0.5 * (1.0 + erf(x / np.sqrt(2.0)))
    want, dwant = x * cdf, cdf + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
    xf = jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(gelu_erf(xf), want, atol=2e-6, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(jax.grad(gelu_erf))(xf), dwant, atol=1e-6, rtol=1e-6)
    # And the same function as flax's exact GELU (erfc form) to float32 rounding.
    np.testing.assert_allclose(gelu_erf(xf), nn.gelu(xf, approximate=False), atol=2e-6)


def test_layer_norm_equals_flax_values_and_gradients():
    x = 3.0 * jax.random.normal(jax.random.key(0), (3, 5, 16)) + 1.0
    ours, ref = LayerNorm(epsilon=1e-6), nn.LayerNorm(epsilon=1e-6, dtype=jnp.float32)
    params = ref.init(jax.random.key(1), x)
    chex.assert_trees_all_equal_shapes(params, ours.init(jax.random.key(1), x))
    noise = jax.random.normal(jax.random.key(2), (16,))
    params = jax.tree.map(lambda v: v + noise, params)  # scale, bias away from 1, 0

    def loss(m):
        return lambda p, x: jnp.sum(jnp.sin(3.0 * m.apply(p, x)))

    chex.assert_trees_all_close(ours.apply(params, x), ref.apply(params, x), atol=1e-5)
    got = jax.grad(loss(ours), argnums=(0, 1))(params, x)
    want = jax.grad(loss(ref), argnums=(0, 1))(params, x)
    chex.assert_trees_all_close(got, want, atol=2e-5, rtol=1e-5)
    # bfloat16 input: the statistics still run in float32 and the output is float32.
    assert ours.apply(params, x.astype(jnp.bfloat16)).dtype == jnp.float32
