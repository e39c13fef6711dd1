"""benchmarks/logged_run.py: the one subprocess runner of science.py and claims.py."""

import doctest
import importlib.util
import os
import sys

import pytest

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "logged_run.py")
spec = importlib.util.spec_from_file_location("logged_run", PATH)
logged_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(logged_run)


def test_doctest():
    failures, _ = doctest.testmod(logged_run)
    assert failures == 0


def test_the_log_opens_with_the_command_and_holds_both_streams(tmp_path):
    log = tmp_path / "run.log"
    cmd = [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"]
    seconds = logged_run.run_logged(cmd, str(log), cwd=str(tmp_path))
    lines = log.read_text().splitlines()
    assert lines[0].endswith("-c 'import sys; print('\"'\"'out'\"'\"'); "
                             "print('\"'\"'err'\"'\"', file=sys.stderr)'")
    assert "out" in lines and "err" in lines
    assert seconds > 0


def test_a_failing_command_raises_with_its_exit_status_and_log_tail(tmp_path):
    log = tmp_path / "fail.log"
    cmd = [sys.executable, "-c", "print('the reason'); raise SystemExit(3)"]
    with pytest.raises(RuntimeError, match=r"exited 3(.|\n)*the reason"):
        logged_run.run_logged(cmd, str(log))
    assert "the reason" in log.read_text()


def test_science_and_claims_share_it():
    # One runner: both drivers import it rather than keeping copies.
    bench = os.path.dirname(PATH)
    for name in ("science.py", "claims.py"):
        with open(os.path.join(bench, name), encoding="utf-8") as f:
            src = f.read()
        assert "from logged_run import REPO, run_logged" in src
        assert "subprocess.run" not in src
