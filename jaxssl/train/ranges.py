"""The allowed range of every numeric config field: one declarative table, checked up front.

``RANGES`` maps each numeric field of the schema (``jaxssl.train.defaults.base_config``) to a
``Range`` (a scalar) or an ``Each`` (a tuple of numbers). ``check_ranges`` walks the table and
raises a ``ValueError`` that names the field, the value and the allowed range, so a value that
would train garbage (``eval.knn_temperature=0``, ``loss.boost=0``) or fail minutes later without
naming the field (``loss.sharpen_temperature=0``, ``seed=-1``) is refused before anything is
written or compiled. Rules that relate two fields live in ``jaxssl.train.validate``.

Adding a numeric field to the schema without a row here fails ``tests/reliability/
test_config_ranges.py``, which walks every numeric leaf of ``base_config()``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

INF = math.inf


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values of a numeric field: the interval from ``low`` to ``high``.

    Attributes:
      low, high: the bounds (``high`` may be ``math.inf``; infinity itself is never allowed).
      low_open, high_open: exclude the bound (an infinite bound is always excluded).
      integer: the value must be a Python int (bools are refused).
      why: what goes wrong outside the range, appended to the error message.

    >>> str(Range(0, 1, low_open=True)), str(Range(1, integer=True))
    ('(0, 1]', 'an integer in [1, inf)')
    >>> Range(0, 1, low_open=True).contains(0.0), Range(1, integer=True).contains(2.0)
    (False, False)
    """

    low: float
    high: float = INF
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    why: str = ""

    def contains(self, value: Any) -> bool:
        """Whether ``value`` has the right type and lies in the interval (NaN never does)."""
        if isinstance(value, bool):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not isinstance(value, (int, float)):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if (self.high_open or self.high == INF) else value <= self.high
        return bool(above and below and math.isfinite(value))

    def __str__(self) -> str:
        def num(x: float) -> str:
            if x == INF:
                return "inf"
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        left = "(" if self.low_open else "["
        right = ")" if (self.high_open or self.high == INF) else "]"
        interval = f"{left}{num(self.low)}, {num(self.high)}{right}"
        return f"an integer in {interval}" if self.integer else interval


@dataclasses.dataclass(frozen=True)
class Each:
    """A tuple of numbers: each entry in ``item``, ``length`` entries (None: any, >= 1), and
    non-decreasing when ``ordered`` (a (low, high) pair).

    >>> str(Each(Range(0, 1), ordered=True))
    '(low, high) with low <= high, each in [0, 1]'
    """

    item: Range
    length: int | None = 2
    ordered: bool = False
    why: str = ""

    def __str__(self) -> str:
        if self.ordered and self.length == 2:
            shape = "(low, high) with low <= high"
        else:
            shape = f"a tuple of {self.length or 'one or more'} numbers"
        return f"{shape}, each in {self.item}"


def _pos(why: str = "") -> Range:
    return Range(0.0, low_open=True, why=why)


def _nonneg(why: str = "") -> Range:
    return Range(0.0, why=why)


def _prob(why: str = "") -> Range:
    return Range(0.0, 1.0, why=why)


def _int(low: int, high: float = INF, why: str = "") -> Range:
    return Range(low, high, integer=True, why=why)


def _augment_rows(view: str) -> dict[str, Range | Each]:
    p = f"augment.{view}."
    return {
        p + "jitter_prob": _prob(), p + "grayscale_prob": _prob(), p + "blur_prob": _prob(),
        p + "solarize_prob": _prob(),
        p + "brightness": _nonneg(), p + "contrast": _nonneg(), p + "saturation": _nonneg(),
        p + "hue": Range(0.0, 0.5, why="a hue shift is a fraction of the colour wheel"),
        p + "blur_sigma": Each(_pos(), ordered=True),
    }


_MOMENTUM = "an EMA momentum: 0 keeps only the new value, 1 never updates"

