r"""One side of benchmarks/peer_speed.py: a long-lived process that trains jaxssl or the PyTorch
peer on request, limited to N CPU threads from its first line.

Started by peer_speed.py, never by hand:
  python benchmarks/peer_speed_worker.py --side jaxssl|torch --method dino --batch 64 --threads 1

How the threads are limited, before jax / torch are imported:
  * both sides: the process is pinned to CPUs {0, ..., N - 1} with ``os.sched_setaffinity``
    (what ``taskset -c 0`` does for N = 1), and OMP_NUM_THREADS = MKL_NUM_THREADS = N;
  * jaxssl: XLA:CPU sizes its intra-op thread pool from the CPUs the process may run on
    (``sched_getaffinity``), so the pinning sets its pool to N threads; ``--xla_force_host_
    platform_device_count`` is removed from XLA_FLAGS so the step runs on one CPU device, as the
    recipe trains;
  * torch: ``torch.set_num_threads(N)`` and ``torch.set_num_interop_threads(1)``.
The pinning also bounds what either side can use: process CPU time per step cannot exceed N x
the wall time, which peer_speed's test checks.

Protocol: one JSON object per line. The worker writes ``{"ready": {...}}`` once it has built the
model, compiled (jaxssl) and run ``--warmup`` steps; then answers each request read from stdin:
``{"cmd": "run", "steps": k}`` -> ``{"steps": [[wall_s, cpu_s, phases], ...]}`` (k steps, each
timed alone: per-step wall clock with ``time.perf_counter`` and process CPU time, which counts
every thread, with ``time.process_time``; ``phases``: torch's ``{phase: [wall_s, cpu_s]}``,
jaxssl's ``{}``); ``{"cmd": "breakdown", "reps": r}`` -> ``{"breakdown": {part: [[wall_s, cpu_s],
...]}, "update_vs_step": float | None}``; ``{"cmd": "quit"}``. Anything the libraries print
goes to stderr, so stdout carries only the protocol.

Both sides train on the same random grayscale uint8 crops (the recipe's view layout; values do
not change the time of any op here), cycled, so the host crop pipeline -- shared by the two and
identical -- is left out; each step reads the schedules' scalars, augments photometrically,
runs student and teacher, the loss, backward, optimiser and EMA teacher, and reads the loss back
(``float`` / ``.item()``), as each side's training loop does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

# jax, torch, numpy and jaxssl are imported inside the functions below on purpose: only after
# limit_threads() has pinned the process, since XLA and torch size their thread pools from it.

SCHEDULE_STEPS = 1000  # the schedules' length; the timed steps are its first hundred or so
NUM_BATCHES = 4  # distinct random batches, cycled


def limit_threads(threads: int) -> list[int]:
    """Pins this process to CPUs 0..threads-1 and sets the thread variables; before any import
    of jax or torch. Returns the CPUs it may now run on."""
    os.sched_setaffinity(0, set(range(threads)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "",
                   os.environ.get("XLA_FLAGS", ""))
    os.environ["XLA_FLAGS"] = flags.strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    return sorted(os.sched_getaffinity(0))


def bench_config(method: str, batch: int, tiny: bool):
    """The CPU recipe of ``method`` at ``batch`` (``pmsn``: the msn recipe with the power-law
    prior, as configs/pmsn_fashion_mnist.py); ``tiny``: a 1-block ViT and small heads, for tests."""
    from jaxssl.train.recipes import fashion_mnist_cpu

    c = fashion_mnist_cpu("msn" if method == "pmsn" else method)
    if method == "pmsn":
        c.loss.prior = "power_law"
    c.train.batch_size = batch
    if tiny:
        c.model.backbone_kwargs.update(depth=1, embed_dim=32, num_heads=2)
        c.head.update(num_prototypes=64, hidden_dim=64, bottleneck_dim=32)
    return c


def random_batches(config, batch: int, seed: int) -> list[dict]:
    """``NUM_BATCHES`` batches of random grayscale uint8 crops in the recipe's view layout."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(NUM_BATCHES):
        b = {}
        for kind, crops in (("global", config.data.global_crops),
                            ("local", config.data.local_crops)):
            if crops.num:
                gray = rng.integers(0, 256, (batch, crops.num, crops.size, crops.size, 1),
                                    np.uint8)
                b[kind] = np.repeat(gray, 3, axis=-1)
        out.append(b)
    return out


