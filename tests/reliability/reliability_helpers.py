"""Helpers of the fault-injection tests (issue 13), shared with their subprocess workers."""

from __future__ import annotations

import json
import os

from jaxssl.train.recipes import tiny


def run_config(num_steps: int = 4):
    """The config of the shared run: tiny ExCB, a checkpoint every 2 steps, a row every step."""
    c = tiny("excb")
    c.loss.kmeans_init = False
    c.train.update(num_steps=num_steps, checkpoint_every=2, log_every=1)
    return c


def snapshot(workdir, *, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, int, bytes]]:
    """{relative path: (size, mtime_ns, first bytes)} of every file under ``workdir`` whose path
    does not start with one of ``skip``."""
    out = {}
    for root, _, files in os.walk(workdir):
        for name in files:
            path = os.path.join(root, name)
            if os.path.relpath(path, workdir).startswith(skip) and skip:
                continue
            st = os.stat(path)
            with open(path, "rb") as f:
                head = f.read(4096)
            out[os.path.relpath(path, workdir)] = (st.st_size, st.st_mtime_ns, head)
    return out


def metrics_steps(workdir) -> list[int]:
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line)["step"] for line in f]


def long_config():
    """A run far longer than any test waits for, with no periodic checkpoint: only a signal ends
    it, and only the preemption save writes a checkpoint."""
    c = run_config(num_steps=10_000)
    c.train.checkpoint_every = 10_000
    return c


def write_config_file(path: str, factory: str = "long_config") -> str:
    """A ``configs/*.py``-style file for ``python -m jaxssl.train --config`` whose get_config() is
    ``reliability_helpers.<factory>()``; returns ``path``."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"import sys\nsys.path.insert(0, {here!r})\n"
                f"from reliability_helpers import {factory}\n\n\n"
                f"def get_config():\n    return {factory}()\n")
    return path


def wait_for_rows(workdir: str, n: int, proc, timeout_s: float = 600.0) -> None:
    """Waits until ``metrics.jsonl`` has ``n`` rows (the trainer is past compilation)."""
    import time

    path = os.path.join(workdir, "metrics.jsonl")
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise AssertionError(f"trainer exited early ({proc.returncode}): "
                                 f"{proc.stdout.read()[-3000:]}")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                if sum(1 for line in f if line.endswith("\n")) >= n:
                    return
        time.sleep(0.2)
    raise AssertionError(f"no {n} rows in {path} after {timeout_s} s")
