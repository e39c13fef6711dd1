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


def _extras(text: str, prefix: str) -> set[str]:
    """The extras of the one ``<prefix> -e ".[a,b]"`` install line in ``text``."""
    found = re.findall(re.escape(prefix) + r' -e "\.\[([\w,]+)\]"', text)
    assert len(found) == 1, f"expected one `{prefix} -e \".[...]\"` line, found {found}"
    return set(found[0].split(","))


def test_ci_installs_what_the_readme_installs_plus_torch():
    readme = _extras(read("README.md"), ". .venv/bin/activate && pip install")  # the quick start
    assert readme == {"train", "test"}
    assert _extras(read(".ci/run"), "python -m pip install -q") == readme | {"torch"}