def update_part(tx, state, grads, hyper):
    """The optimiser and EMA lines of ``jaxssl.train.step.make_train_step``'s step (schedule
    scalars into the optimiser state, optax update, new parameters, EMA teacher), for timing."""
    import optax

    from jaxssl.train import optim
    from jaxssl.train.state import ema_update

    opt_state = optim.set_hyperparams(
        state.opt_state, learning_rate=hyper["learning_rate"], weight_decay=hyper["weight_decay"],
        prototype_decay=hyper["prototype_decay"], freeze_prototypes=hyper["freeze_prototypes"])
    updates, opt_state = tx.update(grads, opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return params, opt_state, ema_update(state.teacher_params, params, hyper["ema_momentum"])


class JaxSide:
    """jaxssl's jitted train step (``make_train_step``), as ``jaxssl.train.loop`` calls it."""

    def __init__(self, method: str, batch: int, tiny: bool, seed: int):
        import jax

        from jaxssl.data.view_augments import view_augments
        from jaxssl.methods.registry import build_method
        from jaxssl.train.grads import make_grad_fn
        from jaxssl.train.hyper import hyperparams
        from jaxssl.train.init_state import create_train_state
        from jaxssl.train.optim import make_optimizer
        from jaxssl.train.step import augment_batch, make_train_step

        self.jax, self.hyperparams = jax, hyperparams
        self.config = config = bench_config(method, batch, tiny)
        config.loss.kmeans_init = False
        self.batches = random_batches(config, batch, seed)
        m, tx = build_method(config), make_optimizer(config.optim)
        self.state = jax.jit(lambda k: create_train_state(m, config, tx, k, SCHEDULE_STEPS))(
            jax.random.key(seed))
        self.key = jax.random.key(seed + 1)
        self.step_fn = make_train_step(m, config, tx)
        augments = view_augments(config)
        self.augment = jax.jit(lambda key, b: augment_batch(key, b, augments))
        grad_fn = make_grad_fn(m, config)
        self.grads = jax.jit(grad_fn)
        self.update = jax.jit(lambda st, g, h: update_part(tx, st, g, h))
        # The loss alone: XLA removes the backward pass, whose outputs are unused.
        self.forward = jax.jit(lambda s, v, h, k: grad_fn(s, v, h, k).loss)
        self.step = 0
        self.info = {"jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
                     "params": sum(x.size for x in jax.tree.leaves(self.state.params))}

    def train_step(self) -> dict[str, list[float]]:
        """One step of the train loop; no phases (one fused XLA program)."""
        hyper = self.hyperparams(self.config, self.step, SCHEDULE_STEPS)
        self.state, metrics = self.step_fn(self.state, self.batches[self.step % NUM_BATCHES],
                                           hyper, self.key)
        float(metrics["loss"])
        self.step += 1
        return {}

    def breakdown(self, reps: int) -> dict[str, list[list[float]]]:
        """[wall, CPU] seconds of the step's parts, each jitted alone and timed ``reps`` times
        (after one compiling call): augmentation, forward (teacher, targets, student loss),
        forward + backward, update (:func:`update_part`). The backward is a difference."""
        jax = self.jax
        hyper = self.hyperparams(self.config, self.step, SCHEDULE_STEPS)
        batch = {k: jax.numpy.asarray(v) for k, v in self.batches[0].items()}
        views = self.augment(self.key, batch)
        grads = self.grads(self.state, views, hyper, self.key).grads
        parts: dict[str, Callable[[], Any]] = {
            "augment": lambda: self.augment(self.key, batch),
            "forward": lambda: self.forward(self.state, views, hyper, self.key),
            "forward+backward": lambda: self.grads(self.state, views, hyper, self.key),
            "update": lambda: self.update(self.state, grads, hyper)}
        out: dict[str, list[list[float]]] = {name: [] for name in parts}
        for rep in range(reps + 1):
            for name, fn in parts.items():
                t0, c0 = time.perf_counter(), time.process_time()
                jax.block_until_ready(fn())
                if rep:  # the first call compiles
                    out[name].append([time.perf_counter() - t0, time.process_time() - c0])
        return out


    def update_vs_step(self) -> float:
        """Largest |difference| between the parameters and EMA teacher of one real train step
        and those of augment -> grads -> :func:`update_part` on the step's own keys (as
        ``make_train_step`` derives them): ~0 while update_part mirrors the step's update."""
        jax, jnp = self.jax, self.jax.numpy
        hyper = self.hyperparams(self.config, self.step, SCHEDULE_STEPS)
        batch = self.batches[0]
        after, _ = self.step_fn(jax.tree.map(jnp.copy, self.state), batch, hyper, self.key)
        k_aug, k_loss = jax.random.split(jax.random.fold_in(self.key, self.state.step))
        views = self.augment(k_aug, {k: jnp.asarray(v) for k, v in batch.items()})
        grads = self.grads(self.state, views, hyper, k_loss).grads
        params, _, teacher = self.update(self.state, grads, hyper)
        diffs = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                             (params, teacher), (after.params, after.teacher_params))
        return max(jax.tree.leaves(diffs))


