"""ExCB: explicit cluster balancing (Maniadis Metaxas et al., 2024).

The teacher's cosine similarities to the K centroids are re-weighted by the balancing operator
B(z; s) (paper Eq. 10) using an exponential moving average of hard cluster sizes (Eqs. 8-9), and
the student is trained with a cross-entropy to the balanced, sharpened teacher targets (Eqs. 5-7).

The stop-gradients on the centroid matrix (the centroids learn only through the direct projections
of the global views; paper Eq. 2, Algorithm 2) belong to the MODEL: its centroid layer has a switch
that uses ``stop_gradient(centroids)`` for the predictor outputs and the local crops. The loss
functions here only see similarities and cannot implement that split.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxssl.losses import _checks
from jaxssl.ops.cluster_sizes import (
    EMPTY_RELATIVE_SIZE,
    assignment_fractions,
    cluster_size_diagnostics,
    relative_sizes,
)
from jaxssl.ops.collectives import global_sum
from jaxssl.ops.confidence import teacher_confidence
from jaxssl.ops.ema import ema


def _check_sizes(similarities, cluster_sizes, similarities_name: str) -> None:
    _checks.require_rank("cluster_sizes", cluster_sizes, 1, "[K]")
    if jnp.ndim(similarities) < 1:
        raise ValueError(
            f"{similarities_name} must have at least rank 1 with layout [..., K], "
            f"got shape {tuple(jnp.shape(similarities))}."
        )
    _checks.require_same_dims(
        (similarities_name, "cluster_sizes"),
        (similarities, cluster_sizes),
        (-1, 0),
        "The number of clusters K (last axis)",
    )


def balance_similarities(
    similarities: jax.Array, cluster_sizes: jax.Array, *, boost: float = 1.01
) -> jax.Array:
    """Applies the ExCB balancing operator B(z; s) (paper Eq. 10), then boosts each row's arg-max.

    With the relative size r_k = K c_k / sum_j c_j of cluster k, every similarity z to it becomes

    - r_k < 1 (undersized):  1 - (1 - z) r_k   (raised; an empty cluster, r_k = 0, gives 1),
    - r_k > 1 (oversized):   (1 + z) / r_k - 1 (lowered towards -1),
    - r_k = 1:               z.

    The arg-max entry of each row (the first one on ties) is then multiplied by ``boost``
    (released code; a negative winner therefore moves down) and all values are clamped to
    [-1, 1]. Both branches are evaluated with safe denominators, so values and gradients stay
    finite for any sizes, including empty clusters and an all-zero vector.

    Args:
      similarities: ``[..., K]`` cosine similarities in [-1, 1] (any leading axes).
      cluster_sizes: ``[K]`` non-negative cluster sizes (the EMA of Eq. 9, summing to 1).
      boost: factor (>= 1) for the arg-max entry of each row.

    Returns:
      float32 ``[..., K]`` balanced similarities in [-1, 1].

    >>> import jax.numpy as jnp
    >>> z = jnp.array([[0.5, 0.5, 0.0, -0.5]])
    >>> sizes = jnp.array([0.125, 0.25, 0.375, 0.25])  # relative sizes 0.5, 1, 1.5, 1
    >>> print(jnp.round(balance_similarities(z, sizes, boost=1.0), 4))
    [[ 0.75    0.5    -0.3333 -0.5   ]]
    """
    _check_sizes(similarities, cluster_sizes, "similarities")
    _checks.require_in_range_unless_traced("boost", boost, 1.0, float("inf"))
    z = jnp.asarray(similarities, jnp.float32)
    r = relative_sizes(cluster_sizes)
    # Eq. 10, r < 1: shift z to [0, 2] around 1, shrink the distance to 1 by r.
    undersized = 1.0 - (1.0 - z) * r
    # Eq. 10, r > 1: shift z to [0, 2] around -1, shrink it by 1 / r. The denominator is only
    # used where r > 1; elsewhere it is replaced by 1 so the unselected branch of the `where`
    # (and its gradient) never divides by zero.
    safe_r = jnp.where(r > 1.0, r, 1.0)
    oversized = (1.0 + z) / safe_r - 1.0
    balanced = jnp.where(r < 1.0, undersized, jnp.where(r > 1.0, oversized, z))
    # Boost the winning cluster of every row (only the first arg-max on ties) and clamp.
    winner = jnp.argmax(balanced, axis=-1)
    is_winner = jnp.arange(balanced.shape[-1]) == winner[..., None]
    balanced = jnp.where(is_winner, balanced * boost, balanced)
    return jnp.clip(balanced, -1.0, 1.0)


def update_cluster_sizes(
    cluster_sizes: jax.Array,
    balanced_similarities: jax.Array,
    *,
    momentum: float = 0.999,
    axis_name: str | None = None,
) -> jax.Array:
    """Folds this step's hard cluster assignments into the size estimate (paper Eqs. 8-9).

    f_k is the fraction of rows (over every leading axis of ``balanced_similarities`` and, with
    ``axis_name``, over all devices) whose arg-max is k; the result is m c + (1 - m) f. A simplex
    input stays on the simplex. The pieces are :func:`jaxssl.ops.cluster_sizes.assignment_fractions`
    (Eq. 8) and :func:`jaxssl.ops.ema.ema` (Eq. 9), which the ExCB method also calls once per
    optimiser step.

    Args:
      cluster_sizes: ``[K]`` current sizes.
      balanced_similarities: ``[..., K]`` balanced teacher similarities (the output of
        :func:`balance_similarities`); only their row-wise arg-max is used.
      momentum: EMA momentum m in [0, 1].
      axis_name: mapped axis to count over (inside ``jax.shard_map``), or None.

    Returns:
      float32 ``[K]`` updated sizes.

    >>> import jax.numpy as jnp
    >>> sizes = jnp.full((4,), 0.25)
    >>> z = jnp.array([[0.9, 0.1, 0.0, 0.0], [0.8, 0.0, 0.1, 0.0]])
    >>> print(update_cluster_sizes(sizes, z, momentum=0.5))
    [0.625 0.125 0.125 0.125]
    """
    _check_sizes(balanced_similarities, cluster_sizes, "balanced_similarities")
    _checks.require_in_range_unless_traced("momentum", momentum, 0.0, 1.0)
    labels = jnp.argmax(jnp.asarray(balanced_similarities, jnp.float32), axis=-1)
    # Eq. 8 (the batch statistic), then Eq. 9 (its EMA).
    fractions = assignment_fractions(labels, jnp.shape(cluster_sizes)[0], axis_name)
    return ema(cluster_sizes, fractions, momentum)


PAIRINGS = ("paper", "released")


def _check_loss_inputs(direct_sims, predictor_sims, teacher_sims, cluster_sizes, pairing: str
                       ) -> None:
    """Trace-time checks of :func:`excb_loss`'s arrays: ranks, shared B and K, the view counts."""
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}.")
    _checks.require_rank("direct_sims", direct_sims, 3, "[V, B, K]")
    _checks.require_rank("predictor_sims", predictor_sims, 3, "[V, B, K]")
    _checks.require_rank("teacher_sims", teacher_sims, 3, "[G, B, K]")
    _checks.require_rank("cluster_sizes", cluster_sizes, 1, "[K]")
    names = ("direct_sims", "predictor_sims", "teacher_sims")
    arrays = (direct_sims, predictor_sims, teacher_sims)
    _checks.require_same_dims(names, arrays, (1, 1, 1), "The batch size B (axis 1)")
    _checks.require_same_dims(
        names + ("cluster_sizes",), arrays + (cluster_sizes,), (2, 2, 2, 0),
        "The number of clusters K",
    )
    num_global = jnp.shape(teacher_sims)[0]
    _checks.require_min_views("teacher_sims", teacher_sims, 1)
    _checks.require_min_views("predictor_sims", predictor_sims, num_global)
    num_views, num_direct = jnp.shape(predictor_sims)[0], jnp.shape(direct_sims)[0]
    shapes = (f"direct_sims.shape={tuple(jnp.shape(direct_sims))}, "
              f"predictor_sims.shape={tuple(jnp.shape(predictor_sims))}")
    if pairing == "paper" and num_direct != num_views:
        raise ValueError(
            f"excb_loss(pairing='paper') needs direct_sims for all V = {num_views} views of "
            f"predictor_sims (globals first), got {shapes}; pass the local views' direct "
            "projections or use pairing='released'."
        )
    if pairing == "paper" and num_views < 2:
        raise ValueError(
            "excb_loss(pairing='paper') needs at least 2 views (a teacher view is never paired "
            f"with its own direct projection), got {shapes}."
        )
    if pairing == "released" and num_direct not in (num_global, num_views):
        raise ValueError(
            f"excb_loss(pairing='released') needs direct_sims for the G = {num_global} global "
            f"views or for all V = {num_views} views (globals first), got {shapes} and "
            f"teacher_sims.shape={tuple(jnp.shape(teacher_sims))}."
        )


