"""Multi-head attention core with a hand-written backward laid out for XLA:CPU's fast GEMMs.

The ViT's :class:`~jaxssl.models.vit.Attention` calls :func:`attention_heads_first` on CPU only
(``lax.platform_dependent``; GPU / TPU keep ``jax.nn.dot_product_attention``). The maths is
softmax(q k^T / sqrt(d)) v per head (Vaswani et al. 2017, eq. 1). What differs from autodiff is
the layout of the backward:

* autodiff linearises the forward with ``q``, ``k`` and ``v`` sliced out of the transposed qkv
  one by one (three strided copies per layer), and computes ``dK = dS^T Q`` and ``dV = P^T dO``
  as dots contracting the *query* axis of both operands, a form XLA:CPU's GEMM fast path does not
  take (it falls back to a plain loop at about a third of the speed);
* here the forward keeps the one heads-first copy of qkv [3, B, H, N, hd] and the probabilities
  P [B, H, N, N] as residuals, and the backward transposes the two small [N, N] matrices P and
  dS once (``linear.transposed_copy``: materialised, so XLA cannot fold the transposes back into
  the dots) so that all four backward products are plain batched GEMMs, then writes dq, dk, dv
  back into the [B, N, 3, H, hd] layout of the qkv projection in one copy.

Values equal autodiff's up to float32 rounding (checked in tests/models/test_attention_cpu.py
against ``jax.vjp`` of the plain einsum attention). Reverse mode only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxssl.models.linear import transposed_copy


def _forward(qkv: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    # qkv [B, N, 3, H, hd] -> heads first once: [3, B, H, N, hd].
    qkv_t = jnp.transpose(qkv, (2, 0, 3, 1, 4))
    q, k, v = qkv_t[0], qkv_t[1], qkv_t[2]
    # Logits and softmax in float32 whatever the model dtype.
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
    probs = jax.nn.softmax(logits * q.shape[-1] ** -0.5, axis=-1)
    out = jnp.einsum("bhqk,bhkd->bhqd", probs.astype(v.dtype), v)
    # Back to the token-major [B, N, H, hd] the output projection reads.
    return jnp.transpose(out, (0, 2, 1, 3)), (qkv_t, probs)


@jax.custom_vjp
def attention_heads_first(qkv: jax.Array) -> jax.Array:
    """Self-attention of the fused projection ``qkv`` [B, N, 3, H, hd] -> [B, N, H, hd].

    >>> import jax, jax.numpy as jnp
    >>> qkv = jnp.ones((2, 5, 3, 4, 8))
    >>> attention_heads_first(qkv).shape
    (2, 5, 4, 8)
    >>> jax.grad(lambda x: attention_heads_first(x).sum())(qkv).shape
    (2, 5, 3, 4, 8)
    """
    return _forward(qkv)[0]


def _bwd(res: tuple[jax.Array, jax.Array], d_out: jax.Array) -> tuple[jax.Array]:
    qkv_t, probs = res
    q, k, v = qkv_t[0], qkv_t[1], qkv_t[2]
    scale = q.shape[-1] ** -0.5
    d_o = jnp.transpose(d_out, (0, 2, 1, 3))  # [B, H, N, hd]
    f32 = jnp.float32
    # dV = P^T dO and dP = dO V^T (the forward's out = P V).
    d_v = jnp.einsum("bhkq,bhqd->bhkd", transposed_copy(probs).astype(v.dtype), d_o)
    d_p = jnp.einsum("bhqd,bhkd->bhqk", d_o, v, preferred_element_type=f32)
    # Softmax backward: dS = P * (dP - rowsum(dP * P)), times the logits' scale.
    d_s = probs * (d_p - jnp.sum(d_p * probs, axis=-1, keepdims=True)) * scale
    d_s = d_s.astype(q.dtype)
    # dQ = dS K and dK = dS^T Q.
    d_q = jnp.einsum("bhqk,bhkd->bhqd", d_s, k)
    d_k = jnp.einsum("bhkq,bhqd->bhkd", transposed_copy(d_s), q)
    d_qkv_t = jnp.stack([d_q, d_k, d_v.astype(q.dtype)])  # [3, B, H, N, hd]
    return (jnp.transpose(d_qkv_t, (1, 3, 0, 2, 4)),)


attention_heads_first.defvjp(_forward, _bwd)
