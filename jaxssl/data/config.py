"""A typed, read-only view of the data section of the one config schema.

The fields and their defaults live in ``jaxssl.train.defaults`` (``config.data``); their numeric
ranges in ``jaxssl.train.ranges`` (checked by ``jaxssl.train.validate.validate_config``).
``DataConfig.from_config`` reads every field once, parses the dataset spec once into a
``DatasetSpec``, checks what a range cannot express (the spec, the interpolation name, booleans,
the crop-scale schedule against the crop scales) and hands the pipeline typed values.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from jaxssl.data.scale_schedule import validate_scale_schedule
from jaxssl.data.spec import DatasetSpec, make_source

INTERPOLATIONS = ("bilinear", "bicubic")  # the resampling filters of jaxssl.data.crops


def _field(section: Any, name: str, where: str = "data") -> Any:
    """``section[name]``; a missing field is a ``ValueError`` naming it (no silent default)."""
    try:
        return section[name]
    except (KeyError, AttributeError, TypeError) as err:
        raise ValueError(f"{where}.{name}: missing field (see jaxssl.train.defaults).") from err


@dataclasses.dataclass(frozen=True)
class Crops:
    """One crop group (``data.global_crops`` or ``data.local_crops``): ``num`` views of
    ``size`` px cut from an area fraction drawn from ``scale`` = (min, max)."""

    num: int
    size: int
    scale: tuple[float, float]

    @classmethod
    def from_config(cls, section: Mapping[str, Any], where: str) -> Crops:
        """Reads ``section`` (the config node at ``where``, e.g. ``data.global_crops``)."""
        return cls(_field(section, "num", where), _field(section, "size", where),
                   tuple(_field(section, "scale", where)))


@dataclasses.dataclass(frozen=True)
class CropScaleSchedule:
    """ExCB's shrinking global crops (``jaxssl.data.scale_schedule``); ``start_min`` 0 = off."""

    start_min: float
    steps: int


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Everything the host pipeline reads, typed; built from ``config.data`` by ``from_config``.

    >>> from jaxssl.train.defaults import base_config
    >>> section = base_config().data
    >>> section.dataset = "fashion_mnist:lt10"
    >>> data = DataConfig.from_config(section)
    >>> data.spec, data.global_crops.scale
    (DatasetSpec(kind='idx', target='fashion_mnist', rho=10.0, holdout=None), (0.4, 1.0))
    >>> section.interpolation = "nearest"
    >>> DataConfig.from_config(section)
    Traceback (most recent call last):
    ...
    ValueError: data.interpolation must be one of ('bilinear', 'bicubic'), got 'nearest'.
    """

    spec: DatasetSpec
    data_dir: str | os.PathLike | None
    global_crops: Crops
    local_crops: Crops
    ratio: tuple[float, float]
    interpolation: str
    num_threads: int
    prefetch: int
    skip_corrupt: bool
    subset_seed: int
    crop_scale_schedule: CropScaleSchedule

    @classmethod
    def from_config(cls, data: Mapping[str, Any] | DataConfig) -> DataConfig:
        """Reads ``config.data`` (a ``DataConfig`` passes through); raises ``ValueError`` naming
        the field for a missing field, an unknown dataset spec or interpolation, a non-bool
        ``skip_corrupt`` or a crop-scale schedule outside the crop scales."""
        if isinstance(data, DataConfig):
            return data
        try:
            spec = DatasetSpec.parse(_field(data, "dataset"))
        except ValueError as err:
            raise ValueError(f"data.dataset: {err}") from err
        schedule = _field(data, "crop_scale_schedule")
        view = cls(
            spec=spec,
            data_dir=_field(data, "data_dir"),
            global_crops=Crops.from_config(_field(data, "global_crops"), "data.global_crops"),
            local_crops=Crops.from_config(_field(data, "local_crops"), "data.local_crops"),
            ratio=tuple(_field(data, "ratio")),
            interpolation=_field(data, "interpolation"),
            num_threads=_field(data, "num_threads"),
            prefetch=_field(data, "prefetch"),
            skip_corrupt=_field(data, "skip_corrupt"),
            subset_seed=_field(data, "subset_seed"),
            crop_scale_schedule=CropScaleSchedule(
                _field(schedule, "start_min", "data.crop_scale_schedule"),
                _field(schedule, "steps", "data.crop_scale_schedule")),
        )
        view.check()
        return view

    def check(self) -> None:
        """The checks a numeric range cannot express (ranges: ``jaxssl.train.ranges``)."""
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"data.interpolation must be one of {INTERPOLATIONS}, got "
                             f"{self.interpolation!r}.")
        if not isinstance(self.skip_corrupt, bool):
            raise ValueError(f"data.skip_corrupt must be a bool, got {self.skip_corrupt!r}.")
        if self.data_dir is not None and not isinstance(self.data_dir, (str, os.PathLike)):
            raise ValueError(f"data.data_dir must be None or a path, got {self.data_dir!r}.")
        validate_scale_schedule(self.crop_scale_schedule, self.global_crops.scale,
                                self.local_crops.scale)

    def source(self, split: str):
        """The source of ``split`` ("train" or "test"); a long-tailed train split is drawn with
        ``subset_seed`` (not the training seed, so runs with different seeds see the same data).
        """
        return make_source(self.spec, split, data_dir=self.data_dir, seed=self.subset_seed,
                           skip_corrupt=self.skip_corrupt)
