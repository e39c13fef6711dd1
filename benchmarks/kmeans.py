"""ExCB's centroid k-means at paper scale: seconds per Lloyd iteration and peak memory.

Run ``python benchmarks/kmeans.py`` (defaults: K = 65536, D = 256, n = 500,000 random unit
vectors, one timed Lloyd iteration; ``--n 20000`` for a quick check). One iteration scores every
point against every centroid, 2 n K D = 16.8 TFLOP at the default shape, so on a 2-core CPU it
takes minutes: the benchmark runs ``jaxssl.ops.kmeans`` compiled with ``num_iters = T`` once,
which makes T + 1 assignment passes (T iterations, then the final assignment against the returned
centroids), and reports the wall time divided by T + 1 as the time per iteration (the update
step, O(n D), is negligible next to the O(n K D) assignment).

Memory: the compiled program's XLA memory analysis (arguments, outputs, temporaries) and the
process's peak resident set (``resource.getrusage``). The matmul rate of XLA on this machine is
measured in the same run (a [1024, D] x [D, K] float32 product), so the k-means time can be read
against it. The GPU line is an extrapolation, not a measurement: FLOPs per iteration divided by a
stated peak rate.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import resource
import time

import jax
import jax.numpy as jnp

# NVIDIA H100 SXM5 dense peak rates (datasheet): float32 on CUDA cores, TF32 and bf16 on tensor
# cores. jaxssl's k-means uses Precision.HIGHEST (true float32), so the float32 line applies.
GPU_PEAK_FLOPS = {"H100 SXM fp32 (HIGHEST)": 67e12, "H100 SXM tf32 (DEFAULT on GPU)": 494.7e12}


def matmul_rate(k: int, d: int, repeats: int = 3) -> float:
    """FLOP/s of a float32 [1024, d] x [d, k] product at HIGHEST precision, warm."""
    x = jax.random.normal(jax.random.key(0), (1024, d))
    c = jax.random.normal(jax.random.key(1), (k, d))
    f = jax.jit(lambda x, c: jnp.argmax(jnp.matmul(x, c.T, precision="highest"), axis=-1))
    f(x, c).block_until_ready()
    t = time.perf_counter()
    for _ in range(repeats):
        f(x, c).block_until_ready()
    return 2 * 1024 * k * d * repeats / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500_000)
    ap.add_argument("--k", type=int, default=65536)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--iters", type=int, default=1, help="timed Lloyd iterations T (>= 1)")
    ap.add_argument("--chunk", type=int, default=0, help="rows per block (0: the default)")
    ap.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = ap.parse_args()
    ops = importlib.import_module("jaxssl.ops.kmeans")  # the module; jaxssl.ops re-exports names
    chunk = args.chunk or ops.default_chunk_size(args.k)
    n, k, d, t_iters = args.n, args.k, args.d, args.iters
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, jax "
          f"{jax.__version__} ({jax.devices()[0].platform}), load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC", flush=True)

    rate = matmul_rate(k, d)
    print(f"# XLA float32 matmul rate here: {rate / 1e9:.1f} GFLOP/s", flush=True)

    x = jax.jit(lambda key: ops._normalise(jax.random.normal(key, (n, d))))(jax.random.key(0))
    x.block_until_ready()
    static = dict(k=k, n=n, init=ops.resolve_init("auto", k), spherical=True, chunk=chunk,
                  mesh=None, reseed_empty=True, precision=jax.lax.Precision.HIGHEST)
    t = time.perf_counter()
    compiled = ops._lloyd.lower(jax.random.key(1), x, num_iters=t_iters, **static).compile()
    compile_s = time.perf_counter() - t
    mem = compiled.memory_analysis()
    print(f"# compiled in {compile_s:.1f} s; timing {t_iters} iteration(s) + the final "
          f"assignment ({t_iters + 1} passes of {2 * n * k * d / 1e12:.1f} TFLOP)", flush=True)
    t = time.perf_counter()
    c, _, empty = compiled(jax.random.key(1), x)
    c.block_until_ready()
    wall = time.perf_counter() - t
    per_iter = wall / (t_iters + 1)
    flops = 2.0 * n * k * d
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    out = {
        "n": n, "k": k, "d": d, "chunk": chunk, "init": static["init"], "timed_iters": t_iters,
        "wall_s": wall, "s_per_iter": per_iter, "tflop_per_iter": flops / 1e12,
        "achieved_gflops": flops / per_iter / 1e9, "matmul_gflops": rate / 1e9,
        "empty_clusters": int(empty), "compile_s": compile_s,
        "xla_argument_bytes": mem.argument_size_in_bytes,
        "xla_output_bytes": mem.output_size_in_bytes,
        "xla_temp_bytes": mem.temp_size_in_bytes, "peak_rss_bytes": peak_rss,
        "gpu_50_iter_s": {name: 50 * flops / peak for name, peak in GPU_PEAK_FLOPS.items()},
        "load_average": os.getloadavg(),
    }
    gib = 2.0 ** 30
    print("| K | D | n | chunk | s / iteration | achieved GFLOP/s | matmul GFLOP/s here | "
          "XLA args + temp GiB | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {k} | {d} | {n:,} | {chunk} | {per_iter:,.1f} | {out['achieved_gflops']:.1f} | "
          f"{out['matmul_gflops']:.1f} | "
          f"{(mem.argument_size_in_bytes + mem.temp_size_in_bytes) / gib:.2f} | "
          f"{peak_rss / gib:.2f} |")
    print(f"\n50 iterations here: {50 * per_iter / 60:.1f} min (extrapolated from "
          f"{t_iters + 1} passes). Extrapolated to one GPU at 100 % of its peak rate "
          "(a lower bound, not a measurement):")
    for name, seconds in out["gpu_50_iter_s"].items():
        print(f"  {name}: {GPU_PEAK_FLOPS[name] / 1e12:.0f} TFLOP/s -> 50 iterations "
              f"{seconds:.1f} s ({flops / GPU_PEAK_FLOPS[name] * 1e3:.0f} ms / iteration)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
