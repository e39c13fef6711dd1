"""One train step of every method on tiny shapes, checked against the update equations."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxssl.data.masks import ibot_masks
from jaxssl.methods.registry import build_method
from jaxssl.train.hyper import hyperparams
from jaxssl.train.init_state import create_train_state
from jaxssl.train.optim import make_optimizer
from jaxssl.train.recipes import tiny
from jaxssl.train.step import make_train_step


def random_batch(config, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    g, loc = config.data.global_crops, config.data.local_crops
    batch = {"global": rng.integers(0, 256, (batch_size, g.num, g.size, g.size, 3), np.uint8)}
    if loc.num:
        batch["local"] = rng.integers(0, 256, (batch_size, loc.num, loc.size, loc.size, 3),
                                      np.uint8)
    if config.method == "ibot":
        side = g.size // 4
        batch["mask"] = ibot_masks(seed, 0, batch_size, g.num, (side, side))
    return {k: jnp.asarray(v) for k, v in batch.items()}


_COMPILED = {}


def prototype_state(opt_state):
    """The optimiser state of the prototype group (jaxssl.train.optim's multi_transform)."""
    mt = [s for s in jax.tree.leaves(opt_state.inner_state, is_leaf=lambda x: isinstance(
        x, optax.MultiTransformState)) if isinstance(s, optax.MultiTransformState)]
    return mt[0].inner_states["prototypes"].inner_state.inner_state


def compiled(method, accum=1):
    """(config, method, optimiser, jitted step) built once per method for the whole module."""
    if (method, accum) not in _COMPILED:
        c, m, tx, _ = setup(method, **{"train.grad_accum_steps": accum, "optim.lr": 1e-2,
                                       "loss.cluster_momentum": 0.5})
        _COMPILED[method, accum] = (c, m, tx, make_train_step(m, c, tx))
    return _COMPILED[method, accum]


def fresh_state(method, accum=1):
    c, m, tx, step = compiled(method, accum)
    return create_train_state(m, c, tx, jax.random.key(0), 10), step, c, m


def setup(method, **overrides):
    c = tiny(method)
    for k, v in overrides.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    m = build_method(c)
    tx = make_optimizer(c.optim)
    state = create_train_state(m, c, tx, jax.random.key(0), 10)
    return c, m, tx, state


@pytest.mark.parametrize("method", ["dino", "ibot", "carp", "excb", "msn"])
def test_one_step_updates_student_teacher_and_state(method):
    state, step, c, m = fresh_state(method)
    before = jax.tree.map(np.asarray, state)  # the step donates its input
    hyper = hyperparams(c, 5, 10)
    new, metrics = step(state, random_batch(c, 16), hyper, jax.random.key(1))
    assert int(new.step) == 1
    assert np.isfinite(float(metrics["loss"]))
    # The student moved.
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))),
                         new.params, before.params)
    assert max(jax.tree.leaves(moved)) > 0
    # EMA teacher: theta_t = m theta_t + (1 - m) theta_s with the new student (docs/methods.md §0).
    m_ema = float(hyper["ema_momentum"])
    expected = jax.tree.map(lambda t, s: m_ema * t + (1 - m_ema) * np.asarray(s),
                            before.teacher_params, new.params)
    chex.assert_trees_all_close(new.teacher_params, expected, rtol=1e-5, atol=1e-6)
    if method in ("dino", "ibot"):
        # c <- 0.9 c + 0.1 mean(teacher logits); from c = 0 the new centre is 0.1 x batch mean.
        assert np.abs(np.asarray(new.method_state["center"])).max() > 0
    if method == "excb":
        sizes = np.asarray(new.method_state["cluster_sizes"])
        np.testing.assert_allclose(sizes.sum(), 1.0, rtol=1e-5)
        # c = m / K + (1 - m) f with f the fractions of 2 x 16 teacher rows (m = 0.5 here).
        f = (sizes - 0.5 / 64) / 0.5
        np.testing.assert_allclose(f * 32, np.round(f * 32), atol=1e-2)


def test_dino_center_is_ema_of_teacher_logit_mean():
    state, step, c, m = fresh_state("dino")
    batch = random_batch(c, 16)
    hyper = hyperparams(c, 0, 10)
    teacher = jax.tree.map(np.asarray, state.teacher_params)
    new, _ = step(state, batch, hyper, jax.random.key(3))
    # Recompute the teacher logits of the same augmented views independently.
    from jaxssl.data.view_augments import view_augments
    from jaxssl.train.step import augment_batch

    key = jax.random.fold_in(jax.random.key(3), 0)
    k_aug, _ = jax.random.split(key)
    views = augment_batch(k_aug, batch, view_augments(c))
    x = views["global"].reshape((-1,) + views["global"].shape[2:])
    logits = m.model.apply({"params": teacher}, x, train=True)
    np.testing.assert_allclose(np.asarray(new.method_state["center"]),
                               0.1 * np.asarray(logits).mean(axis=0), rtol=1e-4, atol=1e-6)


def test_prototypes_frozen_while_configured():
    """Inside the freeze window the jitted step leaves the prototype layer and its optimiser
    state bit-identical although weight decay is on; the rest of the student moves."""
    state, step, c, m = fresh_state("dino")
    c = c.copy_and_resolve_references()
    c.optim.freeze_prototypes_steps = 5
    hyper = hyperparams(c, 3, 10)
    assert bool(hyper["freeze_prototypes"]) and float(hyper["weight_decay"]) > 0
    before = jax.tree.map(np.asarray, state)  # the step donates its input
    new, _ = step(state, random_batch(c, 16), hyper, jax.random.key(0))
    chex.assert_trees_all_equal(new.params["head"]["prototypes"],
                                before.params["head"]["prototypes"])
    chex.assert_trees_all_equal(prototype_state(new.opt_state), prototype_state(before.opt_state))
    assert not np.array_equal(np.asarray(new.params["head"]["mlp"]["mlp_0"]["kernel"]),
                              before.params["head"]["mlp"]["mlp_0"]["kernel"])


def test_gradient_accumulation_matches_full_batch():
    """DINO (no BatchNorm): two micro-batches of 8 give the full batch of 16's update:
    parameters, teacher, and a centre that advances once from the averaged batch means."""
    results = []
    for accum in (1, 2):
        state, step, c, m = fresh_state("dino", accum)
        new, metrics = step(state, random_batch(c, 16, seed=4), hyperparams(c, 5, 10),
                            jax.random.key(2))
        results.append((jax.tree.map(np.asarray, new), float(metrics["loss"])))
    (a, loss_a), (b, loss_b) = results
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
    chex.assert_trees_all_close(a.params, b.params, rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(a.method_state, b.method_state, rtol=1e-5, atol=1e-7)


def test_excb_cluster_sizes_advance_once_under_accumulation():
    """With 2 micro-batches the sizes are m c + (1 - m) mean(f_1, f_2): one EMA step whose
    fractions are multiples of 1 / 32 (2 teacher views x 16 images), not two EMA steps.
    (ExCB's predictor has BatchNorm, so its loss legitimately depends on the micro-batch.)"""
    state, step, c, m = fresh_state("excb", 2)
    new, _ = step(state, random_batch(c, 16, seed=4), hyperparams(c, 5, 10), jax.random.key(2))
    sizes = np.asarray(new.method_state["cluster_sizes"])
    f = (sizes - 0.5 / 64) / 0.5
    np.testing.assert_allclose(f.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(f * 32, np.round(f * 32), atol=1e-2)
