"""Smoke test of every paper recipe (``configs/*_imagenet.py``, ``configs/*_inat18.py``) at its real
shapes: 224 / 96 px crops, the real number of crops, K, head sizes, bf16, drop path, optimiser and
schedules, exactly as the config file writes them. Only what a CPU cannot do changes:

- the dataset is a small ``folder:`` of generated JPEGs of varied sizes (non-square, grayscale);
- global batch 2 on ONE device (the recipes' per-device batch is 64-128);
- one step, a checkpoint, then a second ``train()`` call that resumes from it and runs step 2;
- ``train.log_every = 1`` so that those steps write metrics.jsonl rows;
- the final k-NN evaluation is off;
- ExCB: ``loss.kmeans_init = False``. The k-means initialisation clusters paper-scale samples
  (hundreds of thousands of teacher projections into K = 65536 clusters); it has its own
  benchmark and tests, and a 6-image folder could not even fill K clusters.

Each recipe runs in a subprocess with one CPU device (the test session has 8 fake devices, and
batch 2 cannot be split over 8). The subprocess inherits the persistent XLA compilation cache of
``conftest.py``, so the resuming ``train()`` call, whose step is the same program, reads the
compiled step from the cache instead of compiling it again. Compiling the train step is most of
the cost (measured on a 2-core machine with a cold cache: 30-45 CPU-s per recipe, against
3.5-7.5 CPU-s per step at batch 2, 26 with the K = 65536 KoLeo term of DINO + KoLeo; the whole
file ~15 CPU-minutes, 4-5.5 GB peak memory per subprocess); ``-s`` prints every recipe's
timings in wall and CPU seconds.

Run it yourself: ``python -m pytest tests/train/test_paper_recipes.py -s``, or for chosen
recipes ``python tests/train/test_paper_recipes.py configs/dino_vits16_imagenet.py``.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = sorted(
    os.path.relpath(p, ROOT)
    for p in glob.glob(os.path.join(ROOT, "configs", "*_imagenet.py"))
    + glob.glob(os.path.join(ROOT, "configs", "*_inat18.py"))
)


def _stem(recipe: str) -> str:
    name = os.path.basename(recipe)[: -len(".py")]
    return name.removesuffix("_imagenet").removesuffix("_inat18")


# The ImageNet and iNaturalist-18 versions of (P)MSN differ only in the dataset and the schedule
# lengths (host-side hyper-parameters), so they compile to the same train step: one subprocess
# runs both, and the second reads the step from the compilation cache instead of compiling it.
GROUPS = {stem: [r for r in RECIPES if _stem(r) == stem] for stem in sorted(map(_stem, RECIPES))}
FIRST_STOP, SECOND_STOP = 1, 2  # steps before the stop, and after resuming
RESULT_MARK = "\nRECIPE_SMOKE_RESULT "


def make_jpeg_folder(root: str) -> str:
    """2 classes x 3 JPEGs of varied sizes: square, portrait, landscape, smaller than the 224 px
    crops, and one grayscale image per class. Returns ``root``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = {"cat": [(300, 240, 3), (180, 260, 3), (250, 250)],
             "dog": [(256, 320, 3), (140, 200), (330, 170, 3)]}
    for cls, shapes in sizes.items():
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        for i, shape in enumerate(shapes):
            # Smooth images (not white noise), so crops and blur see some structure.
            low = rng.integers(0, 256, (8, 8) + shape[2:], dtype=np.uint8)
            img = Image.fromarray(low).resize(shape[1::-1], Image.BILINEAR)
            img.save(os.path.join(root, cls, f"{i}.jpg"), quality=90)
    return root


