"""Sizing a run to a wall-clock budget: how many optimiser steps fit in the time that is left."""

from __future__ import annotations

# Steps timed to size a wall-clock budget: after compilation the first steps run slow
# (CALIBRATION.md), so timing starts at FIRST_TIMED_STEP and the first plan is made at
# FIRST_PLAN_STEP.
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
