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
STUBS = ("gcloud", "python", "python3", "pip", "tar", "gcsfuse", "sbatch", "srun", "scontrol",
         "mkdir")


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
            # srun stands for the trainers: it exits with $STUB_SRUN_RC (75: checkpoint-and-exit).
            + ('exit "${STUB_SRUN_RC:-0}"\n' if name == "srun" else "")
        )
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def _run(script: str, args: list[str], stub_dir: Path, **extra_env: str
         ) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{stub_dir}:{os.environ['PATH']}", "TMPDIR": str(stub_dir),
           **extra_env}
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
    assert any("pip install" in r and "jax[tpu]" in r and "-e '.[train]'" in r for r in remote)
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
    ("slurm.sh", ["--config", CONFIG, "--workdir", "runs/x"],
     "--workdir must be an absolute path on storage every node sees"),
    ("slurm.sh", ["--config", CONFIG, "--workdir", "/tmp/x"], "--workdir /tmp/x is node-local"),
    ("slurm.sh", ["--config", CONFIG, "--workdir", "/shared/x", "--per", "socket"],
     "--per must be 'gpu' or 'node', got 'socket'"),
    ("slurm.sh", ["--config", CONFIG, "--workdir", "/shared/x", "--nodes", "0"],
     "--nodes must be a positive integer, got '0'"),
    ("slurm_job.sh", ["--max-restarts", "3"], "no trainer command after --"),
])
def test_bad_arguments_fail_clearly(stub_path, script, args, message):
    res = _run(script, [*args, "--dry-run"], stub_path)
    assert res.returncode == 2
    assert message in res.stderr
    assert _calls(stub_path) == []


@pytest.mark.parametrize("script", ["local.sh", "gpu.sh", "tpu_pod.sh", "slurm.sh",
                                    "slurm_job.sh"])
def test_help(stub_path, script):
    res = _run(script, ["--help"], stub_path)
    assert res.returncode == 0
    assert res.stdout.startswith(f"Usage: launch/{script}") and "--dry-run" in res.stdout
    text = (LAUNCH / script).read_text()
    assert "set -euo pipefail" in text


SLURM_ARGS = ["--config", CONFIG, "--workdir", "/shared/runs/exp 1", "--nodes", "4",
              "--partition", "gpu", "--account", "proj-x", "--time", "12:00:00",
              "--python", "/shared/venv/bin/python", "--sbatch-arg=--exclusive",
              "--config.train.batch_size=1024"]


def _opt(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_slurm_dry_run_prints_sbatch_and_what_the_job_runs(stub_path):
    res = _run("slurm.sh", [*SLURM_ARGS, "--dry-run"], stub_path)
    assert res.returncode == 0, res.stderr
    assert _calls(stub_path) == []
    mkdir, sbatch, srun, requeue = _commands(res.stdout)
    assert mkdir == ["mkdir", "-p", "/shared/runs/exp 1"]
    # One process per GPU on 4 nodes, SIGTERM 300 s before the limit, requeueable, log in workdir.
    assert sbatch[0] == "sbatch" and _opt(sbatch, "--nodes") == "4"
    assert _opt(sbatch, "--ntasks-per-node") == "8" and _opt(sbatch, "--gpus-per-node") == "8"
    assert "--signal=TERM@300" in sbatch and "--requeue" in sbatch and "--exclusive" in sbatch
    assert _opt(sbatch, "--output") == "/shared/runs/exp 1/slurm-%j.out"
    assert _opt(sbatch, "--chdir") == str(ROOT) and _opt(sbatch, "--partition") == "gpu"
    assert _opt(sbatch, "--account") == "proj-x" and _opt(sbatch, "--time") == "12:00:00"
    job = sbatch[sbatch.index("launch/slurm_job.sh"):]
    trainer = ["/shared/venv/bin/python", "-m", "jaxssl.train", "--config", CONFIG, "--workdir",
               "/shared/runs/exp 1", "--config.train.batch_size=1024"]
    assert job[job.index("--") + 1:] == trainer
    assert "--dry-run" not in _opt(job, "--resubmit")
    # In the job: srun runs the trainer on every task with jax.distributed's SLURM detection.
    assert srun[:4] == ["srun", "--kill-on-bad-exit=0", "--cpus-per-task", "8"]
    env = dict(a.split("=", 1) for a in srun[srun.index("env") + 1:srun.index(trainer[0])])
    assert env["JAXSSL_DISTRIBUTED"] == "auto" and "JAX_LOCAL_DEVICE_IDS" not in env
    assert env["XLA_FLAGS"] == "--xla_gpu_enable_latency_hiding_scheduler=true"
    assert srun[srun.index(trainer[0]):] == trainer
    assert requeue == ["scontrol", "requeue", "JOB_ID"]


def test_slurm_one_process_per_node_sees_all_its_gpus(stub_path):
    res = _run("slurm.sh", ["--config", CONFIG, "--workdir", "/shared/w", "--per", "node",
                            "--gpus-per-node", "4", "--coordinator-port", "12345", "--dry-run"],
               stub_path)
    assert res.returncode == 0, res.stderr
    _, sbatch, srun, _ = _commands(res.stdout)
    assert _opt(sbatch, "--ntasks-per-node") == "1" and _opt(sbatch, "--gpus-per-node") == "4"
    assert _opt(sbatch, "--cpus-per-task") == "32"
    # JAX would otherwise restrict the one process of a node to GPU $SLURM_LOCALID = 0.
    assert "JAX_LOCAL_DEVICE_IDS=0,1,2,3" in srun and "JAX_COORDINATOR_PORT=12345" in srun


def test_slurm_real_run_submits_exactly_the_printed_commands(stub_path):
    res = _run("slurm.sh", SLURM_ARGS, stub_path)
    assert res.returncode == 0, res.stderr
    assert _calls(stub_path) == _commands(res.stdout)
    assert [c[0] for c in _calls(stub_path)] == ["mkdir", "sbatch"]


@pytest.mark.parametrize("srun_rc,restarts,requeued,job_rc", [
    (75, "0", True, 0),     # checkpoint-and-exit: requeue, the job ends cleanly
    (75, "2", True, 0),
    (75, "3", False, 75),   # --max-restarts 3 reached: stop, keep the status
    (1, "0", False, 1),     # a crash is not requeued
    (0, "0", False, 0),     # finished
])
def test_slurm_job_requeues_only_after_a_checkpoint_exit(stub_path, srun_rc, restarts, requeued,
                                                         job_rc):
    args = ["--max-restarts", "3", "--cpus-per-task", "8", "--env", "JAXSSL_DISTRIBUTED=auto",
            "--resubmit", "launch/slurm.sh --config c.py --workdir /shared/w", "--",
            "python3", "-m", "jaxssl.train", "--config", CONFIG, "--workdir", "/shared/w"]
    res = _run("slurm_job.sh", args, stub_path, STUB_SRUN_RC=str(srun_rc), SLURM_JOB_ID="4242",
               SLURM_RESTART_COUNT=restarts)
    assert res.returncode == job_rc, res.stderr
    calls = _calls(stub_path)
    assert calls[0] == ["srun", "--kill-on-bad-exit=0", "--cpus-per-task", "8", "env",
                        "JAXSSL_DISTRIBUTED=auto", "python3", "-m", "jaxssl.train", "--config",
                        CONFIG, "--workdir", "/shared/w"]
    assert calls[1:] == ([["scontrol", "requeue", "4242"]] if requeued else [])
    assert calls == _commands(res.stdout)
    if srun_rc == 75 and not requeued:
        assert "run again: launch/slurm.sh --config c.py --workdir /shared/w" in res.stderr
