"""Side-by-side timings of two parts of the train step (issue 15): the optimiser + EMA update, and
the photometric augmentation, each in the variants the code offers.

Run (1 core, as RESULTS.md reports it):
  taskset -c 0 python benchmarks/step_parts.py --part optimizer   # per-leaf vs optim.flatten
  taskset -c 0 python benchmarks/step_parts.py --part augment     # gray fast path vs 3 channels

Variants are compiled once, then run interleaved (A, B, A, B ...: ``--rounds`` rounds of
``--per`` calls each), so a change in machine load hits all of them alike; the table gives the
median over every timed call of the process CPU time (less sensitive to other processes than wall
time) and of the wall time, with the load average before and after.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxssl.data.augment import augment_views
from jaxssl.data.view_augments import view_augments
from jaxssl.methods.registry import build_method
from jaxssl.train import optim
from jaxssl.train.hyper import hyperparams
from jaxssl.train.init_state import create_train_state
from jaxssl.train.recipes import fashion_mnist_cpu
from jaxssl.train.state import ema_update


def optimizer_variants(method: str, clip_mode: str) -> dict[str, Callable[[], object]]:
    """One callable per optimiser layout: update, apply and EMA on the recipe's parameters."""
    c = fashion_mnist_cpu(method)
    c.loss.kmeans_init = False
    c.optim.grad_clip_mode = clip_mode
    model = build_method(c)
    hyper = hyperparams(c, 10, 1000)
    out = {}
    for name, flat in (("per-leaf", False), ("optim.flatten", True)):
        tx = optim.make_optimizer(c.optim, flat=flat)
        state = jax.jit(lambda k, tx=tx: create_train_state(model, c, tx, k, 1000))(
            jax.random.key(0))
        grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), state.params)

        def update(params, teacher, opt_state, grads, tx=tx):
            opt_state = optim.set_hyperparams(
                opt_state, learning_rate=hyper["learning_rate"],
                weight_decay=hyper["weight_decay"], prototype_decay=hyper["prototype_decay"],
                freeze_prototypes=hyper["freeze_prototypes"])
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return params, ema_update(teacher, params, hyper["ema_momentum"]), opt_state

        fn = jax.jit(update, donate_argnums=(0, 1, 2))
        carry = [state.params, state.teacher_params, state.opt_state]

        def call(fn=fn, carry=carry, grads=grads):
            carry[:] = fn(*carry, grads)
            return carry[0]

        out[name] = call
    return out


def augment_variants(method: str) -> dict[str, Callable[[], object]]:
    """The recipe's global + local views of batch 64, gray (equal channels) and colour data."""
    c = fashion_mnist_cpu(method)
    glob, loc = view_augments(c)
    g, lc = c.data.global_crops, c.data.local_crops
    rng = np.random.default_rng(0)

    def batch(channels: int) -> dict:
        def views(n, side):
            x = rng.integers(0, 256, (64, n, side, side, channels), np.uint8)
            return jnp.asarray(np.repeat(x, 3, axis=-1) if channels == 1 else x)
        return {"g": views(g.num, g.size), "l": views(lc.num, lc.size)}

    def make(gray):
        @jax.jit
        def fn(key, b):
            k1, k2 = jax.random.split(key)
            return augment_views(k1, b["g"], glob, gray), augment_views(k2, b["l"], loc, gray)
        return fn

    gray, colour = batch(1), batch(3)
    out = {}
    for name, mode, data in (("gray data, automatic (one channel)", None, gray),
                             ("gray data, three channels", False, gray),
                             ("colour data, automatic (check + 3 ch)", None, colour),
                             ("colour data, three channels", False, colour)):
        fn = make(mode)
        out[name] = lambda fn=fn, data=data: fn(jax.random.key(0), data)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("optimizer", "augment"), required=True)
    p.add_argument("--method", default="dino", help="the Fashion-MNIST CPU recipe to use")
    p.add_argument("--clip-mode", default="global", choices=optim.CLIP_MODES)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--per", type=int, default=20)
    args = p.parse_args()
    load_before = open("/proc/loadavg").read().split()[:3]
    variants = (optimizer_variants(args.method, args.clip_mode) if args.part == "optimizer"
                else augment_variants(args.method))
    compile_s = {}
    for name, call in variants.items():
        t0 = time.perf_counter()
        for _ in range(3):
            jax.block_until_ready(call())
        compile_s[name] = time.perf_counter() - t0
    cpu = {k: [] for k in variants}
    wall = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, call in variants.items():
            for _ in range(args.per):
                c0, w0 = time.process_time(), time.perf_counter()
                jax.block_until_ready(call())
                cpu[name].append(time.process_time() - c0)
                wall[name].append(time.perf_counter() - w0)
    print(f"{args.part}, {args.method} CPU recipe; load average before {' '.join(load_before)},"
          f" after {' '.join(open('/proc/loadavg').read().split()[:3])}")
    print("| variant | CPU ms (median) | wall ms (median) | calls | compile + 3 calls, s |")
    print("|---|---|---|---|---|")
    for name in variants:
        print(f"| {name} | {1e3 * statistics.median(cpu[name]):.2f} | "
              f"{1e3 * statistics.median(wall[name]):.2f} | {len(cpu[name])} | "
              f"{compile_s[name]:.1f} |")


if __name__ == "__main__":
    main()
