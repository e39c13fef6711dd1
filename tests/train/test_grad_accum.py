"""Gradient accumulation equals the large batch, for every method (``train.grad_accum_steps``).

The same batch, state, hyper-parameters and key through the gradient computation with 1 and with 4
micro-batches must give the same loss, the same gradients (before the optimiser) and the same new
method state. The models have no BatchNorm (the documented exception: it normalises each
micro-batch on its own) and no stochastic depth (its per-micro-batch keys differ). Without the
whole-batch teacher pass (MSN's Sinkhorn), the one partition / patch-drop draw per step (CARP,
MSN) and the exact linearisation of the batch-mean terms (MSN/PMSN's p_bar, CARP's block p_bar),
the MSN, PMSN and CARP cases fail (tests/losses also show the loss-level gap without them).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.data.masks import ibot_masks
from jaxssl.data.view_augments import view_augments
from jaxssl.methods.registry import build_method
from jaxssl.train.grads import join_micro, make_grad_fn, split_micro
from jaxssl.train.hyper import hyperparams
from jaxssl.train.init_state import create_train_state
from jaxssl.train.optim import make_optimizer
from jaxssl.train.recipes import tiny
from jaxssl.train.step import augment_batch, make_train_step

BATCH, ACCUM = 16, 4

# case -> (config.method, overrides)
CASES = {
    "dino": ("dino", {}),
    "ibot": ("ibot", {}),
    "dino_koleo": ("dino", {"loss.koleo_weight": 0.1}),
    "carp": ("carp", {}),
    "excb": ("excb", {}),
    "msn": ("msn", {}),
    # PMSN: a power-law prior; sorting p_bar also covers the sort's piecewise-linear gradient.
    "pmsn": ("msn", {"loss.prior": "power_law", "loss.prior_exponent": 1.0,
                     "loss.sort_mean_probs": True}),
}


def _set(c, dotted, value):
    node = c
    *path, last = dotted.split(".")
    for p in path:
        node = node[p]
    node[last] = value


def without_batchnorm(model):
    """The same model with BatchNorm-free heads (the ViT backbone has none)."""
    updates = {}
    for name in ("head", "projector", "predictor"):
        sub = getattr(model, name, None)
        if sub is not None and getattr(sub, "use_bn", False):
            updates[name] = sub.clone(use_bn=False)
    return model.clone(**updates)


def random_batch(c, seed=0):
    rng = np.random.default_rng(seed)
    g, loc = c.data.global_crops, c.data.local_crops
    batch = {"global": rng.integers(0, 256, (BATCH, g.num, g.size, g.size, 3), np.uint8),
             "local": rng.integers(0, 256, (BATCH, loc.num, loc.size, loc.size, 3), np.uint8)}
    if c.method == "ibot":
        side = g.size // c.model.backbone_kwargs.patch_size
        batch["mask"] = ibot_masks(seed, 0, BATCH, g.num, (side, side))
    return {k: jnp.asarray(v) for k, v in batch.items()}


def _scale_carp_logits(params, factor=3000.0):
    mlp = params["head"]["mlp"]
    last = {**mlp["mlp_2"], "kernel": mlp["mlp_2"]["kernel"] * factor}
    return {**params, "head": {**params["head"], "mlp": {**mlp, "mlp_2": last}}}


@functools.cache
def setup(case):
    """(config, method, state, views, hyper) with a teacher that is not the student and a method
    state away from its initial value, so centring and balancing act."""
    name, overrides = CASES[case]
    c = tiny(name)
    c.model.drop_path_rate = 0.0
    c.head.use_bn = False
    for k, v in overrides.items():
        _set(c, k, v)
    m = build_method(c)
    m.model = without_batchnorm(m.model)
    tx = make_optimizer(c.optim)
    state = create_train_state(m, c, tx, jax.random.key(0), 10)
    assert not state.batch_stats, "the test models must have no BatchNorm"
    teacher = create_train_state(m, c, tx, jax.random.key(1), 10).params
    if name == "carp":
        # At init CARP's logits are ~1e-4 (the projection's norm is the temperature): uniform
        # block softmaxes and gradients of pure rounding. A larger last layer makes them O(1)
        # (teacher max block probability ~0.15, uniformity term ~0.1).
        state = state.replace(params=_scale_carp_logits(state.params))
        teacher = _scale_carp_logits(teacher)
    rng = np.random.default_rng(1)
    k = c.head.num_prototypes
    method_state = {
        "center": jnp.asarray(rng.normal(0.0, 0.3, k), jnp.float32),
        "patch_center": jnp.asarray(rng.normal(0.0, 0.3, k), jnp.float32),
        "cluster_sizes": jnp.asarray(rng.dirichlet(np.full(k, 2.0)), jnp.float32),
    }
    state = state.replace(teacher_params=teacher, method_state={
        name: method_state[name] for name in state.method_state})
    views = augment_batch(jax.random.key(2), random_batch(c), view_augments(c))
    return c, m, state, views, hyperparams(c, 5, 10)


@functools.cache
def grads(case, accum):
    c, m, state, views, hyper = setup(case)
    c = c.copy_and_resolve_references()
    c.train.grad_accum_steps = accum
    out = jax.jit(make_grad_fn(m, c))(state, views, hyper, jax.random.key(3))
    return jax.tree.map(np.asarray, out)


def test_split_and_join_micro_batches():
    x = np.arange(24).reshape(12, 2)
    parts = np.asarray(split_micro(x, 4))
    assert parts.shape == (4, 3, 2)
    np.testing.assert_array_equal(parts[1], x[[1, 5, 9]])  # rows i, i + n, ...
    np.testing.assert_array_equal(join_micro(parts), x)


@pytest.mark.parametrize("case", list(CASES))
def test_accumulation_equals_the_full_batch(case):
    c, m, state, views, hyper = setup(case)
    full, accum = grads(case, 1), grads(case, ACCUM)
    np.testing.assert_allclose(accum.loss, full.loss, rtol=1e-5)
    # rtol 1e-5 per entry; entries far below their parameter's largest one are float32 rounding
    # of cancelling sums, so each leaf also gets an absolute floor of 1e-5 of its largest entry
    # (merely permuting the batch moves the gradients by up to ~3e-7 of it).
    for path, a, f in zip(jax.tree_util.tree_leaves_with_path(full.grads),
                          jax.tree.leaves(accum.grads), jax.tree.leaves(full.grads)):
        np.testing.assert_allclose(a, f, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(f))),
                                   err_msg=jax.tree_util.keystr(path[0]))
    assert max(float(np.max(np.abs(g))) for g in jax.tree.leaves(full.grads)) > 1e-2
    new_full = m.update_state(state.method_state, full.stats, hyper)
    new_accum = m.update_state(state.method_state, accum.stats, hyper)
    chex.assert_trees_all_close(new_accum, new_full, rtol=1e-5, atol=1e-7)
    assert set(accum.metrics) == set(full.metrics)
    chex.assert_trees_all_close(accum.metrics, full.metrics, rtol=1e-5, atol=1e-6)


def test_pmsn_gradient_has_a_prior_matching_part():
    """The linearised term is not vanishing here: without the prior-matching term (weight 0)
    the PMSN gradient changes, so the equality above covers it."""
    c, m, state, views, hyper = setup("pmsn")
    c0 = c.copy_and_resolve_references()
    c0.loss.regularization_weight = 0.0
    m0 = build_method(c0)
    m0.model = m.model
    g0 = jax.jit(make_grad_fn(m0, c0))(state, views, hyper, jax.random.key(3)).grads
    diff = max(float(np.max(np.abs(a - b)))
               for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(grads("pmsn", 1).grads)))
    assert diff > 1e-4


def test_accumulated_step_jits_with_the_state_donated():
    c, m, state, views, hyper = setup("msn")
    c = c.copy_and_resolve_references()
    c.train.grad_accum_steps = ACCUM
    step = make_train_step(m, c, make_optimizer(c.optim))
    state = jax.tree.map(jnp.copy, state)  # the cached state must survive the donation
    donated = jax.tree.leaves((state.params, state.teacher_params, state.method_state))
    new, metrics = step(state, random_batch(c), hyper, jax.random.key(4))
    # The student, teacher and method state were updated in their donated buffers.
    assert all(x.is_deleted() for x in donated)
    assert int(new.step) == 1 and np.isfinite(float(metrics["loss"]))
