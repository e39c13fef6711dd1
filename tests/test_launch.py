"""The launch scripts: --dry-run prints the exact commands and runs none of them; a real run
(with stub gcloud / python3 / tar on PATH) executes exactly the printed commands."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
CONFIG = "configs/quickstart.py"
STUBS = ("gcloud", "python", "python3", "pip", "tar", "gcsfuse")


@pytest.fixture
def stub_path(tmp_path: Path) -> Path:
    """A bin/ of stub programs that log their argv (one shell-quoted line per call) to
    calls.log and their JAX_PLATFORMS to env.log; ``gcloud ... describe`` fails, as for a TPU
    that does not exist yet."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log, env_log = shlex.quote(str(tmp_path / "calls.log")), shlex.quote(str(tmp_path / "env.log"))
    for name in STUBS:
        script = bin_dir / name
        script.write_text(
            "#!/usr/bin/env bash\n"
            f'{{ printf %q "$(basename "$0")"; printf " %q" "$@"; echo; }} >> {log}\n'
            f'echo "JAX_PLATFORMS=${{JAX_PLATFORMS:-}}" >> {env_log}\n'
            'if [[ " $* " == *" describe "* ]]; then exit 1; fi\n'
        )
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def _run(script: str, args: list[str], stub_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{stub_dir}:{os.environ['PATH']}", "TMPDIR": str(stub_dir)}
    env.pop("XLA_FLAGS", None)
    return subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=60)


def _commands(stdout: str) -> list[list[str]]:
    """The argv of every printed command (lines "+ cmd args...", shell-quoted)."""
    return [shlex.split(line[2:]) for line in stdout.splitlines() if line.startswith("+ ")]


def _calls(stub_dir: Path) -> list[list[str]]:
    log = stub_dir.parent / "calls.log"
    if not log.exists():
        return []
    return [shlex.split(line) for line in log.read_text().splitlines()]


POD_ARGS = ["--config", CONFIG, "--workdir", "gs://my-bucket/runs/exp1", "--tpu", "pod-1",
            "--zone", "us-central2-b", "--accelerator-type", "v4-32", "--project", "proj-x",
            "--config.train.batch_size=1024", "--config.optim.lr=0.001"]


