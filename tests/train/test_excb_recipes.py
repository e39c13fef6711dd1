"""ExCB paper recipes: teacher EMA 0.996 -> 1 for both backbones, and the separate centroid
weight decay (cosine 1e-3 -> 1e-4) for ResNet-50 only, checked in the config, the per-step
hyper-parameters and the optimiser's actual update."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.train.hyper import hyperparams
from jaxssl.train.optim import make_optimizer, set_hyperparams
from jaxssl.train.recipes import imagenet

# Short runs: the schedules depend on the step only through step / num_steps.
EPOCHS = 1


def _recipe(backbone):
    return imagenet("excb", backbone, epochs=EPOCHS)


@pytest.mark.parametrize("backbone", ["resnet50", "vit_small"])
def test_teacher_ema_is_0996_to_1_for_both_backbones(backbone):
    c = _recipe(backbone)
    assert (c.ema.momentum, c.ema.momentum_end) == (0.996, 1.0)
    n = c.train.num_steps
    np.testing.assert_allclose(float(hyperparams(c, 0, n)["ema_momentum"]), 0.996, rtol=1e-7)
    # Cosine: half-way at half the run (n // 2 is within one step of it).
    np.testing.assert_allclose(float(hyperparams(c, n // 2, n)["ema_momentum"]), 0.998,
                               atol=1e-5)
    assert float(hyperparams(c, n, n)["ema_momentum"]) == 1.0


def _centroid_decay(c, step):
    """Total decay the centroids get at ``step``: the base plus the extra centroid term."""
    h = hyperparams(c, step, c.train.num_steps)
    return float(h["weight_decay"]) + float(h["prototype_decay"]), float(h["weight_decay"])


def test_resnet50_centroid_decay_is_1e3_to_1e4():
    c = _recipe("resnet50")
    assert c.loss.centroid_wd_scale == 10.0 and c.optim.weight_decay == 1e-4
    n = c.train.num_steps
    total, base = _centroid_decay(c, 0)
    np.testing.assert_allclose((total, base), (1e-3, 1e-4), rtol=1e-6)
    total, base = _centroid_decay(c, n)
    np.testing.assert_allclose((total, base), (1e-4, 1e-4), rtol=1e-6)


def test_vit_small_has_no_separate_centroid_decay():
    c = _recipe("vit_small")
    assert c.loss.centroid_wd_scale == 1.0
    n = c.train.num_steps
    for step in (0, n // 3, n):
        h = hyperparams(c, step, n)
        assert float(h["prototype_decay"]) == 0.0
    # The base decay (0.04 -> 0.4) still reaches the centroids like every other matrix.
    np.testing.assert_allclose(float(hyperparams(c, 0, n)["weight_decay"]), 0.04, rtol=1e-6)


@pytest.mark.parametrize("step_name,expected", [("start", 1e-3), ("end", 1e-4)])
def test_resnet50_optimizer_decays_centroids_at_the_scheduled_rate(step_name, expected):
    # SGD with zero gradients and lr 1: the first update of a matrix is -decay x matrix, so the
    # centroids' update shows the decay the optimiser really applies.
    c = _recipe("resnet50")
    n = c.train.num_steps
    h = hyperparams(c, 0 if step_name == "start" else n, n)
    tx = make_optimizer(c.optim)
    params = {"centroids": {"prototypes": {"kernel": jnp.ones((4, 3))}},
              "backbone": {"kernel": jnp.ones((3, 3))}}
    state = set_hyperparams(tx.init(params), learning_rate=1.0,
                            weight_decay=h["weight_decay"], prototype_decay=h["prototype_decay"])
    grads = {"centroids": {"prototypes": {"kernel": jnp.zeros((4, 3))}},
             "backbone": {"kernel": jnp.zeros((3, 3))}}
    updates, _ = tx.update(grads, state, params)
    np.testing.assert_allclose(-updates["centroids"]["prototypes"]["kernel"], expected,
                               rtol=1e-5)
    np.testing.assert_allclose(-updates["backbone"]["kernel"], 1e-4, rtol=1e-5)
