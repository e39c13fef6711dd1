"""Forward + backward throughput and FLOPs of the jaxssl backbones (images/s, GFLOP/s, MFU).

Run ``python benchmarks/models.py`` (all cases) or ``python benchmarks/models.py --quick``.

Each case jits one training-style step: ``jax.value_and_grad`` of a scalar (mean of squared
features) with respect to the backbone parameters, batch norm in training mode (batch statistics,
updated ``batch_stats`` returned). FLOPs per image come from XLA's cost analysis of that compiled
step (``jax.jit(f).lower(...).compile().cost_analysis()["flops"]`` / batch), so they count what XLA
actually runs, forward and backward. The step is compiled and run once, then timed ``--runs``
times (median) with ``block_until_ready``.

On CPU (this project's 2-vCPU machine) the table also shows a dense float32 2048^3 matmul rate
measured just before each case, so a model's achieved GFLOP/s can be read as a fraction of what
this machine's XLA:CPU reaches on its best-case op (the machine is shared: quote those ratios,
not absolute figures). On GPU the default is bfloat16 compute with float32 parameters, batch
128, and the table reports MFU = achieved FLOP/s / peak, the peak taken from ``--peak-tflops``
or from the table of known dense bf16 peaks below (matched on ``jax.devices()[0].device_kind``).

Parameters are drawn host-side with numpy from the shapes given by ``jax.eval_shape`` (their values
do not change the timing) because compiling the random initialisers of ResNet-50 alone costs more
than a minute on this CPU.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.models import create_backbone

# Dense (no sparsity) bfloat16 tensor-core peaks in TFLOP/s, from the vendors' data sheets.
KNOWN_PEAK_BF16_TFLOPS = {
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,  # device_kind of the SXM part
    "H100 PCIe": 756.0,
    "H200": 989.0,
    "A100": 312.0,
    "L4": 121.0,
    "A10G": 125.0,
    "V100": 125.0,  # fp16 tensor cores; V100 has no bf16
}


class Case(NamedTuple):
    backbone: str
    image_size: int
    batch: int
    overrides: dict[str, Any]


def cpu_cases(quick: bool, batch: int | None) -> list[Case]:
    big = batch or (4 if quick else 8)
    cases = [
        Case("vit_small", 96, big, {}),
        Case("vit_nano", 28, 64 if quick else 128, {}),
        Case("resnet_tiny", 28, 64 if quick else 128, {}),
    ]
    if not quick:
        cases = [
            Case("resnet50", 224, big, {}),
            Case("resnet50", 96, big, {}),
            Case("vit_small", 224, big, {}),
            *cases,
        ]
    return cases


def gpu_cases(quick: bool, batch: int | None) -> list[Case]:
    b = batch or (32 if quick else 128)
    bf16 = {"dtype": jnp.bfloat16}
    return [
        Case("resnet50", 224, b, bf16),
        Case("resnet50", 96, b, bf16),
        Case("vit_small", 224, b, bf16),
        Case("vit_small", 96, b, bf16),
        Case("vit_nano", 28, b, bf16),
        Case("resnet_tiny", 28, b, bf16),
    ]


def _host_params(abstract: Any, seed: int) -> Any:
    """Materialises an abstract variable tree with small host-side random values."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(rng.normal(0.0, 0.02, s.shape).astype(s.dtype)), abstract
    )


def _flops(compiled: Any) -> float:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax returns one dict per computation
        analysis = analysis[0]
    return float(analysis.get("flops", float("nan")))


def _time(fn, args, runs: int) -> float:
    jax.block_until_ready(fn(*args))  # warm-up run after compilation
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_case(case: Case, runs: int) -> dict[str, float]:
    model = create_backbone(case.backbone, **case.overrides)
    x = jnp.asarray(
        np.random.default_rng(0).normal(size=(case.batch, case.image_size, case.image_size, 3)),
        jnp.float32,
    )
    abstract = jax.eval_shape(model.init, jax.random.key(0), x[:1])
    variables = _host_params(abstract, seed=1)
    params = variables["params"]
    state = {k: v for k, v in variables.items() if k != "params"}
    has_bn = "batch_stats" in state

    def loss_fn(params, state, x):
        if has_bn:
            feats, updates = model.apply(
                {"params": params, **state}, x, train=True, mutable=["batch_stats"]
            )
        else:
            feats, updates = model.apply({"params": params}, x, train=True), {}
        return jnp.mean(jnp.square(feats.astype(jnp.float32))), updates

    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    start = time.perf_counter()
    compiled = step.lower(params, state, x).compile()
    compile_s = time.perf_counter() - start
    flops = _flops(compiled)
    seconds = _time(compiled, (params, state, x), runs)
    return {
        "compile_s": compile_s,
        "step_s": seconds,
        "img_s": case.batch / seconds,
        "gflop_img": flops / case.batch / 1e9,
        "gflop_s": flops / seconds / 1e9,
    }


def matmul_gflops(n: int, runs: int) -> float:
    """Dense float32 n x n matmul rate (GFLOP/s) of this backend, measured now."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    f = jax.jit(lambda a, b: a @ b)
    return 2 * n**3 / _time(f, (a, a), runs) / 1e9


def peak_tflops(override: float | None) -> float | None:
    if override is not None:
        return override
    kind = jax.devices()[0].device_kind
    for name, peak in KNOWN_PEAK_BF16_TFLOPS.items():
        if name.lower() in kind.lower():
            return peak
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller cases; 2 runs")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per case (median)")
    parser.add_argument("--batch", type=int, default=None, help="override the batch size")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="accelerator peak for MFU (TFLOP/s)"
    )
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 3)
    backend = jax.default_backend()
    on_cpu = backend == "cpu"
    cases = cpu_cases(args.quick, args.batch) if on_cpu else gpu_cases(args.quick, args.batch)

    now = datetime.datetime.now(datetime.timezone.utc)
    print(
        f"# {now:%Y-%m-%d %H:%M} UTC, jax {jax.__version__},"
        f" backend {backend} ({jax.devices()[0].device_kind}), {platform.machine()},"
        f" {len(jax.devices())} device(s)"
    )
    columns = "| backbone | px | batch | dtype | GFLOP/img (fwd+bwd) | step s | img/s |"
    if on_cpu:
        header = columns + " GFLOP/s | matmul GFLOP/s | / matmul |"
    else:
        peak = peak_tflops(args.peak_tflops)
        print(f"# peak for MFU: {peak} TFLOP/s" if peak else "# peak unknown: pass --peak-tflops")
        header = columns + " TFLOP/s | MFU |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for case in cases:
        if on_cpu:
            # The machine is shared: measure the reference matmul rate right before each case so
            # the ratio compares two figures taken under the same load.
            mm = matmul_gflops(2048, runs)
        r = bench_case(case, runs)
        dtype = jnp.dtype(case.overrides.get("dtype", jnp.float32)).name
        if on_cpu:
            tail = f"{r['gflop_s']:.1f} | {mm:.1f} | {r['gflop_s'] / mm:.2f}"
        else:
            mfu = f"{r['gflop_s'] / 1e3 / peak:.1%}" if peak else "n/a"
            tail = f"{r['gflop_s'] / 1e3:.1f} | {mfu}"
        print(
            f"| {case.backbone} | {case.image_size} | {case.batch} | {dtype} | "
            f"{r['gflop_img']:.3f} | {r['step_s']:.3f} | {r['img_s']:.1f} | {tail} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
