"""Train-step throughput of every method's CPU recipe (or any config), printed as a table.

Run:
  python benchmarks/train_step.py                      # every CPU Fashion-MNIST recipe, batch 64
  python benchmarks/train_step.py --methods excb --batch 128 --steps 10
  python benchmarks/train_step.py --config configs/dino_vits16_imagenet.py --batch 128  # GPU/TPU

Times the full jitted step (on-device augmentation, student + teacher, loss, optimiser, EMA) on
random uint8 crops with the recipe's view layout (iBOT: the trainer's block masks), after
compilation and 3 warm-up steps, and reports the median over the timed steps of ms/step, with
images/s and achieved GFLOP/s from XLA's cost analysis. With --peak-tflops, MFU = achieved / peak.
It runs with the trainer's huge-page malloc (jaxssl.host_malloc), as `python -m jaxssl.train` does.
"""

from __future__ import annotations

from jaxssl.host_malloc import reexec_with_huge_pages

if __name__ == "__main__":
    # Before JAX is imported: the trainer's huge-page malloc for XLA's scratch memory
    # (jaxssl.host_malloc), so the figures are the step as `python -m jaxssl.train` runs it.
    reexec_with_huge_pages()

import argparse
import importlib.util
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.methods.registry import build_method
from jaxssl.train.hyper import hyperparams
from jaxssl.train.init_state import create_train_state
from jaxssl.train.optim import make_optimizer
from jaxssl.train.recipes import fashion_mnist_cpu
from jaxssl.train.step import make_train_step

RECIPES = {"carp": ("carp", {}), "excb": ("excb", {}), "dino": ("dino", {}),
           "dino_koleo": ("dino", {"koleo_weight": 0.1}), "ibot": ("ibot", {}),
           "msn": ("msn", {}), "pmsn": ("msn", {"prior": "power_law"})}


def load_config(path: str):
    spec = importlib.util.spec_from_file_location("cfg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def random_batch(config, batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    g, loc = config.data.global_crops, config.data.local_crops
    out = {"global": rng.integers(0, 256, (batch, g.num, g.size, g.size, 3), np.uint8)}
    if loc.num:
        out["local"] = rng.integers(0, 256, (batch, loc.num, loc.size, loc.size, 3), np.uint8)
    return {k: jnp.asarray(v) for k, v in out.items()}


def measure(name: str, config, batch: int, steps: int, peak_tflops: float) -> dict:
    config.loss.kmeans_init = False
    config.train.batch_size = batch
    method = build_method(config)
    tx = make_optimizer(config.optim)
    state = jax.jit(lambda k: create_train_state(method, config, tx, k, 1000))(jax.random.key(0))
    data = method.prepare_batch(random_batch(config, batch), 0)  # + iBOT: the trainer's masks
    step = make_train_step(method, config, tx)
    hyper = hyperparams(config, 10, 1000)
    t0 = time.perf_counter()
    compiled = step.lower(state, data, hyper, jax.random.key(1)).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0))
    for _ in range(3):
        state, metrics = step(state, data, hyper, jax.random.key(1))
    jax.block_until_ready(metrics)
    times = []  # every step timed on its own: the median resists this noisy machine's spikes
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = step(state, data, hyper, jax.random.key(1))
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    dt = float(np.median(times))
    row = {"run": name, "backbone": config.model.backbone, "batch": batch,
           "ms/step": 1e3 * dt, "images/s": batch / dt, "GFLOP/img": flops / batch / 1e9,
           "GFLOP/s": flops / dt / 1e9, "compile s": compile_s}
    if peak_tflops:
        row["MFU %"] = 100 * flops / dt / (peak_tflops * 1e12)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default=",".join(RECIPES))
    p.add_argument("--config", default=None, help="benchmark this config file instead")
    p.add_argument("--batch", type=int, default=0, help="global batch (0: the config's own)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="accelerator peak (e.g. 989 for H100 SXM bf16 dense) for MFU")
    args = p.parse_args()
    rows = []
    if args.config:
        c = load_config(args.config)
        rows.append(measure(args.config, c, args.batch or c.train.batch_size, args.steps,
                            args.peak_tflops))
    else:
        for name in args.methods.split(","):
            method, loss = RECIPES[name]
            c = fashion_mnist_cpu(method)
            c.loss.update(loss)
            rows.append(measure(name, c, args.batch or c.train.batch_size, args.steps,
                                args.peak_tflops))
            print(rows[-1], flush=True)
    keys = list(rows[0])
    print("\ndevice:", jax.devices()[0].device_kind, "x", jax.device_count())
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(f"{r[k]:.1f}" if isinstance(r[k], float) else str(r[k])
                                for k in keys) + " |")


if __name__ == "__main__":
    main()
