"""Huge pages for XLA:CPU's per-call scratch memory: no 35,000 page faults per train step.

XLA:CPU gives each execution of a compiled program one scratch allocation for all its
intermediate arrays (141 MB for the DINO CPU recipe's train step, ``compiled.memory_analysis()
.temp_size_in_bytes``). glibc serves a block that large with a fresh ``mmap`` and hands it back
with ``munmap`` when the step ends, so every step first-touches ~35,000 new 4 KiB pages, and the
kernel faults in and zeroes each one: 15-25 % of a 1-core step (``benchmarks/RESULTS.md``, "Page
faults in the train step"). With glibc's ``glibc.malloc.hugetlb=1`` tunable (glibc >= 2.35)
those mappings are advised as transparent huge pages: ~400 faults of 2 MiB per step instead.

Why not keep the block in the heap instead (``mallopt``: one arena, no mmap, no trimming)? It
removes the faults only while the freed block happens to fit the next request: XLA asks for
64-byte aligned memory, glibc's aligned allocation needs a slightly larger free chunk than the
one it freed, and the heap then grows by the whole block (measured: +95 MB on one call in four).

glibc reads tunables only when a process starts, so :func:`reexec_with_huge_pages` re-executes
the command once with the tunable added to ``GLIBC_TUNABLES`` (``python -m jaxssl.train`` /
``jaxssl.eval`` / ``jaxssl.export`` call it first, before importing JAX). It does nothing when
``JAXSSL_SYSTEM_MALLOC`` is set (opt out), when the tunable is already there, off Linux / glibc,
with glibc older than 2.35, or when transparent huge pages are disabled (``never``). Results do not
change, only how the memory is mapped; GPU / TPU device buffers have their own allocators.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV_OFF = "JAXSSL_SYSTEM_MALLOC"
TUNABLE = "glibc.malloc.hugetlb=1"
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_version() -> tuple[int, int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None).gnu_get_libc_version  # glibc only (not musl)
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_char_p
    major, minor = fn().decode().split(".")[:2]
    return int(major), int(minor)


def _thp_enabled(path: str = THP_SETTING) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def huge_page_env(environ: dict[str, str]) -> dict[str, str] | None:
    """The environment to re-execute with, or None when nothing should change.

    >>> huge_page_env({"JAXSSL_SYSTEM_MALLOC": "1"}) is None
    True
    >>> huge_page_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}) is None
    True
    """
    if environ.get(ENV_OFF, "0") not in ("", "0"):
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return None
    version = _glibc_version()
    if version is None or version < (2, 35) or not _thp_enabled():
        return None
    return dict(environ, GLIBC_TUNABLES=f"{tunables}:{TUNABLE}" if tunables else TUNABLE)


def reexec_with_huge_pages() -> None:
    """Re-executes this command with glibc's huge-page tunable, once; returns if not needed.

    Call it first in a ``__main__`` block, before JAX is imported or anything is written: the
    process is replaced by a fresh one with the same arguments (``sys.orig_argv``).
    """
    env = huge_page_env(dict(os.environ))
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)
