"""Host input-pipeline throughput on Fashion-MNIST: multi-crop training and eval batches.

Run ``python benchmarks/data.py`` (``--quick`` for fewer batches). Each row builds a fresh
``make_train_iterator``, discards the first batch (start-up, thread spin-up) and times the next
``n`` batches; figures are examples per second of one process. Configurations run side by side in
one invocation, so compare their ratios (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time

from jaxssl.data import make_eval_iterator, make_train_iterator
from jaxssl.train.defaults import base_config


def _config(global_size, num_local, local_size, threads):
    cfg = base_config().data
    cfg.dataset = "fashion_mnist"
    # DINO's crop scales (the figures in benchmarks/RESULTS.md were measured with them).
    cfg.global_crops.scale, cfg.local_crops.scale = (0.32, 1.0), (0.05, 0.32)
    cfg.global_crops.size = global_size
    cfg.local_crops.num = num_local
    cfg.local_crops.size = local_size
    cfg.num_threads = threads
    cfg.prefetch = 2
    return cfg


def _rate(iterator, batch, n):
    next(iterator)
    start = time.perf_counter()
    for _ in itertools.islice(iterator, n):
        pass
    return batch * n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, batch = (3, 64) if args.quick else (8, 64)
    rows = []
    for name, (gs, nl, ls) in {
        "2x28 + 6x12 (FMNIST-native)": (28, 6, 12),
        "2x224 + 10x96 (DINO ImageNet sizes)": (224, 10, 96),
    }.items():
        for threads in (0, 2):
            it = make_train_iterator(_config(gs, nl, ls, threads), global_batch_size=batch, seed=0)
            rows.append((f"train {name}", threads, _rate(it, batch, n)))
    for threads in (0, 2):
        it = make_eval_iterator("fashion_mnist", "test", image_size=28, batch_size=256,
                                num_threads=threads)
        rows.append(("eval 28 px (plain resize)", threads, _rate(it, 256, n)))
    print(f"machine: {platform.machine()} {platform.processor() or ''}, batch {batch}, {n} batches")
    print(f"| {'pipeline':<45} | threads | examples/s |")
    print(f"|{'-' * 47}|---------|------------|")
    for name, threads, rate in rows:
        print(f"| {name:<45} | {threads:>7} | {rate:>10.0f} |")


if __name__ == "__main__":
    main()
