"""Side-by-side (A, B, A, B, ...) timing of the DINO CPU recipe's train step in two processes.

Run (from the repository root):
  python benchmarks/ab_step.py --a-src /path/to/old/checkout --b-src . --cpus 0   # 1 core
  python benchmarks/ab_step.py --a-src . --b-src . --b-env XLA_FLAGS=--xla_cpu_...  # 2 threads
  python benchmarks/ab_step.py --b-set model.gelu_approximate=True --cpus 0

Each side is a worker process that imports ``jaxssl`` from its own source tree (``--a-src`` /
``--b-src``) with its own extra environment (``--a-env`` / ``--b-env``) and config overrides
(``--a-set`` / ``--b-set``, Python literals), builds the recipe
(``jaxssl.train.recipes.fashion_mnist_cpu``, random uint8 crops, batch 64), compiles and warms up
three jitted functions, then waits. The coordinator lets the sides run in turns, ``--steps`` calls
of each function per turn, for ``--rounds`` rounds, so both see the same load on a shared machine.
Timed functions: ``step`` (the whole train step), ``fwd`` (teacher forward + targets + student
loss, no gradient) and ``grad`` (the step's gradient function: teacher + student forward and
backward); ``grad - fwd`` estimates the backward. Reported: medians over every timed call of wall
milliseconds and of process CPU time / wall time (cores in use), with ``/proc/loadavg`` before
and after. ``--cpus 0`` pins both workers to core 0 with ``taskset``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import time

FUNCTIONS = ("step", "fwd", "grad")


def _worker(method: str, overrides: list[str]) -> None:
    """Builds and compiles the three functions, then serves ``<n>`` requests on stdin."""
    import jax
    import jax.numpy as jnp

    from jaxssl.methods.base import LossInputs
    from jaxssl.methods.registry import build_method
    from jaxssl.train.grads import make_grad_fn
    from jaxssl.train.hyper import hyperparams
    from jaxssl.train.init_state import create_train_state
    from jaxssl.train.optim import make_optimizer
    from jaxssl.train.recipes import fashion_mnist_cpu
    from jaxssl.train.step import augment_batch, make_train_step, view_augments

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from train_step import random_batch

    config = fashion_mnist_cpu(method)
    for kv in overrides:  # e.g. model.gelu_approximate=True
        path, value = kv.split("=", 1)
        *parents, leaf = path.split(".")
        node = config
        for name in parents:
            node = node[name]
        node[leaf] = ast.literal_eval(value)
    config.loss.kmeans_init = False
    m = build_method(config)
    tx = make_optimizer(config.optim)
    state = jax.jit(lambda k: create_train_state(m, config, tx, k, 1000))(jax.random.key(0))
    batch = random_batch(config, config.train.batch_size)
    hyper = hyperparams(config, 10, 1000)
    key = jax.random.key(1)
    views = jax.jit(lambda k, b: augment_batch(k, b, view_augments(config)))(key, batch)
    grad_fn = jax.jit(make_grad_fn(m, config))

    @jax.jit
    def fwd(state, views, hyper, key):
        draws = m.draw(key, views)
        t_out, _ = m.teacher(state.teacher_params, state.teacher_batch_stats, views, draws)
        targets = m.targets(state.params, t_out, state.method_state, hyper, draws)
        inputs = LossInputs(views=views, targets=targets.per_sample,
                            batch_stats=state.batch_stats, method_state=state.method_state,
                            hyper=hyper, draws=draws, key=key, full_means=None)
        return m.loss(state.params, inputs)[0]

    step = make_train_step(m, config, tx)
    box = {"state": jax.tree.map(jnp.copy, state)}  # the step donates its state

    def run_step():
        box["state"], metrics = step(box["state"], batch, hyper, key)
        return metrics

    calls = {"step": run_step,
             "fwd": lambda: fwd(state, views, hyper, key),
             "grad": lambda: grad_fn(state, views, hyper, key).grads}
    for f in calls.values():
        for _ in range(3):
            jax.block_until_ready(f())
    print(json.dumps({"ready": jax.__version__}), flush=True)
    for line in sys.stdin:
        n, out = int(line), {}
        for name, f in calls.items():
            out[name] = []
            for _ in range(n):
                w0, c0 = time.perf_counter(), time.process_time()
                jax.block_until_ready(f())
                out[name].append((time.perf_counter() - w0, time.process_time() - c0))
        print(json.dumps(out), flush=True)


def _start(src: str, env: list[str], sets: list[str], cpus: str | None,
           method: str) -> subprocess.Popen:
    e = dict(os.environ, PYTHONPATH=os.path.abspath(src))
    e.update(kv.split("=", 1) for kv in env)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--method", method,
           *(f"--a-set={kv}" for kv in sets)]
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
    return subprocess.Popen(cmd, env=e, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", default="dino")
    p.add_argument("--a-src", default=".")
    p.add_argument("--b-src", default=".")
    p.add_argument("--a-env", action="append", default=[], help="NAME=VALUE for side A")
    p.add_argument("--b-env", action="append", default=[], help="NAME=VALUE for side B")
    p.add_argument("--a-set", action="append", default=[], help="config KEY=VALUE for side A")
    p.add_argument("--b-set", action="append", default=[], help="config KEY=VALUE for side B")
    p.add_argument("--cpus", default=None, help="taskset CPU list for both sides, e.g. 0")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=4)
    args = p.parse_args()
    if args.worker:
        return _worker(args.method, args.a_set)  # a worker's own overrides come as --a-set
    load0 = _loadavg()
    sides = {"A": _start(args.a_src, args.a_env, args.a_set, args.cpus, args.method),
             "B": _start(args.b_src, args.b_env, args.b_set, args.cpus, args.method)}
    for proc in sides.values():
        json.loads(proc.stdout.readline())  # waits for compilation and warm-up
    times = {s: {f: [] for f in FUNCTIONS} for s in sides}
    for _ in range(args.rounds):
        for s, proc in sides.items():
            proc.stdin.write(f"{args.steps}\n")
            proc.stdin.flush()
            for f, v in json.loads(proc.stdout.readline()).items():
                times[s][f] += v
    for proc in sides.values():
        proc.stdin.close()
        proc.wait()
    for side, src, env, sets in (("A", args.a_src, args.a_env, args.a_set),
                                 ("B", args.b_src, args.b_env, args.b_set)):
        print(f"# {side}: {src} {' '.join(env + sets)}")
    print(f"# cpus {args.cpus or 'all'}, {args.rounds} rounds x {args.steps} calls, "
          f"loadavg before {load0}, after {_loadavg()}")
    print("| function | A ms | B ms | B / A | A cores | B cores |\n|---|---|---|---|---|---|")
    med = {s: {f: statistics.median(w for w, _ in v) * 1e3 for f, v in t.items()}
           for s, t in times.items()}
    cores = {s: {f: statistics.median(c / w for w, c in v) for f, v in t.items()}
             for s, t in times.items()}
    for f in FUNCTIONS:
        print(f"| {f} | {med['A'][f]:.1f} | {med['B'][f]:.1f} | {med['B'][f] / med['A'][f]:.2f}"
              f" | {cores['A'][f]:.2f} | {cores['B'][f]:.2f} |")
    bwd = {s: med[s]["grad"] - med[s]["fwd"] for s in sides}
    print(f"| grad - fwd (backward) | {bwd['A']:.1f} | {bwd['B']:.1f} | "
          f"{bwd['B'] / bwd['A']:.2f} | | |")


if __name__ == "__main__":
    main()
