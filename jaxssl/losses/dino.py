"""DINO cross-entropy between teacher and student views, and the teacher centre update.

Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (DINO, 2021),
eq. (1)-(3): the teacher distribution is ``P_t = softmax((g_t - c) / tau_t)`` (centred, sharpened,
constant), the student distribution is ``P_s = softmax(g_s / tau_s)``, and the loss is the
cross-entropy ``H(P_t, P_s) = -sum_k P_t log P_s`` averaged over every (teacher view, student view)
pair of different views and over the batch. The centre follows eq. (4):
``c <- m c + (1 - m) mean(g_t)``.

Layouts follow the public loss contract (docs/api.md): views first, ``[V, B, K]``; student view
``i < T`` is the same crop as teacher view ``i``, so those pairs are skipped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxssl.losses import _checks
from jaxssl.ops.collectives import global_row_mean, global_sum
from jaxssl.ops.ema import ema


def _teacher_probs(teacher_logits: jax.Array, center: jax.Array, teacher_temp) -> jax.Array:
    """DINO teacher targets ``softmax((t - c) / tau_t)`` (eq. (1), centred) in float32, constant."""
    t = jax.lax.stop_gradient(jnp.asarray(teacher_logits, jnp.float32))
    c = jax.lax.stop_gradient(jnp.asarray(center, jnp.float32))
    return jax.nn.softmax((t - c) / teacher_temp, axis=-1)


def _paired_cross_entropy(
    student_logits: jax.Array, q: jax.Array, weights: jax.Array, student_temp
) -> jax.Array:
    """:func:`_paired_cross_entropy_sum` with ``q``, ``weights`` and the temperature held constant.

    The gradient flows to ``student_logits`` only, as in every loss that uses it.
    """
    constant = jax.lax.stop_gradient
    return _paired_cross_entropy_sum(
        student_logits, constant(q), constant(weights), constant(student_temp)
    )


@jax.custom_vjp
def _paired_cross_entropy_sum(
    student_logits: jax.Array, q: jax.Array, weights: jax.Array, student_temp
) -> jax.Array:
    """``sum_{t,s,r} weights[t,s,r] H(q[t,r], softmax(student_logits[s,r] / student_temp))``.

    ``student_logits`` is float32 ``[S, R, K]`` (R rows: the batch, or all patches), ``q`` float32
    ``[T, R, K]`` targets, ``weights`` ``[T, S, R]``. With ``z = s / tau``, ``m = max_k z`` and
    ``log_norm = log sum_k exp(z - m)``, ``H(q, p) = -<q, z - m - log_norm>
    = log_norm * sum_k q - <q, z - m>``: both terms are >= 0 (``z - m <= 0``), so there is no
    cancellation even for logits of 1e5, and no ``[S, R, K]`` log-probabilities are formed, only
    ``[T, S, R]`` dot products and one normaliser per student row. The backward is written out
    (``dH/dz = sum_k q * softmax(z) - q``) so it writes one ``[S, R, K]`` array, the gradient.
    """
    return _paired_cross_entropy_fwd(student_logits, q, weights, student_temp)[0]


def _paired_cross_entropy_fwd(student_logits, q, weights, student_temp):
    # The maximum is subtracted before dividing by tau: entries near the maximum (those that carry
    # the probability mass) then have small, accurately rounded values whatever the logits' scale.
    row_max = jnp.max(student_logits, axis=-1, keepdims=True)  # [S, R, 1]
    shifted = (student_logits - row_max) / student_temp  # <= 0; fused into the reductions below
    q_mass = jnp.sum(q, axis=-1)  # [T, R], 1 up to rounding
    log_norm = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1))  # [S, R]
    # <q_t, z_s - m_s> for every (t, s) as one contraction over K at float32 precision. Side by side
    # (B = 64, K = 65536) this beat one fused variadic reduction for the normaliser and the dots
    # with jemalloc (148 vs 231 ms) and was second with glibc malloc (260 vs 197 ms; the old
    # log_softmax + einsum: 176 / 520 ms): XLA:CPU's variadic loop reduction is not vectorised.
    dots = jnp.einsum("trk,srk->tsr", q, shifted, precision=jax.lax.Precision.HIGHEST)
    cross_entropy = log_norm[None] * q_mass[:, None] - dots  # [T, S, R]
    total = jnp.sum(weights * cross_entropy)
    return total, (student_logits, q, weights, student_temp, row_max, log_norm, q_mass)


def _paired_cross_entropy_bwd(residuals, g):
    student_logits, q, weights, student_temp, row_max, log_norm, q_mass = residuals
    # The barrier keeps XLA from sharing z - m with the forward pass, which would make it store
    # z - m as a full [S, R, K] array instead of recomputing it inside each fused pass.
    student_logits, row_max = jax.lax.optimization_barrier((student_logits, row_max))
    shifted = (student_logits - row_max) / student_temp
    p = jnp.exp(shifted - log_norm[..., None])  # softmax(z), recomputed: [S, R, K]
    num_teacher = q.shape[0]
    # dL/dz_s = sum_t w_ts (q_mass_t softmax(z_s) - q_t): one fused pass writing [S, R, K].
    coef = jnp.sum(weights * q_mass[:, None], axis=0)  # [S, R]
    target = sum(weights[t][..., None] * q[t][None] for t in range(num_teacher))
    d_z = g * (coef[..., None] * p - target)
    # q, the weights and the temperature are constants (stop-gradient in the callers, and in
    # _paired_cross_entropy); None is their zero cotangent.
    return d_z / student_temp, None, None, None


_paired_cross_entropy_sum.defvjp(_paired_cross_entropy_fwd, _paired_cross_entropy_bwd)


def _global_sum_and_count(
    per_example: jax.Array, batch_size: int, axis_name: str | None
) -> tuple[jax.Array, jax.Array]:
    """Sum of ``per_example`` and the batch size, both summed over ``axis_name`` when given.

    Reducing the sum and the count separately makes the mean the concatenated-batch mean even
    when devices hold different batch sizes.
    """
    count = jnp.asarray(batch_size, jnp.float32)
    return global_sum(jnp.sum(per_example), axis_name), global_sum(count, axis_name)


def dino_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    center: jax.Array,
    *,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
    axis_name: str | None = None,
) -> jax.Array:
    """DINO cross-entropy (Caron et al. 2021, eq. (1)-(3)) averaged over view pairs and the batch.

    ``loss = 1 / (T (S - 1)) sum_{t < T} sum_{s != t} mean_b H(q_{t,b}, p_{s,b})`` with
    ``q = softmax((teacher - center) / teacher_temp)`` (constant: stop-gradient on the teacher
    logits and the centre) and ``p = softmax(student / student_temp)``. Student view ``i < T`` is
    the same crop as teacher view ``i``; that pair is skipped.

    Only ``T x S x B`` dot products ``<q_t, s/tau - max>`` and one log-normaliser per student row
    are computed (``H(q, p) = logsumexp(s/tau) - <q, s/tau>``, exact because ``q`` sums to one, with
    the maximum subtracted inside the dot so nothing cancels), and the backward is analytic
    (``dL/ds = sum_t w_ts (softmax(s/tau) - q_t) / tau``), so the backward writes a
    single ``[S, B, K]`` array, the gradient, in one fused pass (measured side by side on XLA:CPU in
    benchmarks/results/losses.md).

    Args:
      student_logits: ``[S, B, K]`` student head outputs for all views (globals first).
      teacher_logits: ``[T, B, K]`` teacher head outputs for the global views, ``T <= S``.
      center: ``[K]`` teacher centre.
      student_temp: student temperature ``tau_s`` > 0.
      teacher_temp: teacher temperature ``tau_t`` > 0 (may be a traced scheduled value).
      axis_name: mapped axis over which the batch is sharded (inside ``jax.shard_map``); the batch
        mean is then global and every device returns the same loss.

    Returns:
      float32 scalar loss.

    Example:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[[2.0, 0.0]], [[0.0, 2.0]], [[1.0, 1.0]]])  # S=3, B=1, K=2
      >>> t = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # T=2
      >>> print(round(float(dino_loss(s, t, jnp.zeros(2), student_temp=1.0, teacher_temp=1.0)), 4))
      1.1411
    """
    _checks.require_rank("student_logits", student_logits, 3, "[S, B, K]")
    _checks.require_rank("teacher_logits", teacher_logits, 3, "[T, B, K]")
    _checks.require_rank("center", center, 1, "[K]")
    _checks.require_same_dims(
        ("student_logits", "teacher_logits"), (student_logits, teacher_logits), (1, 1),
        "batch size B (axis 1)",
    )
    _checks.require_same_dims(
        ("student_logits", "teacher_logits", "center"),
        (student_logits, teacher_logits, center), (2, 2, 0), "number of prototypes K",
    )
    num_teacher = jnp.shape(teacher_logits)[0]
    _checks.require_min_views("teacher_logits", teacher_logits, 1)
    # S >= T so student view i < T exists for every teacher view, and S >= 2 so a pair exists.
    _checks.require_min_views("student_logits", student_logits, max(num_teacher, 2))
    _checks.require_positive_unless_traced("student_temp", student_temp)
    _checks.require_positive_unless_traced("teacher_temp", teacher_temp)

    num_student, batch = jnp.shape(student_logits)[:2]
    q = _teacher_probs(teacher_logits, center, teacher_temp)  # [T, B, K]
    s = jnp.asarray(student_logits, jnp.float32)
    # DINO eq. (3): every (t, s) pair with weight 1, except the same-crop pairs s == t.
    other_view = ~jnp.eye(num_teacher, num_student, dtype=bool)
    weights = jnp.broadcast_to(
        other_view.astype(jnp.float32)[:, :, None], (num_teacher, num_student, batch)
    )
    local_sum = _paired_cross_entropy(s, q, weights, student_temp)
    total, count = _global_sum_and_count(local_sum, batch, axis_name)
    num_pairs = num_teacher * (num_student - 1)
    return total / (count * num_pairs)


def update_center(
    center: jax.Array,
    teacher_logits: jax.Array,
    *,
    momentum: float = 0.9,
    axis_name: str | None = None,
) -> jax.Array:
    """DINO centre EMA (Caron et al. 2021, eq. (4)): ``c <- m c + (1 - m) mean_{t,b} g_t``.

    The mean runs over the teacher views and the (global, with ``axis_name``) batch. Call it after
    the loss of the same step. No gradient flows through it. The batch mean is
    :func:`jaxssl.ops.collectives.global_row_mean` (any ``[..., K]`` layout) and the average
    :func:`jaxssl.ops.ema.ema`, the pieces :func:`update_patch_center` shares.

    Args:
      center: ``[K]`` current centre.
      teacher_logits: ``[T, B, K]`` teacher head outputs.
      momentum: EMA momentum ``m`` in [0, 1].
      axis_name: mapped axis over which the batch is sharded, for a global mean.

    Returns:
      float32 ``[K]`` updated centre.

    Example:
      >>> import jax.numpy as jnp
      >>> t = jnp.array([[[1.0, 3.0]], [[3.0, 5.0]]])  # T=2, B=1, K=2
      >>> print(update_center(jnp.zeros(2), t, momentum=0.5))
      [1. 2.]
    """
    return _center_ema(center, teacher_logits, "teacher_logits", "[T, B, K]",
                       momentum=momentum, axis_name=axis_name)


def _center_ema(center: jax.Array, logits: jax.Array, logits_name: str, layout: str, *,
                momentum, axis_name: str | None) -> jax.Array:
    """Checked ``ema(center, global_row_mean(logits), momentum)`` for a ``layout`` ending in K.

    The one centre update behind :func:`update_center` (``[T, B, K]``) and iBOT's
    ``update_patch_center`` (``[G, B, N, K]``); ``logits_name`` and ``layout`` name the input in
    errors.
    """
    _checks.require_rank("center", center, 1, "[K]")
    _checks.require_rank(logits_name, logits, layout.count(",") + 1, layout)
    _checks.require_same_dims((logits_name, "center"), (logits, center), (-1, 0),
                              "number of prototypes K")
    _checks.require_in_range_unless_traced("momentum", momentum, 0.0, 1.0)
    return ema(center, global_row_mean(jax.lax.stop_gradient(logits), axis_name), momentum)
