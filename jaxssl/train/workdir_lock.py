"""One trainer per workdir: an exclusive lock held for the lifetime of a run.

Two trainers writing the same workdir overwrite each other's checkpoints and interleave their
metrics, so :func:`hold_workdir` takes ``<workdir>/train.lock`` before anything is written and a
second trainer stops at once with :class:`WorkdirLockedError` naming the holder.

How the lock is held, and why a ``kill -9`` cannot wedge the workdir:

* ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the file: the kernel releases it when the holder's process
  dies, however it dies, so on one host a lock left by a killed run is never in the way.
* The holder writes its pid, host and start time into the file (what the refusal message shows)
  and touches the file every :data:`HEARTBEAT_S` seconds. Where ``flock`` is not shared between
  hosts (gcsfuse, some NFS mounts), a record written by *another* host whose heartbeat is younger
  than :data:`STALE_AFTER_S` still refuses; an older one is a dead run's and is taken over. On a
  filesystem without ``flock`` at all, a record of this host counts while its pid is alive.
* On any exit the record is emptied and the lock released. The file itself stays: deleting a lock
  file while another process waits on it would let two processes lock two different files.

In a multi-process run only process 0 takes the lock; it tells the others (through the
coordination service's key-value store, not a device collective) whether to go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import jax
from jax._src import distributed

LOCK_NAME = "train.lock"
HEARTBEAT_S = 60.0
# A record from another host not touched for this long belongs to a dead run.
STALE_AFTER_S = 600.0
_CALLS = itertools.count()  # one key-value key per train() call of a multi-process session


class WorkdirLockedError(RuntimeError):
    """Another trainer holds the workdir; the message names its pid, host and start time."""


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a workdir: written into the lock file as JSON."""

    pid: int
    host: str
    since: str  # ISO 8601 local time with offset

    def describe(self) -> str:
        """``"pid 12 on host h since 2026-12-05T10:00:00+00:00"``."""
        return f"pid {self.pid} on host {self.host} since {self.since}"


def _read_holder(fd: int) -> Holder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    if not raw.strip():
        return None
    try:
        d = json.loads(raw)
        return Holder(int(d["pid"]), str(d["host"]), str(d["since"]))
    except (ValueError, KeyError, TypeError):
        return Holder(-1, "unknown", "unknown (unreadable lock record)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class WorkdirLock:
    """An exclusive, non-blocking lock on ``<workdir>/train.lock``; a context manager.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with WorkdirLock(d):
    ...     WorkdirLock(d).acquire()
    Traceback (most recent call last):
    ...
    jaxssl.train.workdir_lock.WorkdirLockedError: workdir ... is in use by another trainer (pid ...
    >>> with WorkdirLock(d):  # released on exit: the next run takes it
    ...     pass
    """

    def __init__(self, workdir: str, *, heartbeat_s: float = HEARTBEAT_S,
                 stale_after_s: float = STALE_AFTER_S):
        self.workdir = os.path.abspath(workdir)
        self.path = os.path.join(self.workdir, LOCK_NAME)
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _refuse(self, holder: Holder | None, extra: str = "") -> WorkdirLockedError:
        who = holder.describe() if holder is not None else "a process that left no record"
        return WorkdirLockedError(
            f"workdir {self.workdir} is in use by another trainer ({who}{extra}); wait for it "
            f"to finish or stop it, or pass another --workdir")

    def _stale(self, holder: Holder, flocked: bool) -> tuple[bool, str]:
        """Whether ``holder``'s record is a dead run's; the second value says why not."""
        host = socket.gethostname()
        if holder.host == host:
            # On this host flock is authoritative; without flock, the pid decides.
            return flocked or not _pid_alive(holder.pid), ""
        age = time.time() - os.stat(self.path).st_mtime
        return age > self.stale_after_s, f", last heartbeat {age:.0f} s ago"

    def acquire(self) -> None:
        """Takes the lock or raises :class:`WorkdirLockedError` without writing anything."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                flocked = True
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise self._refuse(_read_holder(fd)) from None
                flocked = False  # ENOLCK / EOPNOTSUPP: a filesystem without flock
            holder = _read_holder(fd)
            if holder is not None:
                stale, extra = self._stale(holder, flocked)
                if not stale:
                    raise self._refuse(holder, extra)
                print(f"Taking over the lock of a run that is gone ({holder.describe()}).")
            me = Holder(os.getpid(), socket.gethostname(),
                        datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(dataclasses.asdict(me)).encode() + b"\n", 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)  # also drops a flock taken above
            raise
        self._fd = fd
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="jaxssl-workdir-lock",
                                        daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        """Empties the record and releases the lock (a no-op when not held)."""
        if self._fd is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # releases the flock
        self._fd = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def hold_workdir(workdir: str) -> Iterator[None]:
    """Holds ``workdir``'s lock for the ``with`` block; in a multi-process run process 0 holds it
    and every process raises :class:`WorkdirLockedError` when it is taken.

    >>> import tempfile
    >>> with hold_workdir(tempfile.mkdtemp()):
    ...     pass
    """
    if jax.process_count() == 1:
        with WorkdirLock(workdir):
            yield
        return
    client = distributed.global_state.client
    key = f"jaxssl_workdir_lock/{next(_CALLS)}/{os.path.abspath(workdir)}"
    lock = WorkdirLock(workdir)
    if jax.process_index() == 0:
        try:
            lock.acquire()
        except WorkdirLockedError as e:
            client.key_value_set(key, f"refused:{e}", allow_overwrite=True)
            raise
        client.key_value_set(key, "held", allow_overwrite=True)
    else:
        answer = client.blocking_key_value_get(key, 900_000)
        if answer.startswith("refused:"):
            raise WorkdirLockedError(answer[len("refused:"):])
    try:
        yield
    finally:
        lock.release()