def excb_loss(
    direct_sims: jax.Array,
    predictor_sims: jax.Array,
    teacher_sims: jax.Array,
    cluster_sizes: jax.Array,
    *,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
    boost: float = 1.01,
    momentum: float = 0.999,
    pairing: str = "paper",
    empty_threshold: float = EMPTY_RELATIVE_SIZE,
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ExCB cross-entropy between balanced teacher targets and student predictions (paper Eq. 7).

    Teacher targets q_t = softmax(B(z_t; s) / teacher_temp) (Eqs. 4, 6) for the G global views,
    under stop-gradient; student predictions p_h[v] = softmax(z_h[v] / student_temp) of the
    direct projections and p_g[v] = softmax(z_g[v] / student_temp) of the predictor outputs
    (Eq. 5), for the V views (globals first, so student view t < G is teacher view t's crop).
    With H(q, p) = -sum_k q_k log p_k averaged over the (global) batch, ``pairing`` selects:

    - ``"paper"`` (default; the paper's Algorithm 1, its missing minus sign read as a
      cross-entropy): every view's direct projection except the teacher's own crop, and every
      view's predictor output, the two families weighted 1/2 each and summed over teacher views::

          L = sum_{t < G} [ 0.5 / (V - 1) * sum_{v != t} H(q_t, p_h[v])
                          + 0.5 / V       * sum_{v}      H(q_t, p_g[v]) ]

      It needs ``direct_sims`` for all V views (the local ones included) and V >= 2.
    - ``"released"`` (the released code): only the OTHER global views' direct projections and
      every predictor output, G (G - 1) + G V pairs (18 for G = 2, V = 8), equal weights::

          L = [ sum_{t < G} sum_{v < G, v != t} H(q_t, p_h[v])
              + sum_{t < G} sum_{v} H(q_t, p_g[v]) ] / (G (G - 1) + G V)

      ``direct_sims`` may hold only the G global views; local rows, if given, are unused.

    So ``"paper"`` = G (0.5 ``direct_ce`` + 0.5 ``predictor_ce``) with ``direct_ce`` over
    G (V - 1) pairs, while ``"released"`` gives the predictor terms G V / (G (G - 1) + G V) of
    the weight (16/18 for G = 2, V = 8).

    Centroid stop-gradients are the model's job (the local views' direct projections must use
    constant centroids); see the module docstring.

    Args:
      direct_sims: ``[V, B, K]`` student cosine similarities of the direct projections of all
        views, globals first (``pairing="released"`` also accepts ``[G, B, K]``).
      predictor_sims: ``[V, B, K]`` student similarities of the predictor outputs of all V >= G
        views, globals first.
      teacher_sims: ``[G, B, K]`` teacher similarities of the global views (stop-gradient).
      cluster_sizes: ``[K]`` EMA cluster sizes before this step (stop-gradient).
      student_temp, teacher_temp: softmax temperatures (> 0; may be traced schedules).
      boost: arg-max boost of :func:`balance_similarities` (>= 1).
      momentum: EMA momentum of :func:`update_cluster_sizes`, in [0, 1].
      pairing: ``"paper"`` or ``"released"``, the pairs and weights above.
      empty_threshold: a cluster counts as empty in ``aux["empty_fraction"]`` when its updated
        relative size K c_k / sum_j c_j is below this (default
        ``jaxssl.ops.cluster_sizes.EMPTY_RELATIVE_SIZE`` = 0.01). With m = 0.999 a cluster of
        fair size falls below 0.01 only after about 4,600 steps without a single assignment; a
        per-batch count would be useless because a batch holds far fewer rows than K.
      axis_name: mapped batch axis (inside ``jax.shard_map``); every mean and count is global.

    Returns:
      ``(loss, aux)``: the float32 scalar loss and a dict of float32 values:
      ``cluster_sizes`` (``[K]``, updated with the arg-max of the balanced, boosted teacher
      similarities, i.e. the arg-max of q), ``direct_ce`` and ``predictor_ce`` (mean H over each
      family's pairs under ``pairing``; ``direct_ce`` is 0 when it has none),
      ``teacher_confidence`` (mean max q, Eq. 11), ``min_relative_size`` /
      ``max_relative_size`` / ``empty_fraction`` (of the UPDATED sizes),
      ``label_change_fraction`` (teacher rows whose arg-max the balancing changed) and, when
      G >= 2, ``view_agreement`` (teacher arg-max agreement over ordered pairs of distinct
      global views, Eq. 12 normalised to [0, 1]).

    Raises:
      ValueError: for mismatched shapes, e.g. a ``[G, B, K]`` ``direct_sims`` with
        ``pairing="paper"`` and V > G (the message names both shapes).

    With uniform student predictions every H is log K, so ``"paper"`` gives G log K (summed over
    teacher views) and ``"released"`` log K (a mean over pairs):

    >>> import jax, jax.numpy as jnp
    >>> teacher = jnp.tanh(jax.random.normal(jax.random.key(0), (2, 4, 8)))  # G = 2, K = 8
    >>> student = jnp.zeros((3, 4, 8))  # V = 3 views: 2 globals, 1 local
    >>> sizes = jnp.full((8,), 1 / 8)
    >>> paper, aux = excb_loss(student, student, teacher, sizes)
    >>> released, _ = excb_loss(student[:2], student, teacher, sizes, pairing="released")
    >>> print(round(float(paper), 4), round(2 * float(jnp.log(8.0)), 4), round(float(released), 4))
    4.1589 4.1589 2.0794
    >>> print(aux["cluster_sizes"].shape, round(float(aux["cluster_sizes"].sum()), 4))
    (8,) 1.0
    """
    _check_loss_inputs(direct_sims, predictor_sims, teacher_sims, cluster_sizes, pairing)
    _checks.require_positive_unless_traced("student_temp", student_temp)
    _checks.require_positive_unless_traced("teacher_temp", teacher_temp)
    _checks.require_in_range_unless_traced("boost", boost, 1.0, float("inf"))
    _checks.require_in_range_unless_traced("momentum", momentum, 0.0, 1.0)

    num_global = jnp.shape(teacher_sims)[0]
    teacher = jax.lax.stop_gradient(jnp.asarray(teacher_sims, jnp.float32))
    sizes = jax.lax.stop_gradient(jnp.asarray(cluster_sizes, jnp.float32))
    # The released pairing uses the global views' direct projections only; drop local rows
    # before the softmax so none is computed for nothing (and no gradient reaches them).
    direct = direct_sims if pairing == "paper" else direct_sims[:num_global]

    # Eqs. 4 and 6: balanced, sharpened teacher targets.
    balanced = balance_similarities(teacher, sizes, boost=boost)
    q = jax.nn.softmax(balanced / teacher_temp, axis=-1)
    loss, direct_ce, predictor_ce, global_batch = _pair_cross_entropies(
        q, direct, predictor_sims, student_temp, pairing, axis_name)

    # Eqs. 8-9 with the arg-max of q (= of the balanced, boosted similarities).
    labels = jnp.argmax(balanced, axis=-1)
    new_sizes = ema(sizes, assignment_fractions(labels, jnp.shape(sizes)[0], axis_name), momentum)
    changed = jnp.sum((labels != jnp.argmax(teacher, axis=-1)).astype(jnp.float32))
    aux = {
        "cluster_sizes": new_sizes,
        "direct_ce": direct_ce,
        "predictor_ce": predictor_ce,
        "teacher_confidence": teacher_confidence(q, axis_name),  # Eq. 11
        **cluster_size_diagnostics(new_sizes, empty_threshold),
        "label_change_fraction": global_sum(changed, axis_name) / (num_global * global_batch),
    }
    if num_global >= 2:
        # Eq. 12 over ordered pairs of distinct global views, as a fraction.
        other_view = ~jnp.eye(num_global, dtype=bool)
        same = (labels[:, None, :] == labels[None, :, :]) & other_view[:, :, None]
        aux["view_agreement"] = global_sum(jnp.sum(same.astype(jnp.float32)), axis_name) / (
            num_global * (num_global - 1) * global_batch
        )
    return loss, aux


def _pair_cross_entropies(q, direct, predictor_sims, student_temp, pairing: str,
                          axis_name: str | None):
    """Eqs. 5 and 7: ``(loss, direct_ce, predictor_ce, global_batch)`` of :func:`excb_loss`.

    ``q`` is ``[G, B, K]`` (constant teacher targets), ``direct`` ``[V or G, B, K]`` and
    ``predictor_sims`` ``[V, B, K]`` student similarities; the pairs and weights are ``pairing``'s.
    """
    num_global, batch = jnp.shape(q)[:2]
    num_views = jnp.shape(predictor_sims)[0]
    # Eq. 5: student predictions of the direct projections and of the predictor outputs.
    log_p_direct = jax.nn.log_softmax(jnp.asarray(direct, jnp.float32) / student_temp, -1)
    log_p_pred = jax.nn.log_softmax(jnp.asarray(predictor_sims, jnp.float32) / student_temp, -1)

    # H(q_t, p_s) summed over the local batch for every (teacher view, student view) pair, as one
    # contraction over (B, K) so no [G, V, B, K] product is ever built. HIGHEST keeps float32
    # accuracy on accelerators whose default matmul precision is lower.
    highest = jax.lax.Precision.HIGHEST
    ce_direct = -jnp.einsum("tbk,sbk->ts", q, log_p_direct, precision=highest)
    ce_pred = -jnp.einsum("tbk,vbk->tv", q, log_p_pred, precision=highest)
    ce_direct = global_sum(ce_direct, axis_name)
    ce_pred = global_sum(ce_pred, axis_name)
    global_batch = global_sum(jnp.float32(batch), axis_name)

    # Eq. 7 / Algorithm 1: a teacher view is never paired with its own crop's direct projection
    # (student view t is teacher view t's crop).
    num_direct_views = jnp.shape(direct)[0]
    not_own_crop = jnp.arange(num_global)[:, None] != jnp.arange(num_direct_views)[None, :]
    direct_sum = jnp.sum(jnp.where(not_own_crop, ce_direct, 0.0))
    pred_sum = jnp.sum(ce_pred)
    num_direct = num_global * (num_direct_views - 1)
    num_pred = num_global * num_views
    direct_ce = direct_sum / (max(num_direct, 1) * global_batch)
    predictor_ce = pred_sum / (num_pred * global_batch)
    if pairing == "paper":
        # Algorithm 1: loss = 0.5 loss_h / (G + L - 1) + 0.5 loss_g / (G + L), where loss_h and
        # loss_g are sums over the G teacher views of batch-mean cross-entropies.
        loss = num_global * (0.5 * direct_ce + 0.5 * predictor_ce)
    else:
        loss = (direct_sum + pred_sum) / ((num_direct + num_pred) * global_batch)
    return loss, direct_ce, predictor_ce, global_batch
