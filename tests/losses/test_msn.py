"""Tests for jaxssl.losses.msn against numpy formulations written from docs/methods.md §5."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxssl.losses.msn import (
    msn_loss,
    msn_targets,
    power_law_prior,
    prior_matching_loss,
    sharpen,
    sinkhorn,
    uniform_prior,
)

# ---------------------------------------------------------------- numpy reference formulations


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_sinkhorn(p, n):
    """docs/methods.md §5 literally, on Q = P^T [K, B], with explicit per-row / per-column loops."""
    q = np.array(p, np.float64).T.copy()
    k, b = q.shape
    q /= q.sum()
    for _ in range(n):
        for i in range(k):  # each row (prototype): divide by its sum and by K
            q[i] = q[i] / q[i].sum() / k
        for j in range(b):  # each column (sample): divide by its sum and by B
            q[:, j] = q[:, j] / q[:, j].sum() / b
    return (b * q).T


def np_kl(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    mask = a > 0
    return float(np.sum(a[mask] * (np.log(a[mask]) - np.log(b[mask]))))


def np_msn(anchors, targets, protos, *, temperature=0.1, sharpen_t=0.25, iters=3, prior=None,
           direction="mean_to_prior", lam=1.0, target_protos=None):
    a = np_normalize(np.asarray(anchors, np.float64))
    t = np_normalize(np.asarray(targets, np.float64))
    w = np_normalize(np.asarray(protos, np.float64))
    w_t = w if target_protos is None else np_normalize(np.asarray(target_protos, np.float64))
    k = w.shape[0]
    p = np_softmax(a @ w.T / temperature)  # [V, B, K]
    q = np_softmax(t @ w_t.T / temperature) ** (1.0 / sharpen_t)
    q = np_sinkhorn(q / q.sum(-1, keepdims=True), iters)
    ce = np.mean(-np.sum(q[None] * np.log(p), axis=-1))
    p_bar = p.reshape(-1, k).mean(0)
    prior = np.full(k, 1.0 / k) if prior is None else np.asarray(prior, np.float64)
    reg = np_kl(p_bar, prior) if direction == "mean_to_prior" else np_kl(prior, p_bar)
    return ce + lam * reg, ce, reg


def make_inputs(seed=0, v=3, b=16, d=8, k=6):
    rng = np.random.default_rng(seed)
    anchors = rng.normal(size=(v, b, d)).astype(np.float32)
    targets = rng.normal(size=(b, d)).astype(np.float32)
    protos = rng.normal(size=(k, d)).astype(np.float32)
    return jnp.asarray(anchors), jnp.asarray(targets), jnp.asarray(protos)


def random_probs(seed, b, k):
    rng = np.random.default_rng(seed)
    return np_softmax(rng.normal(size=(b, k)) * 2.0)


# ---------------------------------------------------------------------------------- sharpen


def test_sharpen_matches_numpy():
    p = random_probs(1, 5, 7)
    want = p**4 / np.sum(p**4, -1, keepdims=True)
    np.testing.assert_allclose(sharpen(jnp.asarray(p), 0.25), want, rtol=1e-5, atol=1e-7)


def test_sharpen_hand_value_and_identity_at_t1():
    # [0.5, 0.25, 0.25] squared is [1/4, 1/16, 1/16] -> [2/3, 1/6, 1/6].
    out = sharpen(jnp.array([0.5, 0.25, 0.25]), 0.5)
    np.testing.assert_allclose(out, [2 / 3, 1 / 6, 1 / 6], rtol=1e-6)
    p = random_probs(2, 3, 4)
    np.testing.assert_allclose(sharpen(jnp.asarray(p), 1.0), p, rtol=1e-5)


def test_sharpen_one_hot_and_zero_rows_are_finite():
    p = jnp.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    out = sharpen(p, 0.25)
    np.testing.assert_allclose(out[0], [0.0, 1.0, 0.0], atol=1e-30)
    np.testing.assert_allclose(out[1], [1 / 3] * 3, rtol=1e-6)
    g = jax.grad(lambda x: jnp.sum(sharpen(x, 0.25) * jnp.arange(3.0)))(p)
    assert np.all(np.isfinite(g))


# ---------------------------------------------------------------------------------- sinkhorn


@pytest.mark.parametrize("iters", [0, 1, 3, 10])
def test_sinkhorn_matches_explicit_numpy_loops(iters):
    p = random_probs(3, 12, 5)
    np.testing.assert_allclose(sinkhorn(jnp.asarray(p), num_iters=iters), np_sinkhorn(p, iters),
                               rtol=2e-5, atol=1e-6)


def test_sinkhorn_sample_rows_sum_to_one_after_each_iteration():
    p = random_probs(4, 10, 6)
    for iters in (1, 2, 3):
        out = sinkhorn(jnp.asarray(p), num_iters=iters)
        np.testing.assert_allclose(out.sum(1), np.ones(10), rtol=1e-5)


def test_sinkhorn_prototype_marginals_approach_uniform():
    b, k = 12, 4
    p = random_probs(5, b, k) ** 3  # skewed, unnormalised input
    errors = [float(np.abs(np.asarray(sinkhorn(jnp.asarray(p), num_iters=n)).sum(0) - b / k).max())
              for n in (1, 3, 10, 100)]
    assert errors[0] > 1e-2  # one iteration leaves visible imbalance for this input
    assert all(e2 < e1 for e1, e2 in zip(errors, errors[1:]))
    assert errors[-1] < 1e-4  # each prototype receives B / K samples' worth of mass


def test_sinkhorn_zero_iterations_is_identity_on_normalised_rows():
    p = random_probs(6, 4, 3)
    np.testing.assert_allclose(sinkhorn(jnp.asarray(p), num_iters=0), p, rtol=1e-6)


def test_sinkhorn_one_hot_and_unused_prototypes_are_finite():
    p = jnp.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    out = np.asarray(sinkhorn(p, num_iters=3))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(1), np.ones(3), rtol=1e-6)
    np.testing.assert_allclose(out[:, 2], 0.0)


# ------------------------------------------------------------------------------------ priors


def test_uniform_prior():
    np.testing.assert_allclose(uniform_prior(5), np.full(5, 0.2), rtol=1e-7)


def test_power_law_prior_hand_values_k4():
    # k^-0.25 for k = 1..4: 1, 0.8408964, 0.7598357, 0.7071068; sum 3.3078389.
    want = np.array([1.0, 0.8408964, 0.7598357, 0.7071068]) / 3.3078389
    np.testing.assert_allclose(power_law_prior(4), want, rtol=1e-6)


def test_power_law_prior_sums_to_one_and_strictly_decreases():
    assert power_law_prior(1024).dtype == jnp.float32
    pi = np.asarray(power_law_prior(1024, exponent=0.25), np.float64)
    assert abs(pi.sum() - 1.0) < 1e-5
    assert np.all(np.diff(pi) < 0)
    np.testing.assert_allclose(power_law_prior(7, exponent=0.0), np.full(7, 1 / 7), rtol=1e-6)


# ---------------------------------------------------------------------------- prior matching


def test_prior_matching_uniform_is_log_k_minus_entropy_hand_value():
    # p_bar = [1/2, 1/4, 1/4, 0]: H = 1.5 log 2, so log 4 - H = 0.5 log 2.
    p_bar = jnp.array([0.5, 0.25, 0.25, 0.0])
    got = prior_matching_loss(p_bar, uniform_prior(4))
    np.testing.assert_allclose(got, 0.5 * math.log(2.0), rtol=1e-6)


@pytest.mark.parametrize("direction", ["mean_to_prior", "prior_to_mean"])
def test_prior_matching_both_directions_match_numpy(direction):
    rng = np.random.default_rng(7)
    m = rng.dirichlet(np.ones(9))
    pi = np.asarray(power_law_prior(9, exponent=0.5), np.float64)
    want = np_kl(m, pi) if direction == "mean_to_prior" else np_kl(pi, m)
    got = prior_matching_loss(jnp.asarray(m, jnp.float32), jnp.asarray(pi, jnp.float32),
                              direction=direction)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_prior_matching_directions_differ_and_zero_mean_is_finite():
    m = jnp.array([0.7, 0.3, 0.0])
    pi = power_law_prior(3)
    forward = prior_matching_loss(m, pi)
    backward = prior_matching_loss(m, pi, direction="prior_to_mean")
    assert np.isfinite(forward) and np.isfinite(backward)
    np.testing.assert_allclose(forward, np_kl([0.7, 0.3, 0.0], np.asarray(pi)), rtol=1e-5)
    assert float(backward) > 10.0  # KL(pi || m) with m_3 = 0 is huge (log clamped, not inf)
    g = jax.grad(lambda x: prior_matching_loss(x, pi))(m)
    assert np.all(np.isfinite(g))


def test_prior_matching_sort_switch():
    pi = power_law_prior(3, exponent=1.0)
    m = jnp.array([0.1, 0.2, 0.7])
    sorted_m = np.array([0.7, 0.2, 0.1])
    np.testing.assert_allclose(prior_matching_loss(m, pi, sort=True), np_kl(sorted_m, pi),
                               rtol=1e-5)
    np.testing.assert_allclose(prior_matching_loss(m, pi, sort=False), np_kl(m, pi), rtol=1e-5)
    assert float(prior_matching_loss(m, pi, sort=False)) > float(
        prior_matching_loss(m, pi, sort=True)) + 0.1


# ---------------------------------------------------------------------------------- msn_loss


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"prior": "power", "direction": "mean_to_prior"},
        {"prior": "power", "direction": "prior_to_mean", "lam": 0.5},
        {"temperature": 0.2, "sharpen_t": 0.5, "iters": 0},
    ],
)
def test_msn_loss_matches_numpy(kwargs):
    anchors, targets, protos = make_inputs(0)
    k = protos.shape[0]
    prior = power_law_prior(k) if kwargs.get("prior") == "power" else None
    np_kwargs = dict(kwargs)
    np_kwargs["prior"] = None if prior is None else np.asarray(prior, np.float64)
    want_loss, want_ce, want_reg = np_msn(anchors, targets, protos, **np_kwargs)
    loss, aux = msn_loss(
        anchors, targets, protos,
        temperature=kwargs.get("temperature", 0.1),
        sharpen_temperature=kwargs.get("sharpen_t", 0.25),
        sinkhorn_iters=kwargs.get("iters", 3),
        prior=prior,
        prior_direction=kwargs.get("direction", "mean_to_prior"),
        regularization_weight=kwargs.get("lam", 1.0),
    )
    np.testing.assert_allclose(loss, want_loss, rtol=1e-4)
    np.testing.assert_allclose(aux["cross_entropy"], want_ce, rtol=1e-4)
    np.testing.assert_allclose(aux["regularization"], want_reg, rtol=1e-3, atol=1e-6)


def test_msn_uniform_regularizer_is_log_k_minus_mean_entropy_and_aux_stats():
    anchors, targets, protos = make_inputs(1)
    k = protos.shape[0]
    a = np_normalize(np.asarray(anchors, np.float64))
    w = np_normalize(np.asarray(protos, np.float64))
    p = np_softmax(a @ w.T / 0.1)
    p_bar = p.reshape(-1, k).mean(0)
    _, aux = msn_loss(anchors, targets, protos)
    np.testing.assert_allclose(aux["regularization"],
                               math.log(k) + np.sum(p_bar * np.log(p_bar)), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(aux["anchor_entropy"], np.mean(-np.sum(p * np.log(p), -1)),
                               rtol=1e-4)
    t = np_normalize(np.asarray(targets, np.float64))
    q = np_sinkhorn(np_softmax(t @ w.T / 0.025), 3)
    np.testing.assert_allclose(aux["target_confidence"], q.max(-1).mean(), rtol=1e-4)


def test_msn_sort_mean_probs_switch():
    anchors, targets, protos = make_inputs(2)
    pi = power_law_prior(protos.shape[0], exponent=1.0)
    a = np_normalize(np.asarray(anchors, np.float64))
    w = np_normalize(np.asarray(protos, np.float64))
    p_bar = np_softmax(a @ w.T / 0.1).reshape(-1, protos.shape[0]).mean(0)
    _, aux = msn_loss(anchors, targets, protos, prior=pi, sort_mean_probs=True)
    np.testing.assert_allclose(aux["regularization"], np_kl(np.sort(p_bar)[::-1], pi), rtol=1e-3)


def test_msn_gradients_match_finite_differences():
    # Central differences of the float64 numpy loss, with the target side held at the unperturbed
    # prototypes (the stop-gradient): d/dW must only see the anchor predictions and p_bar.
    anchors, targets, protos = make_inputs(3, v=2, b=4, d=5, k=3)
    pi = np.asarray(power_law_prior(3), np.float64)
    kw = dict(temperature=0.5, prior=pi)
    ga, gw = jax.jit(jax.grad(lambda a, w: msn_loss(a, targets, w, temperature=0.5,
                                                    prior=power_law_prior(3))[0],
                              argnums=(0, 1)))(anchors, protos)
    a64, t64, w64 = (np.asarray(x, np.float64) for x in (anchors, targets, protos))
    rng = np.random.default_rng(0)
    eps = 1e-5
    for _ in range(3):
        va = rng.normal(size=a64.shape)
        fd_a = (np_msn(a64 + eps * va, t64, w64, **kw)[0]
                - np_msn(a64 - eps * va, t64, w64, **kw)[0]) / (2 * eps)
        np.testing.assert_allclose(np.sum(np.asarray(ga, np.float64) * va), fd_a, rtol=1e-3,
                                   atol=1e-5)
        vw = rng.normal(size=w64.shape)
        fd_w = (np_msn(a64, t64, w64 + eps * vw, target_protos=w64, **kw)[0]
                - np_msn(a64, t64, w64 - eps * vw, target_protos=w64, **kw)[0]) / (2 * eps)
        np.testing.assert_allclose(np.sum(np.asarray(gw, np.float64) * vw), fd_w, rtol=1e-3,
                                   atol=1e-5)


def test_msn_no_gradient_through_targets_but_through_prototypes():
    anchors, targets, protos = make_inputs(4)
    ga, gt, gw = jax.jit(jax.grad(lambda a, t, w: msn_loss(a, t, w)[0], argnums=(0, 1, 2)))(
        anchors, targets, protos)
    np.testing.assert_array_equal(gt, np.zeros_like(gt))
    assert float(jnp.abs(ga).max()) > 1e-4 and float(jnp.abs(gw).max()) > 1e-4


def test_msn_degenerate_inputs_are_finite():
    anchors, targets, protos = make_inputs(5)
    anchors = anchors.at[0, 0].set(0.0)
    targets = targets.at[1].set(0.0)
    protos = protos.at[2].set(0.0).at[3].set(protos[4])  # a zero and a duplicate prototype
    # An aligned pair drives a one-hot-like target at these temperatures.
    targets = targets.at[0].set(protos[0] * 100.0)
    f = jax.value_and_grad(lambda a, w: msn_loss(a, targets, w, prior=power_law_prior(6))[0],
                           argnums=(0, 1))
    loss, (ga, gw) = f(anchors, protos)
    assert np.isfinite(loss)
    assert np.all(np.isfinite(ga)) and np.all(np.isfinite(gw))
    loss2, _ = msn_loss(anchors, targets, protos, temperature=0.01, sharpen_temperature=0.1,
                        prior=power_law_prior(6), prior_direction="prior_to_mean")
    assert np.isfinite(loss2)


def test_msn_bfloat16_inputs_give_float32_loss_close_to_float32():
    anchors, targets, protos = make_inputs(6)
    loss32, _ = msn_loss(anchors, targets, protos)
    bf = [x.astype(jnp.bfloat16) for x in (anchors, targets, protos)]
    loss16, aux16 = msn_loss(*bf)
    assert loss16.dtype == jnp.float32 and aux16["cross_entropy"].dtype == jnp.float32
    np.testing.assert_allclose(loss16, loss32, rtol=5e-2)
    g = jax.grad(lambda a: msn_loss(a, bf[1], bf[2])[0])(bf[0])
    assert np.all(np.isfinite(np.asarray(g, np.float32)))


def test_msn_jits_with_traced_prior():
    anchors, targets, protos = make_inputs(7)
    pi = power_law_prior(6)
    eager, _ = msn_loss(anchors, targets, protos, prior=pi)
    jitted, _ = jax.jit(lambda a, t, w, p: msn_loss(a, t, w, prior=p))(anchors, targets, protos, pi)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5)


# ---------------------------------------------------------------------- sharding (axis_name)


def _mesh():
    return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def test_sinkhorn_axis_name_matches_single_device():
    p = jnp.asarray(random_probs(8, 16, 5) ** 2)
    sharded = jax.jit(jax.shard_map(lambda x: sinkhorn(x, num_iters=3, axis_name="data"),
                                    mesh=_mesh(), in_specs=P("data"), out_specs=P("data")))
    chex.assert_trees_all_close(sharded(p), sinkhorn(p, num_iters=3), rtol=1e-5, atol=1e-7)
    # Local-only statistics would differ: the check above can fail.
    local_only = jax.jit(jax.shard_map(lambda x: sinkhorn(x, num_iters=3), mesh=_mesh(),
                                       in_specs=P("data"), out_specs=P("data")))
    assert not np.allclose(local_only(p), sinkhorn(p, num_iters=3), rtol=1e-3)


@pytest.mark.parametrize("prior_kind", ["uniform", "power"])
def test_msn_axis_name_matches_single_device(prior_kind):
    anchors, targets, protos = make_inputs(9, v=3, b=16, d=8, k=6)
    prior = None if prior_kind == "uniform" else power_law_prior(6)

    def step(a, t, w, axis_name):
        def f(a, w):
            return msn_loss(a, t, w, prior=prior, axis_name=axis_name)
        (loss, aux), grads = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(a, w)
        return loss, aux, grads

    want = jax.jit(lambda a, t, w: step(a, t, w, None))(anchors, targets, protos)
    sharded = jax.jit(jax.shard_map(
        lambda a, t, w: step(a, t, w, "data"),
        mesh=_mesh(),
        in_specs=(P(None, "data"), P("data"), P()),
        out_specs=(P(), P(), (P(None, "data"), P())),
    ))
    got = sharded(anchors, targets, protos)
    chex.assert_trees_all_close(got, want, rtol=2e-5, atol=1e-6)


# ------------------------------------------------------------------------------- ValueErrors


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda a, t, w: msn_loss(a[0], t, w), r"anchors must have rank 3.*\(16, 8\)"),
        (lambda a, t, w: msn_loss(a, t[None], w), r"targets must have rank 2"),
        (lambda a, t, w: msn_loss(a, t, w[0]), r"prototypes must have rank 2"),
        (lambda a, t, w: msn_loss(a, t[:, :7], w),
         r"Embedding dimension D.*targets.shape=\(16, 7\)"),
        (lambda a, t, w: msn_loss(a, t, w[:, :7]), r"Embedding dimension D.*prototypes"),
        (lambda a, t, w: msn_loss(a, t[:15], w), r"Batch size B.*\(15, 8\)"),
        (lambda a, t, w: msn_loss(a, t, w, prior=uniform_prior(5)),
         r"prior must have shape \(6,\)"),
        (lambda a, t, w: msn_loss(a, t, w, prior=jnp.full((6,), 0.2)), r"prior must sum to 1"),
        (lambda a, t, w: msn_loss(a, t, w, prior=jnp.array([0.6, 0.6, -0.2, 0, 0, 0])),
         r"prior must be non-negative"),
        (lambda a, t, w: msn_loss(a, t, w, prior_direction="both"), r"prior_direction.*'both'"),
        (lambda a, t, w: msn_loss(a, t, w, temperature=0.0), r"temperature must be > 0, got 0.0"),
        (lambda a, t, w: msn_loss(a, t, w, sharpen_temperature=-1.0),
         r"sharpen_temperature must be > 0"),
        (lambda a, t, w: msn_loss(a, t, w, sinkhorn_iters=-1), r"sinkhorn_iters.*>= 0, got -1"),
        (lambda a, t, w: msn_loss(a, t, w, regularization_weight=-1.0),
         r"regularization_weight must be >= 0"),
        (lambda a, t, w: msn_loss(a[:0], t, w), r"anchors needs at least 1 views"),
        (lambda a, t, w: msn_loss(a, None, w, target_probs=jnp.ones((15, 6)) / 6),
         r"target_probs must have shape \(16, 6\)"),
        (lambda a, t, w: msn_loss(a, t, w, mean_probs=jnp.ones(5) / 5),
         r"mean_probs must have shape \(6,\)"),
        (lambda a, t, w: sinkhorn(a, num_iters=3), r"probs must have rank 2"),
        (lambda a, t, w: sinkhorn(t, num_iters=-2), r"num_iters.*>= 0, got -2"),
        (lambda a, t, w: sharpen(t, 0.0), r"temperature must be > 0"),
        (lambda a, t, w: power_law_prior(0), r"num_prototypes must be > 0"),
        (lambda a, t, w: power_law_prior(4, exponent=-0.5), r"exponent must be >= 0"),
        (lambda a, t, w: prior_matching_loss(t, uniform_prior(8)), r"mean_probs must have rank 1"),
        (lambda a, t, w: prior_matching_loss(t[0], uniform_prior(8), direction="up"),
         r"direction must be one of"),
    ],
)
def test_value_errors(call, match):
    anchors, targets, protos = make_inputs(10)
    with pytest.raises(ValueError, match=match):
        call(anchors, targets, protos)


# ------------------------------------------------------------------ micro-batches of one batch


@pytest.mark.parametrize("sort", [False, True])
def test_msn_micro_batches_with_full_batch_targets_and_mean_equal_the_full_batch(sort):
    """Targets from msn_targets over the whole batch, each of 4 micro-batches its rows, and the
    whole batch's p_bar as mean_probs: the mean of the 4 losses and of their gradients equal the
    full-batch loss and gradient (exact linearisation of the prior-matching term); without
    mean_probs they do not (the regulariser of a quarter batch differs)."""
    anchors, targets, protos = make_inputs(6, v=3, b=16, d=8, k=6)
    kw = dict(prior=power_law_prior(6, exponent=1.0), sort_mean_probs=sort)

    def full(a, w):
        return msn_loss(a, targets, w, **kw)

    (want, want_aux), want_g = jax.value_and_grad(full, argnums=(0, 1), has_aux=True)(
        anchors, protos)
    q = msn_targets(targets, protos)
    rows = np.arange(16).reshape(4, 4)
    p_bar = np.mean([msn_loss(anchors[:, r], None, protos, target_probs=q[r], **kw)[1]
                     ["mean_probs"] for r in rows], axis=0)
    np.testing.assert_allclose(p_bar, want_aux["mean_probs"], rtol=1e-6)

    def micro(a, w, r, mean_probs):
        return msn_loss(a[:, r], None, w, target_probs=q[r], mean_probs=mean_probs, **kw)[0]

    got = np.mean([micro(anchors, protos, r, p_bar) for r in rows])
    grads = [jax.grad(micro, argnums=(0, 1))(anchors, protos, r, p_bar) for r in rows]
    got_g = jax.tree.map(lambda *g: sum(g) / 4, *grads)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    chex.assert_trees_all_close(got_g, want_g, rtol=1e-5, atol=1e-8)
    naive = np.mean([micro(anchors, protos, r, None) for r in rows])
    assert abs(naive - float(want)) > 1e-3


def test_msn_targets_equal_the_targets_msn_loss_uses():
    anchors, targets, protos = make_inputs(7)
    loss, _ = msn_loss(anchors, targets, protos, sinkhorn_iters=5)
    q = msn_targets(targets, protos, sinkhorn_iters=5)
    w = np_normalize(np.asarray(protos, np.float64))
    t = np_normalize(np.asarray(targets, np.float64))
    np.testing.assert_allclose(q, np_sinkhorn(np_softmax(t @ w.T / 0.025), 5), rtol=1e-4,
                               atol=1e-7)
    again, _ = msn_loss(anchors, None, protos, target_probs=q)
    np.testing.assert_allclose(again, loss, rtol=1e-6)