def test_tpu_pod_dry_run_prints_every_step_and_runs_nothing(stub_path):
    res = _run("tpu_pod.sh", [*POD_ARGS, "--dry-run"], stub_path)
    assert res.returncode == 0, res.stderr
    cmds = _commands(res.stdout)
    assert _calls(stub_path) == []  # no gcloud, tar or python was executed
    create, archive, scp, *ssh = cmds
    assert create[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"] and "pod-1" in create
    assert create[create.index("--accelerator-type") + 1] == "v4-32"
    assert archive[0] == "tar" and archive[archive.index("-C") + 1] == str(ROOT)
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
    for cmd in [scp, *ssh]:
        assert "--worker=all" in cmd
        assert cmd[cmd.index("--zone") + 1] == "us-central2-b"
        assert cmd[cmd.index("--project") + 1] == "proj-x"
    remote = [c[c.index("--command") + 1] for c in ssh]
    assert any("pip install" in r and "jax[tpu]" in r and "-e ." in r for r in remote)
    assert any("gcsfuse --implicit-dirs my-bucket /tmp/jaxssl-gcs/my-bucket" in r for r in remote)
    train = remote[-1]
    assert "JAXSSL_DISTRIBUTED=auto python3 -m jaxssl.train" in train
    train_argv = shlex.split(train.split("JAXSSL_DISTRIBUTED=auto ", 1)[1].split(" 2>&1")[0])
    assert train_argv == ["python3", "-m", "jaxssl.train", "--config", CONFIG, "--workdir",
                          "/tmp/jaxssl-gcs/my-bucket/runs/exp1", "--config.train.batch_size=1024",
                          "--config.optim.lr=0.001"]


def test_tpu_pod_queued_resource_and_local_workdir(stub_path):
    args = [a if a != "gs://my-bucket/runs/exp1" else "/data/run" for a in POD_ARGS]
    res = _run("tpu_pod.sh", [*args, "--queued", "--spot", "--skip-install", "--dry-run"],
               stub_path)
    assert res.returncode == 0, res.stderr
    cmds = _commands(res.stdout)
    assert cmds[0][:5] == ["gcloud", "compute", "tpus", "queued-resources", "create"]
    assert "--spot" in cmds[0] and cmds[0][cmds[0].index("--node-id") + 1] == "pod-1"
    remote = [c[c.index("--command") + 1] for c in cmds if "--command" in c]
    assert not any("pip install" in r or "gcsfuse" in r for r in remote)
    assert "--workdir /data/run" in remote[-1]


def test_tpu_pod_real_run_executes_the_printed_commands(stub_path):
    res = _run("tpu_pod.sh", POD_ARGS, stub_path)
    assert res.returncode == 0, res.stderr
    describe, *executed = _calls(stub_path)
    assert describe[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "describe"]
    assert executed == _commands(res.stdout)


def test_gpu_dry_run(stub_path):
    res = _run("gpu.sh", ["--config", CONFIG, "--workdir", "/tmp/run dir", "--install",
                          "--gpus", "0,1", "--xla-flags", "--xla_dump_to=/tmp/d",
                          "--config.train.batch_size=512", "--dry-run"], stub_path)
    assert res.returncode == 0, res.stderr
    assert _calls(stub_path) == []
    install, train = _commands(res.stdout)
    assert install[:5] == ["python3", "-m", "pip", "install", "-e"]
    assert any(a.startswith("jax[cuda12]") for a in install)
    env = dict(a.split("=", 1) for a in train[1:train.index("python3")])
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert env["XLA_FLAGS"].split() == ["--xla_gpu_enable_latency_hiding_scheduler=true",
                                        "--xla_dump_to=/tmp/d"]
    assert train[train.index("python3"):] == [
        "python3", "-m", "jaxssl.train", "--config", CONFIG, "--workdir", "/tmp/run dir",
        "--config.train.batch_size=512"]


def test_local_dry_run_and_real_run(stub_path):
    args = ["--config", CONFIG, "--workdir", "/tmp/w", "--devices", "4", "--config.seed=3"]
    res = _run("local.sh", [*args, "--dry-run"], stub_path)
    assert res.returncode == 0, res.stderr
    assert _calls(stub_path) == []
    (train,) = _commands(res.stdout)
    assert train[:3] == ["env", "JAX_PLATFORMS=cpu",
                         "XLA_FLAGS=--xla_force_host_platform_device_count=4"]
    assert train[3:] == ["python3", "-m", "jaxssl.train", "--config", CONFIG, "--workdir",
                         "/tmp/w", "--config.seed=3"]
    res = _run("local.sh", args, stub_path)
    assert res.returncode == 0, res.stderr
    assert _calls(stub_path) == [train[3:]]  # the stub python3 got exactly the printed argv
    assert (stub_path.parent / "env.log").read_text() == "JAX_PLATFORMS=cpu\n"


@pytest.mark.parametrize("script,args,message", [
    ("local.sh", ["--workdir", "/w"], "missing required option --config"),
    ("gpu.sh", ["--config", CONFIG], "missing required option --workdir"),
    ("tpu_pod.sh", ["--config", CONFIG, "--workdir", "/w", "--zone", "z"],
     "missing required option --tpu"),
    ("tpu_pod.sh", ["--config", CONFIG, "--workdir", "/w", "--tpu", "t"],
     "missing required option --zone"),
    ("tpu_pod.sh", ["--config", CONFIG, "--workdir", "/w", "--tpu", "t", "--zone", "z",
                    "--accelerator-type", "big"], "--accelerator-type must look like"),
    ("local.sh", ["--config", "configs/nope.py", "--workdir", "/w"],
     "--config file not found: configs/nope.py"),
    ("local.sh", ["--config", CONFIG, "--workdir", "/w", "--devices", "two"],
     "--devices must be a positive integer"),
    ("gpu.sh", ["--config", CONFIG, "--workdir", "/w", "--bogus"], "unknown argument: --bogus"),
    ("gpu.sh", ["--config"], "--config needs a value"),
])
def test_bad_arguments_fail_clearly(stub_path, script, args, message):
    res = _run(script, [*args, "--dry-run"], stub_path)
    assert res.returncode == 2
    assert message in res.stderr
    assert _calls(stub_path) == []


@pytest.mark.parametrize("script", ["local.sh", "gpu.sh", "tpu_pod.sh"])
def test_help(stub_path, script):
    res = _run(script, ["--help"], stub_path)
    assert res.returncode == 0
    assert res.stdout.startswith(f"Usage: launch/{script}") and "--dry-run" in res.stdout
    text = (LAUNCH / script).read_text()
    assert "set -euo pipefail" in text
