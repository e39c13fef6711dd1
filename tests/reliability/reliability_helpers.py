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
