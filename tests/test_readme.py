"""README's quick start and .ci/run agree: CI runs exactly README's test command, and the main-job
command names a config that exists."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def test_ci_runs_the_readme_test_command():
    ci_lines = [line.strip() for line in read(".ci/run").splitlines()]
    pytest_lines = [line for line in ci_lines if line.startswith("python -m pytest")]
    assert len(pytest_lines) == 1
    assert pytest_lines[0] in read("README.md")


def test_readme_main_job_config_exists():
    m = re.search(r"python -m jaxssl\.train --config (configs/\S+\.py) --workdir \S+",
                  read("README.md"))
    assert m, "README has no main-job command"
    assert os.path.exists(os.path.join(ROOT, m.group(1)))
