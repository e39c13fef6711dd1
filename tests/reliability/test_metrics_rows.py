"""Issue 13 item 9: after a resume, metrics.jsonl reads as one run: the rows logged past the
checkpoint the run resumes from are dropped (atomically, torn lines too), not repeated."""

from __future__ import annotations

import json
import os
import shutil

from reliability_helpers import metrics_steps

from jaxssl.train.loop import train


def fingerprints(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r["data_fingerprint"] for r in map(json.loads, f)}


def test_rows_past_the_restored_step_are_not_duplicated(trained, run_copy):
    config, reference_dir, _ = trained
    # A run that died after logging steps 3 and 4 (and half a row) but before saving step 4.
    shutil.rmtree(os.path.join(run_copy, "checkpoints", "4"))
    with open(os.path.join(run_copy, "metrics.jsonl"), "a") as f:
        f.write('{"step": 5, "loss": 1.')
    out = train(config, run_copy)
    assert out["resumed"] and out["step"] == 4
    assert metrics_steps(run_copy) == [1, 2, 3, 4]
    assert fingerprints(run_copy) == fingerprints(reference_dir)  # the redone rows, same batches
    assert not os.path.exists(os.path.join(run_copy, "metrics.jsonl.tmp"))
