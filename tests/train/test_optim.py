"""The optimiser: prototype freezing skips the layer entirely, and both gradient-clipping modes
match a float64 numpy reference."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxssl.train.optim import (
    PROTOTYPES_LABEL,
    make_optimizer,
    set_hyperparams,
)


def params_tree(seed=0):
    """A head with a weight-normalised prototype layer (kernel + learned gain), an MLP layer and a
    backbone norm scale: ranks 1 and 2 on both sides of the prototype mask."""
    rng = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    return {"backbone": {"norm": {"scale": f(5)}, "dense": {"kernel": f(5, 3), "bias": f(3)}},
            "head": {"prototypes": {"kernel": f(4, 3), "gain": f(4)},
                     "mlp": {"kernel": f(3, 3)}}}


def grads_like(params, seed):
    rng = np.random.default_rng(1000 + seed)
    return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)


def optim_cfg(name, **kw):
    return ml_collections.ConfigDict(dict(
        name=name, momentum=kw.pop("momentum", 0.9), grad_clip=kw.pop("clip", 0.0),
        grad_clip_mode=kw.pop("mode", "global"), flatten=False))


def run(tx, params, steps, freeze_at=(), lr=0.1, wd=0.1):
    """Runs ``steps`` updates with fixed per-step gradients; returns params/state after each."""
    state = tx.init(params)
    history = [(params, state)]
    update = jax.jit(tx.update)
    for s in range(steps):
        state = set_hyperparams(state, learning_rate=lr, weight_decay=wd, prototype_decay=0.05,
                                freeze_prototypes=s in freeze_at)
        updates, state = update(grads_like(params, s), state, params)
        params = optax.apply_updates(params, updates)
        history.append((params, state))
    return history


def prototype_state(opt_state):
    """The optimiser state of the prototype group (inside the conditional-mask wrapper)."""
    mt = next(s for s in jax.tree.leaves(opt_state.inner_state, is_leaf=lambda x: isinstance(
        x, optax.MultiTransformState)) if isinstance(s, optax.MultiTransformState))
    return mt.inner_states[PROTOTYPES_LABEL].inner_state.inner_state


def other_state(opt_state):
    mt = next(s for s in jax.tree.leaves(opt_state.inner_state, is_leaf=lambda x: isinstance(
        x, optax.MultiTransformState)) if isinstance(s, optax.MultiTransformState))
    return mt.inner_states["others"].inner_state


@pytest.mark.parametrize("name", ["adamw", "sgd", "lars"])
def test_frozen_prototypes_get_no_update_and_keep_their_state(name):
    """Steps 0-1 train everything (momentum and Adam moments become non-zero), steps 2-4 freeze
    the prototypes with weight decay 0.1 and non-zero gradients, step 5 thaws them."""
    tx = make_optimizer(optim_cfg(name, clip=1.0, mode="per_parameter"))
    hist = run(tx, params_tree(), 6, freeze_at=(2, 3, 4))
    (p1, s1), (p4, s4), (p5, s5) = hist[2], hist[5], hist[6]
    # Before the window the prototype state is not trivially zero (a frozen zero state would
    # pass the equality below by accident).
    assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(prototype_state(s1))
               if jnp.issubdtype(x.dtype, jnp.floating)) > 0
    # Over the window: prototype params and their optimiser state are bit-identical.
    chex.assert_trees_all_equal(p4["head"]["prototypes"], p1["head"]["prototypes"])
    chex.assert_trees_all_equal(prototype_state(s4), prototype_state(s1))
    # Everything else moved, leaf by leaf, and so did its optimiser state.
    others = {"backbone": p1["backbone"], "mlp": p1["head"]["mlp"]}
    moved = {"backbone": p4["backbone"], "mlp": p4["head"]["mlp"]}
    for a, b in zip(jax.tree.leaves(others), jax.tree.leaves(moved), strict=True):
        assert float(jnp.abs(a - b).min()) > 0
    assert any(not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(other_state(s1)), jax.tree.leaves(other_state(s4)), strict=True))
    # After the window the prototypes and their optimiser state move again.
    assert any(not np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(prototype_state(s4)), jax.tree.leaves(prototype_state(s5)), strict=True))
    for a, b in zip(jax.tree.leaves(p4["head"]["prototypes"]),
                    jax.tree.leaves(p5["head"]["prototypes"]), strict=True):
        assert float(jnp.abs(a - b).min()) > 0


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_frozen_steps_are_skipped_as_if_they_never_happened(name):
    """DINO's semantics (grad = None: the optimiser skips the parameter): the prototypes' path
    with steps 2-4 frozen equals their path when the gradients of steps 2-4 are never applied, i.e.
    the steps 0, 1, 5 of an unfrozen run (same hyper-parameters). For AdamW this includes the bias
    correction, which resumes at step 3, not 6."""
    tx = make_optimizer(optim_cfg(name))
    frozen = run(tx, params_tree(), 6, freeze_at=(2, 3, 4))[-1][0]["head"]["prototypes"]

    # Reference: a plain optax optimiser on the prototypes alone, fed only steps 0, 1, 5.
    if name == "adamw":
        ref_tx = optax.chain(optax.scale_by_adam(), optax.masked(optax.add_decayed_weights(0.1), {
            "kernel": True, "gain": False}), optax.add_decayed_weights(0.05), optax.scale(-0.1))
    else:
        ref_tx = optax.chain(optax.masked(optax.add_decayed_weights(0.1), {
            "kernel": True, "gain": False}), optax.add_decayed_weights(0.05),
            optax.trace(decay=0.9), optax.scale(-0.1))
    p = params_tree()["head"]["prototypes"]
    state = ref_tx.init(p)
    for s in (0, 1, 5):
        g = grads_like(params_tree(), s)["head"]["prototypes"]
        u, state = ref_tx.update(g, state, p)
        p = optax.apply_updates(p, u)
    chex.assert_trees_all_close(frozen, p, rtol=1e-6, atol=1e-7)


def test_no_freeze_equals_one_optimiser_over_all_parameters():
    """The two parameter groups are an implementation detail: unfrozen, the update equals that of
    a single optax.adamw-style chain over the whole tree (with global clipping)."""
    tx = make_optimizer(optim_cfg("adamw", clip=0.5, mode="global"))
    got = run(tx, params_tree(), 3)[-1][0]
    wd_mask = lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)  # noqa: E731
    proto = lambda p: {"backbone": jax.tree.map(lambda _: False, p["backbone"]),  # noqa: E731
                       "head": {"prototypes": jax.tree.map(lambda _: True, p["head"]["prototypes"]),
                                "mlp": {"kernel": False}}}
    ref_tx = optax.chain(optax.clip_by_global_norm(0.5), optax.scale_by_adam(),
                         optax.add_decayed_weights(0.1, mask=wd_mask),
                         optax.add_decayed_weights(0.05, mask=proto), optax.scale(-0.1))
    p = params_tree()
    state = ref_tx.init(p)
    for s in range(3):
        u, state = ref_tx.update(grads_like(p, s), state, p)
        p = optax.apply_updates(p, u)
    chex.assert_trees_all_close(got, p, rtol=1e-6, atol=1e-7)


def numpy_clip(grads: dict, mode: str, c: float) -> dict:
    """float64 reference: DINO's clip_gradients (per parameter) or g * min(1, c / ||g||)."""
    g = {k: np.asarray(v, np.float64) for k, v in grads.items()}
    if mode == "per_parameter":
        out = {}
        for k, v in g.items():
            coef = c / (np.sqrt((v ** 2).sum()) + 1e-6)
            out[k] = v * coef if coef < 1 else v
        return out
    total = np.sqrt(sum((v ** 2).sum() for v in g.values()))
    return {k: v * min(1.0, c / total) for k, v in g.items()}


