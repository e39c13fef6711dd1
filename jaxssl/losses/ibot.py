"""iBOT masked-patch self-distillation loss and the patch-centre update.

Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer" (2022), the
masked-image-modelling loss of Sec. 3.2, ``L_MIM = -sum_i m_i P_t(u_i)^T log P_s(u_hat_i)``: for
every global view, the teacher sees the unmasked image ``u`` and the student the same image with
block-masked patches ``u_hat``; the student's output at each masked patch is trained towards the
teacher's (centred, sharpened, constant) output at that patch. The teacher/student distributions
are DINO's (see ``dino.py``) with their own patch centre.

Averaging (the choice made by the public iBOT code, kept here): the per-patch cross-entropies are
averaged over the masked patches of each image (the count clamped to >= 1, so an image without
masked patches contributes 0 and no NaN), then averaged over the (global) batch and the views.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxssl.losses import _checks
from jaxssl.losses.dino import (
    _center_ema,
    _global_sum_and_count,
    _paired_cross_entropy,
    _teacher_probs,
)


def ibot_patch_loss(
    student_patch_logits: jax.Array,
    teacher_patch_logits: jax.Array,
    masks: jax.Array,
    center: jax.Array,
    *,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
    axis_name: str | None = None,
) -> jax.Array:
    """iBOT patch loss ``L_MIM`` (Zhou et al. 2022, Sec. 3.2) over masked patches of global views.

    ``loss = mean_{g, b} [ sum_n m_{gbn} H(q_{gbn}, p_{gbn}) / max(1, sum_n m_{gbn}) ]`` with
    ``q = softmax((teacher - center) / teacher_temp)`` (stop-gradient on teacher logits and centre)
    and ``p = softmax(student / student_temp)``; view ``g`` of the student is the masked version of
    view ``g`` of the teacher. Images with no masked patch contribute 0 (and still count in the
    mean over images, as in the public iBOT code).

    Args:
      student_patch_logits: ``[G, B, N, K]`` student outputs on the masked global views.
      teacher_patch_logits: ``[G, B, N, K]`` teacher outputs on the unmasked global views.
      masks: ``[G, B, N]`` boolean, True where the student's patch was masked.
      center: ``[K]`` patch centre.
      student_temp: student temperature > 0.
      teacher_temp: teacher temperature > 0 (may be a traced scheduled value).
      axis_name: mapped axis over which the batch is sharded, for a global mean.

    Returns:
      float32 scalar loss.

    Example:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[[[0.0, 0.0], [5.0, 0.0]]]])  # G=1, B=1, N=2, K=2
      >>> t = jnp.array([[[[9.0, 0.0], [9.0, 0.0]]]])
      >>> m = jnp.array([[[True, False]]])  # only patch 0 is masked: loss = log 2
      >>> print(round(float(ibot_patch_loss(s, t, m, jnp.zeros(2), teacher_temp=0.01)), 4))
      0.6931
    """
    _checks.require_rank("student_patch_logits", student_patch_logits, 4, "[G, B, N, K]")
    _checks.require_rank("teacher_patch_logits", teacher_patch_logits, 4, "[G, B, N, K]")
    _checks.require_rank("center", center, 1, "[K]")
    _checks.require_shape(
        "teacher_patch_logits", teacher_patch_logits, jnp.shape(student_patch_logits),
        "the shape of student_patch_logits",
    )
    _checks.require_shape(
        "masks", masks, jnp.shape(student_patch_logits)[:3], "[G, B, N] of student_patch_logits"
    )
    _checks.require_same_dims(
        ("student_patch_logits", "center"), (student_patch_logits, center), (3, 0),
        "number of prototypes K",
    )
    _checks.require_positive_unless_traced("student_temp", student_temp)
    _checks.require_positive_unless_traced("teacher_temp", teacher_temp)

    num_views, batch, num_patches, num_prototypes = jnp.shape(student_patch_logits)
    rows = num_views * batch * num_patches
    q = _teacher_probs(teacher_patch_logits, center, teacher_temp)  # [G, B, N, K]
    m = jnp.asarray(masks, jnp.float32)
    # Mean over the masked patches of each image as a per-patch weight; the clamp keeps unmasked
    # images at 0, not NaN.
    patch_weight = m / jnp.maximum(jnp.sum(m, axis=-1, keepdims=True), 1.0)  # [G, B, N]
    # Every patch is one row paired with its own teacher row: H(q, p) via the shared DINO kernel
    # (logsumexp minus a dot product, analytic backward; no [G, B, N, K] log-probabilities).
    local_sum = _paired_cross_entropy(
        jnp.asarray(student_patch_logits, jnp.float32).reshape(1, rows, num_prototypes),
        q.reshape(1, rows, num_prototypes),
        patch_weight.reshape(1, 1, rows),
        student_temp,
    )
    total, count = _global_sum_and_count(local_sum, batch, axis_name)
    return total / (count * num_views)


def update_patch_center(
    center: jax.Array,
    teacher_patch_logits: jax.Array,
    *,
    momentum: float = 0.9,
    axis_name: str | None = None,
) -> jax.Array:
    """iBOT patch-centre EMA: ``c <- m c + (1 - m) mean_{g,b,n} teacher_patch_logits``.

    The same rule as DINO's eq. (4), with the mean over views, the (global) batch and all patches:
    one centre update (``jaxssl.losses.dino._center_ema``) serves both layouts.

    Args:
      center: ``[K]`` current patch centre.
      teacher_patch_logits: ``[G, B, N, K]`` teacher patch outputs.
      momentum: EMA momentum in [0, 1].
      axis_name: mapped axis over which the batch is sharded, for a global mean.

    Returns:
      float32 ``[K]`` updated centre.

    Example:
      >>> import jax.numpy as jnp
      >>> t = jnp.array([[[[1.0, 0.0], [3.0, 4.0]]]])  # G=1, B=1, N=2, K=2
      >>> print(update_patch_center(jnp.ones(2), t, momentum=0.5))
      [1.5 1.5]
    """
    return _center_ema(center, teacher_patch_logits, "teacher_patch_logits", "[G, B, N, K]",
                       momentum=momentum, axis_name=axis_name)
