"""Issue 13 items 1 and 8 with a real trainer process: while `python -m jaxssl.train` runs, a
second trainer on the same workdir (in-process train() and the CLI) refuses at once, naming the
holder, and touches no file; SIGTERM then makes the first save a checkpoint and exit 75
(EX_TEMPFAIL, resume needed); after it exits a new run takes the workdir and resumes.

One trainer subprocess and one refused CLI start (about 30-40 s together on 2 cores)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import pytest
from reliability_helpers import long_config, snapshot, wait_for_rows, write_config_file

from jaxssl.train.checkpoint import Checkpointer
from jaxssl.train.loop import train


def test_second_trainer_refused_then_sigterm_saves_and_exits_75(tmp_path):
    workdir = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "jaxssl.train", "--config",
           write_config_file(str(tmp_path / "cfg.py")), "--workdir", workdir]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_rows(workdir, 2, first)
        # The running trainer keeps appending metrics and TensorBoard events; everything else,
        # its lock record included, must be left exactly as it is.
        skip = ("metrics.jsonl", "tensorboard")
        before = snapshot(workdir, skip=skip)
        holder = f"pid {first.pid} on host {socket.gethostname()} since "
        with pytest.raises(RuntimeError, match="in use by another trainer") as err:
            train(long_config(), workdir, stop_after=1)
        assert holder in str(err.value) and "\n" not in str(err.value)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert second.returncode == 73, second.stderr[-3000:]
        assert second.stderr.startswith("error: workdir ") and holder in second.stderr
        assert second.stderr.count("\n") == 1
        assert snapshot(workdir, skip=skip) == before

        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 75, out[-3000:]
    (stopped,) = [line for line in out.splitlines() if line.startswith("Stopped at step ")]
    step = int(stopped.split()[3])
    assert "(signal 15)" in stopped and Checkpointer(workdir).all_steps() == [step]

    # The lock went with the process: a new run takes the workdir and resumes.
    resumed = train(long_config(), workdir, stop_after=step + 1)
    assert resumed["resumed"] and resumed["step"] == step + 1
