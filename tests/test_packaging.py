"""Packaging follows the layers: the wheel's core install is what ``jaxssl.losses`` needs.

The wheel is built from a copy of the sources, installed into a bare virtual environment (no
system site-packages) with its core dependencies only (jax, numpy, scipy from PyPI; pip's cache
makes every run after the first quick), and must then run a loss, lack the [train] extra's
packages, and turn ``import jaxssl.train`` into the one-line install hint.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from jaxssl import _extras

tomllib = pytest.importorskip("tomllib")  # the standard library from Python 3.11
ROOT = Path(__file__).resolve().parents[1]
HINT = 'pip install "jaxssl[train]"'


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_core_dependencies_are_the_losses_imports():
    core = {_requirement_name(r) for r in _pyproject()["project"]["dependencies"]}
    assert core == {"jax", "numpy", "scipy"}


def test_extra_check_lists_the_train_extra():
    extra = _pyproject()["project"]["optional-dependencies"]["train"]
    train = {_requirement_name(r) for r in extra}
    assert {d.lower() for d in _extras.TRAIN_MODULES.values()} == train


def test_missing_module_gives_one_line_hint(monkeypatch):
    real = _extras.importlib.util.find_spec
    monkeypatch.setattr(_extras.importlib.util, "find_spec",
                        lambda name: None if name in ("flax", "grain") else real(name))
    with pytest.raises(ImportError) as err:
        _extras.require_train_extra("jaxssl.models")
    assert str(err.value) == ('jaxssl.models needs the [train] extra (missing: flax, grain): '
                              + HINT)


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, **kwargs)


def _build_wheel(tmp_path: Path) -> Path:
    """Builds the wheel from a copy of the sources, so no build/ or egg-info lands in the tree."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "jaxssl", src / "jaxssl",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    res = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                "-q", "-w", str(tmp_path / "dist"), str(src)])
    assert res.returncode == 0, res.stderr
    (wheel,) = (tmp_path / "dist").glob("jaxssl-*.whl")
    return wheel


def test_wheel_installs_bare_and_runs_a_loss(tmp_path):
    wheel = _build_wheel(tmp_path)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=False)
    python = str(env_dir / "bin" / "python")
    res = _run([python, "-m", "pip", "install", "-q", str(wheel)])
    assert res.returncode == 0, f"pip install of the wheel (core deps, PyPI) failed:\n{res.stderr}"

    check = """
import importlib.util, math
import jax.numpy as jnp
import jaxssl
from jaxssl.losses import dino_loss
heavy = [m for m in ("flax", "optax", "orbax", "grain", "tensorflow_datasets", "chex",
                     "ml_collections", "matplotlib") if importlib.util.find_spec(m)]
print("HEAVY", heavy)
print("FILE", jaxssl.__file__)
# Uniform student logits: every pair's cross-entropy is log K, whatever the teacher.
s = jnp.zeros((4, 3, 16)); t = jnp.arange(2 * 3 * 16.0).reshape(2, 3, 16)
print("LOSS", float(dino_loss(s, t, jnp.zeros(16))), math.log(16))
"""
    res = _run([python, "-c", check], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    assert out["HEAVY"] == "[]"
    assert str(env_dir) in out["FILE"]  # the installed wheel, not this checkout
    loss, log_k = map(float, out["LOSS"].split())
    assert loss == pytest.approx(log_k, rel=1e-6)

    for layer in ("jaxssl.train", "jaxssl.models", "jaxssl.data"):
        res = _run([python, "-c", f"import {layer}"], cwd=tmp_path)
        assert res.returncode != 0
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith(f"ImportError: {layer} needs the [train] extra (missing: ")
        assert last.endswith(HINT), last