@pytest.mark.parametrize("mode", ["per_parameter", "global"])
def test_gradient_clipping_matches_numpy_reference(mode):
    """SGD with lr 1, no momentum and no decay: the update is exactly minus the clipped gradient.
    Leaves whose norms lie below, near and far above the threshold 1.0 (and an all-zero one)."""
    rng = np.random.default_rng(3)
    grads = {"big": rng.normal(size=(4, 3)) * 5.0, "small": rng.normal(size=(3,)) * 0.05,
             "near": np.full((2, 2), 0.499), "zero": np.zeros((2, 3))}
    params = {k: jnp.ones(v.shape, jnp.float32) for k, v in grads.items()}
    tx = make_optimizer(optim_cfg("sgd", clip=1.0, mode=mode, momentum=0.0))
    state = set_hyperparams(tx.init(params), learning_rate=1.0, weight_decay=0.0)
    updates, _ = tx.update({k: jnp.asarray(v, jnp.float32) for k, v in grads.items()}, state,
                           params)
    expected = numpy_clip(grads, mode, 1.0)
    for k in grads:
        np.testing.assert_allclose(-np.asarray(updates[k]), expected[k], rtol=1e-6, atol=1e-8)
    if mode == "per_parameter":
        # The small leaves keep their gradient; the big one has norm 1 (minus DINO's 1e-6 slack).
        np.testing.assert_array_equal(-np.asarray(updates["small"]),
                                      grads["small"].astype(np.float32))
        np.testing.assert_allclose(np.linalg.norm(updates["big"]), 1.0, rtol=1e-5)
    else:
        # One global factor: every leaf, the small ones too, is scaled by the same amount.
        ratio = -np.asarray(updates["small"]) / grads["small"]
        np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
        assert ratio.flat[0] < 0.5


