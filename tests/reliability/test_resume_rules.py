"""Issue 13 item 3, the rules: which config fields a resume refuses, which it applies, and how
a longer num_steps / time budget re-plans the run (tests/reliability/test_resume_drift.py runs
them through train())."""

from __future__ import annotations

import pytest
from reliability_helpers import run_config

from jaxssl.train import budget as budget_lib
from jaxssl.train.defaults import base_config
from jaxssl.train.resume_config import (
    Change,
    ResumeConfigError,
    check_resume_config,
    resumed_total_steps,
)

# One field of each group that fixes what a run computes, with a changed value.
REFUSED = [
    ("method", "dino"), ("model.backbone", "vit_tiny"), ("model.dtype", "bfloat16"),
    ("head.num_prototypes", 32), ("data.dataset", "mnist"), ("train.batch_size", 32),
    ("optim.lr", 0.01), ("optim.warmup_fraction", 0.3), ("loss.boost", 1.05),
    ("augment.global1.blur_prob", 0.5), ("ema.momentum", 0.9), ("seed", 7),
    ("train.grad_accum_steps", 2), ("data.global_crops.scale", (0.5, 1.0)),
    ("optim.grad_clip_mode", "per_parameter"), ("loss.prior", "power_law"),
]
SAFE = [
    ("train.log_every", 5), ("train.checkpoint_every", 3), ("train.keep_checkpoints", 1),
    ("train.progress", True), ("train.online_knn_every", 10), ("train.prototype_diag_every", 7),
    ("eval.knn_k", 10), ("eval.final_knn", True), ("data.num_threads", 3),
    ("data.data_dir", "/elsewhere"), ("train.num_steps", 6), ("eval.plots", False),
    ("model.remat", True), ("loss.kmeans_samples", 128),
]


def _set(config, field, value):
    *parents, leaf = field.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[leaf] = value


@pytest.mark.parametrize("field,value", REFUSED)
def test_fields_that_change_the_run_are_refused(field, value):
    saved, new = run_config(), run_config()
    _set(new, field, value)
    with pytest.raises(ResumeConfigError, match=rf"{field.replace('.', '[.]')} \S+ -> "):
        check_resume_config(saved.to_dict(), new, where="w")


@pytest.mark.parametrize("field,value", SAFE)
def test_safe_fields_are_accepted(field, value):
    saved, new = run_config(), run_config()
    _set(new, field, value)
    (change,) = check_resume_config(saved.to_dict(), new, where="w")
    assert change.field == field and change.new == value


def test_num_steps_and_budget_may_only_grow():
    saved, new = run_config(), run_config()
    new.train.num_steps = 3
    with pytest.raises(ResumeConfigError, match=r"train.num_steps 4 -> 3.*may only grow"):
        check_resume_config(saved.to_dict(), new, where="w")
    saved.train.time_budget_s, new.train.num_steps = 60.0, 4
    for budget, ok in ((30.0, False), (90.0, True), (0.0, True)):
        new.train.time_budget_s = budget
        if ok:
            check_resume_config(saved.to_dict(), new, where="w")
        else:
            with pytest.raises(ResumeConfigError, match="time_budget_s 60.0 -> 30.0"):
                check_resume_config(saved.to_dict(), new, where="w")


def test_a_field_missing_from_an_old_checkpoint_counts_as_its_default():
    saved = base_config().to_dict()
    del saved["loss"]["boost"]  # as written by a version without the field
    new = base_config()
    assert check_resume_config(saved, new, where="w") == []
    new.loss.boost = 1.5
    with pytest.raises(ResumeConfigError, match=r"loss.boost 1.01 -> 1.5"):
        check_resume_config(saved, new, where="w")


def test_total_steps_follow_a_longer_num_steps_or_re_plan_the_budget():
    c = run_config(num_steps=10)
    grow = [Change("train.num_steps", 4, 10)]
    assert resumed_total_steps(4, 4, grow, c, spent_s=1.0) == (10, False)
    assert resumed_total_steps(4, 4, [], c, spent_s=1.0) == (4, False)
    c.train.time_budget_s = 60.0
    c.train.num_steps = 1000
    # Budget runs keep their plan until this run's first re-plan, FIRST_PLAN_STEP steps in; a
    # larger num_steps first extends the run to that point.
    first_plan = 40 + budget_lib.FIRST_PLAN_STEP
    assert resumed_total_steps(50, 40, [], c, spent_s=30.0) == (50, True)
    assert resumed_total_steps(40, 40, grow, c, spent_s=30.0) == (first_plan + 1, True)
    assert resumed_total_steps(500, 40, [Change("train.time_budget_s", 30.0, 60.0)], c,
                               spent_s=30.0) == (500, True)
    # Budget used up, or a checkpoint that did not record the time spent: the plan stands.
    assert resumed_total_steps(50, 40, grow, c, spent_s=61.0) == (50, False)
    assert resumed_total_steps(50, 40, grow, c, spent_s=None) == (50, False)


def test_budget_planner_plans_the_remaining_budget_of_a_resumed_run(monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(budget_lib.time, "perf_counter", lambda: clock["t"])
    # 100 s budget, 60 s spent before step 200; here every step takes 1 s (no compile).
    p = budget_lib.BudgetPlanner(100.0, start_step=200, spent_s=60.0, max_steps=10_000,
                                 log_every=5)
    planned = None
    for step in range(201, 200 + budget_lib.FIRST_PLAN_STEP + 1):
        clock["t"] += 1.0
        planned = p.after_step(step, total=10_000)
    # 15 s used of the 40 s left at 1 s/step: 25 more steps after step 215.
    assert planned == 215 + 25