def smoke_config(recipe: str, data_dir: str):
    """The recipe's config with only the smoke-test changes of the module docstring."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe", os.path.join(ROOT, recipe))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.data.dataset = f"folder:{data_dir}"
    config.train.batch_size = 2
    config.train.log_every = 1
    config.eval.final_knn = False
    if config.method == "excb":
        config.loss.kmeans_init = False  # paper-scale k-means: see the module docstring
    return config


_TIMINGS: dict = {}  # the running recipe's timings, filled by the wrapped step factory


def _time_steps(loop_lib) -> None:
    """Wraps the loop's step factory (once per process) to time tracing, compilation and every
    step into ``_TIMINGS``, as [wall, process-CPU] seconds (CPU time is what a shared 2-core CI
    machine pays)."""
    import jax

    if getattr(loop_lib.make_train_step, "timed", False):
        return
    make_step = loop_lib.make_train_step

    def clock():
        return time.perf_counter(), time.process_time()

    def since(t):
        now = clock()
        return [round(now[0] - t[0], 2), round(now[1] - t[1], 2)]

    def timed_make_step(*args, **kwargs):
        step_fn = make_step(*args, **kwargs)

        def timed(*a):
            t = clock()
            out = jax.block_until_ready(step_fn(*a))
            _TIMINGS["step"].append(since(t))
            return out

        def lower(*a):  # the loop compiles through step_fn.lower(...).compile()
            t = clock()
            lowered = step_fn.lower(*a)
            _TIMINGS["trace"].append(since(t))
            t = clock()
            compiled = lowered.compile()
            _TIMINGS["compile"].append(since(t))
            return type("Lowered", (), {"compile": lambda self: compiled})()

        timed.lower = lower
        return timed

    timed_make_step.timed = True
    loop_lib.make_train_step = timed_make_step


def run_recipe(recipe: str, workdir: str, data_dir: str) -> dict:
    """Runs ``recipe`` for FIRST_STOP steps, then resumes it up to SECOND_STOP; returns the
    summaries, timings and metrics rows. Call in a process with one device."""
    from jaxssl.train import loop as loop_lib
    from jaxssl.train.checkpoint import Checkpointer

    _TIMINGS.update(trace=[], compile=[], step=[])
    _time_steps(loop_lib)
    config = smoke_config(recipe, data_dir)
    t0, c0 = time.perf_counter(), time.process_time()
    first = loop_lib.train(config, workdir, stop_after=FIRST_STOP)
    t1, c1 = time.perf_counter(), time.process_time()
    second = loop_lib.train(config, workdir, stop_after=SECOND_STOP)
    t2, c2 = time.perf_counter(), time.process_time()
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return {
        "recipe": recipe, "rows": rows, "checkpoints": Checkpointer(workdir).all_steps(),
        "first": [first["step"], first["resumed"]], "second": [second["step"], second["resumed"]],
        "crops": [config.data.global_crops.size, config.data.local_crops.size],
        "num_prototypes": config.head.num_prototypes, "dtype": config.model.dtype,
        "drop_path_rate": config.model.drop_path_rate,
        # [wall, CPU] seconds; "trace"/"compile" have one entry per train() call.
        "seconds": {"first_call": [round(t1 - t0, 2), round(c1 - c0, 2)],
                    "resume_call": [round(t2 - t1, 2), round(c2 - c1, 2)], **_TIMINGS},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


@pytest.fixture(scope="module")
def jpeg_folder():
    with tempfile.TemporaryDirectory() as d:
        yield make_jpeg_folder(os.path.join(d, "images"))


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_paper_recipe_runs_saves_and_resumes(group, jpeg_folder, tmp_path):
    env = dict(os.environ)
    # One CPU device: the test session's 8 fake devices cannot split a batch of 2.
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if "xla_force_host_platform_device_count" not in f)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--data", jpeg_folder,
         "--workroot", str(tmp_path), *GROUPS[group]],
        env=env, capture_output=True, text=True, timeout=3600, cwd=ROOT)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    results = json.loads(proc.stdout.rsplit(RESULT_MARK, 1)[-1])
    assert [r["recipe"] for r in results] == GROUPS[group]
    for result in results:
        rows = result.pop("rows")
        print(json.dumps({**result, "group_subprocess_wall_s": round(wall, 1)}))
        # The recipe is the paper's: real crops, bf16, and ViTs with stochastic depth.
        assert result["crops"] == [224, 96] and result["dtype"] == "bfloat16"
        if "vits16" in result["recipe"]:
            assert result["drop_path_rate"] > 0
        # Ran, saved at the stop, resumed from that checkpoint and ran one more step.
        assert result["first"] == [FIRST_STOP, False]
        assert result["second"] == [SECOND_STOP, True]
        assert {FIRST_STOP, SECOND_STOP} <= set(result["checkpoints"])
        assert [r["step"] for r in rows] == list(range(1, SECOND_STOP + 1))
        assert all(math.isfinite(r["loss"]) for r in rows)
        assert len(result["seconds"]["step"]) == SECOND_STOP


if __name__ == "__main__":
    # Subprocess entry point; prints the results as one JSON list after RESULT_MARK.
    parser = argparse.ArgumentParser(description="Smoke-run paper recipes on generated JPEGs.")
    parser.add_argument("recipes", nargs="+", help="configs/*.py files")
    parser.add_argument("--data", help="image folder (default: generate one)")
    parser.add_argument("--workroot", help="parent of the workdirs (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data or make_jpeg_folder(os.path.join(scratch, "images"))
        root = args.workroot or scratch
        out = [run_recipe(os.path.relpath(os.path.abspath(r), ROOT),
                          os.path.join(root, os.path.basename(r)[: -len(".py")]), data)
               for r in args.recipes]
    print(RESULT_MARK + json.dumps(out), flush=True)
