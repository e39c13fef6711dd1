"""User errors on the command lines give one line on stderr and exit status 2, not a traceback
(issue 13, items 5 and 10): unknown config fields, non-numeric and out-of-range values, a missing
config file, a read-only workdir, a file where the workdir should be, ``--out`` pointing at a
directory, a non-zip ``.npz``. Export writes atomically.

Each case runs the real command in a subprocess. Read-only directories mean nothing to root, so
as root those commands run as user ``nobody`` (``setpriv``); the test is skipped where that is
impossible.
"""

import os
import shutil
import subprocess
import sys
import tempfile

import jax
import numpy as np
import pytest

import jaxssl.export
from jaxssl.export import export
from jaxssl.methods.registry import build_method
from jaxssl.train.checkpoint import Checkpointer
from jaxssl.train.init_state import create_train_state
from jaxssl.train.optim import make_optimizer
from jaxssl.train.recipes import tiny

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def env():
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, out.get("PYTHONPATH")) if p)
    out["XLA_FLAGS"] = ""  # one CPU device
    out["JAX_COMPILATION_CACHE_DIR"] = ""  # the test cache may not be writable as nobody
    return out


def cli(*args, as_nobody=False):
    cmd, run_env = [sys.executable, "-m", *args], env()
    if as_nobody and os.geteuid() == 0:
        cmd = NOBODY + cmd
        # nobody cannot write root's home: give matplotlib's cache somewhere else.
        home = tempfile.mkdtemp(prefix="jaxssl-nobody-home-")
        os.chmod(home, 0o777)
        run_env.update(HOME=home, MPLCONFIGDIR=home)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=run_env, cwd=REPO,
                              timeout=300)
    finally:
        if run_env.get("MPLCONFIGDIR", "").startswith(tempfile.gettempdir()):
            shutil.rmtree(run_env["MPLCONFIGDIR"], ignore_errors=True)


def assert_one_line_error(run, *fragments):
    """Exit status 2 and exactly one stderr line ``error: ...`` containing every fragment."""
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert len(lines) == 1, run.stderr[-2000:]
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert "Traceback" not in run.stderr


@pytest.fixture(scope="module")
def shared_tmp():
    """A directory every user can enter (pytest's tmp_path is private to root)."""
    path = tempfile.mkdtemp(prefix="jaxssl-cli-errors-")
    os.chmod(path, 0o755)
    yield path
    for root, dirs, _ in os.walk(path):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def workdir(shared_tmp):
    """A workdir holding a step-0 checkpoint of tiny("dino") (initialised, not trained)."""
    path = os.path.join(shared_tmp, "run")
    config = tiny("dino")
    method = build_method(config)
    state = create_train_state(method, config, make_optimizer(config.optim),
                               jax.random.key(0), config.train.num_steps)
    ckpt = Checkpointer(path)
    ckpt.save(0, state, None, config)
    ckpt.close()
    return path


