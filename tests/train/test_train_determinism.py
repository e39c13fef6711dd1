"""Stochastic depth in the train step: the student is stochastic, the EMA teacher is not.

Every method runs a depth-2 ViT whose second block has drop-path rate 0.5 (rates are linear from
0 over depth, so depth 1 would have none). The forward passes of ``Method.teacher`` and
``Method.loss`` are recorded by wrapping the method module's ``apply_with_stats``; teacher calls
are recognised by their parameters (the teacher's tree), not by the flags the method passes, so a
method that forgot to make its teacher deterministic fails here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.data.masks import ibot_masks
from jaxssl.data.view_augments import view_augments
from jaxssl.methods import base
from jaxssl.methods.registry import build_method
from jaxssl.train.hyper import hyperparams
from jaxssl.train.init_state import create_train_state
from jaxssl.train.optim import make_optimizer
from jaxssl.train.recipes import tiny
from jaxssl.train.step import augment_batch, make_train_step

METHODS = ["dino", "ibot", "carp", "excb", "msn"]
MODULES = {"dino": "dino", "ibot": "dino", "carp": "carp", "excb": "excb", "msn": "msn"}


def _config(method, drop_path_rate):
    c = tiny(method)
    c.model.backbone_kwargs.depth = 2
    c.model.drop_path_rate = drop_path_rate
    c.loss.patch_drop = 0.0  # MSN: keep the key's only job drop path, so outputs compare
    return c


def _batch(config, batch_size=8, seed=0):
    rng = np.random.default_rng(seed)
    g, loc = config.data.global_crops, config.data.local_crops
    batch = {"global": rng.integers(0, 256, (batch_size, g.num, g.size, g.size, 3), np.uint8),
             "local": rng.integers(0, 256, (batch_size, loc.num, loc.size, loc.size, 3),
                                   np.uint8)}
    if config.method == "ibot":
        side = g.size // 4
        batch["mask"] = ibot_masks(seed, 0, batch_size, g.num, (side, side))
    return {k: jnp.asarray(v) for k, v in batch.items()}


def _forward_passes(monkeypatch, method_name, drop_path_rate, keys):
    """Runs a step's teacher pass and ``Method.loss`` once per key (same params, views) and
    returns, per key, the lists of teacher and student outputs of every forward pass, in call
    order."""
    import importlib

    c = _config(method_name, drop_path_rate)
    m = build_method(c)
    state = create_train_state(m, c, make_optimizer(c.optim), jax.random.key(0), 10)
    views = augment_batch(jax.random.key(5), _batch(c), view_augments(c))
    module = importlib.import_module(f"jaxssl.methods.{MODULES[method_name]}")
    calls = []

    real = base.apply_with_stats

    def spy(mod, params, *args, **kwargs):
        out = real(mod, params, *args, **kwargs)
        calls.append((params is state.teacher_params, jax.tree.map(np.asarray, out[0])))
        return out

    # The methods call it directly or through base.student_views / base.teacher_views.
    monkeypatch.setattr(base, "apply_with_stats", spy)
    if hasattr(module, "apply_with_stats"):
        monkeypatch.setattr(module, "apply_with_stats", spy)
    runs = []
    hyper = hyperparams(c, 0, 10)
    for key in keys:
        calls.clear()
        # One optimiser step's calls (jaxssl.train.grads without the gradient): the step's
        # draws (fixed here), the teacher pass and targets, then the student's loss with the key.
        draws = m.draw(jax.random.key(9), views)
        t_out, _ = m.teacher(state.teacher_params, state.teacher_batch_stats, views, draws)
        targets = m.targets(state.params, t_out, state.method_state, hyper, draws)
        loss = m.loss(state.params, base.LossInputs(
            views=views, targets=targets.per_sample, batch_stats=state.batch_stats,
            method_state=state.method_state, hyper=hyper, draws=draws, key=key)).loss
        assert np.isfinite(float(loss))
        runs.append(([o for t, o in calls if t], [o for t, o in calls if not t]))
    return runs, (m, state, views)


@pytest.mark.parametrize("method", METHODS)
def test_teacher_deterministic_student_stochastic(monkeypatch, method):
    keys = [jax.random.key(1), jax.random.key(2)]
    (a, b), (m, state, views) = _forward_passes(monkeypatch, method, 0.5, keys)
    # Reference: the same parameters with stochastic depth switched off altogether.
    [(ref_teacher, ref_student)], _ = _forward_passes(monkeypatch, method, 0.0, keys[:1])
    teacher_a, student_a = a
    teacher_b, student_b = b
    assert teacher_a and student_a, "the spy saw no teacher or no student pass"
    for ta, tb, tr in zip(teacher_a, teacher_b, ref_teacher, strict=True):
        # The teacher does not depend on the key and equals the drop-path-free network.
        jax.tree.map(np.testing.assert_array_equal, ta, tb)
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6),
                     ta, tr)
    # Every student pass changes with the key and differs from the drop-path-free network.
    for sa, sb, sr in zip(student_a, student_b, ref_student, strict=True):
        fa, fb, fr = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(s)])
                      for s in (sa, sb, sr))
        assert not np.allclose(fa, fb, atol=1e-5)
        assert not np.allclose(fa, fr, atol=1e-5)
    if method in ("dino", "ibot"):
        # No BatchNorm anywhere in the ViT DINO model: the training-mode teacher pass is the
        # eval-mode forward pass.
        x = views["global"].reshape((-1,) + views["global"].shape[2:])
        kwargs = {"patches": True} if method == "ibot" else {}
        eval_out = m.model.apply({"params": state.teacher_params}, x, train=False, **kwargs)
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6),
                     teacher_a[0], eval_out)


def test_embed_and_assign_are_deterministic():
    """Evaluation (features, prototype assignment) never applies stochastic depth: no rng is
    needed and the result equals that of the drop-path-free network."""
    c = _config("excb", 0.5)
    m, m0 = build_method(c), build_method(_config("excb", 0.0))
    state = create_train_state(m, c, make_optimizer(c.optim), jax.random.key(0), 10)
    x = jax.random.normal(jax.random.key(3), (4, 16, 16, 3))
    p, bs = state.teacher_params, state.teacher_batch_stats
    np.testing.assert_array_equal(np.asarray(m.embed(p, bs, x)), np.asarray(m0.embed(p, bs, x)))
    np.testing.assert_array_equal(np.asarray(m.assign(p, bs, x)),
                                  np.asarray(m0.assign(p, bs, x)))
    np.testing.assert_array_equal(np.asarray(m.project(p, bs, x, train=True)),
                                  np.asarray(m0.project(p, bs, x, train=True)))


@pytest.mark.parametrize("method", METHODS)
def test_train_step_runs_with_drop_path(method):
    """The jitted train step of every method runs with stochastic depth on (the paper ViT
    recipes' drop_path_rate = 0.1 crashed here when the teacher was stochastic without a key)."""
    c = _config(method, 0.1)
    m = build_method(c)
    tx = make_optimizer(c.optim)
    state = create_train_state(m, c, tx, jax.random.key(0), 10)
    new, metrics = make_train_step(m, c, tx)(state, _batch(c), hyperparams(c, 0, 10),
                                             jax.random.key(1))
    assert int(new.step) == 1
    assert np.isfinite(float(metrics["loss"]))
