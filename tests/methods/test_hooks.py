"""The hooks a method owns (jaxssl.methods.base.Method): the trainer calls them for every method, so
adding a method needs no edit in jaxssl/train. Each is checked against a value derived by hand."""

import math

import numpy as np
import pytest

from jaxssl.methods import registry
from jaxssl.methods.base import LossOutput, Method
from jaxssl.methods.dino import DINO
from jaxssl.train.hyper import hyperparams
from jaxssl.train.recipes import imagenet, tiny
from jaxssl.train.validate import validate_config


def test_extra_hyperparams_exc_centroid_decay_is_the_cosine_excess():
    # The ExCB ResNet-50 recipe: centroid decay 10x the base weight decay at step 0, cosine to 1x
    # at the end; prototype_decay is the excess over the base, wd * (scale - 1).
    c = imagenet("excb", "resnet50", epochs=1, dataset_size=10_240, batch_size=1024)
    total, wd = 10, 1e-4  # constant base decay in this recipe
    for step, scale in ((0, 10.0), (5, 1.0 + 9.0 * 0.5), (10, 1.0)):
        h = hyperparams(c, step, total)
        assert float(h["weight_decay"]) == pytest.approx(wd)
        assert float(h["prototype_decay"]) == pytest.approx(wd * (scale - 1.0), rel=1e-6)
    # Any other method keeps the shared default: no extra decay.
    assert float(hyperparams(tiny("dino"), 0, 10)["prototype_decay"]) == 0.0
    assert math.isclose(float(hyperparams(tiny("excb"), 0, 10)["prototype_decay"]), 0.0)


def test_ibot_prepare_batch_adds_the_step_masks_and_dino_adds_nothing():
    c = tiny("ibot")
    method = DINO(c)
    batch = {"index": np.arange(16)}
    a, b = method.prepare_batch(batch, 3), method.prepare_batch(batch, 3)
    side = c.data.global_crops.size // c.model.backbone_kwargs.patch_size  # 16 / 4
    # Flattened patches per global view: [local batch, G, side * side].
    assert a["mask"].shape == (c.train.batch_size, c.data.global_crops.num, side * side)
    np.testing.assert_array_equal(a["mask"], b["mask"])  # a resumed run draws the same masks
    assert not np.array_equal(a["mask"], method.prepare_batch(batch, 4)["mask"])
    assert DINO(tiny("dino")).prepare_batch(batch, 3) is batch


def test_a_new_method_needs_no_trainer_edit(monkeypatch):
    """A method registered under a new name is validated, and its recipe and schedules are
    applied, through its hooks alone."""

    class Toy(Method):
        @classmethod
        def validate(cls, config):
            if config.loss.koleo_weight != 0.5:
                raise ValueError("config.loss.koleo_weight: toy needs 0.5.")

        @classmethod
        def recipe_defaults(cls, config):
            config.loss.koleo_weight = 0.5

        @classmethod
        def extra_hyperparams(cls, config, step, total_steps, hyper):
            return {"entropy_weight": float(step) / total_steps}

        def teacher(self, *args):
            raise NotImplementedError

        def loss(self, params, inputs):
            return LossOutput(0.0, {}, {})

    monkeypatch.setitem(registry.METHODS, "toy", Toy)
    monkeypatch.setattr(registry, "METHOD_NAMES", tuple(registry.METHODS))
    monkeypatch.setattr("jaxssl.train.validate.METHOD_NAMES", tuple(registry.METHODS))
    c = tiny("toy")
    assert c.method == "toy" and c.loss.koleo_weight == 0.5
    validate_config(c)
    c.loss.koleo_weight = 0.25
    with pytest.raises(ValueError, match=r"config\.loss\.koleo_weight: toy needs 0\.5"):
        validate_config(c)
    assert float(hyperparams(c, 3, 12)["entropy_weight"]) == 0.25


@pytest.mark.parametrize("method,mode", [("dino", "per_parameter"), ("ibot", "per_parameter"),
                                         ("excb", "per_parameter"), ("msn", "global"),
                                         ("carp", "global")])
def test_paper_clip_mode_is_the_methods(method, mode):
    assert imagenet(method, "vit_small", epochs=1).optim.grad_clip_mode == mode
