"""Issue 13 item 3 through train(): a resume refuses config drift that changes the run, applies
and records safe changes, follows a longer num_steps, and names shapes instead of raising orbax's
text. (Only public names are imported, so these tests also run, and fail, on the code before
the fix.)"""

from __future__ import annotations

import glob
import json
import os

import chex
import jax
import pytest
from reliability_helpers import metrics_steps, run_config, snapshot

from jaxssl.train.budget import FIRST_PLAN_STEP
from jaxssl.train.loop import train


def test_refused_resume_lists_every_field_and_writes_nothing(run_copy):
    before = snapshot(run_copy, skip=("train.lock",))  # this run's own lock record changes
    c = run_config()
    c.optim.lr, c.train.batch_size, c.head.num_prototypes = 0.01, 32, 32
    with pytest.raises(ValueError, match="cannot resume") as err:
        train(c, run_copy)
    msg = str(err.value)
    assert "\n" not in msg and "from checkpoint 4" in msg
    for expected in ("optim.lr 0.001 -> 0.01", "train.batch_size 16 -> 32",
                     "head.num_prototypes 64 -> 32"):
        assert expected in msg
    assert snapshot(run_copy, skip=("train.lock",)) == before


def test_safe_changes_are_applied_and_recorded(run_copy, capsys):
    c = run_config(num_steps=6)
    c.train.log_every = 2
    out = train(c, run_copy)
    # The restored plan (4 steps) follows the new num_steps instead of ending at once.
    assert out["resumed"] and out["step"] == 6 and int(out["state"].total_steps) == 6
    printed = capsys.readouterr().out
    assert ("Config changes applied from step 4: train.num_steps 4 -> 6; "
            "train.log_every 1 -> 2; the run now ends at step 6.") in printed
    with open(os.path.join(run_copy, "config.json")) as f:
        now = json.load(f)
    with open(os.path.join(run_copy, "config.4.json")) as f:
        old = json.load(f)
    assert (now["train"]["num_steps"], old["train"]["num_steps"]) == (6, 4)
    assert (now["train"]["log_every"], old["train"]["log_every"]) == (2, 1)
    assert metrics_steps(run_copy) == [1, 2, 3, 4, 6]  # rows every 2 steps after the resume


def test_shape_mismatch_names_the_arrays_not_orbax(run_copy):
    # A checkpoint whose saved config agrees with the new one but whose arrays do not (written by
    # different code): the shape check, not orbax, must say what differs.
    c = run_config()
    c.head.bottleneck_dim = 24
    (meta,) = glob.glob(os.path.join(run_copy, "checkpoints", "4", "config", "metadata"))
    with open(meta) as f:
        saved = json.load(f)
    saved["head"]["bottleneck_dim"] = 24
    with open(meta, "w") as f:
        json.dump(saved, f)
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoints/4 does not match the model.*"
                       r"checkpoint \(64, 16\) vs model \(64, 24\)"):
        train(c, run_copy)


def test_unchanged_rerun_of_a_finished_run_changes_nothing(trained, run_copy):
    config, _, summary = trained
    skip = ("train.lock", "tensorboard")  # the lock record and a new (empty) events file
    before = snapshot(run_copy, skip=skip)
    out = train(config, run_copy)
    assert out["resumed"] and out["step"] == 4
    chex.assert_trees_all_equal(jax.device_get(out["state"].params),
                                jax.device_get(summary["state"].params))
    assert snapshot(run_copy, skip=skip) == before


def test_a_budget_run_resumed_before_its_first_plan_re_plans_from_the_budget_left(tmp_path,
                                                                                   capsys):
    # A wall-clock budget run stopped before its first plan still carries num_steps (the cap)
    # as its total; resumed, it must plan from the budget left, not run to the cap.
    c = run_config(num_steps=10_000_000)
    c.train.update(time_budget_s=3600.0, checkpoint_every=10_000_000)
    workdir = str(tmp_path / "run")
    assert int(train(c, workdir, stop_after=3)["state"].total_steps) == 10_000_000
    capsys.readouterr()
    out = train(c, workdir, stop_after=3 + FIRST_PLAN_STEP + 1)
    assert "Wall-clock budget 3600 s: planning " in capsys.readouterr().out
    assert 3 + FIRST_PLAN_STEP < int(out["state"].total_steps) < 10_000_000