def test_bad_clip_mode_is_named():
    with pytest.raises(ValueError, match=r"config\.optim\.grad_clip_mode must be one of"):
        make_optimizer(optim_cfg("adamw", clip=1.0, mode="layerwise"))


@pytest.mark.parametrize("name,mode", [("adamw", "per_parameter"), ("adamw", "global"),
                                       ("sgd", "per_parameter"), ("sgd", "global")])
def test_flattened_update_equals_the_per_leaf_chain(name, mode):
    """The flattened groups (optax.flatten) are the same arithmetic as the masked per-leaf chain:
    8 steps with clipping, weight decay, the extra prototype decay and a freeze window give the
    same parameters (to float32 rounding) under both."""
    params = params_tree()
    new = run(make_optimizer(optim_cfg(name, clip=1.0, mode=mode), flat=True), params, 8,
              freeze_at=(2, 3))
    old = run(make_optimizer(optim_cfg(name, clip=1.0, mode=mode), flat=False), params, 8,
              freeze_at=(2, 3))
    for (p_new, _), (p_old, _) in zip(new[1:], old[1:], strict=True):
        chex.assert_trees_all_close(p_new, p_old, rtol=1e-6, atol=1e-7)
    # The check has teeth: every leaf moved over the 8 steps.
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(new[-1][0]), strict=True):
        assert float(jnp.abs(a - b).min()) > 0


def test_flattened_state_is_one_vector_per_group_and_empty_groups_are_empty():
    """A tree without prototypes and without rank-1 leaves: the three missing groups hold an empty
    state (no zero-length arrays in checkpoints); the decayed group holds one moment vector of all
    its parameters."""
    params = {"a": jnp.ones((2, 3)), "b": {"kernel": jnp.ones((4, 1))}}
    tx = make_optimizer(optim_cfg("adamw"), flat=True)
    state = tx.init(params)
    shapes = sorted(x.shape for x in jax.tree.leaves(state.inner_state) if x.ndim == 1)
    assert shapes == [(10,), (10,)]  # Adam's mu and nu over 2*3 + 4*1 parameters
    updates, _ = jax.jit(tx.update)(params, set_hyperparams(state, learning_rate=0.1), params)
    chex.assert_trees_all_equal_shapes(updates, params)
