"""kill -9 (no handler can run) mid-run and in the middle of a checkpoint save, one after the
other in the same workdir: the next run takes the dead run's lock over, resumes from the newest
finished checkpoint and ends with the uninterrupted run's weights bit for bit and its metrics
rows, each once.

Two trainer subprocesses are killed here (about 15-25 s each on 2 cores: a real process death is
the point of the test, so they cannot be in-process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import chex
import jax
from reliability_helpers import metrics_steps, run_config

from jaxssl.train.loop import train

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kill_worker.py")


def killed_run(workdir: str, point: str) -> str:
    res = subprocess.run([sys.executable, WORKER, workdir, point], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == -9, res.stdout[-2000:] + res.stderr[-3000:]
    return res.stdout


def rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r["data_fingerprint"] for r in map(json.loads, f)}


def test_kill9_mid_run_and_mid_save_resume_bit_identically(trained, tmp_path, capsys):
    _, reference_dir, uninterrupted = trained
    workdir = str(tmp_path / "run")
    killed_run(workdir, "after_row:3")  # checkpoint 2 done, row 3 written, then SIGKILL
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2"]
    assert metrics_steps(workdir) == [1, 2, 3]

    out = killed_run(workdir, "commit:4")  # resumes at 2, dies while saving 4 (the last step)
    assert "Taking over the lock of a run that is gone" in out
    assert "Resumed from" in out and "at step 2" in out
    assert "4.orbax-checkpoint-tmp" in " ".join(os.listdir(os.path.join(workdir, "checkpoints")))

    capsys.readouterr()
    done = train(run_config(), workdir)
    assert done["resumed"] and done["step"] == 4
    assert f"Resumed from {os.path.join(workdir, 'checkpoints', '2')}" in capsys.readouterr().out
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
    chex.assert_trees_all_equal(jax.device_get(done["state"].params),
                                jax.device_get(uninterrupted["state"].params))
    chex.assert_trees_all_equal(jax.device_get(done["state"].method_state),
                                jax.device_get(uninterrupted["state"].method_state))
    # One row per step, and each step saw the uninterrupted run's batch.
    assert metrics_steps(workdir) == [1, 2, 3, 4]
    assert rows(workdir) == rows(reference_dir)
