"""The ExCB method feeds the loss the pairs of ``loss.excb_pairing``, and only the global views'
direct projections train the centroids."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.losses.excb import balance_similarities, excb_loss, update_cluster_sizes
from jaxssl.methods.base import (
    LossInputs,
    flatten_views,
    to_views_first,
    variables,
    views_first,
)
from jaxssl.methods.registry import build_method
from jaxssl.train.hyper import hyperparams
from jaxssl.train.recipes import tiny

BATCH = 8


def _setup(pairing):
    c = tiny("excb")
    c.loss.excb_pairing = pairing
    method = build_method(c)
    rng = np.random.default_rng(0)
    g, loc = c.data.global_crops, c.data.local_crops
    views = {
        "global": jnp.asarray(rng.normal(size=(BATCH, g.num, g.size, g.size, 3)), jnp.float32),
        "local": jnp.asarray(rng.normal(size=(BATCH, loc.num, loc.size, loc.size, 3)),
                             jnp.float32),
    }
    params, batch_stats, state = method.init(jax.random.key(0), views)
    # A teacher different from the student, so the targets are not the student's own outputs.
    teacher = jax.tree.map(lambda p: p * 0.9, params)
    return c, method, params, batch_stats, teacher, state, views


def _loss_fn(c, method, batch_stats, teacher, state):
    hyper = hyperparams(c, 0, 10)

    def loss(params, views):
        # One step's calls without accumulation: teacher pass, targets, the student's loss.
        t_out, _ = method.teacher(teacher, batch_stats, views, {})
        targets = method.targets(params, t_out, state, hyper, {})
        return method.loss(params, LossInputs(
            views=views, targets=jax.lax.stop_gradient(targets.per_sample),
            batch_stats=batch_stats, method_state=state, hyper=hyper, draws={},
            key=jax.random.key(1))).loss

    return jax.jit(jax.value_and_grad(loss))


@pytest.mark.parametrize("pairing", ["paper", "released"])
def test_method_loss_is_excb_loss_of_every_views_outputs(pairing):
    c, method, params, bs, teacher, state, views = _setup(pairing)
    loss, _ = _loss_fn(c, method, bs, teacher, state)(params, views)

    # The same loss written out: student outputs of each resolution (BatchNorm with that call's
    # batch statistics), teacher outputs of the global views, then excb_loss with all V direct
    # projections.
    def apply(p, x, **kw):
        out, _ = method.model.apply(variables(p, bs), flatten_views(x), train=True,
                                    mutable=["batch_stats"], **kw)
        return out

    (d_g, p_g), (d_l, p_l) = apply(params, views["global"]), apply(params, views["local"])
    t, _ = apply(teacher, views["global"], with_predictor=False)
    direct = jnp.concatenate([views_first(d_g, BATCH), views_first(d_l, BATCH)])
    pred = jnp.concatenate([views_first(p_g, BATCH), views_first(p_l, BATCH)])
    expected, _ = excb_loss(direct, pred, views_first(t, BATCH), state["cluster_sizes"],
                            teacher_temp=c.loss.teacher_temp, momentum=0.0, pairing=pairing)
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)


@pytest.mark.parametrize("pairing", ["paper", "released"])
def test_centroids_learn_only_from_global_direct_projections(pairing):
    # The local crops reach the loss (their direct projections under "paper", their predictor
    # outputs under both) but never the centroids: the centroid gradient must not change when
    # the local images do, while the backbone's does.
    c, method, params, bs, teacher, state, views = _setup(pairing)
    fn = _loss_fn(c, method, bs, teacher, state)
    _, grads = fn(params, views)
    other = {**views, "local": views["local"][::-1] * 0.5 + 0.3}
    loss_other, grads_other = fn(params, other)
    centroid = grads["centroids"]["prototypes"]
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(centroid)) > 0
    chex.assert_trees_all_close(grads_other["centroids"]["prototypes"], centroid,
                                rtol=1e-5, atol=1e-7)
    backbone = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()),
                            grads["backbone"], grads_other["backbone"])
    assert max(jax.tree.leaves(backbone)) > 1e-6


def test_cluster_sizes_advance_once_per_step_by_eq_9_of_the_balanced_teacher():
    # The one walk of the sizes: state -> balance_similarities -> arg-max fractions (Eq. 8) ->
    # EMA with loss.cluster_momentum (Eq. 9), equal to the public update_cluster_sizes; the
    # metrics describe the sizes the balancing used (before the step).
    c, method, params, bs, teacher, state, views = _setup("paper")
    k = c.head.num_prototypes
    sizes = jnp.asarray(np.random.default_rng(1).dirichlet(np.ones(k)), jnp.float32)
    state = {**state, "cluster_sizes": sizes}
    t_out, _ = method.teacher(teacher, bs, views, {})
    targets = method.targets(params, t_out, state, hyperparams(c, 0, 10), {})
    new = method.update_state(state, targets.stats, {})["cluster_sizes"]
    balanced = balance_similarities(to_views_first(t_out), sizes, boost=c.loss.boost)
    m = c.loss.cluster_momentum
    np.testing.assert_array_equal(new, update_cluster_sizes(sizes, balanced, momentum=m))
    labels = np.asarray(jnp.argmax(balanced, -1)).ravel()
    fractions = np.bincount(labels, minlength=k) / labels.size
    np.testing.assert_allclose(new, m * np.asarray(sizes) + (1 - m) * fractions, rtol=1e-6)
    relative = k * np.asarray(sizes, np.float64) / np.sum(np.asarray(sizes, np.float64))
    np.testing.assert_allclose(
        [targets.metrics["min_relative_size"], targets.metrics["max_relative_size"],
         targets.metrics["empty_fraction"]],
        [relative.min(), relative.max(), np.mean(relative < 0.01)], rtol=1e-5)
