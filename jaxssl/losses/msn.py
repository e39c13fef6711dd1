"""MSN and PMSN losses: sharpened Sinkhorn targets and prior matching of the mean prediction.

Masked Siamese Networks (MSN, Assran et al. 2022) match the prototype assignment of masked or small
"anchor" views to the sharpened, Sinkhorn-balanced assignment of an unmasked "target" view, and add
a mean-entropy-maximisation regulariser on the average anchor prediction. Prior Matching for
Siamese Networks (PMSN, "The hidden uniform cluster prior in self-supervised learning", Assran et
al. 2023) notes that this regulariser is KL(p_bar || uniform) and swaps the uniform prior for a
power law. The maths and the jaxssl decisions are in docs/methods.md (MSN and PMSN).

Batch statistics (the Sinkhorn prototype marginals, the mean prediction p_bar, the batch means of
the loss terms) are global: with ``axis_name`` they are reduced across that mapped axis, so every
device returns the loss of the concatenated batch.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.losses import _checks
from jaxssl.ops.collectives import global_count, global_sum
from jaxssl.ops.confidence import teacher_confidence
from jaxssl.ops.normalize import l2_normalize

Array = jax.Array

# Smallest normal float32: clamping a probability here before its log keeps log(0) finite
# (about -87.3) while leaving every representable non-zero probability unchanged.
_TINY = float(np.finfo(np.float32).tiny)
_DIRECTIONS = ("mean_to_prior", "prior_to_mean")
_PRIOR_SUM_TOLERANCE = 1e-4


def _require_non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a Python int >= 0, got {value!r}.")


def _safe_log(p: Array) -> Array:
    return jnp.log(jnp.maximum(p, _TINY))


def sharpen(probs: Array, temperature: float) -> Array:
    """MSN target sharpening along the last axis: ``p**(1/T) / sum_k p_k**(1/T)``.

    Computed as a softmax of ``log(p) / T`` in float32, with ``log`` clamped at the smallest normal
    float, so zero and one-hot probabilities give no NaN; an all-zero row comes back uniform.

    Args:
      probs: ``[..., K]`` non-negative values (need not be normalised).
      temperature: T > 0; T < 1 sharpens, T = 1 only renormalises.

    Returns:
      float32 array shaped like ``probs`` whose last axis sums to 1.

    >>> p = sharpen(jnp.array([0.5, 0.25, 0.25]), 0.5)
    >>> print([round(float(v), 4) for v in p])
    [0.6667, 0.1667, 0.1667]
    """
    _checks.require_positive_unless_traced("temperature", temperature)
    logp = _safe_log(jnp.asarray(probs, jnp.float32))
    return jax.nn.softmax(logp / temperature, axis=-1)


def sinkhorn(probs: Array, *, num_iters: int = 3, axis_name: str | None = None) -> Array:
    """Balances sample-to-prototype probabilities with Sinkhorn-Knopp (the MSN targets).

    With Q = P^T / sum(P) (``[K, B]``), each iteration divides every row (prototype) by its sum and
    by K, then every column (sample) by its sum and by B; the result is ``(B * Q)^T``. After an
    iteration each sample's row sums to exactly 1 and, as iterations grow, every prototype receives
    1/K of the batch's mass. Prototype sums and B are global: with ``axis_name`` they are summed
    across that axis. Sums are clamped at the smallest normal float, so a prototype no sample uses
    stays at zero instead of producing 0/0; the gradient is finite too (zero for the entries of
    a prototype, or sample, whose mass is exactly 0, see ``_divide_by_mass``).

    ``num_iters=0`` performs no balancing: the result is ``B * P / sum(P)``, i.e. ``P`` itself
    when its rows are already normalised.

    Args:
      probs: ``[B, K]`` non-negative probabilities (computed in float32).
      num_iters: number of Sinkhorn-Knopp iterations, a Python int >= 0.
      axis_name: mapped axis that splits the batch, or None.

    Returns:
      float32 ``[B, K]`` balanced assignments.

    >>> q = sinkhorn(jnp.array([[0.9, 0.1], [0.6, 0.4]]), num_iters=50)
    >>> print([round(float(v), 3) for v in q.sum(0)], [round(float(v), 3) for v in q.sum(1)])
    [1.0, 1.0] [1.0, 1.0]
    """
    _checks.require_rank("probs", probs, 2, "[B, K]")
    _require_non_negative_int("num_iters", num_iters)
    q = jnp.asarray(probs, jnp.float32)  # kept as [B, K]: "rows" of Q^T below are columns here
    local_b, k = q.shape
    b = global_count(local_b, axis_name)
    q = _divide_by_mass(q, global_sum(jnp.sum(q), axis_name))
    for _ in range(num_iters):
        # Prototype marginals: sum over the global batch, then each prototype gets mass 1/K.
        proto_mass = global_sum(jnp.sum(q, axis=0, keepdims=True), axis_name)
        q = _divide_by_mass(q, proto_mass) / k
        # Sample marginals: local to each sample, then each sample gets mass 1/B.
        sample_mass = jnp.sum(q, axis=1, keepdims=True)
        q = _divide_by_mass(q, sample_mass) / b
    return q * b


def _divide_by_mass(q: Array, mass: Array) -> Array:
    """``q / max(mass, tiny)`` where ``mass > 0``, else 0, with a finite gradient everywhere.

    For non-negative ``q`` the values equal the clamped division (a zero mass means its entries
    are all 0). The gradient of ``x / tiny`` with respect to ``tiny`` is ``-x / tiny**2``, and
    ``tiny**2`` underflows to 0, so a zero mass (a prototype no sample uses, e.g. one-hot input)
    gave 0/0 = NaN in the backward pass. Here the division is never evaluated where the mass is
    zero (the "double where" idiom) and those entries are the constant 0, with a zero gradient:
    the true one-sided derivative is unbounded there (any mass moved into an empty prototype is
    rescaled to 1/K), and 0 is what a stop-gradient would give.
    """
    used = mass > 0
    safe = jnp.where(used, jnp.maximum(mass, _TINY), 1.0)
    return jnp.where(used, q / safe, 0.0)


def uniform_prior(num_prototypes: int) -> Array:
    """The uniform prior ``pi_k = 1/K`` that plain MSN matches implicitly (PMSN section 3).

    >>> print(uniform_prior(4))
    [0.25 0.25 0.25 0.25]
    """
    _checks.require_positive("num_prototypes", num_prototypes)
    return jnp.full((int(num_prototypes),), 1.0 / num_prototypes, jnp.float32)


def power_law_prior(num_prototypes: int, exponent: float = 0.25) -> Array:
    """PMSN's power-law prior ``pi_k = k**(-tau) / sum_j j**(-tau)``, k = 1..K (PMSN section 4).

    Built host-side in float64 (K and tau are hyper-parameters), returned as float32. It is strictly
    decreasing for tau > 0 and uniform for tau = 0.

    Args:
      num_prototypes: K >= 1.
      exponent: tau >= 0.

    >>> print([round(float(v), 4) for v in power_law_prior(3, exponent=1.0)])
    [0.5455, 0.2727, 0.1818]
    """
    _checks.require_positive("num_prototypes", num_prototypes)
    if not exponent >= 0:
        raise ValueError(f"exponent must be >= 0, got {exponent!r}.")
    ranks = np.arange(1, int(num_prototypes) + 1, dtype=np.float64)
    weights = ranks ** (-float(exponent))
    return jnp.asarray(weights / weights.sum(), jnp.float32)


def _check_prior(prior: Any, num_prototypes: int) -> None:
    _checks.require_shape("prior", prior, (num_prototypes,), "one probability per prototype")
    if _checks.is_traced(prior):
        # Under jit a traced prior has no values to inspect; only its shape is checked.
        return
    values = np.asarray(prior, np.float64)
    if np.any(values < 0):
        raise ValueError(f"prior must be non-negative, got minimum {values.min()!r}.")
    total = values.sum()
    if abs(total - 1.0) > _PRIOR_SUM_TOLERANCE:
        raise ValueError(
            f"prior must sum to 1 (tolerance {_PRIOR_SUM_TOLERANCE}), got sum {total!r}."
        )


def prior_matching_loss(
    mean_probs: Array,
    prior: Array,
    *,
    direction: str = "mean_to_prior",
    sort: bool = False,
) -> Array:
    """KL divergence between the mean prediction and a cluster prior (the PMSN regulariser).

    ``"mean_to_prior"`` (default) is KL(p_bar || pi) = sum_k p_bar_k (log p_bar_k - log pi_k), which
    for the uniform prior equals MSN's ``log K - H(p_bar)``; ``"prior_to_mean"`` is KL(pi || p_bar),
    the direction the lightly library uses. Terms with a zero weight contribute 0 (0 log 0 = 0);
    logs are clamped at the smallest normal float, so zeros give large finite values, never NaN.

    The prior's sum (1 within 1e-4) and sign are checked only when it is concrete: a prior traced
    under ``jax.jit`` is checked for shape only.

    Args:
      mean_probs: ``[K]`` mean predicted probabilities p_bar.
      prior: ``[K]`` target distribution pi (non-negative, summing to 1).
      direction: ``"mean_to_prior"`` or ``"prior_to_mean"``.
      sort: sort ``mean_probs`` in descending order before matching, so a decreasing prior
        constrains the cluster-size profile but not which prototype is large.

    Returns:
      float32 scalar.

    >>> p_bar = jnp.array([0.5, 0.5, 0.0, 0.0])
    >>> print(round(float(prior_matching_loss(p_bar, uniform_prior(4))), 4))  # log 4 - log 2
    0.6931
    """
    _checks.require_rank("mean_probs", mean_probs, 1, "[K]")
    _check_prior(prior, jnp.shape(mean_probs)[0])
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}.")
    m = jnp.asarray(mean_probs, jnp.float32)
    pi = jnp.asarray(prior, jnp.float32)
    if sort:
        m = jnp.sort(m)[::-1]
    if direction == "mean_to_prior":
        return jnp.sum(m * (_safe_log(m) - _safe_log(pi)))
    return jnp.sum(pi * (_safe_log(pi) - _safe_log(m)))


def msn_targets(
    targets: Array,
    prototypes: Array,
    *,
    temperature: float = 0.1,
    sharpen_temperature: float = 0.25,
    sinkhorn_iters: int = 3,
    axis_name: str | None = None,
) -> Array:
    """MSN target assignments: sharpened, Sinkhorn-balanced, stop-gradient (MSN eq. (2)).

    ``sinkhorn(sharpen(softmax(cos(z+, W) / temperature), sharpen_temperature))``, computed as
    softmax(cos / (temperature * sharpen_temperature)) so no probability underflows before the
    power. The Sinkhorn marginals are batch statistics: compute the targets once over the whole
    batch and pass row slices to :func:`msn_loss` as ``target_probs`` to keep them exact under
    gradient accumulation.

    Args:
      targets: ``[B, D]`` target-view embeddings (L2-normalised inside).
      prototypes: ``[K, D]`` prototypes (L2-normalised inside; no gradient flows to them here).
      temperature, sharpen_temperature, sinkhorn_iters, axis_name: as in :func:`msn_loss`.

    Returns:
      float32 ``[B, K]`` rows summing to 1.

    >>> q = msn_targets(jnp.eye(2), jnp.eye(2), temperature=1.0, sharpen_temperature=1.0)
    >>> print([round(float(v), 4) for v in q[0]])
    [0.7311, 0.2689]
    """
    _checks.require_rank("targets", targets, 2, "[B, D]")
    _checks.require_rank("prototypes", prototypes, 2, "[K, D]")
    _checks.require_same_dims(("targets", "prototypes"), (targets, prototypes), (1, 1),
                              "Embedding dimension D")
    _checks.require_positive_unless_traced("temperature", temperature)
    _checks.require_positive_unless_traced("sharpen_temperature", sharpen_temperature)
    _require_non_negative_int("sinkhorn_iters", sinkhorn_iters)
    w = l2_normalize(jnp.asarray(jax.lax.stop_gradient(prototypes), jnp.float32))
    z_plus = l2_normalize(jnp.asarray(jax.lax.stop_gradient(targets), jnp.float32))
    # sharpen(softmax(cos / tau), T) == softmax(cos / (tau T)) exactly; the fused form avoids
    # underflowing probabilities before the power 1/T. Then Sinkhorn and stop-gradient.
    target_logits = (z_plus @ w.T) / (temperature * sharpen_temperature)
    q = sinkhorn(jax.nn.softmax(target_logits, axis=-1), num_iters=sinkhorn_iters,
                 axis_name=axis_name)
    return jax.lax.stop_gradient(q)


def _check_msn_inputs(anchors, targets, prototypes, *, temperature, sharpen_temperature,
                      sinkhorn_iters, prior, prior_direction, regularization_weight, target_probs,
                      mean_probs) -> None:
    """Trace-time checks of :func:`msn_loss`'s arguments (values only where concrete)."""
    _checks.require_rank("anchors", anchors, 3, "[V, B, D]")
    _checks.require_rank("prototypes", prototypes, 2, "[K, D]")
    _checks.require_min_views("anchors", anchors, 1)
    _checks.require_same_dims(("anchors", "prototypes"), (anchors, prototypes), (2, 1),
                              "Embedding dimension D")
    if target_probs is None:
        _checks.require_rank("targets", targets, 2, "[B, D]")
        _checks.require_same_dims(("anchors", "targets"), (anchors, targets), (2, 1),
                                  "Embedding dimension D")
        _checks.require_same_dims(("anchors", "targets"), (anchors, targets), (1, 0),
                                  "Batch size B")
    else:
        _checks.require_shape("target_probs", target_probs,
                              (jnp.shape(anchors)[1], jnp.shape(prototypes)[0]), "[B, K]")
    _checks.require_positive_unless_traced("temperature", temperature)
    _checks.require_positive_unless_traced("sharpen_temperature", sharpen_temperature)
    _require_non_negative_int("sinkhorn_iters", sinkhorn_iters)
    if prior_direction not in _DIRECTIONS:
        raise ValueError(f"prior_direction must be one of {_DIRECTIONS}, got {prior_direction!r}.")
    if not _checks.is_traced(regularization_weight) and not float(regularization_weight) >= 0:
        raise ValueError(f"regularization_weight must be >= 0, got {regularization_weight!r}.")
    k = jnp.shape(prototypes)[0]
    if prior is not None:
        _check_prior(prior, k)
    if mean_probs is not None:
        _checks.require_shape("mean_probs", mean_probs, (k,), "[K]")


