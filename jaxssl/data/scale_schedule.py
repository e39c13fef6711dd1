"""ExCB's crop-scale schedule: the global crops' minimum scale shrinks by cosine during training.

ExCB (Maniadis Metaxas et al., 2024; docs/methods.md §3) starts with large global crops and
ends with small ones: the minimum area fraction s_min goes 0.26 -> 0.14 by cosine over the run,
and the local crops sample (0.05, s_min), so locals never overlap the globals' range. Crops are
cut on the host, so the schedule is a pure function of the global step the grain element
belongs to; a resumed run therefore cuts exactly the crops of an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

from jaxssl.ops.schedules import cosine_ramp


def crop_scales(step: int, global_scale: tuple[float, float], local_scale: tuple[float, float],
                *, start_min: float = 0.0, steps: int = 0
                ) -> tuple[tuple[float, float], tuple[float, float]]:
    """The (global, local) crop scale ranges at ``step``.

    With ``start_min == 0`` (no schedule) they are the configured ranges. Otherwise the global
    range is ``(s_min, global_scale[1])`` and the local range ``(local_scale[0], s_min)``, s_min
    going from ``start_min`` to ``global_scale[0]`` over ``steps`` (ExCB: 0.26 -> 0.14).

    >>> crop_scales(0, (0.14, 1.0), (0.05, 0.14), start_min=0.26, steps=10)
    ((0.26, 1.0), (0.05, 0.26))
    >>> g, _ = crop_scales(5, (0.14, 1.0), (0.05, 0.14), start_min=0.26, steps=10)
    >>> round(g[0], 6)  # half-way down the cosine
    0.2
    >>> crop_scales(10, (0.14, 1.0), (0.05, 0.14), start_min=0.26, steps=10)
    ((0.14, 1.0), (0.05, 0.14))
    >>> crop_scales(3, (0.14, 1.0), (0.05, 0.14))
    ((0.14, 1.0), (0.05, 0.14))
    """
    if not start_min:
        return tuple(global_scale), tuple(local_scale)
    # s_min: cosine from start_min (step 0) to global_scale[0] (step >= steps).
    s_min = cosine_ramp(step, int(steps), float(start_min), float(global_scale[0]))
    return (s_min, float(global_scale[1])), (float(local_scale[0]), s_min)


def validate_scale_schedule(schedule: Any, global_scale: tuple[float, float],
                            local_scale: tuple[float, float]) -> None:
    """Raises ValueError naming ``data.crop_scale_schedule.<field>`` when the schedule is invalid.

    >>> import ml_collections
    >>> validate_scale_schedule(ml_collections.ConfigDict(dict(start_min=0.1, steps=10)),
    ...                         (0.14, 1.0), (0.05, 0.14))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: data.crop_scale_schedule.start_min must lie in [0.14, 1.0] (the ...
    """
    if schedule is None or not schedule.start_min:
        return
    start, steps = float(schedule.start_min), schedule.steps
    lo, hi = float(global_scale[0]), float(global_scale[1])
    if not lo <= start <= hi:
        raise ValueError(
            f"data.crop_scale_schedule.start_min must lie in [{lo}, {hi}] (the "
            f"data.global_crops.scale range it starts from), got {start}.")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(
            f"data.crop_scale_schedule.steps must be a positive integer, got {steps!r}.")
    if float(local_scale[0]) > lo:
        raise ValueError(
            f"data.local_crops.scale[0] = {local_scale[0]} must be <= global_crops.scale[0] = "
            f"{lo} when data.crop_scale_schedule is on (locals sample (scale[0], s_min)).")
