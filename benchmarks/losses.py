"""Forward + backward timings of the jaxssl losses at paper scale, against a roofline-style bound.

Run ``python benchmarks/losses.py`` (all losses, paper shapes) or, e.g.,
``python benchmarks/losses.py --losses dino,msn --quick``. Each loss is jitted as
``jax.value_and_grad`` with respect to its student-side inputs, compiled and run once, then timed
``--runs`` times (median) with ``block_until_ready``.

The bound of a loss is the larger of
  * memory: the bytes an ideal fused forward + backward must move (the byte model in the table:
    read every input array once, write every gradient once, plus any intermediate that cannot be
    recomputed), divided by the stream bandwidth measured in the same run (jitted ``x + 1`` on a
    1 GiB float32 array, read + write bytes / time), and
  * compute: the matmul FLOPs of the loss (forward and backward), divided by the dense matmul rate
    measured in the same run.
A third column, not part of the bound, is the exp floor: every softmax input needs at least one
exp, so (number of softmax inputs) / (XLA:CPU's exp rate, a jitted ``sum(exp(x))`` timed in the
same run) is a time no XLA-generated kernel of the loss can beat.
The ratio time / bound is what the results file quotes: absolute times on this shared machine are
noisy, ratios taken side by side are not.

``--jemalloc`` re-runs the script with jemalloc preloaded (``LD_PRELOAD``, retained memory, no
decay: ``MALLOC_CONF=retain:true,dirty_decay_ms:-1,muzzy_decay_ms:-1``), so large buffers are
reused instead of being fresh ``mmap``s first-touched page by page (``apt-get install
libjemalloc2``).

``--koleo-memory`` runs one jitted, chunked KoLeo-proto forward + backward at K = 65536, D = 256 in
a subprocess and reports its peak resident set size (``getrusage(RUSAGE_CHILDREN)``), and checks
that the chunked value and gradient equal the dense ones at K = 8192.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp

F32 = 4  # bytes per float32 element

# PyTorch reference timings (lightly 1.6.0, torch 2.13 CPU), benchmarks/RESULTS.md "Machine
# calibration". They were measured on another occasion on the same kind of machine, not side by
# side with this run.
TORCH_REFERENCE_MS = {
    "dino": 7049.0,
    "msn": 102.0,
    "pmsn": 107.0,
}
TORCH_KOLEO_DENSE_8192_MS = 337.0


@dataclasses.dataclass
class Case:
    name: str
    shape: str
    fn: Callable  # jitted, returns a pytree to block on
    args: tuple
    bytes_moved: float  # ideal fwd + bwd traffic
    byte_model: str
    flops: float  # matmul FLOPs of fwd + bwd (0 when none)
    runs: int
    exp_count: float = 0.0  # softmax inputs: each needs at least one exp in any implementation


def median_time(fn: Callable, args: tuple, runs: int) -> float:
    """Compiles and warms ``fn``, then returns the median wall time of ``runs`` calls (seconds)."""
    jax.block_until_ready(fn(*args))
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def stream_bandwidth(num_bytes: int, runs: int) -> float:
    """Bytes/s of a jitted elementwise ``x + 1`` (reads and writes ``num_bytes`` each).

    The input buffer is donated and the result fed back, so the kernel updates one buffer in
    place: what is timed is streaming, not the page faults of a fresh 1 GiB allocation.
    """
    step = jax.jit(lambda v: v + 1.0, donate_argnums=0)
    x = step(jnp.zeros((num_bytes // F32,), jnp.float32))
    x = jax.block_until_ready(step(x))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        x = jax.block_until_ready(step(x))
        times.append(time.perf_counter() - start)
    return 2 * num_bytes / statistics.median(times)


def matmul_rate(n: int, runs: int) -> float:
    """FLOP/s of a jitted float32 ``[n, n] @ [n, n]``."""
    k1, k2 = jax.random.split(jax.random.key(0))
    a = jax.random.normal(k1, (n, n), jnp.float32)
    b = jax.random.normal(k2, (n, n), jnp.float32)
    t = median_time(jax.jit(jnp.matmul), (a, b), runs)
    return 2.0 * n**3 / t


def exp_rate(n: int, runs: int) -> float:
    """exp/s of a jitted ``sum(exp(x))`` over ``n`` float32 values (XLA:CPU's vectorised exp;
    the sum keeps the output tiny, so this is exp throughput, not memory traffic)."""
    x = jax.random.uniform(jax.random.key(0), (n,), jnp.float32, -10.0, 0.0)
    t = median_time(jax.jit(lambda v: jnp.sum(jnp.exp(v))), (x,), runs)
    return n / t


def normal(key_index: int, shape: tuple, scale: float = 1.0) -> jax.Array:
    return scale * jax.random.normal(jax.random.key(key_index), shape, jnp.float32)


# ------------------------------------------------------------------------------------ cases


def dino_case(b: int, k: int, runs: int) -> Case:
    from jaxssl.losses.dino import dino_loss

    s, t = 8, 2
    student, teacher = normal(1, (s, b, k)), normal(2, (t, b, k))
    center = jnp.zeros((k,), jnp.float32)
    fn = jax.jit(jax.value_and_grad(lambda x, y, c: dino_loss(x, y, c)))
    return Case(
        "dino_loss", f"S={s}, T={t}, B={b}, K={k}", fn, (student, teacher, center),
        bytes_moved=F32 * b * k * (s + t + s),
        byte_model="read student [S,B,K] + teacher [T,B,K], write d student [S,B,K]",
        flops=0.0, runs=runs, exp_count=float((s + t) * b * k),
    )


def ibot_case(b: int, n: int, k: int, runs: int) -> Case:
    from jaxssl.losses.ibot import ibot_patch_loss

    g = 2
    student, teacher = normal(3, (g, b, n, k)), normal(4, (g, b, n, k))
    masks = jax.random.bernoulli(jax.random.key(5), 0.3, (g, b, n))
    center = jnp.zeros((k,), jnp.float32)
    fn = jax.jit(jax.value_and_grad(lambda x, y, m, c: ibot_patch_loss(x, y, m, c)))
    return Case(
        "ibot_patch_loss", f"G={g}, B={b}, N={n}, K={k}", fn, (student, teacher, masks, center),
        bytes_moved=F32 * g * b * n * k * 3,
        byte_model="read student + teacher [G,B,N,K], write d student (masks negligible)",
        flops=0.0, runs=runs, exp_count=float(2 * g * b * n * k),
    )


def koleo_case(k: int, d: int, chunk: int, runs: int) -> Case:
    from jaxssl.losses.koleo import koleo_proto_loss

    protos = normal(6, (k, d))
    fn = jax.jit(jax.value_and_grad(lambda w: koleo_proto_loss(w, chunk_size=chunk)))
    return Case(
        "koleo_proto_loss", f"K={k}, D={d}, chunk={chunk}", fn, (protos,),
        bytes_moved=F32 * k * d * 2,
        byte_model="read W [K,D], write d W (the K x K similarities are never stored)",
        flops=2.0 * k * k * d, runs=runs,
    )


def excb_case(b: int, k: int, runs: int) -> Case:
    from jaxssl.losses.excb import excb_loss

    g, v = 2, 8
    direct = jnp.tanh(normal(7, (v, b, k)))  # all V views (pairing="paper")
    pred = jnp.tanh(normal(8, (v, b, k)))
    teacher = jnp.tanh(normal(9, (g, b, k)))
    sizes = jnp.full((k,), 1.0 / k, jnp.float32)
    fn = jax.jit(jax.value_and_grad(
        lambda x, y, t, c: excb_loss(x, y, t, c)[0], argnums=(0, 1)))
    return Case(
        "excb_loss", f"G={g}, V={v}, B={b}, K={k}", fn, (direct, pred, teacher, sizes),
        bytes_moved=F32 * b * k * (v + v + g + v + v),
        byte_model="read direct [V,B,K] + predictor [V,B,K] + teacher [G,B,K], write d direct, "
        "d predictor",
        flops=0.0, runs=runs, exp_count=float((g + v + g) * b * k),
    )


def carp_case(b: int, k: int, block: int, runs: int) -> Case:
    from jaxssl.losses.carp import carp_loss, random_partition

    s, t = 8, 2
    student, teacher = normal(10, (s, b, k)), normal(11, (t, b, k))
    partition = random_partition(jax.random.key(12), k, block)
    fn = jax.jit(jax.value_and_grad(lambda x, y, p: carp_loss(x, y, p)[0]))
    return Case(
        "carp_loss", f"S={s}, T={t}, B={b}, K={k}, N_B={block}", fn, (student, teacher, partition),
        bytes_moved=F32 * b * k * (s + t + s),
        byte_model="read student [S,B,K] + teacher [T,B,K], write d student (partition negligible)",
        flops=0.0, runs=runs, exp_count=float((s + t) * b * k),
    )


def msn_case(name: str, v: int, b: int, k: int, d: int, runs: int, power_law: bool) -> Case:
    from jaxssl.losses.msn import msn_loss, power_law_prior

    anchors, targets, protos = normal(13, (v, b, d)), normal(14, (b, d)), normal(15, (k, d))
    prior = power_law_prior(k) if power_law else None
    fn = jax.jit(jax.value_and_grad(
        lambda a, t, w: msn_loss(a, t, w, prior=prior)[0], argnums=(0, 2)))
    # Forward: anchor and target cosines; backward: d anchors and d prototypes (two matmuls).
    flops = 2.0 * (v * b + b) * k * d + 2 * (2.0 * v * b * k * d)
    return Case(
        name, f"V={v}, B={b}, K={k}, D={d}", fn, (anchors, targets, protos),
        bytes_moved=F32 * ((v * b + b + k) * d + (v * b + k) * d + 2 * v * b * k),
        byte_model="read anchors, targets, W; write d anchors, d W; anchor logits [V,B,K] "
        "written once and read once",
        flops=flops, runs=runs, exp_count=float((v * b + b) * k),
    )


# ------------------------------------------------------------------------- KoLeo memory check


def koleo_child(k: int, d: int, chunk: int) -> None:
    """Body of the subprocess whose peak RSS is measured: one jitted chunked fwd + bwd."""
    from jaxssl.losses.koleo import koleo_proto_loss

    protos = normal(6, (k, d))
    fn = jax.jit(jax.value_and_grad(lambda w: koleo_proto_loss(w, chunk_size=chunk)))
    loss, grad = jax.block_until_ready(fn(protos))
    print(f"loss={float(loss):.6f} grad_norm={float(jnp.linalg.norm(grad)):.6f}")


def koleo_memory_report(k: int, d: int, chunk: int, check_k: int) -> list[str]:
    from jaxssl.losses.koleo import koleo_proto_loss

    lines = []
    cmd = [sys.executable, __file__, "--koleo-child", f"--koleo-k={k}", f"--koleo-d={d}",
           f"--koleo-chunk={chunk}"]
    # /usr/bin/time reports the RSS of the process it starts. getrusage(RUSAGE_CHILDREN) in this
    # process would also count the moment between fork and exec, when the child still maps this
    # (large) benchmark process, so it is only the fallback.
    use_time = os.path.exists("/usr/bin/time")
    if use_time:
        cmd = ["/usr/bin/time", "-v"] + cmd
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    if use_time:
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
        peak_kib = int(match.group(1))
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    lines.append(
        f"KoLeo-proto K={k}, D={d}, chunk={chunk}: subprocess peak RSS {peak_kib / 1024:.0f} MiB "
        f"(limit 1024 MiB: {'OK' if peak_kib < 1024 * 1024 else 'EXCEEDED'}), "
        f"{elapsed:.1f} s including start-up and compile; {out.stdout.strip()}"
    )
    protos = normal(16, (check_k, d))
    dense = jax.jit(jax.value_and_grad(lambda w: koleo_proto_loss(w)))(protos)
    chunked = jax.jit(jax.value_and_grad(lambda w: koleo_proto_loss(w, chunk_size=1000)))(protos)
    value_diff = abs(float(dense[0]) - float(chunked[0]))
    grad_diff = float(jnp.max(jnp.abs(dense[1] - chunked[1])))
    lines.append(
        f"KoLeo-proto K={check_k}: dense {float(dense[0]):.6f} vs chunked (chunk 1000, not a "
        f"divisor) {float(chunked[0]):.6f}; |value diff| {value_diff:.2e}, max |grad diff| "
        f"{grad_diff:.2e}"
    )
    return lines


# ------------------------------------------------------------------------------------- main


def build_cases(names: list[str], quick: bool, runs: int) -> list[Case]:
    if quick:
        b, k, kibot, n, kk, kmsn = 32, 8192, 2048, 49, 4096, 1024
    else:
        b, k, kibot, n, kk, kmsn = 256, 65536, 8192, 196, 65536, 1024
    koleo_runs = max(1, min(runs, 3)) if not quick else runs
    builders = {
        "dino": lambda: dino_case(b, k, runs),
        "ibot": lambda: ibot_case(32 if not quick else 8, n, kibot, runs),
        "koleo": lambda: koleo_case(kk, 256, 512, koleo_runs),
        "excb": lambda: excb_case(b, k, runs),
        "carp": lambda: carp_case(b, k, 512, runs),
        "msn": lambda: msn_case("msn_loss (uniform)", 11, b, kmsn, 256, runs, False),
        "pmsn": lambda: msn_case("msn_loss (PMSN power law)", 11, b, kmsn, 256, runs, True),
    }
    unknown = sorted(set(names) - set(builders))
    if unknown:
        raise SystemExit(f"unknown losses {unknown}; choose from {sorted(builders)}")
    return [builders[n]() for n in names]


JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
)
JEMALLOC_CONF = "retain:true,dirty_decay_ms:-1,muzzy_decay_ms:-1"


def reexec_with_jemalloc() -> None:
    """Replaces this process by the same command with jemalloc preloaded (see the docstring)."""
    library = next((p for p in JEMALLOC_PATHS if os.path.exists(p)), None)
    if library is None:
        raise SystemExit(
            f"--jemalloc: libjemalloc.so.2 not found in {JEMALLOC_PATHS}; "
            "install it with `apt-get install libjemalloc2`."
        )
    env = dict(os.environ, LD_PRELOAD=library, MALLOC_CONF=JEMALLOC_CONF,
               JAXSSL_BENCH_JEMALLOC=library)
    argv = [a for a in sys.argv if a != "--jemalloc"]
    os.execve(sys.executable, [sys.executable] + argv, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--losses", default="dino,ibot,koleo,excb,carp,msn,pmsn")
    parser.add_argument("--quick", action="store_true", help="small shapes, for a smoke test")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per loss (median)")
    parser.add_argument("--jemalloc", action="store_true",
                        help="re-run with jemalloc preloaded (retained memory, no decay)")
    parser.add_argument("--koleo-memory", action="store_true",
                        help="also measure the chunked KoLeo-proto peak RSS in a subprocess")
    parser.add_argument("--koleo-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--koleo-k", type=int, default=65536)
    parser.add_argument("--koleo-d", type=int, default=256)
    parser.add_argument("--koleo-chunk", type=int, default=512)
    args = parser.parse_args()

    if args.jemalloc:
        reexec_with_jemalloc()
    if args.koleo_child:
        koleo_child(args.koleo_k, args.koleo_d, args.koleo_chunk)
        return

    runs = args.runs
    stream_bytes = (256 if args.quick else 1024) << 20
    matmul_n = 1024 if args.quick else 2048
    exp_elements = (16 if args.quick else 64) << 20
    print(f"# jaxssl loss benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    jemalloc = os.environ.get("JAXSSL_BENCH_JEMALLOC")
    malloc = f"jemalloc {jemalloc} ({JEMALLOC_CONF})" if jemalloc else "default (glibc)"
    print(f"# {platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind}, "
          f"jax {jax.__version__}, {'quick' if args.quick else 'paper'} shapes, malloc: {malloc}")
    print("# bandwidth (jitted x + 1 on a float32 array, read + write bytes / time) and matmul "
          "rate are re-measured right before each loss, so the bound follows the machine's load")
    print()
    print("| loss | shape | fwd+bwd ms (median) | runs | bytes moved (MB) | stream GB/s "
          "| memory bound ms | matmul GFLOP | GFLOP/s | compute bound ms | time / bound "
          "| exp floor ms | time / exp floor | PyTorch ref ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    for name in args.losses.split(","):
        case = build_cases([name], args.quick, runs)[0]
        bandwidth = stream_bandwidth(stream_bytes, runs)
        flop_rate = matmul_rate(matmul_n, runs) if case.flops else float("nan")
        rate_exp = exp_rate(exp_elements, runs) if case.exp_count else float("nan")
        t = median_time(case.fn, case.args, case.runs)
        exp_floor = case.exp_count / rate_exp if case.exp_count else 0.0
        exp_text = (f"{1e3 * exp_floor:,.1f} | {t / exp_floor:.2f}" if case.exp_count
                    else "- | -")
        mem_bound = case.bytes_moved / bandwidth
        compute_bound = case.flops / flop_rate if case.flops else 0.0
        bound = max(mem_bound, compute_bound)
        ref = TORCH_REFERENCE_MS.get(name)
        ref_text = f"{ref:,.0f}" if ref is not None and not args.quick else "-"
        rate_text = f"{flop_rate / 1e9:,.0f}" if case.flops else "-"
        print(f"| {case.name} | {case.shape} | {1e3 * t:,.1f} | {case.runs} | "
              f"{case.bytes_moved / 1e6:,.0f} | {bandwidth / 1e9:.1f} | {1e3 * mem_bound:,.1f} "
              f"| {case.flops / 1e9:,.1f} | {rate_text} | {1e3 * compute_bound:,.1f} "
              f"| {t / bound:.2f} | {exp_text} | {ref_text} |", flush=True)
        notes.append(f"- {case.name}: {case.byte_model}")
        del case
    print()
    print("Byte models (float32):")
    print("\n".join(notes))
    if args.koleo_memory:
        print()
        k = 8192 if args.quick else args.koleo_k
        for line in koleo_memory_report(k, args.koleo_d, args.koleo_chunk, 8192):
            print(line)


if __name__ == "__main__":
    main()