class TorchSide:
    """The PyTorch peer's step (benchmarks/peer_lightly.py ``PeerStep``), timed by phase."""

    def __init__(self, method: str, batch: int, tiny: bool, seed: int, threads: int):
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        torch.manual_seed(seed)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import peer_lightly

        config = bench_config(method, batch, tiny)
        peer_lightly.check_supported(config, method)
        self.batches = random_batches(config, batch, seed)
        student, _ = peer_lightly.build_net(config)  # asserts equal parameter counts
        gen = torch.Generator().manual_seed(seed)
        self.peer = peer_lightly.PeerStep(config, method, student, gen, SCHEDULE_STEPS,
                                          allow_builtin_loss=True)
        self.step = 0
        self.info = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                     "loss": self.peer.loss_source,
                     "params": sum(p.numel() for p in student.parameters())}

    def train_step(self) -> dict[str, list[float]]:
        """One step; its phases' [wall, CPU] seconds."""
        _, phases = self.peer(self.batches[self.step % NUM_BATCHES], self.step)
        self.step += 1
        return phases

    def breakdown(self, reps: int) -> dict[str, list[list[float]]]:
        """Nothing extra: the phases come with every timed step."""
        return {}

    def update_vs_step(self) -> None:
        """Nothing to check: the phases are the step itself."""
        return None


def serve(side, proto, warmup: int) -> None:
    """Warm up, report ready, then answer requests from stdin until "quit" or end of input."""
    for _ in range(warmup):
        side.train_step()
    info = {**side.info, "cpus": sorted(os.sched_getaffinity(0)), "pid": os.getpid(),
            "os_threads": len(os.listdir("/proc/self/task"))}
    proto.write(json.dumps({"ready": info}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "quit":
            return
        if req["cmd"] == "run":
            steps = []
            for _ in range(int(req["steps"])):
                t0, c0 = time.perf_counter(), time.process_time()
                phases = side.train_step()
                steps.append([time.perf_counter() - t0, time.process_time() - c0, phases])
            proto.write(json.dumps({"steps": steps}) + "\n")
        elif req["cmd"] == "breakdown":
            proto.write(json.dumps({"breakdown": side.breakdown(int(req["reps"])),
                                    "update_vs_step": side.update_vs_step()}) + "\n")
        else:
            raise ValueError(f"unknown request {req!r}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--side", required=True, choices=("jaxssl", "torch"))
    p.add_argument("--method", required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true")
    args = p.parse_args(argv)
    limit_threads(args.threads)
    # The protocol gets its own copy of stdout; fd 1 then points at stderr, so whatever jax,
    # torch or XLA print cannot corrupt it.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    if args.side == "jaxssl":
        side = JaxSide(args.method, args.batch, args.tiny, args.seed)
    else:
        side = TorchSide(args.method, args.batch, args.tiny, args.seed, args.threads)
    serve(side, proto, args.warmup)


if __name__ == "__main__":
    main()
