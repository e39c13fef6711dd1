"""The data section of a training config, its defaults and its validation."""

from __future__ import annotations

from typing import Any

import ml_collections

from jaxssl.data.scale_schedule import validate_scale_schedule
from jaxssl.data.spec import parse_spec

INTERPOLATIONS = ("bilinear", "bicubic")


def default_data_config() -> ml_collections.ConfigDict:
    """DINO-style multi-crop defaults (2 x 224 px globals, 10 x 96 px locals) on Fashion-MNIST.

    >>> cfg = default_data_config()
    >>> cfg.global_crops.num, cfg.global_crops.size, tuple(cfg.local_crops.scale)
    (2, 224, (0.05, 0.32))
    """
    return ml_collections.ConfigDict(
        {
            "dataset": "fashion_mnist",
            "data_dir": None,
            "global_crops": {"num": 2, "size": 224, "scale": (0.32, 1.0)},
            "local_crops": {"num": 10, "size": 96, "scale": (0.05, 0.32)},
            "ratio": (3.0 / 4.0, 4.0 / 3.0),
            "interpolation": "bicubic",
            "num_threads": 4,
            "prefetch": 2,
            "skip_corrupt": True,
            "subset_seed": 0,
            # ExCB's cosine shrinking of the global crops' minimum scale; start_min 0 = off.
            "crop_scale_schedule": {"start_min": 0.0, "steps": 0},
        }
    )


def _get(cfg: Any, name: str, default: Any = None, required: bool = True) -> Any:
    try:
        return cfg[name]
    except (KeyError, AttributeError) as err:
        if required:
            raise ValueError(f"data config is missing field {name!r}.") from err
        return default


def _check_range(value: Any, field: str, lo_open: float, hi_closed: float, *, ordered: bool):
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{field} must be a pair (min, max) of numbers, got {value!r}.") from err
    if not (lo_open < lo <= hi_closed and lo_open < hi <= hi_closed):
        raise ValueError(f"{field} must lie in ({lo_open}, {hi_closed}], got {value!r}.")
    if ordered and lo > hi:
        raise ValueError(f"{field} must satisfy min <= max, got {value!r}.")
    return lo, hi


def validate_data_config(data_config: Any) -> None:
    """Checks every field the data pipeline reads; raises ``ValueError`` naming the bad field.

    Needs no data on disk (the dataset spec is only parsed). Optional fields: ``ratio``
    (default (3/4, 4/3)), ``interpolation`` (default "bicubic") and ``subset_seed`` (default 0,
    the seed of a ``:ltRHO`` long-tailed subset). Fields the data pipeline does not read (e.g.
    photometric augmentation settings) are left alone.

    >>> cfg = default_data_config()
    >>> validate_data_config(cfg)
    >>> cfg.local_crops.scale = (0.05, 1.5)
    >>> validate_data_config(cfg)
    Traceback (most recent call last):
    ...
    ValueError: data.local_crops.scale must lie in (0.0, 1.0], got (0.05, 1.5).
    """
    parse_spec(_get(data_config, "dataset"))
    _get(data_config, "data_dir")
    for group, min_num in (("global_crops", 1), ("local_crops", 0)):
        crops = _get(data_config, group)
        num = _get(crops, "num")
        if not isinstance(num, int) or isinstance(num, bool) or num < min_num:
            raise ValueError(f"data.{group}.num must be an integer >= {min_num}, got {num!r}.")
        size = _get(crops, "size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"data.{group}.size must be a positive integer, got {size!r}.")
        _check_range(_get(crops, "scale"), f"data.{group}.scale", 0.0, 1.0, ordered=True)
    ratio = _get(data_config, "ratio", (3.0 / 4.0, 4.0 / 3.0), required=False)
    _check_range(ratio, "data.ratio", 0.0, float("inf"), ordered=True)
    interpolation = _get(data_config, "interpolation", "bicubic", required=False)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"data.interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}."
        )
    for name in ("num_threads", "prefetch"):
        value = _get(data_config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"data.{name} must be an integer >= 0, got {value!r}.")
    subset_seed = _get(data_config, "subset_seed", 0, required=False)
    if not isinstance(subset_seed, int) or isinstance(subset_seed, bool) or subset_seed < 0:
        raise ValueError(f"data.subset_seed must be an integer >= 0, got {subset_seed!r}.")
    validate_scale_schedule(_get(data_config, "crop_scale_schedule", None, required=False),
                            data_config.global_crops.scale, data_config.local_crops.scale)
    skip = _get(data_config, "skip_corrupt")
    if not isinstance(skip, bool):
        raise ValueError(f"data.skip_corrupt must be a bool, got {skip!r}.")
