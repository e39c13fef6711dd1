"""Every file in configs/ builds, validates, opens with its command, and its model initialises
(shapes only, through jax.eval_shape, so paper-scale models cost nothing)."""

import glob
import importlib.util
import os

import jax
import pytest

from jaxssl.methods.registry import build_method
from jaxssl.train.init_state import create_train_state
from jaxssl.train.optim import make_optimizer
from jaxssl.train.recipes import IMAGENET_TRAIN_SIZE, INAT18_TRAIN_SIZE, steps_for
from jaxssl.train.validate import validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


def load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_is_a_config_per_method_and_recipe():
    names = {os.path.basename(p) for p in CONFIGS}
    for method in ("carp", "excb", "dino", "dino_koleo", "ibot", "msn", "pmsn"):
        assert f"{method}_fashion_mnist.py" in names
    for paper in ("carp_rn50_imagenet.py", "excb_rn50_imagenet.py", "excb_vits16_imagenet.py",
                  "dino_vits16_imagenet.py", "dino_rn50_imagenet.py",
                  "dino_koleo_vits16_imagenet.py", "ibot_vits16_imagenet.py",
                  "ibot_koleo_vits16_imagenet.py", "msn_vits16_imagenet.py",
                  "pmsn_vits16_imagenet.py", "msn_vits16_inat18.py", "pmsn_vits16_inat18.py",
                  "quickstart.py"):
        assert paper in names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_builds_validates_and_initialises(path):
    module = load(path)
    assert "python -m jaxssl.train --config configs/" + os.path.basename(path) in module.__doc__
    assert "Expect:" in module.__doc__
    c = module.get_config()
    devices = max(1, c.train.batch_size // 128) * 8 if c.train.batch_size >= 1024 else 8
    validate_config(c, num_devices=devices, num_processes=1)
    method = build_method(c)
    tx = make_optimizer(c.optim)
    state = jax.eval_shape(lambda k: create_train_state(method, c, tx, k, 10), jax.random.key(0))
    assert jax.tree.leaves(state.params)
    protos = jax.eval_shape(method.prototypes, state.params)
    assert protos.shape[0] == c.head.num_prototypes


@pytest.mark.parametrize("name,mode,clip,frozen", [
    ("dino_vits16_imagenet.py", "per_parameter", 3.0, True),
    ("dino_rn50_imagenet.py", "per_parameter", 3.0, True),
    ("dino_koleo_vits16_imagenet.py", "per_parameter", 3.0, True),
    ("ibot_vits16_imagenet.py", "per_parameter", 3.0, True),
    ("ibot_koleo_vits16_imagenet.py", "per_parameter", 3.0, True),
    ("excb_vits16_imagenet.py", "per_parameter", 0.0, False),
    ("excb_rn50_imagenet.py", "per_parameter", 0.0, False),
    ("msn_vits16_imagenet.py", "global", 3.0, False),
    ("pmsn_vits16_inat18.py", "global", 3.0, False),
    ("carp_rn50_imagenet.py", "global", 0.0, False),
])
def test_paper_recipes_clip_and_freeze_as_their_released_code(name, mode, clip, frozen):
    """DINO / iBOT (and KoLeo-proto on them) clip each parameter's gradient and freeze the last
    layer for one epoch; MSN / PMSN clip the global norm (jaxssl.train.recipes.paper_clip_mode)."""
    c = load(os.path.join(ROOT, "configs", name)).get_config()
    assert c.optim.grad_clip_mode == mode
    assert c.optim.grad_clip == clip  # DINO's default 3.0; ExCB's configs and CARP: none
    one_epoch = steps_for(1, IMAGENET_TRAIN_SIZE if "imagenet" in name else INAT18_TRAIN_SIZE,
                          c.train.batch_size)
    assert c.optim.freeze_prototypes_steps == (one_epoch if frozen else 0)
