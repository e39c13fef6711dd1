"""Memory and FLOPs plan of every paper recipe, from the compiled train step (nothing is run).

Run:
  python benchmarks/memory_plan.py                                  # all 12 paper configs
  python benchmarks/memory_plan.py --configs configs/dino_vits16_imagenet.py --devices 8
  python benchmarks/memory_plan.py --remat                          # ViT blocks rematerialised
  XLA_FLAGS=--xla_backend_optimization_level=0 python benchmarks/memory_plan.py   # faster on CPU

On a CPU host each compile takes 1-3 minutes; ``--xla_backend_optimization_level=0`` only skips
LLVM's optimisation of the generated code, after buffer assignment, so the memory figures are the
same (checked: ExCB ResNet-50 at b = 16, 7.05 GiB either way) and the compile is ~3x cheaper.

For each config in ``configs/*_imagenet.py`` / ``*_inat18.py`` and each device count d, the train
step is lowered for abstract inputs (``jax.ShapeDtypeStruct``: no image, no parameter is allocated)
at the per-device batch ``batch_size / d`` and compiled for one device. XLA's memory analysis of
that executable gives the per-device footprint: arguments (train state + batch) + outputs +
temporaries - donated aliases. Data parallelism replicates the state and splits the batch, so a
d-device run holds the one-device program at batch B / d, plus the gradient all-reduce buffers
(about one gradient-sized buffer, not counted here: 0.1-0.2 GiB for these models). FLOPs per
image come from XLA's cost analysis of the same executable (forward + backward + optimiser,
student + teacher).

The compile targets the host's backend. On a CPU host the buffer sizes follow XLA:CPU's fusion and
buffer assignment, which may compute some bfloat16 work in float32 and fuses less than the TPU /
GPU compilers do (nor does it realise ``model.remat``'s saving, see RESULTS.md): read the table
as a planning estimate, and re-run this script on the accelerator itself (it runs unchanged
there) for that backend's figure.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.methods.registry import build_method
from jaxssl.train.hyper import hyperparams
from jaxssl.train.init_state import create_train_state
from jaxssl.train.optim import make_optimizer
from jaxssl.train.step import make_train_step

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import load_config  # noqa: E402  (sibling benchmark script)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 1024**3
# Device memory per accelerator device (as JAX sees one device), GiB.
DEVICES = {"TPU v5e (16 GiB)": 16.0, "TPU v4 (32 GiB)": 32.0, "GPU 80 GB": 80.0}


def paper_configs() -> list[str]:
    """The paper recipes: every ImageNet and iNaturalist-18 config file."""
    return sorted(glob.glob(os.path.join(ROOT, "configs", "*_imagenet.py"))
                  + glob.glob(os.path.join(ROOT, "configs", "*_inat18.py")))


def abstract_batch(config, batch: int) -> dict:
    """Shapes and dtypes of one host batch of ``batch`` examples (uint8 crops, iBOT masks)."""
    g, loc = config.data.global_crops, config.data.local_crops
    out = {"global": jax.ShapeDtypeStruct((batch, g.num, g.size, g.size, 3), jnp.uint8)}
    if loc.num:
        out["local"] = jax.ShapeDtypeStruct((batch, loc.num, loc.size, loc.size, 3), jnp.uint8)
    if config.method == "ibot":
        side = g.size // int(dict(config.model.backbone_kwargs).get("patch_size", 16))
        out["mask"] = jax.ShapeDtypeStruct((batch, g.num, side * side), jnp.bool_)
    return out


def plan(config, per_device_batch: int) -> dict:
    """Compiles the step at ``per_device_batch`` on one device; returns bytes and FLOPs."""
    config = config.copy_and_resolve_references()
    config.train.batch_size = per_device_batch
    method = build_method(config)
    tx = make_optimizer(config.optim)
    state = jax.eval_shape(lambda k: create_train_state(method, config, tx, k, 1000),
                           jax.random.key(0))
    hyper = hyperparams(config, 10, 1000)
    step = make_train_step(method, config, tx)
    t0 = time.perf_counter()
    compiled = step.lower(state, abstract_batch(config, per_device_batch), hyper,
                          jax.random.key(1)).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    state_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(state))
    total = (mem.argument_size_in_bytes + mem.output_size_in_bytes
             + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
    return {"total": total, "temp": mem.temp_size_in_bytes, "state": state_bytes,
            "flops": float(cost.get("flops", 0.0)), "compile_s": compile_s}


def devices_needed(total_by_batch: dict[int, int], global_batch: int, capacity_gib: float
                   ) -> str:
    """Smallest power-of-two device count whose per-device batch fits ``capacity_gib``.

    Between measured batches memory is interpolated linearly in the batch (state is fixed,
    activations scale with the batch), which the measurements at 1, 8 and 64 devices support.
    """
    bs = sorted(total_by_batch)
    if len(bs) < 2:
        return "?"
    (b0, m0), (b1, m1) = (bs[0], total_by_batch[bs[0]]), (bs[-1], total_by_batch[bs[-1]])
    slope = (m1 - m0) / (b1 - b0)
    fixed = m0 - slope * b0
    d = 1
    while d <= global_batch:
        b = global_batch / d
        if fixed + slope * b <= capacity_gib * GIB:
            return str(d)
        d *= 2
    return "none"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="*", default=None, help="config files (default: all paper)")
    p.add_argument("--devices", default="1,8,64", help="device counts to plan for")
    p.add_argument("--remat", action="store_true", help="set model.remat = True")
    args = p.parse_args()
    counts = [int(x) for x in args.devices.split(",")]
    rows = []
    for path in args.configs or paper_configs():
        c = load_config(path)
        c.loss.kmeans_init = False
        if args.remat:
            c.model.remat = True
        B = int(c.train.batch_size)
        per = {}
        for d in counts:
            r = plan(c, max(1, B // d))
            per[max(1, B // d)] = r
            print(f"{os.path.basename(path)} d={d} b={B // d}: "
                  f"{r['total'] / GIB:.2f} GiB (state {r['state'] / GIB:.2f}, "
                  f"temp {r['temp'] / GIB:.2f}), {r['flops'] / max(1, B // d) / 1e9:.1f} "
                  f"GFLOP/img, compile {r['compile_s']:.0f} s", flush=True)
        b_small = min(per)
        rows.append({"config": os.path.basename(path)[:-3], "batch": B, "per": per,
                     "gflop_img": per[b_small]["flops"] / b_small / 1e9,
                     "need": {name: devices_needed({b: r["total"] for b, r in per.items()},
                                                   B, cap)
                              for name, cap in DEVICES.items()}})
    print(f"\nbackend: {jax.devices()[0].platform} ({jax.devices()[0].device_kind}); "
          f"remat={'on' if args.remat else 'off'}")
    head = (["config", "global batch"] + [f"GiB/device @ {d} dev (b={{}})" for d in counts]
            + ["GFLOP/img (fwd+bwd, step)"] + [f"devices for {n}" for n in DEVICES])
    print("| " + " | ".join(h.replace(" (b={})", "") for h in head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["config"], str(r["batch"])]
        for d in counts:
            b = max(1, r["batch"] // d)
            cells.append(f"{r['per'][b]['total'] / GIB:.1f} (b={b})")
        cells.append(f"{r['gflop_img']:.1f}")
        cells += [r["need"][n] for n in DEVICES]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
