"""CARP: consistent assignment of views over random partitions (Silva & Ramirez Rivera, 2023).

Each step the K prototypes are cut into random blocks of N_B; the softmax is taken within each
block (no temperature anywhere), and the student is asked to put the same mass on the same
prototype as the EMA teacher's view of a DIFFERENT crop, block by block. A KL-to-uniform term on
the mean block distribution keeps every prototype in use. Maths and decisions: docs/methods.md.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp

from jaxssl.losses import _checks
from jaxssl.ops.collectives import global_sum
from jaxssl.ops.confidence import teacher_confidence


def _static_int(name: str, value) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(
            f"{name} must be a Python int (it fixes a shape), got {value!r}."
        ) from None


def random_partition(key: jax.Array, num_prototypes: int, block_size: int) -> jax.Array:
    """Draws a uniformly random partition of the prototype indices into equal blocks.

    A uniformly random permutation of ``range(num_prototypes)`` is cut into consecutive blocks of
    ``block_size``. Draw it from a key that is the same on every device (e.g. folded from the
    replicated step key) so student, teacher and all devices share one partition per step.

    Args:
      key: a ``jax.random`` key.
      num_prototypes: K.
      block_size: N_B; must divide K.

    Returns:
      int32 ``[num_prototypes // block_size, block_size]``.

    >>> import jax
    >>> partition = random_partition(jax.random.key(0), 8, 4)
    >>> print(partition.shape, partition.dtype, sorted(partition.reshape(-1).tolist()))
    (2, 4) int32 [0, 1, 2, 3, 4, 5, 6, 7]
    """
    num_prototypes = _static_int("num_prototypes", num_prototypes)
    block_size = _static_int("block_size", block_size)
    _checks.require_positive("num_prototypes", num_prototypes)
    _checks.require_positive("block_size", block_size)
    if num_prototypes % block_size:
        raise ValueError(
            f"block_size={block_size} must divide num_prototypes={num_prototypes} "
            f"(remainder {num_prototypes % block_size})."
        )
    permutation = jax.random.permutation(key, num_prototypes).astype(jnp.int32)
    return permutation.reshape(num_prototypes // block_size, block_size)


def _permute_minor(x: jax.Array, permutation: jax.Array) -> jax.Array:
    """``x[..., permutation]`` for a permutation of the last axis, with a gather as its backward.

    Written as a row gather of the transposed ``[K, rows]`` matrix followed by the transpose back,
    which XLA:CPU fuses into one copy-like pass; an element-wise gather along the minor axis (and
    its scatter-add transpose) took most of carp_loss's time. The backward applies the inverse
    permutation the same way (a gather, not a scatter-add).
    """
    inverse = jnp.zeros_like(permutation).at[permutation].set(
        jnp.arange(permutation.shape[0], dtype=permutation.dtype)
    )
    return _permute_minor_vjp(x, permutation, inverse)


def _gather_minor(x: jax.Array, indices: jax.Array) -> jax.Array:
    rows = x.reshape(-1, x.shape[-1]).T  # [K, rows]
    return jnp.take(rows, indices, axis=0).T.reshape(x.shape)


@jax.custom_vjp
def _permute_minor_vjp(x: jax.Array, permutation: jax.Array, inverse: jax.Array) -> jax.Array:
    return _gather_minor(x, permutation)


def _permute_minor_fwd(x, permutation, inverse):
    return _gather_minor(x, permutation), inverse


def _permute_minor_bwd(inverse, g):
    # y[..., i] = x[..., perm[i]]  =>  dx[..., perm[i]] = g[..., i], i.e. dx = g[..., inverse].
    return _gather_minor(g, inverse), None, None


_permute_minor_vjp.defvjp(_permute_minor_fwd, _permute_minor_bwd)


@jax.custom_vjp
def _block_overlaps(student_blocks: jax.Array, q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Block softmax ``p`` of ``[S, B, NB, N_B]`` student logits; ``<p, q_j>`` and ``sum p``.

    Returns ``overlap[i, j, b, n] = sum_k p[i, b, n, k] q[j, b, n, k]`` (``q``: ``[T, B, NB, N_B]``
    teacher block distributions, a constant) and ``mass[n, k] = sum_{i, b} p[i, b, n, k]``. The
    backward is the softmax Jacobian written out, ``dx = p (g_p - <g_p, p>)`` with
    ``g_p = sum_j g_overlap_j q_j + g_mass``, a reduction and one elementwise pass writing
    ``dx`` (autodiff stored several more [S, B, NB, N_B] intermediates on XLA:CPU; XLA still
    stores ``q`` broadcast over the S views, twice, for its XNNPACK fusion).
    """
    return _block_overlaps_fwd(student_blocks, q)[0]


def _block_overlaps_fwd(student_blocks, q):
    p = jax.nn.softmax(student_blocks, axis=-1)  # [S, B, NB, N_B]
    overlap = jnp.stack(
        [jnp.sum(p * q[j][None], axis=-1) for j in range(q.shape[0])], axis=1
    )  # [S, T, B, NB]
    mass = jnp.sum(p, axis=(0, 1))  # [NB, N_B]
    return (overlap, mass), (p, q)


def _block_overlaps_bwd(residuals, cotangents):
    p, q = residuals
    g_overlap, g_mass = cotangents  # [S, T, B, NB], [NB, N_B]
    g_p = g_mass + sum(g_overlap[:, j, :, :, None] * q[j][None] for j in range(q.shape[0]))
    d_blocks = p * (g_p - jnp.sum(g_p * p, axis=-1, keepdims=True))
    # q is the teacher's (stop-gradient): no cotangent.
    return d_blocks, None


_block_overlaps.defvjp(_block_overlaps_fwd, _block_overlaps_bwd)


def _check_carp_inputs(student_logits, teacher_logits, partition, entropy_weight,
                       mean_block_probs) -> None:
    """Trace-time checks of :func:`carp_loss`: ranks, shared B and K, views, the partition."""
    _checks.require_rank("student_logits", student_logits, 3, "[S, B, K]")
    _checks.require_rank("teacher_logits", teacher_logits, 3, "[T, B, K]")
    _checks.require_rank("partition", partition, 2, "[K / N_B, N_B]")
    names = ("student_logits", "teacher_logits")
    arrays = (student_logits, teacher_logits)
    _checks.require_same_dims(names, arrays, (1, 1), "The batch size B (axis 1)")
    _checks.require_same_dims(names, arrays, (2, 2), "The number of prototypes K (axis 2)")
    num_teacher, _, num_prototypes = jnp.shape(teacher_logits)
    _checks.require_min_views("teacher_logits", teacher_logits, 1)
    _checks.require_min_views("student_logits", student_logits, max(num_teacher, 2))
    num_blocks, block_size = jnp.shape(partition)
    if num_blocks * block_size != num_prototypes:
        raise ValueError(
            f"partition must cover the K={num_prototypes} prototypes of student_logits and "
            f"teacher_logits exactly once ([K / N_B, N_B] blocks), got shape "
            f"{(num_blocks, block_size)}."
        )
    if not jnp.issubdtype(jnp.result_type(partition), jnp.integer):
        raise ValueError(
            f"partition must hold integer indices, got dtype {jnp.result_type(partition)}."
        )
    _checks.require_in_range_unless_traced("entropy_weight", entropy_weight, 0.0, float("inf"))
    if mean_block_probs is not None:
        _checks.require_shape("mean_block_probs", mean_block_probs, (num_blocks, block_size),
                              "[K / N_B, N_B], the partition's shape")


def carp_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    partition: jax.Array,
    *,
    entropy_weight: float = 1.0,
    axis_name: str | None = None,
    mean_block_probs: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """CARP loss: block-wise view consistency plus a uniformity (KL-to-uniform) term.

    With p_{i,b,n} = softmax over block n of student view i and q_{j,b,n} the same for teacher
    view j (stop-gradient), the consistency term is

        L_c = mean_{(i, j), i != j} mean_b mean_n  -log clip(<p_{i,b,n}, q_{j,b,n}>, eps, 1 - eps)

    with eps the float32 machine epsilon; student view i < T is the same crop as teacher view i,
    so there are T (S - 1) pairs (14 for S = 8, T = 2). The uniformity term is

        L_e = mean_n KL(p_bar_n || U(N_B)) = mean_n [log N_B + sum_k p_bar_nk log p_bar_nk],

    where p_bar_n averages the block-n distributions over ALL student and teacher views and the
    (global) batch, the teacher part without gradient. The loss is L_c + entropy_weight * L_e.

    Gradient accumulation over n equal micro-batches: L_c is a per-sample mean, so the mean of
    the micro-batches' L_c is the full-batch L_c. L_e is not; pass the whole batch's p_bar (the
    mean of the micro-batches' ``aux["mean_block_probs"]``, with the step's one partition) as
    ``mean_block_probs``: L_e is then evaluated at it, and its gradient at the whole batch's p_bar
    flows into this micro-batch's p_bar (the exact linearisation), so the mean of the n losses and
    of their gradients equal the full-batch loss and gradient.

    The pair inner products are sums over the prototypes of a block, so only
    ``[S, T, B, K / N_B]`` scalars are formed, never an ``[S, T, B, K]`` product. The blocks are
    gathered by a fused transpose-gather-transpose whose backward applies the inverse permutation
    (a gather, not a scatter-add), and the block softmax has a hand-written backward; both were
    much faster on XLA:CPU than the element-wise gather along K and autodiff.

    Args:
      student_logits: ``[S, B, K]`` student prototype logits (no temperature is applied).
      teacher_logits: ``[T, B, K]`` teacher prototype logits, T <= S (stop-gradient).
      partition: integer ``[K / N_B, N_B]`` permutation of ``range(K)`` cut into blocks (see
        :func:`random_partition`). That it is a permutation is not checked (it is a traced value).
      entropy_weight: lambda_e (may be a traced schedule).
      axis_name: mapped batch axis (inside ``jax.shard_map``); every batch mean is global.
      mean_block_probs: ``[K / N_B, N_B]`` p_bar of the larger batch this call's batch is part
        of (same partition), or None (L_e of this batch's own p_bar).

    Returns:
      ``(loss, aux)`` with ``mean_block_probs`` (this batch's p_bar ``[K / N_B, N_B]``,
      stop-gradient) and float32 scalars: ``consistency`` (L_c), ``entropy`` (L_e),
      ``agreement`` (fraction of (same-crop view i < T, sample, block) where the student's and
      the teacher's arg-max within the block coincide), ``cross_view_agreement`` (the same over
      the consistency pairs i != j) and ``mean_max_prob`` (the teacher's mean largest block
      probability, 1 / N_B when uniform and 1 when one-hot).

    >>> import jax, jax.numpy as jnp
    >>> partition = random_partition(jax.random.key(0), 8, 4)
    >>> uniform = jnp.zeros((3, 2, 8))  # every block distribution is uniform
    >>> loss, aux = carp_loss(uniform, uniform[:2], partition)
    >>> print(round(float(aux["consistency"]), 4), round(float(aux["entropy"]), 4))  # log 4, 0
    1.3863 0.0
    """
    _check_carp_inputs(student_logits, teacher_logits, partition, entropy_weight,
                       mean_block_probs)
    num_teacher, batch, _ = jnp.shape(teacher_logits)
    num_student = jnp.shape(student_logits)[0]
    num_blocks, block_size = jnp.shape(partition)

    flat_partition = partition.reshape(-1)

    def gather_blocks(logits: jax.Array) -> jax.Array:
        # [V, B, K] -> [V, B, NB, N_B]: every block's prototypes, contiguous.
        blocks = _permute_minor(jnp.asarray(logits, jnp.float32), flat_partition)
        return blocks.reshape(logits.shape[0], batch, num_blocks, block_size)

    student_blocks = gather_blocks(student_logits)  # [S, B, NB, N_B]
    teacher_blocks = gather_blocks(jax.lax.stop_gradient(teacher_logits))  # [T, B, NB, N_B]
    q = jax.nn.softmax(teacher_blocks, axis=-1)
    # Consistency inner products <p_{i,b,n}, q_{j,b,n}> ([S, T, B, NB]) and the student block
    # mass summed over views and batch ([NB, N_B]), with a hand-written backward.
    overlap, student_mass = _block_overlaps(student_blocks, jax.lax.stop_gradient(q))

    eps = jnp.finfo(jnp.float32).eps
    pair_loss = -jnp.log(jnp.clip(overlap, eps, 1.0 - eps))
    # Student view i < T is teacher view i's crop: those pairs are excluded.
    cross_view = jnp.arange(num_student)[:, None] != jnp.arange(num_teacher)[None, :]  # [S, T]
    num_pairs = num_teacher * (num_student - 1)
    global_batch = global_sum(jnp.float32(batch), axis_name)
    consistency_sum = jnp.sum(jnp.where(cross_view[:, :, None, None], pair_loss, 0.0))
    consistency = global_sum(consistency_sum, axis_name) / (num_pairs * global_batch * num_blocks)

    # Uniformity: KL(p_bar_n || U(N_B)) with p_bar_n over all views and the global batch.
    block_mass = student_mass + jnp.sum(q, axis=(0, 1))  # [NB, N_B]
    local_p_bar = global_sum(block_mass, axis_name) / ((num_student + num_teacher) * global_batch)
    p_bar = local_p_bar
    if mean_block_probs is not None:
        # The larger batch's p_bar in value, this batch's in gradient: exact linearisation of L_e.
        mean_block_probs = jnp.asarray(mean_block_probs, jnp.float32)
        p_bar = local_p_bar + jax.lax.stop_gradient(mean_block_probs - local_p_bar)
    # p log p -> 0 as p -> 0; the log's argument is replaced by 1 where p_bar = 0 so neither the
    # value nor the gradient of the unselected branch is NaN.
    positive = p_bar > 0
    p_log_p = jnp.where(positive, p_bar * jnp.log(jnp.where(positive, p_bar, 1.0)), 0.0)
    entropy = jnp.mean(jnp.log(jnp.float32(block_size)) + jnp.sum(p_log_p, axis=-1))

    loss = consistency + entropy_weight * entropy

    # The arg-max of a block softmax is that of the block's logits.
    student_labels = jnp.argmax(student_blocks, axis=-1)  # [S, B, NB]
    teacher_labels = jnp.argmax(teacher_blocks, axis=-1)  # [T, B, NB]
    matches = student_labels[:, None] == teacher_labels[None, :]  # [S, T, B, NB]
    same_crop = jnp.eye(num_student, num_teacher, dtype=bool)[:, :, None, None]
    cells = global_batch * num_blocks
    aux = {
        "mean_block_probs": jax.lax.stop_gradient(local_p_bar),
        "consistency": consistency,
        "entropy": entropy,
        "agreement": global_sum(jnp.sum((matches & same_crop).astype(jnp.float32)), axis_name)
        / (num_teacher * cells),
        "cross_view_agreement": global_sum(
            jnp.sum((matches & ~same_crop).astype(jnp.float32)), axis_name
        ) / (num_pairs * cells),
        "mean_max_prob": teacher_confidence(q, axis_name),
    }
    return loss, aux
