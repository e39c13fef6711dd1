"""Step-indexed schedules: linear warm-up then cosine, and plain cosine ramps.

Schedules are evaluated on the host once per optimiser step and fed to the jitted step as scalars
(see ``jaxssl.train.hyper``). That keeps one compiled step for any run length, so a wall-clock
budget can fix the total step count after the first timed steps without recompiling.
"""

from __future__ import annotations

import math


def cosine_ramp(step: float, total_steps: float, start: float, end: float) -> float:
    """Cosine interpolation from ``start`` (step 0) to ``end`` (step >= total_steps).

    Used for the EMA momentum (0.996 -> 1) and the weight decay (0.04 -> 0.4) of DINO-style recipes.

    >>> cosine_ramp(0, 100, 0.996, 1.0), cosine_ramp(100, 100, 0.996, 1.0)
    (0.996, 1.0)
    >>> round(cosine_ramp(50, 100, 0.0, 1.0), 6)
    0.5
    """
    if total_steps <= 0:
        return end
    t = min(max(step / total_steps, 0.0), 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * t))


def warmup_cosine(
    step: float, total_steps: float, warmup_steps: float, peak: float, end: float = 0.0,
    start: float = 0.0,
) -> float:
    """Linear warm-up from ``start`` to ``peak`` over ``warmup_steps``, then cosine to ``end``.

    The learning-rate schedule of DINO, iBOT, MSN, CARP and ExCB.

    >>> [round(warmup_cosine(s, 10, 2, 1.0), 3) for s in (0, 1, 2, 6, 10)]
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    if warmup_steps > 0 and step < warmup_steps:
        return start + (peak - start) * step / warmup_steps
    return cosine_ramp(step - warmup_steps, total_steps - warmup_steps, peak, end)


def linear_warmup(step: float, warmup_steps: float, start: float, end: float) -> float:
    """Linear ramp from ``start`` to ``end`` over ``warmup_steps``, constant afterwards.

    The teacher-temperature warm-up of DINO (0.04 -> 0.07 over 30 epochs).

    >>> linear_warmup(0, 10, 0.04, 0.07), linear_warmup(10, 10, 0.04, 0.07)
    (0.04, 0.07)
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return end
    return start + (end - start) * step / warmup_steps
