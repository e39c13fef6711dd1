"""Up-front checks of the paths a command writes, and atomic file writes.

The trainer, ``python -m jaxssl.eval`` and ``python -m jaxssl.export`` check where they will write
before they spend minutes compiling, restoring or extracting features, so a read-only workdir, a
file where a directory should be, or an output path that is a directory is reported at once, in
one line that names the path (``PathError``). ``atomic_write`` writes a file through a temporary
file beside it and ``os.replace``, so a reader, or a crash half-way, never leaves a truncated
file in place of a complete one.

Remote paths (``gs://...``, anything with ``://``) are left to the storage library.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable


class PathError(OSError):
    """A path a command needs is unusable; the message names the path and says why."""


def _is_remote(path: str) -> bool:
    return "://" in path


def prepare_dir(path: str | os.PathLike, *, what: str = "workdir") -> str:
    """Creates directory ``path`` when missing and checks that files can be created in it.

    Writability is probed by creating and removing a file, since ``os.access`` is wrong for root,
    for read-only mounts and for ACLs.

    Raises:
      PathError: ``path`` is a file, cannot be created, or is not writable.

    >>> import tempfile
    >>> f = tempfile.mkstemp()[1]
    >>> prepare_dir(f)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    jaxssl.output_paths.PathError: workdir /... is a file, not a directory.
    """
    path = os.fspath(path)
    if _is_remote(path):
        return path
    if os.path.exists(path) and not os.path.isdir(path):
        raise PathError(f"{what} {path} is a file, not a directory.")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise PathError(f"cannot create {what} {path}: {err.strerror or err}.") from err
    probe = os.path.join(path, f".jaxssl-write-test-{os.getpid()}")
    try:
        with open(probe, "wb"):
            pass
        os.remove(probe)
    except OSError as err:
        raise PathError(f"{what} {path} is not writable: {err.strerror or err}.") from err
    return path


def check_output_file(path: str | os.PathLike, *, what: str = "output file", hint: str = ""
                      ) -> str:
    """Checks that file ``path`` can be written: it is not a directory and its directory exists
    (it is created) and is writable. ``hint`` is appended to the error message.

    Raises:
      PathError: naming ``path``.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> check_output_file(d, what="--out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    jaxssl.output_paths.PathError: --out /... is a directory; pass a file path, e.g. /.../FILE.
    """
    path = os.fspath(path)
    if _is_remote(path):
        return path
    if os.path.isdir(path):
        raise PathError(f"{what} {path} is a directory; pass a file path, e.g. "
                        f"{os.path.join(path, 'FILE')}. {hint}".rstrip())
    try:
        prepare_dir(os.path.dirname(os.path.abspath(path)), what="directory")
    except PathError as err:
        raise PathError(f"{what} {path}: {err} {hint}".rstrip()) from err
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> str:
    """Calls ``write(tmp)`` on a temporary path beside ``path``, then renames it onto ``path``.

    ``os.replace`` is atomic on POSIX file systems: ``path`` is either the old file or the
    complete new one, never a partial write; on any error the temporary file is removed.

    >>> import tempfile
    >>> p = tempfile.mkdtemp() + "/a.txt"
    >>> atomic_write(p, lambda tmp: open(tmp, "w").write("hi")) == p, open(p).read()
    (True, 'hi')
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.tmp.{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return path
