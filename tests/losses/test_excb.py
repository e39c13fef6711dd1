"""Tests of jaxssl.losses.excb against hand-derived values and an explicit numpy formulation."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from jaxssl.losses.excb import balance_similarities, excb_loss, update_cluster_sizes

# ---------------------------------------------------------------------------------------------
# Independent numpy reference (float64, explicit loops, written from the paper's equations).


def _np_balance(z: np.ndarray, sizes: np.ndarray, boost: float) -> np.ndarray:
    z = np.asarray(z, np.float64)
    sizes = np.asarray(sizes, np.float64)
    k = sizes.shape[0]
    rel = k * sizes / sizes.sum()
    out = np.empty_like(z)
    for idx in np.ndindex(z.shape):
        r = rel[idx[-1]]
        if r < 1:
            out[idx] = 1 - (1 - z[idx]) * r
        elif r > 1:
            out[idx] = (1 + z[idx]) / r - 1
        else:
            out[idx] = z[idx]
    rows = out.reshape(-1, k)
    for row in rows:
        row[np.argmax(row)] *= boost
    return np.clip(rows.reshape(z.shape), -1, 1)


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_excb(direct, pred, teacher, sizes, *, pairing, student_temp=0.1, teacher_temp=0.04,
             boost=1.01, momentum=0.999):
    """ExCB loss and aux from the equations, pair by pair.

    paper (Algorithm 1): L = sum_t [0.5 mean_{v != t} H(q_t, p_h[v]) + 0.5 mean_v H(q_t, p_g[v])]
    over all V direct projections; released: the mean of H over the pairs (t, other global
    direct projection) and (t, every predictor output).
    """
    direct, pred, teacher = (np.asarray(a, np.float64) for a in (direct, pred, teacher))
    g, b, k = teacher.shape
    balanced = _np_balance(teacher, sizes, boost)
    q = _np_softmax(balanced / teacher_temp)
    p_direct = _np_softmax(direct / student_temp)
    p_pred = _np_softmax(pred / student_temp)
    direct_views = range(g) if pairing == "released" else range(pred.shape[0])

    def h(qt, ps):  # H(q, p) averaged over the batch
        return float(np.mean([-np.sum(qt[i] * np.log(ps[i])) for i in range(b)]))

    direct_terms, pred_terms, per_teacher = [], [], []
    for t in range(g):
        d_t = [h(q[t], p_direct[v]) for v in direct_views if v != t]
        p_t = [h(q[t], p_pred[v]) for v in range(pred.shape[0])]
        direct_terms += d_t
        pred_terms += p_t
        per_teacher.append(0.5 * np.mean(d_t) + 0.5 * np.mean(p_t) if d_t else np.nan)
    if pairing == "paper":
        loss = float(np.sum(per_teacher))
    else:
        loss = float(np.mean(direct_terms + pred_terms))
    labels = balanced.argmax(-1)
    counts = np.bincount(labels.reshape(-1), minlength=k)
    new_sizes = momentum * np.asarray(sizes, np.float64) + (1 - momentum) * counts / counts.sum()
    rel = k * new_sizes / new_sizes.sum()
    agree = [labels[t, i] == labels[u, i] for t in range(g) for u in range(g) if u != t
             for i in range(b)] or [np.nan]
    return {
        "loss": loss,
        "num_pairs": len(direct_terms) + len(pred_terms),
        "cluster_sizes": new_sizes,
        "direct_ce": float(np.mean(direct_terms)) if direct_terms else 0.0,
        "predictor_ce": float(np.mean(pred_terms)),
        "teacher_confidence": float(q.max(-1).mean()),
        "min_relative_size": rel.min(),
        "max_relative_size": rel.max(),
        "empty_fraction": float(np.mean(rel < 0.01)),
        "label_change_fraction": float(np.mean(labels != teacher.argmax(-1))),
        "view_agreement": float(np.mean(agree)),
    }


def _inputs(seed=0, g=2, v=8, b=4, k=6):
    rng = np.random.default_rng(seed)
    direct = np.tanh(rng.normal(size=(v, b, k))).astype(np.float32)  # all V views
    pred = np.tanh(rng.normal(size=(v, b, k))).astype(np.float32)
    teacher = np.tanh(rng.normal(size=(g, b, k))).astype(np.float32)
    sizes = rng.dirichlet(np.ones(k)).astype(np.float32)
    return direct, pred, teacher, sizes


# ---------------------------------------------------------------------------------------------
# Balancing operator (paper Eq. 10).


def test_balance_is_identity_at_fair_size():
    z = np.random.default_rng(1).uniform(-1, 1, size=(3, 5, 7)).astype(np.float32)
    out = balance_similarities(z, jnp.full((7,), 1 / 7), boost=1.0)
    chex.assert_trees_all_close(out, z, atol=1e-6)


def test_balance_hand_computed_values():
    # Relative sizes r = 4 c = [0.5, 0.25, 2, 1.25].
    sizes = np.array([0.125, 0.0625, 0.5, 0.3125], np.float32)
    z = np.array([[0.2, -0.4, 0.2, 0.6]], np.float32)
    # r = 0.5: 1 - 0.8 * 0.5; r = 0.25: 1 - 1.4 * 0.25; r = 2: 1.2 / 2 - 1; r = 1.25: 1.6 / 1.25 - 1
    expected = np.array([[0.6, 0.65, -0.4, 0.28]])
    chex.assert_trees_all_close(balance_similarities(z, sizes, boost=1.0), expected, atol=1e-6)
    # The boost multiplies only the row's winner (0.65 at index 1).
    boosted = expected.copy()
    boosted[0, 1] = 0.65 * 1.01
    chex.assert_trees_all_close(balance_similarities(z, sizes, boost=1.01), boosted, atol=1e-6)


def test_balance_empty_cluster_goes_to_one_and_collapse_to_minus_one():
    # Cluster 0 is empty (r = 0), cluster 1 holds everything (r = K = 2).
    sizes = np.array([0.0, 1.0], np.float32)
    z = np.array([[-0.7, 0.9], [0.3, -0.2]], np.float32)
    out = balance_similarities(z, sizes, boost=1.0)
    chex.assert_trees_all_close(out, np.array([[1.0, -0.05], [1.0, -0.6]]), atol=1e-6)


def test_balance_moves_in_the_right_direction_and_stays_in_range():
    rng = np.random.default_rng(2)
    k = 16
    z = rng.uniform(-0.99, 0.99, size=(32, k)).astype(np.float32)
    sizes = rng.dirichlet(np.full(k, 0.5)).astype(np.float32)
    sizes[3] = 0.0  # an empty cluster
    rel = k * sizes / sizes.sum()
    out = np.asarray(balance_similarities(z, sizes, boost=1.0))
    assert np.all(out[:, rel < 1] > z[:, rel < 1])
    assert np.all(out[:, rel > 1] < z[:, rel > 1])
    boosted = np.asarray(balance_similarities(z, sizes, boost=1.5))
    assert np.all(boosted >= -1) and np.all(boosted <= 1)
    assert np.all(np.abs(out) <= 1)


def test_boost_touches_only_the_argmax_and_is_clamped():
    sizes = jnp.full((4,), 0.25)
    z = np.array([[0.1, 0.995, -0.3, 0.2], [-0.5, -0.2, -0.9, -0.4]], np.float32)
    out = np.asarray(balance_similarities(z, sizes, boost=1.01))
    expected = z.copy()
    expected[0, 1] = 1.0  # 0.995 * 1.01 > 1 is clamped
    expected[1, 1] = -0.2 * 1.01
    chex.assert_trees_all_close(out, expected, atol=1e-6)


def test_balance_matches_numpy_reference_and_accepts_leading_axes():
    rng = np.random.default_rng(3)
    z = rng.uniform(-1, 1, size=(2, 3, 9)).astype(np.float32)
    sizes = rng.dirichlet(np.ones(9)).astype(np.float32)
    chex.assert_trees_all_close(
        balance_similarities(z, sizes), _np_balance(z, sizes, 1.01), atol=1e-5
    )


@pytest.mark.parametrize(
    "sizes", [[0.0, 0.5, 0.5, 0.0], [0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 0.0, 0.0]]
)
def test_balance_gradients_finite_for_empty_fair_and_zero_sizes(sizes):
    z = jnp.array([[0.3, -0.2, 0.9, -1.0]])
    sizes = jnp.asarray(sizes, jnp.float32)
    grad_fn = jax.grad(lambda a, c: jnp.sum(balance_similarities(a, c)), argnums=(0, 1))
    grads = jax.jit(grad_fn)(z, sizes)
    chex.assert_tree_all_finite(grads)
    chex.assert_tree_all_finite(balance_similarities(z, sizes))


# ---------------------------------------------------------------------------------------------
# Cluster-size EMA (paper Eqs. 8-9).


def test_update_cluster_sizes_matches_bincount():
    rng = np.random.default_rng(4)
    k = 7
    z = rng.normal(size=(3, 5, k)).astype(np.float32)
    sizes = rng.dirichlet(np.ones(k)).astype(np.float32)
    counts = np.bincount(z.argmax(-1).reshape(-1), minlength=k)
    expected = 0.9 * sizes + 0.1 * counts / 15
    out = update_cluster_sizes(sizes, z, momentum=0.9)
    chex.assert_trees_all_close(out, expected, atol=1e-6)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(float(out.sum()), 1.0, atol=1e-6)


def test_update_cluster_sizes_momentum_extremes():
    z = np.eye(3, dtype=np.float32)[[0, 0, 2, 0]]
    sizes = np.array([0.2, 0.3, 0.5], np.float32)
    chex.assert_trees_all_close(update_cluster_sizes(sizes, z, momentum=1.0), sizes)
    chex.assert_trees_all_close(
        update_cluster_sizes(sizes, z, momentum=0.0), np.array([0.75, 0.0, 0.25])
    )


# ---------------------------------------------------------------------------------------------
# The loss (paper Eq. 7, Algorithm 1; and the released code's pairing).

PAIRINGS = ["paper", "released"]


def _call(pairing, direct, pred, teacher, sizes, **kwargs):
    return jax.jit(lambda *a: excb_loss(*a, pairing=pairing, **kwargs))(
        direct, pred, teacher, sizes)


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_excb_loss_matches_explicit_pair_loop(pairing):
    direct, pred, teacher, sizes = _inputs()
    ref = _np_excb(direct, pred, teacher, sizes, pairing=pairing)
    # G = 2, V = 8: paper 2 x 7 direct + 2 x 8 predictor pairs; released 2 x 1 + 2 x 8 = 18.
    assert ref["num_pairs"] == (30 if pairing == "paper" else 18)
    assert 0 < ref["label_change_fraction"]  # the test inputs exercise the balancing
    loss, aux = _call(pairing, direct, pred, teacher, sizes)
    assert loss.dtype == jnp.float32 and loss.shape == ()
    np.testing.assert_allclose(float(loss), ref["loss"], rtol=1e-5)
    for name, value in aux.items():
        np.testing.assert_allclose(np.asarray(value), ref[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)
        assert value.dtype == jnp.float32, name
    assert set(aux) == set(ref) - {"loss", "num_pairs"}


def test_released_pairing_ignores_local_direct_projections():
    # The released code's loss with [G, B, K] direct similarities (its original input) is the
    # same with [V, B, K] ones, whatever the local rows hold.
    direct, pred, teacher, sizes = _inputs(seed=1)
    full = _call("released", direct, pred, teacher, sizes)
    noisy = direct.copy()
    noisy[2:] = -noisy[2:]
    chex.assert_trees_all_close(_call("released", direct[:2], pred, teacher, sizes), full)
    chex.assert_trees_all_close(_call("released", noisy, pred, teacher, sizes), full)
    # ... while the paper's loss depends on them.
    assert abs(float(_call("paper", noisy, pred, teacher, sizes)[0])
               - float(_call("paper", direct, pred, teacher, sizes)[0])) > 1e-3


def test_excb_loss_hand_derived_values():
    # K = 2, fair sizes and boost 1 (balancing is the identity), both temperatures 1 / ln 3, so
    # cosines (0.5, -0.5) give the distribution A = (3/4, 1/4), (-0.5, 0.5) gives B = (1/4, 3/4)
    # and (0, 0) gives U = (1/2, 1/2). Teacher views: q_0 = A, q_1 = B. Direct projections of
    # the V = 3 views: A, A, U; predictor outputs: U, U, U.
    #   H(A, A) = ln 4 - 3/4 ln 3,  H(B, A) = ln 4 - 1/4 ln 3,  H(., U) = ln 2.
    # paper: t = 0: 0.5 (H(A, A) + ln 2) / 2 + 0.5 ln 2;  t = 1: 0.5 (H(B, A) + ln 2) / 2 + 0.5 ln 2
    #   sum = 5/2 ln 2 - 1/4 ln 3.
    # released: pairs (0, direct 1) = H(A, A), (1, direct 0) = H(B, A), six predictor pairs ln 2:
    #   (4 ln 2 - ln 3 + 6 ln 2) / 8 = (10 ln 2 - ln 3) / 8.
    a, b, u = [0.5, -0.5], [-0.5, 0.5], [0.0, 0.0]
    teacher = np.array([[a], [b]], np.float32)
    direct = np.array([[a], [a], [u]], np.float32)
    pred = np.array([[u], [u], [u]], np.float32)
    sizes = np.array([0.5, 0.5], np.float32)
    temps = dict(student_temp=1 / np.log(3), teacher_temp=1 / np.log(3), boost=1.0)
    ln2, ln3 = np.log(2), np.log(3)
    paper, aux = _call("paper", direct, pred, teacher, sizes, **temps)
    np.testing.assert_allclose(float(paper), 2.5 * ln2 - 0.25 * ln3, rtol=1e-6)
    # direct_ce: the mean of H(A, A), ln 2, H(B, A), ln 2.
    np.testing.assert_allclose(float(aux["direct_ce"]), (6 * ln2 - ln3) / 4, rtol=1e-6)
    np.testing.assert_allclose(float(aux["predictor_ce"]), ln2, rtol=1e-6)
    released, aux = _call("released", direct, pred, teacher, sizes, **temps)
    np.testing.assert_allclose(float(released), (10 * ln2 - ln3) / 8, rtol=1e-6)
    np.testing.assert_allclose(float(aux["direct_ce"]), 2 * ln2 - 0.5 * ln3, rtol=1e-6)


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_excb_loss_other_hyperparameters_and_three_global_views(pairing):
    direct, pred, teacher, sizes = _inputs(seed=5, g=3, v=5, b=3, k=5)
    kwargs = dict(student_temp=0.2, teacher_temp=0.07, boost=1.05, momentum=0.5)
    ref = _np_excb(direct, pred, teacher, sizes, pairing=pairing, **kwargs)
    assert ref["num_pairs"] == (3 * 4 if pairing == "paper" else 3 * 2) + 3 * 5
    loss, aux = _call(pairing, direct, pred, teacher, sizes, **kwargs)
    np.testing.assert_allclose(float(loss), ref["loss"], rtol=1e-5)
    np.testing.assert_allclose(float(aux["direct_ce"]), ref["direct_ce"], rtol=1e-5)
    np.testing.assert_allclose(float(aux["view_agreement"]), ref["view_agreement"], rtol=1e-6)
    chex.assert_trees_all_close(aux["cluster_sizes"], ref["cluster_sizes"], atol=1e-6)


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_excb_loss_single_global_view(pairing):
    direct, pred, teacher, sizes = _inputs(seed=6, g=1, v=3, b=2, k=4)
    ref = _np_excb(direct, pred, teacher, sizes, pairing=pairing)
    loss, aux = _call(pairing, direct, pred, teacher, sizes)
    np.testing.assert_allclose(float(loss), ref["loss"], rtol=1e-5)
    assert "view_agreement" not in aux
    if pairing == "released":  # no other global view: the predictor pairs only
        np.testing.assert_allclose(float(loss), ref["predictor_ce"], rtol=1e-5)
        assert float(aux["direct_ce"]) == 0.0
    else:  # the local views' direct projections still pair with the one teacher view
        np.testing.assert_allclose(
            float(loss), 0.5 * ref["direct_ce"] + 0.5 * ref["predictor_ce"], rtol=1e-5)


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_excb_gradient_matches_analytic_form(pairing):
    # dH(q, softmax(z / tau)) / dz = (softmax(z / tau) - q) / tau for each pair and sample, times
    # the pair's weight: paper 0.5 / (V - 1) (direct) and 0.5 / V (predictor), released
    # 1 / #pairs; every H is a batch mean, hence the 1 / B.
    g, v, batch, tau = 2, 4, 3, 0.1
    direct, pred, teacher, sizes = _inputs(seed=7, g=g, v=v, b=batch, k=5)
    grad_direct, grad_pred = jax.jit(jax.grad(
        lambda d, p: excb_loss(d, p, teacher, sizes, pairing=pairing)[0], argnums=(0, 1))
    )(direct, pred)
    q = _np_softmax(_np_balance(teacher, sizes, 1.01) / 0.04)
    if pairing == "paper":
        w_direct, w_pred, direct_views = 0.5 / (v - 1), 0.5 / v, v
    else:
        w_direct = w_pred = 1.0 / (g * (g - 1) + g * v)
        direct_views = g
    expected_direct = np.zeros_like(direct, np.float64)
    for s in range(direct_views):
        for t in range(g):
            if t != s:
                expected_direct[s] += w_direct * (_np_softmax(direct[s] / tau) - q[t]) / tau
    expected_pred = np.stack(
        [sum(w_pred * (_np_softmax(pred[s] / tau) - q[t]) / tau for t in range(g))
         for s in range(v)])
    chex.assert_trees_all_close(grad_direct, expected_direct / batch, atol=1e-5)
    chex.assert_trees_all_close(grad_pred, expected_pred / batch, atol=1e-5)


def test_local_direct_projections_get_gradient_only_under_paper():
    direct, pred, teacher, sizes = _inputs(seed=14, g=2, v=6, b=3, k=5)
    grads = {
        pairing: np.asarray(jax.jit(jax.grad(
            lambda d, pairing=pairing: excb_loss(d, pred, teacher, sizes, pairing=pairing)[0]
        ))(direct))
        for pairing in PAIRINGS
    }
    assert np.all(np.abs(grads["paper"][2:]).sum(axis=(1, 2)) > 1e-4)  # every local view
    np.testing.assert_array_equal(grads["released"][2:], 0.0)
    assert np.abs(grads["released"][:2]).sum() > 1e-4  # the globals still train


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_excb_check_grads_student_inputs(pairing):
    direct, pred, teacher, sizes = _inputs(seed=8, g=2, v=3, b=2, k=4)
    f = jax.jit(lambda d, p: excb_loss(d, p, teacher, sizes, student_temp=0.5,
                                       pairing=pairing)[0])
    check_grads(f, (direct, pred), order=1, modes=("rev",), eps=1e-2, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_excb_no_gradient_to_teacher_or_sizes(pairing):
    direct, pred, teacher, sizes = _inputs(seed=9)
    grads = jax.jit(jax.grad(
        lambda t, c: excb_loss(direct, pred, t, c, pairing=pairing)[0], argnums=(0, 1)
    ))(teacher, sizes)
    chex.assert_trees_all_close(grads, (np.zeros_like(teacher), np.zeros_like(sizes)))


def test_excb_numerics_bfloat16_extreme_and_degenerate_inputs():
    direct, pred, teacher, sizes = _inputs(seed=10)
    bf = [jnp.asarray(a, jnp.bfloat16) for a in (direct, pred, teacher)]
    loss_bf, aux_bf = jax.jit(excb_loss)(*bf, sizes)
    loss_32, _ = jax.jit(excb_loss)(*[a.astype(jnp.float32) for a in bf], sizes)
    assert loss_bf.dtype == jnp.float32 and aux_bf["cluster_sizes"].dtype == jnp.float32
    np.testing.assert_allclose(float(loss_bf), float(loss_32), rtol=1e-6)
    # One-hot similarities (+-1), empty clusters, all-zero sizes and zero similarities.
    value_and_grad = jax.jit(jax.value_and_grad(
        lambda d, p, t, c: excb_loss(d, p, t, c, teacher_temp=1e-3)[0], argnums=(0, 1)
    ))
    one_hot = 2 * np.eye(6, dtype=np.float32)[np.arange(8) % 6][None].repeat(2, 0) - 1
    for sims, c in [
        (one_hot, np.zeros(6, np.float32)),
        (one_hot, np.eye(6, dtype=np.float32)[0]),
        (np.zeros_like(one_hot), np.full(6, 1 / 6, np.float32)),
    ]:
        student = np.concatenate([sims, sims])  # V = 4 views
        out = value_and_grad(student, student, sims, c)
        chex.assert_tree_all_finite(out)
        chex.assert_tree_all_finite(jax.jit(excb_loss)(sims, sims, sims, c)[1])


def test_excb_accepts_traced_temperatures_under_jit():
    direct, pred, teacher, sizes = _inputs(seed=11)
    f = jax.jit(lambda tt: excb_loss(direct, pred, teacher, sizes, teacher_temp=tt)[0])
    np.testing.assert_allclose(
        float(f(jnp.float32(0.05))),
        _np_excb(direct, pred, teacher, sizes, pairing="paper", teacher_temp=0.05)["loss"],
        rtol=1e-5,
    )


# ---------------------------------------------------------------------------------------------
# Global statistics under jax.shard_map.


def _mesh():
    return jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def test_update_cluster_sizes_shard_map_equals_global():
    rng = np.random.default_rng(12)
    z = rng.normal(size=(2, 16, 5)).astype(np.float32)
    sizes = rng.dirichlet(np.ones(5)).astype(np.float32)
    sharded = jax.shard_map(
        lambda c, s: update_cluster_sizes(c, s, momentum=0.8, axis_name="data"),
        mesh=_mesh(), in_specs=(P(), P(None, "data")), out_specs=P(),
    )
    chex.assert_trees_all_close(
        jax.jit(sharded)(sizes, z), update_cluster_sizes(sizes, z, momentum=0.8), atol=1e-6
    )


@pytest.mark.parametrize("pairing", PAIRINGS)
def test_excb_loss_shard_map_equals_global_loss_aux_and_gradients(pairing):
    direct, pred, teacher, sizes = _inputs(seed=13, g=2, v=4, b=16, k=6)

    def loss_and_grads(d, p, t, c, axis_name=None):
        (loss, aux), grads = jax.value_and_grad(
            lambda d_, p_: excb_loss(d_, p_, t, c, pairing=pairing, axis_name=axis_name),
            argnums=(0, 1), has_aux=True,
        )(d, p)
        return loss, aux, grads

    batch = P(None, "data")
    sharded = jax.shard_map(
        lambda d, p, t, c: loss_and_grads(d, p, t, c, axis_name="data"),
        mesh=_mesh(), in_specs=(batch, batch, batch, P()), out_specs=(P(), P(), (batch, batch)),
    )
    got = jax.jit(sharded)(direct, pred, teacher, sizes)
    want = jax.jit(loss_and_grads)(direct, pred, teacher, sizes)
    chex.assert_trees_all_close(got, want, atol=1e-6, rtol=1e-5)
    assert float(jnp.abs(want[2][0]).sum()) > 0  # the gradient comparison is not vacuous


# ---------------------------------------------------------------------------------------------
# Argument checks.


def _bad_cases():
    d, p, t, c = (np.zeros(s, np.float32) for s in ((8, 4, 6), (8, 4, 6), (2, 4, 6), (6,)))
    return [
        (dict(direct_sims=d[0]), "direct_sims"),
        (dict(predictor_sims=p[0]), "predictor_sims"),
        (dict(teacher_sims=t[None]), "teacher_sims"),
        (dict(cluster_sizes=c[None]), "cluster_sizes"),
        (dict(predictor_sims=p[:, :3]), "predictor_sims"),
        (dict(teacher_sims=t[..., :5]), "teacher_sims"),
        (dict(cluster_sizes=c[:5]), "cluster_sizes"),
        (dict(direct_sims=d[:1], teacher_sims=t[:1], predictor_sims=np.zeros((0, 4, 6))),
         "predictor_sims"),
        (dict(predictor_sims=p[:1]), "predictor_sims"),
        # paper: the direct projections of all V views; released: of G or of all V views.
        (dict(direct_sims=d[:2]), r"direct_sims\.shape=\(2, 4, 6\)"),
        (dict(direct_sims=d[:5]), "direct_sims"),
        (dict(direct_sims=d[:3], pairing="released"), "direct_sims"),
        (dict(direct_sims=d[:1], predictor_sims=p[:1], teacher_sims=t[:1]), "at least 2 views"),
        (dict(pairing="dino"), "pairing"),
        (dict(student_temp=0.0), "student_temp"),
        (dict(teacher_temp=-0.04), "teacher_temp"),
        (dict(momentum=1.5), "momentum"),
        (dict(momentum=-0.1), "momentum"),
        (dict(boost=0.99), "boost"),
    ], dict(direct_sims=d, predictor_sims=p, teacher_sims=t, cluster_sizes=c)


@pytest.mark.parametrize("case", range(len(_bad_cases()[0])))
def test_excb_loss_value_errors(case):
    cases, good = _bad_cases()
    override, name = cases[case]
    args = {**good, **override}
    arrays = [args.pop(k) for k in ("direct_sims", "predictor_sims", "teacher_sims",
                                    "cluster_sizes")]
    with pytest.raises(ValueError, match=name):
        excb_loss(*arrays, **args)


def test_paper_pairing_with_global_direct_projections_names_both_shapes():
    direct, pred, teacher, sizes = _inputs(seed=15, g=2, v=6, b=3, k=5)
    with pytest.raises(ValueError, match=r"pairing='paper'.*direct_sims\.shape=\(2, 3, 5\)"
                       r".*predictor_sims\.shape=\(6, 3, 5\)"):
        excb_loss(direct[:2], pred, teacher, sizes)
    # The same inputs are the released code's and work there.
    assert np.isfinite(float(excb_loss(direct[:2], pred, teacher, sizes,
                                       pairing="released")[0]))


def test_balance_and_update_value_errors():
    z, c = np.zeros((3, 5), np.float32), np.full(5, 0.2, np.float32)
    with pytest.raises(ValueError, match="cluster_sizes"):
        balance_similarities(z, c[:4])
    with pytest.raises(ValueError, match="cluster_sizes"):
        balance_similarities(z, c[None])
    with pytest.raises(ValueError, match="boost"):
        balance_similarities(z, c, boost=0.5)
    with pytest.raises(ValueError, match="balanced_similarities"):
        update_cluster_sizes(c, z[:, :3])
    with pytest.raises(ValueError, match="momentum"):
        update_cluster_sizes(c, z, momentum=2.0)
