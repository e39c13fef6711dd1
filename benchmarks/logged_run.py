"""One subprocess runner for the benchmark drivers (science.py, claims.py).

Each run's log opens with the exact command, so every number a driver reports can be traced to the
command that produced it.

Example:
  >>> import sys, tempfile, os
  >>> log = os.path.join(tempfile.mkdtemp(), "echo.log")
  >>> seconds = run_logged([sys.executable, "-c", "print('hi')"], log)
  >>> open(log).read().splitlines()[-1]
  'hi'
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_logged(cmd: Sequence[str], log_path: str, cwd: str = REPO) -> float:
    """Runs ``cmd`` (from the repository root by default) with its output in ``log_path``.

    The log's first line is the command. Returns the wall seconds; raises RuntimeError with the
    log's tail when the command exits non-zero.
    """
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(shlex.join(cmd) + "\n\n")
        log.flush()
        proc = subprocess.run(list(cmd), stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                              check=False)
    if proc.returncode != 0:
        with open(log_path, encoding="utf-8") as f:
            tail = f.read()[-2000:]
        raise RuntimeError(f"{shlex.join(cmd[:4])} ... exited {proc.returncode}; "
                           f"log {log_path}:\n{tail}")
    return time.perf_counter() - t0
