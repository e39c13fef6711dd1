"""The CLIs' persistent compilation cache: where it goes, how it is switched off, and that a
compiled program really lands in the directory."""

import os
import subprocess
import sys

import pytest

from jaxssl import compile_cache as cc


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in (cc.ENV_DIR, cc.ENV_OFF, "JAX_COMPILATION_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_resolution_order(clean_env, monkeypatch):
    assert cc.resolve_cache_dir() == str(clean_env / "xdg" / "jaxssl" / "xla")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/jax/own")
    assert cc.resolve_cache_dir() is None  # JAX's own setting stays in charge
    monkeypatch.setenv(cc.ENV_DIR, "/env")
    assert cc.resolve_cache_dir() == "/env"
    assert cc.resolve_cache_dir("/flag") == "/flag"
    monkeypatch.setenv(cc.ENV_OFF, "1")
    assert cc.resolve_cache_dir("/flag") is None
    monkeypatch.delenv(cc.ENV_OFF)
    assert cc.resolve_cache_dir("/flag", disabled=True) is None


def test_flags_are_removed_from_argv():
    rest, d, off = cc.pop_cache_flags(["p", "--a", "1", "--compilation_cache_dir", "/c", "--b"])
    assert (rest, d, off) == (["p", "--a", "1", "--b"], "/c", False)
    assert cc.pop_cache_flags(["p", "--no_compilation_cache"]) == (["p"], None, True)


@pytest.mark.parametrize("off", [False, True])
def test_a_compiled_program_is_written_to_the_directory_unless_switched_off(clean_env, off):
    """A fresh process with the CLI set-up: the jitted program's executable is in the cache
    directory afterwards, and with --no_compilation_cache nothing is written."""
    cache = clean_env / "cache"
    argv = ["prog", "--compilation_cache_dir", str(cache)] + (["--no_compilation_cache"] * off)
    code = (f"import sys, jax, jax.numpy as jnp\nfrom jaxssl.compile_cache import setup_from_argv\n"
            f"assert setup_from_argv({argv!r}) == ['prog']\n"
            "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)\n"
            "jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((64, 64))).block_until_ready()\n")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    entries = os.listdir(cache) if cache.exists() else []
    assert (len(entries) == 0) if off else (len(entries) >= 1)
