"""benchmarks/memory_plan.py: the device-count arithmetic on hand-set memory figures, the recipe
list, and the abstract batch layout (no compilation)."""

import importlib.util
import os

import jax.numpy as jnp

from jaxssl.train.recipes import imagenet

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "memory_plan.py")
spec = importlib.util.spec_from_file_location("memory_plan", PATH)
plan = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plan)
GIB = plan.GIB


def test_devices_needed_interpolates_between_measured_batches():
    # 1 GiB of state + 0.5 GiB per example: b = 1024 needs 513 GiB, b = 32 needs 17 GiB,
    # b = 16 needs 9 GiB (so 16 GiB first fits at 64 devices), b = 64 needs 33 GiB.
    mem = {16: 9 * GIB, 1024: 513 * GIB}
    assert plan.devices_needed(mem, 1024, 16.0) == "64"
    assert plan.devices_needed(mem, 1024, 33.0) == "16"
    assert plan.devices_needed(mem, 1024, 600.0) == "1"
    # Even one example per device does not fit: 1.5 GiB > 1 GiB.
    assert plan.devices_needed(mem, 1024, 1.0) == "none"


def test_paper_configs_are_the_twelve_recipes():
    names = [os.path.basename(p) for p in plan.paper_configs()]
    assert len(names) == 12
    assert all(n.endswith(("_imagenet.py", "_inat18.py")) for n in names)


def test_abstract_batch_has_the_recipe_layout():
    c = imagenet("ibot", "vit_small", epochs=1)
    b = plan.abstract_batch(c, 4)
    assert b["global"].shape == (4, 2, 224, 224, 3) and b["global"].dtype == jnp.uint8
    assert b["local"].shape == (4, 10, 96, 96, 3)
    assert b["mask"].shape == (4, 2, 14 * 14) and b["mask"].dtype == jnp.bool_