RANGES: dict[str, Range | Each] = {
    # Seeds feed jax.random.key and numpy SeedSequence: non-negative, 32 bits.
    "seed": _int(0, 2**32 - 1),
    "model.drop_path_rate": Range(0.0, 1.0, high_open=True,
                                  why="a probability of dropping a block; 1 drops every one"),
    "head.num_prototypes": _int(2, why="with one prototype every softmax is 1 and the loss is "
                                       "identically 0"),
    "head.hidden_dim": _int(1),
    "head.bottleneck_dim": _int(1),
    "head.num_layers": _int(1),
    # Loss temperatures divide logits.
    "loss.student_temp": _pos("it divides the logits"),
    "loss.teacher_temp": _pos("it divides the logits"),
    "loss.warmup_teacher_temp": _pos("it divides the logits"),
    "loss.warmup_teacher_temp_steps": _int(0),
    "loss.center_momentum": _prob(_MOMENTUM),
    "loss.patch_loss_weight": _nonneg(),
    "loss.mask_ratio": Each(_prob(), ordered=True,
                            why="the fraction of patches masked, drawn from [low, high]"),
    "loss.mask_probability": _prob("the fraction of crops that are masked"),
    "loss.koleo_weight": _nonneg(),
    "loss.koleo_chunk_size": _int(0, why="0 = search all prototypes at once"),
    "loss.boost": Range(1.0, why="ExCB multiplies each row's arg-max by it; below 1 it "
                                 "penalises the winning cluster"),
    "loss.cluster_momentum": _prob(_MOMENTUM),
    "loss.kmeans_samples": _int(1),
    "loss.kmeans_iters": _int(0),
    "loss.centroid_wd_scale": _nonneg("the centroids' decay is weight_decay times this"),
    "loss.block_size": _int(1),
    "loss.entropy_weight": _nonneg(),
    "loss.entropy_weight_end": _nonneg(),
    "loss.prior_exponent": _nonneg("the power-law exponent tau of pi_k ~ k^-tau"),
    "loss.regularization_weight": _nonneg(),
    "loss.sharpen_temperature": _pos("MSN raises the target probabilities to 1/T"),
    "loss.sinkhorn_iters": _int(0),
    "loss.patch_drop": Range(0.0, 1.0, high_open=True, why="the fraction of patches dropped"),
    # Data (non-numeric checks: jaxssl.data.config.DataConfig.from_config).
    "data.global_crops.num": _int(1),
    "data.global_crops.size": _int(1),
    "data.global_crops.scale": Each(Range(0.0, 1.0, low_open=True), ordered=True,
                                    why="the fraction of the image area a crop covers"),
    "data.local_crops.num": _int(0),
    "data.local_crops.size": _int(1),
    "data.local_crops.scale": Each(Range(0.0, 1.0, low_open=True), ordered=True,
                                   why="the fraction of the image area a crop covers"),
    "data.ratio": Each(_pos(), ordered=True, why="the aspect-ratio range (w / h) of the crops"),
    "data.num_threads": _int(0),
    "data.prefetch": _int(0),
    "data.subset_seed": _int(0, why="seeds numpy's SeedSequence"),
    "data.crop_scale_schedule.start_min": _prob("0 = off"),
    "data.crop_scale_schedule.steps": _int(0),
    **_augment_rows("global1"), **_augment_rows("global2"), **_augment_rows("local"),
    "augment.mean": Each(_prob("of pixels scaled to [0, 1]"), length=None),
    "augment.std": Each(_pos("it divides the pixels"), length=None),
    # Optimiser: learning rates are per 256 images except min_lr (absolute).
    "optim.lr": _pos(),
    "optim.min_lr": _nonneg(),
    "optim.warmup_steps": _int(0, why="0 = use warmup_fraction"),
    "optim.warmup_fraction": Range(0.0, 1.0, high_open=True),
    "optim.warmup_start_lr": _nonneg(),
    "optim.weight_decay": _nonneg("a negative decay grows the weights"),
    "optim.weight_decay_end": _nonneg("a negative decay grows the weights"),
    "optim.momentum": Range(0.0, 1.0, high_open=True),
    "optim.grad_clip": _nonneg("0 disables clipping; a negative norm bound is meaningless"),
    "optim.freeze_prototypes_steps": _int(0),
    "ema.momentum": _prob(_MOMENTUM),
    "ema.momentum_end": _prob(_MOMENTUM),
    "train.batch_size": _int(1),
    "train.num_steps": _int(1),
    "train.time_budget_s": _nonneg("0 = off"),
    "train.grad_accum_steps": _int(1),
    "train.log_every": _int(1),
    "train.checkpoint_every": _int(1),
    "train.keep_checkpoints": _int(1),
    "train.online_knn_every": _int(0, why="0 = off"),
    "train.online_knn_train_size": _int(0, why="0 = whole split"),
    "train.online_knn_test_size": _int(0, why="0 = whole split"),
    "train.prototype_diag_every": _int(0, why="0 = off"),
    "eval.knn_k": _int(1),
    # exp(sim / T) must stay finite in float32 for |sim| <= 1: T > 1 / 88.7; 0.02 leaves room
    # for summing k such weights.
    "eval.knn_temperature": Range(0.02, why="the k-NN votes exp(sim / T) overflow float32 "
                                            "below about 0.012"),
    "eval.knn_train_size": _int(0, why="0 = whole split"),
    "eval.batch_size": _int(1),
}


def _lookup(config: Any, field: str) -> tuple[bool, Any]:
    node = config
    for part in field.split("."):
        if not isinstance(node, Mapping) and not hasattr(node, "keys"):
            return False, None
        if part not in node:
            return False, None
        node = node[part]
    return True, node


def _fail(field: str, value: Any, allowed: Any, why: str) -> None:
    reason = f" ({why})" if why else ""
    raise ValueError(f"config.{field}: got {value!r}, allowed {allowed}{reason}.")


def check_value(field: str, value: Any, rule: Range | Each) -> None:
    """Raises ``ValueError`` naming ``field``, ``value`` and the allowed range when ``value``
    breaks ``rule``.

    >>> check_value("loss.boost", 0.0, RANGES["loss.boost"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: config.loss.boost: got 0.0, allowed [1, inf) (ExCB multiplies each row's ...
    """
    if isinstance(rule, Range):
        if not rule.contains(value):
            _fail(field, value, rule, rule.why)
        return
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        _fail(field, value, rule, rule.why)
    entries = tuple(value)
    if (rule.length is not None and len(entries) != rule.length) or not entries:
        _fail(field, value, rule, rule.why)
    for entry in entries:
        if not rule.item.contains(entry):
            _fail(field, value, rule, rule.why or rule.item.why)
    if rule.ordered and any(a > b for a, b in zip(entries, entries[1:])):
        _fail(field, value, rule, rule.why)


def check_ranges(config: Any, ranges: Mapping[str, Range | Each] = RANGES) -> None:
    """Checks every field of ``ranges`` that ``config`` has (fields it lacks are skipped, so a
    partial config, e.g. a restored old one, is checked on what it has).

    >>> from jaxssl.train.defaults import base_config
    >>> c = base_config(); c.eval.knn_temperature = 0.0
    >>> check_ranges(c)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: config.eval.knn_temperature: got 0.0, allowed [0.02, inf) (the k-NN votes ...
    """
    for field, rule in ranges.items():
        present, value = _lookup(config, field)
        if present:
            check_value(field, value, rule)
