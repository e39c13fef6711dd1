"""Issue 13 item 8, the launchers: exit 75 (preempted, checkpoint saved) re-runs the trainer, a
bounded number of times; --dry-run shows it; a signal to the launcher itself does not restart;
launch/_lib.sh and jaxssl/exit_codes.py agree on the value."""

from __future__ import annotations

import os
import re
import shlex
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from jaxssl import exit_codes

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch"
CONFIG = "configs/quickstart.py"
RETRY_NOTE = "# exit 75 (preempted, checkpoint saved) runs the command above again to resume"


def stub_bin(tmp_path: Path, *, exit_codes_in_turn: str, sleep: bool = False) -> Path:
    """python3 / gcloud / tar stubs that log their argv to calls.log; a call that runs the
    trainer exits with the next of ``exit_codes_in_turn`` (space-separated, the last repeats);
    with ``sleep``, it waits up to 30 s and exits 75 on SIGTERM/SIGINT, as the trainer does, and
    touches ``trap_ready`` once its trap is installed (a signal before that would kill it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log, turn = shlex.quote(str(tmp_path / "calls.log")), shlex.quote(str(tmp_path / "turn"))
    body = (
        "#!/usr/bin/env bash\n"
        f'{{ printf %q "$(basename "$0")"; printf " %q" "$@"; echo; }} >> {log}\n'
        'if [[ " $* " == *" describe "* ]]; then exit 1; fi\n'
        'if [[ " $* " != *"jaxssl.train"* ]]; then exit 0; fi\n'
        f"codes=({exit_codes_in_turn}); n=$(cat {turn} 2>/dev/null || echo 0)\n"
        f"echo $((n + 1)) > {turn}\n"
        'i=$(( n < ${#codes[@]} ? n : ${#codes[@]} - 1 ))\n'
    )
    if sleep:
        ready = shlex.quote(str(tmp_path / "trap_ready"))
        body += f"trap 'kill %1; exit 75' TERM INT\ntouch {ready}\nsleep 30 & wait\n"
    body += 'exit "${codes[$i]}"\n'
    for name in ("python3", "gcloud", "tar"):
        script = bin_dir / name
        script.write_text(body)
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def trainer_calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [shlex.split(x) for x in lines if "jaxssl.train" in x]


def _default_sigint() -> None:
    # A shell started with SIGINT ignored cannot trap it (POSIX), and a test runner started in
    # the background of a non-interactive shell (`.ci/run &`) passes SIGINT ignored to every
    # child: give the launcher the disposition it has under a user's terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def launch(script: str, args: list[str], bin_dir: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(bin_dir)}
    return subprocess.Popen(["bash", str(LAUNCH / script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            preexec_fn=_default_sigint, **kw)


LOCAL = ("local.sh", ["--config", CONFIG, "--workdir", "/tmp/w"])
GPU = ("gpu.sh", ["--config", CONFIG, "--workdir", "/tmp/w"])
POD = ("tpu_pod.sh", ["--config", CONFIG, "--workdir", "/data/run", "--tpu", "pod-1",
                      "--zone", "us-central2-b", "--skip-install"])


def test_launchers_and_the_python_constants_agree():
    text = (LAUNCH / "_lib.sh").read_text()
    assert re.search(r"^EXIT_PREEMPTED=(\d+)$", text, re.M).group(1) == str(
        exit_codes.PREEMPTED) == "75"


@pytest.mark.parametrize("script,args", [LOCAL, GPU, POD])
def test_dry_run_shows_the_restart_after_the_trainer_command(tmp_path, script, args):
    bin_dir = stub_bin(tmp_path, exit_codes_in_turn="0")
    out, err = launch(script, [*args, "--max-restarts", "5", "--dry-run"], bin_dir).communicate()
    lines = out.splitlines()
    (note,) = [i for i, line in enumerate(lines) if line.startswith(RETRY_NOTE)]
    assert "jaxssl.train" in lines[note - 1] and lines[note].endswith("at most 5 times")
    assert trainer_calls(tmp_path) == []


@pytest.mark.parametrize("script,args", [LOCAL, GPU, POD])
def test_exit_75_reruns_the_same_command_until_it_finishes(tmp_path, script, args):
    bin_dir = stub_bin(tmp_path, exit_codes_in_turn="75 75 0")
    proc = launch(script, args, bin_dir)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    calls = trainer_calls(tmp_path)
    assert len(calls) == 3 and calls[0] == calls[1] == calls[2]
    assert "resuming, restart 1 of 3" in err and "resuming, restart 2 of 3" in err


def test_restarts_are_bounded_and_the_status_is_passed_on(tmp_path):
    bin_dir = stub_bin(tmp_path, exit_codes_in_turn="75")
    proc = launch(LOCAL[0], [*LOCAL[1], "--max-restarts", "1"], bin_dir)
    proc.communicate(timeout=60)
    assert proc.returncode == 75 and len(trainer_calls(tmp_path)) == 2


def test_other_failures_are_not_retried(tmp_path):
    bin_dir = stub_bin(tmp_path, exit_codes_in_turn=str(exit_codes.NON_FINITE))
    proc = launch(LOCAL[0], LOCAL[1], bin_dir)
    proc.communicate(timeout=60)
    assert proc.returncode == exit_codes.NON_FINITE and len(trainer_calls(tmp_path)) == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_launcher_stops_instead_of_restarting(tmp_path, sig):
    # Ctrl-C or a scheduler signals the whole process group: the trainer saves and exits 75,
    # and the launcher, signalled too, passes 75 on rather than starting the run again.
    bin_dir = stub_bin(tmp_path, exit_codes_in_turn="0", sleep=True)
    proc = launch(LOCAL[0], LOCAL[1], bin_dir, start_new_session=True)
    # Signal only once the stub's trap is in place: a fixed pause raced with a loaded CI machine
    # (the stub, signalled before its trap, died and the launcher exited 0).
    deadline = time.monotonic() + 30
    while not (tmp_path / "trap_ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "trap_ready").exists(), "the stub trainer never installed its trap"
    os.killpg(proc.pid, sig)
    proc.communicate(timeout=60)
    assert proc.returncode == 75 and len(trainer_calls(tmp_path)) == 1
