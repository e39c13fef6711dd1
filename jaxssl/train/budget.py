"""Sizing a run to a wall-clock budget: how many optimiser steps fit in the time that is left."""

from __future__ import annotations

import time

# Steps timed to size a wall-clock budget: after compilation the first steps run slow
# (benchmarks/RESULTS.md, "Machine calibration"), so timing starts at FIRST_TIMED_STEP and the
# first plan is made at FIRST_PLAN_STEP.
FIRST_TIMED_STEP, FIRST_PLAN_STEP = 5, 15


def plan_total_steps(step: int, *, budget_s: float, elapsed_s: float, timed_s: float,
                     max_steps: int) -> int:
    """The run's total step count so that it ends when ``budget_s`` seconds have elapsed.

    Args:
      step: optimiser steps done so far (> ``FIRST_TIMED_STEP``).
      budget_s: the whole training budget in seconds.
      elapsed_s: seconds since training started (compilation included).
      timed_s: seconds spent on steps ``FIRST_TIMED_STEP .. step``; their mean is the expected
        cost of every remaining step.
      max_steps: the configured upper bound (``config.train.num_steps``).

    Returns at least ``step + 1`` (the current plan never ends in the past) and at most
    ``max_steps``.

    >>> # 15 steps in 40 s, the last 10 of them in 20 s: 2 s/step, 380 s left -> 190 more.
    >>> plan_total_steps(15, budget_s=420.0, elapsed_s=40.0, timed_s=20.0, max_steps=10_000)
    205
    >>> plan_total_steps(15, budget_s=420.0, elapsed_s=40.0, timed_s=20.0, max_steps=100)
    100
    >>> plan_total_steps(300, budget_s=420.0, elapsed_s=500.0, timed_s=450.0, max_steps=10_000)
    301
    """
    if step <= FIRST_TIMED_STEP:
        raise ValueError(f"plan_total_steps: step must be > {FIRST_TIMED_STEP}, got {step}")
    per_step = timed_s / (step - FIRST_TIMED_STEP)
    more = int(max(budget_s - elapsed_s, 0.0) / per_step) if per_step > 0 else max_steps
    return max(step + 1, min(int(max_steps), step + more))


class BudgetPlanner:
    """Re-plans a run's total step count to a wall-clock budget as it trains.

    Timing starts ``FIRST_TIMED_STEP`` steps into this process's run, the first plan is made
    ``FIRST_PLAN_STEP`` steps in and re-made at every ``log_every``-th step from the mean step time
    since then: the steps right after compilation run slower than the rest (one plan from them
    left ~30 % of a 7-minute budget unused), and a shared machine's speed drifts. A resumed run
    plans its remaining steps from the budget left after ``spent_s`` seconds of earlier runs.

    >>> p = BudgetPlanner(60.0, start_step=0, spent_s=0.0, max_steps=10_000, log_every=10)
    >>> p.after_step(3, total=10_000) is None   # too early to plan
    True
    """

    def __init__(self, budget_s: float, *, start_step: int, spent_s: float, max_steps: int,
                 log_every: int):
        self.budget_s = float(budget_s)
        self.start_step = int(start_step)
        self.spent_s = float(spent_s)
        self.max_steps = int(max_steps)
        self.log_every = int(log_every)
        self._t_start = time.perf_counter()
        self._t_timed_from: float | None = None

    def after_step(self, step: int, total: int) -> int | None:
        """Call after every step: the new total when it is re-planned, else None."""
        run_step = step - self.start_step
        if run_step == FIRST_TIMED_STEP:
            self._t_timed_from = time.perf_counter()
        if self._t_timed_from is None or step >= total or not (
                run_step == FIRST_PLAN_STEP
                or (run_step > FIRST_PLAN_STEP and step % self.log_every == 0)):
            return None
        now = time.perf_counter()
        planned = self.start_step + plan_total_steps(
            run_step, budget_s=self.budget_s - self.spent_s, elapsed_s=now - self._t_start,
            timed_s=now - self._t_timed_from, max_steps=self.max_steps - self.start_step)
        if run_step == FIRST_PLAN_STEP:
            print(f"Wall-clock budget {self.budget_s:.0f} s: planning {planned} steps "
                  f"(re-planned every {self.log_every} steps).")
        return planned if planned != total else None
