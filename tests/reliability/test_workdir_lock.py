"""Issue 13 item 1, the lock itself: one holder per workdir, named in the refusal; a holder
killed with -9 never wedges the workdir; records written by another host count while their
heartbeat is fresh; the lock is released when train() fails. (test_preemption.py checks a
second trainer against a real running one.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from reliability_helpers import run_config, snapshot

from jaxssl.train import loop as loop_lib
from jaxssl.train.loop import train
from jaxssl.train.workdir_lock import LOCK_NAME, WorkdirLock, WorkdirLockedError

HOLD = ("import sys, time\n"
        "from jaxssl.train.workdir_lock import WorkdirLock\n"
        "WorkdirLock(sys.argv[1]).acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n")


def hold_in_subprocess(workdir: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, workdir], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_refusal_names_the_holder_and_touches_nothing(run_copy):
    holder = hold_in_subprocess(run_copy)
    try:
        before = snapshot(run_copy)
        with pytest.raises(WorkdirLockedError) as err:
            train(run_config(), run_copy)
        msg = str(err.value)
        assert (f"workdir {run_copy} is in use by another trainer (pid {holder.pid} on host "
                f"{socket.gethostname()} since ") in msg and "\n" not in msg
        assert snapshot(run_copy) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_holder_killed_with_sigkill_does_not_wedge_the_workdir(tmp_path):
    workdir = str(tmp_path)
    holder = hold_in_subprocess(workdir)
    with pytest.raises(WorkdirLockedError):
        WorkdirLock(workdir).acquire()
    holder.kill()  # SIGKILL: no handler runs, the record stays in the file
    holder.wait()
    with open(os.path.join(workdir, LOCK_NAME)) as f:
        assert json.load(f)["pid"] == holder.pid
    with WorkdirLock(workdir):  # the kernel dropped the flock with the process
        with open(os.path.join(workdir, LOCK_NAME)) as f:
            assert json.load(f)["pid"] == os.getpid()
    assert os.path.getsize(os.path.join(workdir, LOCK_NAME)) == 0  # released: record emptied


def write_record(workdir: str, host: str, age_s: float) -> None:
    path = os.path.join(workdir, LOCK_NAME)
    with open(path, "w") as f:
        json.dump({"pid": 4242, "host": host, "since": "2026-12-01T08:00:00+00:00"}, f)
    t = time.time() - age_s
    os.utime(path, (t, t))


def test_a_record_from_another_host_counts_while_its_heartbeat_is_fresh(tmp_path, capsys):
    # Where flock is not shared between hosts (gcsfuse, some NFS), the record decides.
    workdir = str(tmp_path)
    write_record(workdir, "other-host", age_s=30.0)
    with pytest.raises(WorkdirLockedError,
                       match=r"pid 4242 on host other-host since 2026-12-01T08:00:00\+00:00, "
                             r"last heartbeat \d+ s ago"):
        WorkdirLock(workdir, stale_after_s=600.0).acquire()
    write_record(workdir, "other-host", age_s=3600.0)
    with WorkdirLock(workdir, stale_after_s=600.0):
        assert "Taking over the lock of a run that is gone (pid 4242 on host other-host" in (
            capsys.readouterr().out)


def test_the_holder_keeps_its_record_fresh(tmp_path):
    lock = WorkdirLock(str(tmp_path), heartbeat_s=0.05)
    with lock:
        os.utime(lock.path, (0, 0))
        time.sleep(0.5)
        assert time.time() - os.stat(lock.path).st_mtime < 5


def test_the_lock_is_released_when_train_fails(tmp_path, monkeypatch):
    def boom(config):
        assert os.path.getsize(os.path.join(str(tmp_path), LOCK_NAME)) > 0  # held by now
        raise RuntimeError("boom")

    monkeypatch.setattr(loop_lib, "build_method", boom)
    with pytest.raises(RuntimeError, match="boom"):
        train(run_config(), str(tmp_path))
    with WorkdirLock(str(tmp_path)):
        pass