def msn_loss(
    anchors: Array,
    targets: Array,
    prototypes: Array,
    *,
    temperature: float = 0.1,
    sharpen_temperature: float = 0.25,
    sinkhorn_iters: int = 3,
    prior: Array | None = None,
    prior_direction: str = "mean_to_prior",
    regularization_weight: float = 1.0,
    sort_mean_probs: bool = False,
    axis_name: str | None = None,
    target_probs: Array | None = None,
    mean_probs: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
    """MSN loss (Assran et al. 2022) with PMSN's prior matching (Assran et al. 2023).

    Anchor probabilities p = softmax(cos(z, W) / temperature); targets are
    softmax(cos(z+, W) / temperature) sharpened with ``sharpen_temperature`` (identical to
    softmax(cos / (temperature * sharpen_temperature))), balanced by ``sinkhorn_iters`` Sinkhorn
    iterations and held constant (stop-gradient). The loss is

        mean_{v, b} H(q_b, p_{v,b}) + regularization_weight * R,
        R = prior_matching_loss(p_bar, prior, direction=prior_direction),

    with p_bar the mean anchor probability over all anchor views and the global batch.
    ``prior=None`` is the uniform prior (plain MSN: R = log K - H(p_bar));
    ``power_law_prior(K)`` gives PMSN.
    Gradients reach anchors and prototypes, never targets.

    Gradient accumulation over n equal micro-batches: compute :func:`msn_targets` once over the
    whole batch and pass each micro-batch its rows as ``target_probs``, and pass the whole batch's
    p_bar (the mean of the micro-batches' ``aux["mean_probs"]``) as ``mean_probs``. R is then
    evaluated at the whole batch's p_bar and its gradient dR/dp_bar flows into this micro-batch's
    p_bar (the exact linearisation), so the mean of the n losses and of their gradients equal
    the full-batch loss and gradient.

    Args:
      anchors: ``[V, B, D]`` anchor-view embeddings (L2-normalised inside; zero vectors are safe).
      targets: ``[B, D]`` target-view embeddings (treated as constants).
      prototypes: ``[K, D]`` learned prototypes (L2-normalised inside).
      temperature: softmax temperature of the cosine logits, > 0.
      sharpen_temperature: target sharpening temperature T, > 0.
      sinkhorn_iters: Python int >= 0; 0 skips balancing.
      prior: ``[K]`` cluster prior summing to 1 (checked when concrete), or None for uniform.
      prior_direction: ``"mean_to_prior"`` (KL(p_bar || pi)) or ``"prior_to_mean"``.
      regularization_weight: lambda >= 0.
      sort_mean_probs: sort p_bar in descending order before matching the prior.
      axis_name: mapped axis that splits the batch, or None.
      target_probs: ``[B, K]`` precomputed targets (rows of :func:`msn_targets` of a larger
        batch, treated as constants), or None to compute them from ``targets``, which may then
        be None.
      mean_probs: ``[K]`` p_bar of the larger batch this call's batch is part of, or None (R of
        this batch's own p_bar).

    Returns:
      ``(loss, aux)``: float32 scalar and a dict of float32 values: the scalars
      ``"cross_entropy"``, ``"regularization"`` (unweighted R), ``"target_confidence"`` (mean max
      target probability) and ``"anchor_entropy"`` (mean per-sample entropy of p), and
      ``"mean_probs"``, this batch's p_bar ``[K]`` (stop-gradient).

    >>> a = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> loss, aux = msn_loss(a, a[0], jnp.eye(2), temperature=1.0)
    >>> print(round(float(loss), 4), round(float(aux["regularization"]), 4))
    0.3312 0.0
    """
    _check_msn_inputs(anchors, targets, prototypes, temperature=temperature,
                      sharpen_temperature=sharpen_temperature, sinkhorn_iters=sinkhorn_iters,
                      prior=prior, prior_direction=prior_direction,
                      regularization_weight=regularization_weight, target_probs=target_probs,
                      mean_probs=mean_probs)
    num_views, local_b, _ = jnp.shape(anchors)
    k = jnp.shape(prototypes)[0]
    prior = uniform_prior(k) if prior is None else prior
    w = l2_normalize(jnp.asarray(prototypes, jnp.float32))
    z = l2_normalize(jnp.asarray(anchors, jnp.float32))

    # Anchor predictions p = softmax(cos(z, W) / tau)  (MSN prediction).
    # One [V*B, D] x [D, K] matmul: XLA:CPU ran the backward of the equivalent 3-D einsum ~1.4x
    # slower (benchmarks/results/losses.md).
    dim = jnp.shape(anchors)[2]
    anchor_logits = (z.reshape(-1, dim) @ w.T).reshape(num_views, local_b, k) / temperature
    log_p = jax.nn.log_softmax(anchor_logits, axis=-1)
    p = jnp.exp(log_p)

    if target_probs is None:
        q = msn_targets(targets, prototypes, temperature=temperature,
                        sharpen_temperature=sharpen_temperature, sinkhorn_iters=sinkhorn_iters,
                        axis_name=axis_name)
    else:
        q = jax.lax.stop_gradient(jnp.asarray(target_probs, jnp.float32))

    n_anchor = global_count(num_views * local_b, axis_name)
    # H(q, p) summed over anchors and the global batch, then averaged  (MSN objective, first term).
    cross_entropy = global_sum(-jnp.sum(q[None] * log_p), axis_name) / n_anchor
    # p_bar: mean anchor prediction over views and the global batch (MSN mean-entropy term,
    # PMSN prior matching).
    local_p_bar = global_sum(jnp.sum(p, axis=(0, 1)), axis_name) / n_anchor
    p_bar = local_p_bar
    if mean_probs is not None:
        # The larger batch's p_bar in value, this batch's in gradient: exact linearisation of R.
        mean_probs = jnp.asarray(mean_probs, jnp.float32)
        p_bar = local_p_bar + jax.lax.stop_gradient(mean_probs - local_p_bar)
    regularization = prior_matching_loss(
        p_bar, prior, direction=prior_direction, sort=sort_mean_probs
    )
    loss = cross_entropy + regularization_weight * regularization

    anchor_entropy = global_sum(-jnp.sum(p * log_p), axis_name) / n_anchor
    aux = {
        "cross_entropy": cross_entropy,
        "regularization": regularization,
        "target_confidence": jax.lax.stop_gradient(teacher_confidence(q, axis_name)),
        "anchor_entropy": jax.lax.stop_gradient(anchor_entropy),
        "mean_probs": jax.lax.stop_gradient(local_p_bar),
    }
    return loss, aux
