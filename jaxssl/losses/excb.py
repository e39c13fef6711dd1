"""ExCB: explicit cluster balancing (Maniadis Metaxas et al., 2024; shared/METHODS.md section 3).

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


def _check_static(check, name: str, value, *bounds) -> None:
    """Runs a scalar check unless ``value`` is traced (a schedule computed inside ``jit``)."""
    if not isinstance(value, jax.core.Tracer):
        check(name, value, *bounds)


def _global_sum(x: jax.Array, axis_name: str | None) -> jax.Array:
    """Sums ``x`` over the devices of ``axis_name`` so batch statistics are global."""
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def _relative_sizes(cluster_sizes: jax.Array) -> jax.Array:
    """r_k = K c_k / sum_j c_j: 1 for a cluster of the fair size 1/K, 0 for an empty one."""
    num_clusters = cluster_sizes.shape[-1]
    # An all-zero size vector would divide 0 by 0; dividing by 1 instead makes it "every cluster
    # empty" (r = 0) with a finite gradient (a tiny floor would overflow the gradient).
    total = jnp.sum(cluster_sizes)
    return num_clusters * cluster_sizes / jnp.where(total > 0, total, 1.0)


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
    _check_static(_checks.require_in_range, "boost", boost, 1.0, float("inf"))
    z = jnp.asarray(similarities, jnp.float32)
    r = _relative_sizes(jnp.asarray(cluster_sizes, jnp.float32))
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


def _assignment_fractions(labels: jax.Array, num_clusters: int, axis_name: str | None):
    """Paper Eq. 8: the fraction of (global) rows whose hard assignment is each cluster."""
    counts = jnp.zeros((num_clusters,), jnp.float32).at[labels.reshape(-1)].add(1.0)
    counts = _global_sum(counts, axis_name)
    # Every row lands in exactly one cluster, so the counts sum to the global number of rows.
    return counts / jnp.sum(counts)


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
    input stays on the simplex.

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
    _check_static(_checks.require_in_range, "momentum", momentum, 0.0, 1.0)
    sizes = jax.lax.stop_gradient(jnp.asarray(cluster_sizes, jnp.float32))
    labels = jnp.argmax(jnp.asarray(balanced_similarities, jnp.float32), axis=-1)
    fractions = _assignment_fractions(labels, sizes.shape[0], axis_name)
    return momentum * sizes + (1.0 - momentum) * fractions


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
    empty_threshold: float = 0.01,
    axis_name: str | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ExCB cross-entropy between balanced teacher targets and student predictions (paper Eq. 7).

    Teacher targets q_t = softmax(B(z_t; s) / teacher_temp) (Eqs. 4, 6) for the G global views,
    under stop-gradient; student predictions p = softmax(z / student_temp) (Eq. 5). Each teacher
    view t is paired with (a) the direct projection of every OTHER global view and (b) the
    predictor output of EVERY view (globals first, then locals): G (G - 1) + G V pairs, 18 for
    G = 2, V = 8. The loss is the mean of H(q, p) over those pairs and the (global) batch
    (shared/METHODS.md section 3; local direct projections are not in the loss).

    Centroid stop-gradients are the model's job; see the module docstring.

    Args:
      direct_sims: ``[G, B, K]`` student cosine similarities of the global views' projections.
      predictor_sims: ``[V, B, K]`` student similarities of the predictor outputs of all V >= G
        views, globals first.
      teacher_sims: ``[G, B, K]`` teacher similarities of the global views (stop-gradient).
      cluster_sizes: ``[K]`` EMA cluster sizes before this step (stop-gradient).
      student_temp, teacher_temp: softmax temperatures (> 0; may be traced schedules).
      boost: arg-max boost of :func:`balance_similarities` (>= 1).
      momentum: EMA momentum of :func:`update_cluster_sizes`, in [0, 1].
      empty_threshold: a cluster counts as empty in ``aux["empty_fraction"]`` when its updated
        relative size K c_k / sum_j c_j is below this. With m = 0.999 a cluster of fair size
        falls below 0.01 only after about 4,600 steps without a single assignment; a per-batch
        count would be useless because a batch holds far fewer rows than K.
      axis_name: mapped batch axis (inside ``jax.shard_map``); every mean and count is global.

    Returns:
      ``(loss, aux)``: the float32 scalar loss and a dict of float32 values:
      ``cluster_sizes`` (``[K]``, updated with the arg-max of the balanced, boosted teacher
      similarities, i.e. the arg-max of q), ``direct_ce`` and ``predictor_ce`` (mean H over each
      group of pairs; ``direct_ce`` is 0 when G = 1), ``teacher_confidence`` (mean max q, Eq. 11),
      ``min_relative_size`` / ``max_relative_size`` / ``empty_fraction`` (of the UPDATED sizes),
      ``label_change_fraction`` (teacher rows whose arg-max the balancing changed) and, when
      G >= 2, ``view_agreement`` (teacher arg-max agreement over ordered pairs of distinct
      global views, Eq. 12 normalised to [0, 1]).

    >>> import jax, jax.numpy as jnp
    >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    >>> direct = jnp.tanh(jax.random.normal(k1, (2, 4, 8)))
    >>> pred = jnp.tanh(jax.random.normal(k2, (3, 4, 8)))
    >>> teacher = jnp.tanh(jax.random.normal(k3, (2, 4, 8)))
    >>> loss, aux = excb_loss(direct, pred, teacher, jnp.full((8,), 1 / 8))
    >>> print(loss.dtype, aux["cluster_sizes"].shape, round(float(aux["cluster_sizes"].sum()), 4))
    float32 (8,) 1.0
    """
    _checks.require_rank("direct_sims", direct_sims, 3, "[G, B, K]")
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
    _checks.require_same_dims(
        ("direct_sims", "teacher_sims"), (direct_sims, teacher_sims), (0, 0),
        "The number of global views G (axis 0)",
    )
    num_global = jnp.shape(teacher_sims)[0]
    _checks.require_min_views("teacher_sims", teacher_sims, 1)
    _checks.require_min_views("predictor_sims", predictor_sims, num_global)
    _check_static(_checks.require_positive, "student_temp", student_temp)
    _check_static(_checks.require_positive, "teacher_temp", teacher_temp)
    _check_static(_checks.require_in_range, "boost", boost, 1.0, float("inf"))
    _check_static(_checks.require_in_range, "momentum", momentum, 0.0, 1.0)

    num_views, batch, num_clusters = jnp.shape(predictor_sims)
    teacher = jax.lax.stop_gradient(jnp.asarray(teacher_sims, jnp.float32))
    sizes = jax.lax.stop_gradient(jnp.asarray(cluster_sizes, jnp.float32))

    # Eqs. 4 and 6: balanced, sharpened teacher targets.
    balanced = balance_similarities(teacher, sizes, boost=boost)
    q = jax.nn.softmax(balanced / teacher_temp, axis=-1)
    # Eq. 5: student predictions of the direct projections and of the predictor outputs.
    log_p_direct = jax.nn.log_softmax(jnp.asarray(direct_sims, jnp.float32) / student_temp, -1)
    log_p_pred = jax.nn.log_softmax(jnp.asarray(predictor_sims, jnp.float32) / student_temp, -1)

    # H(q_t, p_s) summed over the local batch for every (teacher view, student view) pair, as one
    # contraction over (B, K) so no [G, V, B, K] product is ever built. HIGHEST keeps float32
    # accuracy on accelerators whose default matmul precision is lower.
    highest = jax.lax.Precision.HIGHEST
    ce_direct = -jnp.einsum("tbk,sbk->ts", q, log_p_direct, precision=highest)
    ce_pred = -jnp.einsum("tbk,vbk->tv", q, log_p_pred, precision=highest)
    ce_direct = _global_sum(ce_direct, axis_name)
    ce_pred = _global_sum(ce_pred, axis_name)
    global_batch = _global_sum(jnp.float32(batch), axis_name)

    # Eq. 7, first sum: a teacher view is never paired with its own direct projection.
    other_view = ~jnp.eye(num_global, dtype=bool)
    direct_sum = jnp.sum(jnp.where(other_view, ce_direct, 0.0))
    pred_sum = jnp.sum(ce_pred)
    num_direct = num_global * (num_global - 1)
    num_pred = num_global * num_views
    loss = (direct_sum + pred_sum) / ((num_direct + num_pred) * global_batch)

    # Eqs. 8-9 with the arg-max of q (= of the balanced, boosted similarities).
    labels = jnp.argmax(balanced, axis=-1)
    fractions = _assignment_fractions(labels, num_clusters, axis_name)
    new_sizes = momentum * sizes + (1.0 - momentum) * fractions
    relative = _relative_sizes(new_sizes)

    teacher_rows = num_global * global_batch
    raw_labels = jnp.argmax(teacher, axis=-1)
    aux = {
        "cluster_sizes": new_sizes,
        "direct_ce": direct_sum / (max(num_direct, 1) * global_batch),
        "predictor_ce": pred_sum / (num_pred * global_batch),
        # Eq. 11.
        "teacher_confidence": _global_sum(jnp.sum(jnp.max(q, axis=-1)), axis_name) / teacher_rows,
        "min_relative_size": jnp.min(relative),
        "max_relative_size": jnp.max(relative),
        "empty_fraction": jnp.mean((relative < empty_threshold).astype(jnp.float32)),
        "label_change_fraction": _global_sum(
            jnp.sum((labels != raw_labels).astype(jnp.float32)), axis_name
        ) / teacher_rows,
    }
    if num_global >= 2:
        # Eq. 12 over ordered pairs of distinct global views, as a fraction.
        same = (labels[:, None, :] == labels[None, :, :]) & other_view[:, :, None]
        aux["view_agreement"] = _global_sum(jnp.sum(same.astype(jnp.float32)), axis_name) / (
            num_direct * global_batch
        )
    return loss, aux
