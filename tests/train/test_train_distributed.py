"""Multi-host: 2 CPU processes with 4 devices each (jax.distributed on localhost) train to the
same parameters as 1 process with 8 devices."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dist_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_workers(workdir, nproc, ndev):
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen([sys.executable, WORKER, str(workdir), str(i), str(nproc), port,
                               str(ndev)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env) for i in range(nproc)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    line = [x for x in outs[0].splitlines() if x.startswith("RESULT ")]
    assert line, outs[0][-3000:]
    return json.loads(line[0][len("RESULT "):])


def test_two_processes_match_one(tmp_path):
    one = run_workers(tmp_path / "one", 1, 8)
    two = run_workers(tmp_path / "two", 2, 4)
    assert (one["processes"], one["devices"]) == (1, 8)
    assert (two["processes"], two["devices"]) == (2, 8)
    np.testing.assert_allclose(two["abs_sum"], one["abs_sum"], rtol=1e-6)
    np.testing.assert_allclose(two["first"], one["first"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(two["center"], one["center"], rtol=1e-5, atol=1e-7)
