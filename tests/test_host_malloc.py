"""jaxssl.host_malloc: XLA's per-call scratch block is mapped with huge pages, not 4 KiB faults.

Each case runs a fresh interpreter that starts the way the CLIs do (``reexec_with_huge_pages()``
first), then calls a jitted function with a 100 MB scratch array three times and counts the
minor page faults per call (``getrusage``). With glibc's defaults every call maps the block anew
and faults in all of its ~24,400 4 KiB pages; after the re-execution with the huge-page tunable,
a few dozen 2 MiB faults.
"""

import os
import subprocess
import sys

import pytest

from jaxssl.host_malloc import TUNABLE, huge_page_env

_PROBE = """
from jaxssl.host_malloc import reexec_with_huge_pages
reexec_with_huge_pages()
import os, resource
import jax, jax.numpy as jnp
w = jnp.ones((5000, 4), jnp.float32)
f = jax.jit(lambda x: (jnp.sin(x) @ w).sum())  # sin(x): a 100 MB scratch array
x = jnp.ones((5000, 5000), jnp.float32)
scratch = f.lower(x).compile().memory_analysis().temp_size_in_bytes
f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    f(x).block_until_ready()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3
print("hugetlb" in os.environ.get("GLIBC_TUNABLES", ""), scratch, faults)
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
    for var in ("GLIBC_TUNABLES", "JAXSSL_SYSTEM_MALLOC"):
        if var not in extra:
            env.pop(var, None)
    return env


def _probe(env: dict[str, str]) -> tuple[bool, int, float]:
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout.split()
    return out[0] == "True", int(out[1]), float(out[2])


@pytest.mark.skipif(huge_page_env(_clean_env()) is None,
                    reason="needs Linux, glibc >= 2.35 and transparent huge pages not 'never'")
def test_reexec_maps_the_scratch_with_huge_pages():
    huge, scratch, faults = _probe(_clean_env())
    system, _, system_faults = _probe(_clean_env(JAXSSL_SYSTEM_MALLOC="1"))
    pages = scratch / 4096
    assert huge and not system
    assert scratch >= 90e6
    # glibc's defaults fault in (nearly) every 4 KiB page of the block on every call ...
    assert system_faults > 0.8 * pages
    # ... huge pages: 2 MiB each, ~50 for 100 MB (plus a few small ones).
    assert faults < 0.05 * pages


def test_environment_rules():
    clean = {"PATH": "/bin"}
    assert huge_page_env(dict(clean, JAXSSL_SYSTEM_MALLOC="1")) is None
    assert huge_page_env(dict(clean, JAXSSL_SYSTEM_MALLOC="yes")) is None
    assert huge_page_env(dict(clean, GLIBC_TUNABLES="glibc.malloc.hugetlb=0")) is None
    env = huge_page_env(dict(clean, GLIBC_TUNABLES="glibc.malloc.arena_max=2"))
    if env is not None:  # where huge pages apply, other tunables are kept
        assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}"
        assert env["PATH"] == "/bin"