@pytest.fixture(scope="module")
def read_only_workdir(shared_tmp, workdir):
    """A world-readable, nobody-writable copy of ``workdir``."""
    if os.geteuid() == 0:
        probe = subprocess.run(NOBODY + [sys.executable, "-c", "pass"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip("running as root and cannot drop privileges with setpriv: a read-only "
                        "directory cannot be tested")
    path = os.path.join(shared_tmp, "read_only_run")
    shutil.copytree(workdir, path)
    for root, dirs, files in os.walk(path):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o555)
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
    os.chmod(path, 0o555)
    return path


@pytest.fixture()
def a_file(shared_tmp):
    path = os.path.join(shared_tmp, "a_file")
    with open(path, "w") as f:
        f.write("not a directory")
    return path


@pytest.fixture()
def not_a_zip(shared_tmp):
    path = os.path.join(shared_tmp, "features.npz")
    with open(path, "w") as f:
        f.write("this is not a zip archive")
    return path


TRAIN = ("jaxssl.train", "--config", os.path.join(REPO, "configs", "quickstart.py"))


# ------------------------------------------------------------------ python -m jaxssl.train


@pytest.mark.parametrize("override, fragments", [
    ("--config.optim.lrr=1", ["--config.optim.lrr=1", "config.optim has no field 'lrr'",
                              "did you mean 'lr'"]),
    ("--config.optimm.lr=1", ["--config.optimm.lr=1", "config has no field 'optimm'"]),
    ("--config.optim.lr=abc", ["--config.optim.lr=abc", "could not convert string to float"]),
    ("--config.train.num_steps=1.5", ["--config.train.num_steps=1.5"]),
    ("--config.eval.knn_temperature=0", ["config.eval.knn_temperature: got 0.0, allowed "
                                         "[0.02, inf)"]),
    ("--config.loss.mask_ratio=(0.5,0.1)", ["config.loss.mask_ratio: got (0.5, 0.1)"]),
])
def test_train_bad_overrides_are_one_line(shared_tmp, override, fragments):
    target = os.path.join(shared_tmp, "never_created")
    run = cli(*TRAIN, "--workdir", target, override)
    assert_one_line_error(run, *fragments)
    assert not os.path.exists(target)  # refused before anything was written


def test_train_missing_config_file(shared_tmp):
    missing = os.path.join(shared_tmp, "nope.py")
    run = cli("jaxssl.train", "--config", missing, "--workdir", os.path.join(shared_tmp, "w"))
    assert_one_line_error(run, missing, "cannot load the config file")


def test_train_workdir_is_a_file(a_file):
    assert_one_line_error(cli(*TRAIN, "--workdir", a_file), a_file, "is a file")
    assert_one_line_error(cli(*TRAIN, "--workdir", os.path.join(a_file, "sub")),
                          os.path.join(a_file, "sub"), "cannot create workdir")


def test_train_read_only_workdir(read_only_workdir):
    run = cli(*TRAIN, "--workdir", read_only_workdir, as_nobody=True)
    assert_one_line_error(run, read_only_workdir, "not writable")


# ------------------------------------------------------------------ python -m jaxssl.eval


def test_eval_workdir_is_a_file(a_file):
    assert_one_line_error(cli("jaxssl.eval", "--workdir", a_file), a_file, "is a file")


def test_eval_features_file_is_not_a_zip(workdir, not_a_zip):
    run = cli("jaxssl.eval", "--workdir", workdir, "--protocols", "knn",
              "--features-from", not_a_zip)
    assert_one_line_error(run, not_a_zip, "not an .npz archive")
    assert "allow_pickle" not in run.stderr


def test_eval_dataset_npz_is_not_a_zip(workdir, not_a_zip):
    run = cli("jaxssl.eval", "--workdir", workdir, "--protocols", "knn",
              "--dataset", f"npz:{not_a_zip}")
    assert_one_line_error(run, not_a_zip, "not an .npz archive")


def test_eval_out_is_a_directory(workdir, shared_tmp):
    run = cli("jaxssl.eval", "--workdir", workdir, "--protocols", "knn", "--out", shared_tmp)
    assert_one_line_error(run, f"--out {shared_tmp} is a directory")


def test_eval_read_only_workdir(read_only_workdir):
    run = cli("jaxssl.eval", "--workdir", read_only_workdir, "--protocols", "knn",
              as_nobody=True)
    assert_one_line_error(run, os.path.join(read_only_workdir, "report_eval.json"),
                          "not writable", "--out")


# ------------------------------------------------------------------ python -m jaxssl.export


def test_export_out_is_a_directory(workdir, shared_tmp):
    run = cli("jaxssl.export", "--workdir", workdir, "--format", "msgpack", "--out", shared_tmp)
    assert_one_line_error(run, f"--out {shared_tmp} is a directory")


def test_export_workdir_is_a_file(a_file):
    run = cli("jaxssl.export", "--workdir", a_file, "--format", "msgpack")
    assert_one_line_error(run, a_file, "no checkpoints")


def test_export_read_only_workdir(read_only_workdir):
    run = cli("jaxssl.export", "--workdir", read_only_workdir, "--format", "msgpack",
              as_nobody=True)
    assert_one_line_error(run, os.path.join(read_only_workdir, "export"), "Permission denied")


def test_export_is_atomic(workdir, shared_tmp, monkeypatch):
    out = os.path.join(shared_tmp, "exports", "teacher.msgpack")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
        f.write(b"previous export")

    def broken(backbone):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jaxssl.export, "msgpack_bytes", broken)
    with pytest.raises(OSError, match="No space left"):
        export(workdir, "msgpack", out=out)
    with open(out, "rb") as f:
        assert f.read() == b"previous export"  # untouched by the failed write
    assert os.listdir(os.path.dirname(out)) == ["teacher.msgpack"]  # no temporary file left

    monkeypatch.undo()
    assert export(workdir, "msgpack", out=out) == out
    import flax.serialization
    with open(out, "rb") as f:
        restored = flax.serialization.msgpack_restore(f.read())
    assert set(restored) == {"params", "batch_stats"}
    assert os.listdir(os.path.dirname(out)) == ["teacher.msgpack"]
    np.testing.assert_equal(os.stat(out).st_mode & 0o777, 0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
