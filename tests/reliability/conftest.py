"""Shared fixtures of the fault-injection tests (issue 13).

Every test here starts from the same tiny ExCB run (``reliability_helpers.run_config``: checkpoints
at steps 2 and 4), trained once per session by :func:`trained` and copied per test, so most tests
pay for one restore and a few steps, never for a fresh run. The k-means initialisation is off in
that run: it does not change the train step (one compiled step, shared through the persistent
compilation cache with the other tests' runs) and costs seconds on a fresh run.
"""

from __future__ import annotations

import shutil

import pytest
from reliability_helpers import run_config


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(config, workdir, summary) of the shared 4-step run; copy the workdir before changing it."""
    from jaxssl.train.loop import train

    workdir = str(tmp_path_factory.mktemp("reliability") / "run")
    config = run_config()
    summary = train(config, workdir)
    return config, workdir, summary


@pytest.fixture
def run_copy(trained, tmp_path):
    """A private copy of the shared run's workdir."""
    _, workdir, _ = trained
    dst = str(tmp_path / "run")
    shutil.copytree(workdir, dst)
    return dst
