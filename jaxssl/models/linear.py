"""A ``dot_general`` for ``nn.Dense`` whose weight gradient is one canonical 2-D GEMM on CPU.

A Dense layer's kernel gradient is ``dW = X^T dY`` with X [M, K] and dY [M, N] the inputs and
output cotangents flattened over every leading axis (M = batch x tokens). Left to itself, XLA:CPU
lays that dot out as "contract the lhs's dim 0" plus a materialised transpose of dY, which its
fast GEMM path (YNNPACK) does not take: the dot falls back to a plain Eigen kernel at about half
the speed of the forward GEMM of the same size (measured in benchmarks/RESULTS.md, "ViT backward
layout (issue 15)"). :func:`dense_dot_general` computes the same product as ``X^T`` materialised
(an optimisation barrier keeps XLA from folding the transpose back into the dot) times dY: a
[K, M] @ [M, N] GEMM that YNNPACK runs. Only the CPU lowering does this
(``lax.platform_dependent``); GPU and TPU get the plain einsum, whose transposed operands
cuBLAS / the TPU MXU take for free. Values are the same product either way (float32 rounding
aside); parameters, names and shapes are those of ``nn.Dense``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax


def transposed_copy(a: jax.Array) -> jax.Array:
    """``a`` with its last two axes swapped, as a stored copy XLA cannot fold into a dot.

    The barriers keep the transpose a plain copy of a stored array: without the inner one XLA
    fuses the producer of ``a`` (e.g. GELU) into a strided transposing loop (measured 16 ms for
    one [512, 2176] GELU output); without the outer one it folds the transpose back into the
    consuming dot, which is then the non-canonical form XLA:CPU's fast GEMM path does not take.

    >>> import jax.numpy as jnp
    >>> transposed_copy(jnp.zeros((4, 2, 3))).shape
    (4, 3, 2)
    """
    return lax.optimization_barrier(jnp.swapaxes(lax.optimization_barrier(a), -1, -2))


def _kernel_grad_cpu(x2: jax.Array, dy2: jax.Array) -> jax.Array:
    # A canonical GEMM (lhs contracts its last dim, rhs its first): transpose the narrower of the
    # two [M, .] operands, X^T dY when K <= N, else (dY^T X)^T whose output [N, K] is small.
    if x2.shape[1] <= dy2.shape[1]:
        return jnp.dot(transposed_copy(x2), dy2)
    # The barrier keeps XLA from folding the output transpose back into the dot (which would
    # swap its operands into the non-canonical "contract the lhs's dim 0" form again).
    return lax.optimization_barrier(jnp.dot(transposed_copy(dy2), x2)).T


def _kernel_grad_default(x2: jax.Array, dy2: jax.Array) -> jax.Array:
    return jnp.einsum("mk,mn->kn", x2, dy2)


def kernel_grad(x: jax.Array, dy: jax.Array) -> jax.Array:
    """``dW = X^T dY`` over all leading axes: x [..., K], dy [..., N] -> [K, N] in x's dtype.

    >>> import jax.numpy as jnp
    >>> kernel_grad(jnp.ones((2, 3, 4)), jnp.ones((2, 3, 5))).shape
    (4, 5)
    """
    x2 = x.reshape(-1, x.shape[-1])
    dy2 = dy.reshape(-1, dy.shape[-1])
    return lax.platform_dependent(
        x2, dy2, cpu=_kernel_grad_cpu, default=_kernel_grad_default
    ).astype(x.dtype)


@jax.custom_vjp
def _linear(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jnp.dot(x, kernel)


def _linear_fwd(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, tuple]:
    return jnp.dot(x, kernel), (x, kernel)


def _linear_bwd(res: tuple, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = res
    dx = jnp.dot(dy, kernel.T).astype(x.dtype)
    return dx, kernel_grad(x, dy).astype(kernel.dtype)


_linear.defvjp(_linear_fwd, _linear_bwd)


def dense_dot_general(
    lhs: jax.Array,
    rhs: jax.Array,
    dimension_numbers: Any,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """Drop-in ``dot_general`` for ``nn.Dense(dot_general=...)``: [..., K] x [K, N] -> [..., N].

    Dense's contraction (last axis of the input with axis 0 of the kernel, default precision, no
    batch axes) goes through the custom-gradient linear map above; any other call is passed to
    ``lax.dot_general`` unchanged.

    >>> import jax, jax.numpy as jnp
    >>> x, w = jnp.ones((2, 3, 4)), jnp.ones((4, 5))
    >>> float(jax.grad(lambda w: dense_dot_general(x, w, (((2,), (0,)), ((), ()))).sum())(w)[0, 0])
    6.0
    """
    (lc, rc), (lb, rb) = dimension_numbers
    standard = (
        tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and not lb and not rb
        and rhs.ndim == 2 and precision is None and preferred_element_type is None
        and lhs.dtype == rhs.dtype
    )
    if not standard:
        return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)
    return _linear(lhs, rhs)
