"""Evaluation protocols on Fashion-MNIST raw pixels: accuracy checks and side-by-side timings.

Run ``python benchmarks/eval.py`` (add ``--quick`` for a 10k-image train bank). It reproduces the
k-NN baselines of RESULTS.md, "Machine calibration" (raw pixels / 255: 84.6 %, mean-centred: 86.1 %)
with ``knn_classify``, times the k-NN block size (only a [block, N] similarity slab lives at once),
runs the linear probe, few-shot and k-means clustering on the same pixels, and times the
prototype diagnostics at K = 8192, D = 256. Every time is the wall time of one warm call
(compiled by an identical earlier call), so ratios within one run are what to quote.
"""

from __future__ import annotations

import argparse
import gzip
import platform
import time

import jax
import numpy as np

from jaxssl.eval import (
    few_shot,
    kmeans_cluster_scores,
    knn_classify,
    linear_probe,
    nn_distance_histogram,
    unique_prototype_counts,
)

ROOT = "/usr/share/datasets/fashion-mnist"


def _idx(name: str) -> np.ndarray:
    with gzip.open(f"{ROOT}/{name}", "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _timed(fn, *args, **kw):
    fn(*args, **kw)  # compile + warm
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="10k train bank instead of 60k")
    args = ap.parse_args()
    xtr = _idx("train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0
    ytr = _idx("train-labels-idx1-ubyte.gz").astype(np.int32)
    xte = _idx("t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0
    yte = _idx("t10k-labels-idx1-ubyte.gz").astype(np.int32)
    if args.quick:
        xtr, ytr = xtr[:10000], ytr[:10000]
    print(f"# {platform.processor() or platform.machine()}, jax {jax.__version__}, "
          f"{jax.devices()[0].platform}, train {len(xtr)}, test {len(xte)}")
    print("| measurement | value | time (s) |\n|---|---|---|")

    for block in (256, 4096):
        r, t = _timed(knn_classify, xtr, ytr, xte, yte, num_classes=10, block_size=block)
        print(f"| k-NN raw/255, block {block} | top-1 {100 * r['top1']:.1f} %, "
              f"top-5 {100 * r['top5']:.1f} % | {t:.2f} |")
    mean = xtr.mean(axis=0)
    r, t = _timed(knn_classify, xtr - mean, ytr, xte - mean, yte, num_classes=10)
    print(f"| k-NN mean-centred | top-1 {100 * r['top1']:.1f} % | {t:.2f} |")

    sub = slice(0, 10000)
    t = time.perf_counter()
    r = linear_probe(xtr[sub], ytr[sub], xte, yte, num_classes=10, lrs=(1e-3, 1e-2),
                     weight_decays=(0.0, 1e-4), epochs=100)
    print(f"| linear probe, 10k train, 4-point sweep, 100 full-batch epochs | top-1 "
          f"{100 * r['top1']:.1f} % (lr {r['best_lr']}, wd {r['best_weight_decay']}) | "
          f"{time.perf_counter() - t:.2f} |")
    t = time.perf_counter()
    r = few_shot(xtr, ytr, xte, yte, shots=(1, 5, 13), num_splits=3, epochs=100)
    cells = ", ".join(f"{k} {100 * v['mean']:.1f}+-{100 * v['std']:.1f}" for k, v in r.items())
    print(f"| few-shot 3 splits | {cells} % | {time.perf_counter() - t:.2f} |")
    r, t = _timed(kmeans_cluster_scores, jax.random.key(0), xtr[sub], ytr[sub], num_iters=30)
    print(f"| spherical k-means k=10, 10k | NMI {r['nmi']:.3f}, ARI {r['ari']:.3f}, purity "
          f"{r['purity']:.3f}, acc {r['hungarian_accuracy']:.3f} | {t:.2f} |")

    rng = np.random.default_rng(0)
    protos = rng.normal(size=(8192, 256)).astype(np.float32)
    protos[4096:] = protos[:4096] + 1e-3 * rng.normal(size=(4096, 256)).astype(np.float32)
    r, t = _timed(unique_prototype_counts, protos)
    print(f"| unique prototypes K=8192 (4096 planted pairs at ~1e-3) | {r} | {t:.2f} |")
    r, t = _timed(nn_distance_histogram, protos)
    print(f"| NN-distance histogram K=8192 | median {r['median']:.2e} | {t:.2f} |")


if __name__ == "__main__":
    main()
