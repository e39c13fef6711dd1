"""The attention core with the hand-written backward against autodiff of the textbook formula.

Reference: softmax(q k^T / sqrt(d)) v per head written directly with einsums on the
[B, N, H, hd] slices of qkv and differentiated by ``jax.vjp``, in float32 at a
non-trivial shape (odd token count, several heads), for a random cotangent.
"""

import chex
import jax
import jax.numpy as jnp
import pytest

from jaxssl.models.attention_cpu import attention_heads_first


def _reference(qkv):
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, N, H, hd]
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(q.shape[-1])
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)


@pytest.mark.parametrize("shape", [(3, 17, 3, 4, 8), (2, 5, 3, 1, 16)])
def test_values_and_vjp_match_autodiff_of_the_formula(shape):
    qkv = 2.0 * jax.random.normal(jax.random.key(0), shape)
    d_out = jax.random.normal(jax.random.key(1), shape[:2] + shape[3:])
    out, vjp = jax.vjp(attention_heads_first, qkv)
    ref_out, ref_vjp = jax.vjp(_reference, qkv)
    chex.assert_trees_all_close(out, ref_out, atol=1e-5)
    (grad,), (ref_grad,) = vjp(d_out), ref_vjp(d_out)
    chex.assert_shape(grad, shape)
    chex.assert_trees_all_close(grad, ref_grad, atol=1e-5, rtol=1e-5)
    # The gradient is not trivially zero in any of q, k, v.
    for i in range(3):
        assert float(jnp.abs(grad[:, :, i]).max()) > 1e-3


def test_jit_and_bfloat16_inputs_keep_dtype_and_stay_close():
    qkv = jax.random.normal(jax.random.key(2), (2, 9, 3, 2, 8))
    d_out = jax.random.normal(jax.random.key(3), (2, 9, 2, 8))
    f = jax.jit(lambda x: jax.vjp(attention_heads_first, x)[1](d_out.astype(x.dtype))[0])
    g16 = f(qkv.astype(jnp.bfloat16))
    assert g16.dtype == jnp.bfloat16
    chex.assert_trees_all_close(g16.astype(jnp.float32), f(qkv), atol=5e-2, rtol=5e-2)
