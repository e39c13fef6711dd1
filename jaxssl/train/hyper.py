"""Per-step hyper-parameters, computed on the host and passed to the jitted step as scalars."""

from __future__ import annotations

import ml_collections
import numpy as np

from jaxssl.methods.registry import method_class
from jaxssl.ops import schedules


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
    """The linear scaling rule: ``optim.lr`` is per 256 images (DINO, CARP, ExCB recipes)."""
    return float(config.optim.lr) * config.train.batch_size / 256.0


def warmup_start_learning_rate(config: ml_collections.ConfigDict) -> float:
    """Where the linear warm-up starts: ``optim.warmup_start_lr``, per 256 images like ``lr``."""
    return float(config.optim.warmup_start_lr) * config.train.batch_size / 256.0


def warmup_steps(config: ml_collections.ConfigDict, total_steps: int) -> int:
    """``optim.warmup_steps``, or ``optim.warmup_fraction`` of the run when that is 0."""
    if config.optim.warmup_steps:
        return int(config.optim.warmup_steps)
    return int(round(config.optim.warmup_fraction * total_steps))


def hyperparams(config: ml_collections.ConfigDict, step: int, total_steps: int) -> dict:
    """Every scheduled scalar of one optimiser step, as float32 numpy scalars: the shared ones and
    the method's (:meth:`jaxssl.methods.base.Method.extra_hyperparams`).

    >>> from jaxssl.train.defaults import base_config
    >>> h = hyperparams(base_config(), 0, 100)
    >>> float(h["learning_rate"]), float(h["ema_momentum"]), bool(h["freeze_prototypes"])
    (0.0, 0.996, False)
    >>> c = base_config()
    >>> c.train.batch_size = 256  # lr and warmup_start_lr are per 256 images
    >>> c.optim.update(lr=1e-3, warmup_start_lr=2e-4, warmup_steps=10)  # MSN's warm-up
    >>> [round(float(hyperparams(c, s, 100)["learning_rate"]), 6) for s in (0, 5, 10)]
    [0.0002, 0.0006, 0.001]
    """
    o, lcfg = config.optim, config.loss
    wd = schedules.cosine_ramp(step, total_steps, o.weight_decay, o.weight_decay_end)
    out = {
        "learning_rate": schedules.warmup_cosine(
            step, total_steps, warmup_steps(config, total_steps), peak_learning_rate(config),
            end=o.min_lr, start=warmup_start_learning_rate(config)),
        "weight_decay": wd,
        "prototype_decay": 0.0,
        "ema_momentum": schedules.cosine_ramp(
            step, total_steps, config.ema.momentum, config.ema.momentum_end),
        "teacher_temp": schedules.linear_warmup(
            step, lcfg.warmup_teacher_temp_steps, lcfg.warmup_teacher_temp, lcfg.teacher_temp),
        "entropy_weight": schedules.cosine_ramp(
            step, total_steps, lcfg.entropy_weight, lcfg.entropy_weight_end),
    }
    # The method's own schedules (ExCB: the centroids' extra decay in "prototype_decay").
    out.update(method_class(config.method).extra_hyperparams(config, step, total_steps, out))
    out = {k: np.float32(v) for k, v in out.items()}
    out["freeze_prototypes"] = np.bool_(step < config.optim.freeze_prototypes_steps)
    return out
