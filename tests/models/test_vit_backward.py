"""The ViT's fast-backward layout: equal values and gradients, canonical weight-gradient dots.

References are independent formulations: attention as the einsum softmax(q k^T / sqrt(d)) v per
head, Dense gradients through ``lax.dot_general``'s own autodiff, ``X^T dY`` in float64 numpy.
"""

import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.models.linear import dense_dot_general, kernel_grad
from jaxssl.models.vit import Attention, Block, Mlp
from jaxssl.train.defaults import base_config
from jaxssl.train.validate import validate_config


def _reference_attention(params, x, num_heads):
    """The pre-issue-15 attention: [B, N, D] einsums with explicit head axes."""
    b, n, d = x.shape
    hd = d // num_heads
    qkv = x @ params["qkv"]["kernel"] + params["qkv"]["bias"]
    qkv = qkv.reshape(b, n, 3, num_heads, hd)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    attn = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q * hd**-0.5, k), axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, n, d)
    return out @ params["proj"]["kernel"] + params["proj"]["bias"]


def test_attention_equals_einsum_reference_values_and_gradients():
    x = jax.random.normal(jax.random.key(0), (3, 5, 16))
    module = Attention(num_heads=4)
    params = module.init(jax.random.key(1), x)["params"]
    chex.assert_trees_all_close(
        module.apply({"params": params}, x), _reference_attention(params, x, 4),
        atol=1e-5, rtol=1e-5)

    def loss(f):
        return lambda p, x: jnp.sum(jnp.sin(f(p, x)))

    ours = jax.grad(loss(lambda p, x: module.apply({"params": p}, x)), argnums=(0, 1))(params, x)
    ref = jax.grad(loss(lambda p, x: _reference_attention(p, x, 4)), argnums=(0, 1))(params, x)
    chex.assert_trees_all_close(ours, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("k, n", [(4, 7), (7, 4)])  # both branches: X^T dY and (dY^T X)^T
def test_kernel_grad_is_x_transpose_dy(k, n):
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=(2, 3, k)), rng.normal(size=(2, 3, n))
    want = x.reshape(-1, k).T @ dy.reshape(-1, n)
    got = jax.jit(kernel_grad)(jnp.asarray(x, jnp.float32), jnp.asarray(dy, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_dense_dot_general_gradients_equal_lax_dot_general():
    x = jax.random.normal(jax.random.key(0), (2, 3, 6))
    dense = nn.Dense(5, dot_general=dense_dot_general)
    params = dense.init(jax.random.key(1), x)

    def loss(dg):
        return lambda p, x: jnp.sum(jnp.tanh(nn.Dense(5, dot_general=dg).apply(p, x)))

    ours = jax.grad(loss(dense_dot_general), argnums=(0, 1))(params, x)
    ref = jax.grad(loss(jax.lax.dot_general), argnums=(0, 1))(params, x)
    chex.assert_trees_all_close(ours, ref, atol=1e-6, rtol=1e-5)
    # A contraction Dense never makes passes through unchanged.
    a = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(dense_dot_general(a, a, (((0,), (0,)), ((), ()))), a.T @ a)


def _kernel_grad_dots(hlo: str, kernel_shapes: set[str]) -> list[str]:
    return [line for line in hlo.splitlines() if " dot(" in line
            and re.search(r"= f32\[([0-9,]+)\]", line).group(1) in kernel_shapes]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU layout check")
def test_block_backward_weight_gradient_dots_are_canonical_on_cpu():
    """Every weight-gradient dot of a block's compiled backward contracts the lhs's last dim.

    Without the custom gradient XLA:CPU compiled each dW = X^T dY as a dot contracting dim 0 of
    the lhs, which its fast GEMM path does not take. The check reads only each dot's output
    shape and dimension numbers, which XLA prints the same way across versions.
    """
    block = Block(num_heads=4)
    x = jnp.ones((8, 17, 32))
    params = block.init(jax.random.key(0), x)
    step = jax.jit(jax.grad(lambda p, x: jnp.sum(block.apply(p, x) ** 2)))
    hlo = step.lower(params, x).compile().as_text()
    kernels = {",".join(map(str, v.shape)) for v in jax.tree.leaves(params) if v.ndim == 2}
    kernels |= {",".join(map(str, v.shape[::-1])) for v in jax.tree.leaves(params) if v.ndim == 2}
    dots = _kernel_grad_dots(hlo, kernels)
    assert dots, "no weight-gradient dot found in the compiled backward"
    assert not [d for d in dots if "lhs_contracting_dims={0}" in d], dots


def test_gelu_approximate_is_tanh_gelu_with_same_parameters():
    x = jax.random.normal(jax.random.key(0), (2, 5, 8))
    exact, approx = Block(num_heads=2), Block(num_heads=2, gelu_approximate=True)
    params = exact.init(jax.random.key(1), x)
    chex.assert_trees_all_equal_shapes(params, approx.init(jax.random.key(1), x))
    # The MLP branch alone: tanh GELU 0.5 h (1 + tanh(sqrt(2/pi) (h + 0.044715 h^3))).
    # Kernels scaled up so that h is O(1), where the two GELUs differ by ~1e-3.
    p = jax.tree.map(lambda a: 30.0 * a, params["params"]["mlp"])
    h = x @ p["fc1"]["kernel"] + p["fc1"]["bias"]
    tanh_gelu = 0.5 * h * (1 + jnp.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
    want = tanh_gelu @ p["fc2"]["kernel"] + p["fc2"]["bias"]
    out = Mlp(32, gelu_approximate=True).apply({"params": p}, x)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(Mlp(32).apply({"params": p}, x) - want)) > 1e-4


def test_gelu_approximate_config_is_validated():
    c = base_config()
    c.model.backbone, c.model.gelu_approximate = "resnet50", True
    with pytest.raises(ValueError, match="model.gelu_approximate"):
        validate_config(c, num_devices=1)
