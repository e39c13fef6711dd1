"""Config validation that runs before anything is built or compiled.

Each error names the offending field (``config.<path>``) and what it received, so a typo in a
``--config.x=y`` override costs seconds, not a compile and a crashed run.
"""

from __future__ import annotations

import jax
import ml_collections

from jaxssl.losses.excb import PAIRINGS as EXCB_PAIRINGS
from jaxssl.methods.registry import METHOD_NAMES

# Image side of datasets whose size is fixed and known without reading them.
KNOWN_IMAGE_SIZES = {"fashion_mnist": 28, "mnist": 28}
DIRECTIONS = ("mean_to_prior", "prior_to_mean")


def _fail(field: str, message: str) -> None:
    raise ValueError(f"config.{field}: {message}")


def validate_config(config: ml_collections.ConfigDict, *, num_devices: int | None = None,
                    num_processes: int | None = None) -> None:
    """Raises ``ValueError`` naming the field for the first invalid setting.

    >>> from jaxssl.train.defaults import base_config
    >>> c = base_config(); c.loss.block_size = 300; c.method = "carp"
    >>> validate_config(c)
    Traceback (most recent call last):
    ...
    ValueError: config.loss.block_size: 300 does not divide config.head.num_prototypes=1024.
    """
    from jaxssl.data.spec import parse_spec
    from jaxssl.methods.common import DTYPES
    from jaxssl.models import BACKBONES
    from jaxssl.train.optim import OPTIMIZERS

    num_devices = jax.device_count() if num_devices is None else num_devices
    num_processes = jax.process_count() if num_processes is None else num_processes
    c = config
    if c.method not in METHOD_NAMES:
        _fail("method", f"must be one of {METHOD_NAMES}, got {c.method!r}.")
    if c.model.backbone not in BACKBONES:
        _fail("model.backbone", f"unknown backbone {c.model.backbone!r}; valid names: "
              f"{sorted(BACKBONES)}.")
    if c.model.dtype not in DTYPES:
        _fail("model.dtype", f"must be one of {sorted(DTYPES)}, got {c.model.dtype!r}.")
    if not isinstance(c.model.remat, bool):
        _fail("model.remat", f"must be True or False, got {c.model.remat!r}.")
    if not 0.0 <= c.model.drop_path_rate < 1.0:
        _fail("model.drop_path_rate", f"must lie in [0, 1), got {c.model.drop_path_rate}.")
    k = c.head.num_prototypes
    if k <= 0:
        _fail("head.num_prototypes", f"must be > 0, got {k}.")
    if c.method == "carp" and (c.loss.block_size <= 0 or k % c.loss.block_size):
        _fail("loss.block_size", f"{c.loss.block_size} does not divide "
              f"config.head.num_prototypes={k}.")

    # Data: the spec string, crops and batch layout.
    try:
        parse_spec(c.data.dataset)
    except ValueError as e:
        _fail("data.dataset", str(e))
    from jaxssl.data.config import validate_data_config
    validate_data_config(c.data)
    base = c.data.dataset.split(":")[0]
    g, loc = c.data.global_crops, c.data.local_crops
    if base in KNOWN_IMAGE_SIZES:
        side = KNOWN_IMAGE_SIZES[base]
        for name, crops in (("global_crops", g), ("local_crops", loc)):
            if crops.num and crops.size > side:
                _fail(f"data.{name}.size", f"{crops.size} px crops are larger than the "
                      f"{side} px images of {base!r}.")
    if g.num < 1:
        _fail("data.global_crops.num", f"needs at least 1 global view, got {g.num}.")
    if c.method in ("dino", "ibot", "carp", "excb") and g.num < 2 and loc.num < 1:
        _fail("data.global_crops.num", f"{c.method} compares views: needs 2 global views or "
              "at least one local view.")
    if c.method == "msn" and g.num < 2:
        _fail("data.global_crops.num", "MSN uses global view 0 as target and view 1 as the "
              f"masked anchor: needs 2, got {g.num}.")

    patch = dict(c.model.backbone_kwargs).get("patch_size")
    is_vit = c.model.backbone.startswith("vit")
    if is_vit:
        from jaxssl.models import create_backbone
        patch = patch or create_backbone(c.model.backbone).patch_size
        for name, crops in (("global_crops", g), ("local_crops", loc)):
            if crops.num and crops.size % patch:
                _fail(f"data.{name}.size", f"{crops.size} is not a multiple of the ViT patch "
                      f"size {patch}.")
    if c.method == "ibot" and not is_vit:
        _fail("model.backbone", f"iBOT's patch loss needs a ViT, got {c.model.backbone!r}.")
    if c.method == "msn":
        if not 0.0 <= c.loss.patch_drop < 1.0:
            _fail("loss.patch_drop", f"must lie in [0, 1), got {c.loss.patch_drop}.")
        if c.loss.patch_drop > 0 and not is_vit:
            _fail("loss.patch_drop", f"patch dropping needs a ViT, got {c.model.backbone!r}.")
        if c.loss.prior not in ("uniform", "power_law"):
            _fail("loss.prior", f"must be 'uniform' or 'power_law', got {c.loss.prior!r}.")
        if c.loss.prior_direction not in DIRECTIONS:
            _fail("loss.prior_direction", f"must be one of {DIRECTIONS}, got "
                  f"{c.loss.prior_direction!r}.")
    if c.loss.excb_pairing not in EXCB_PAIRINGS:
        _fail("loss.excb_pairing", f"must be one of {EXCB_PAIRINGS}, got "
              f"{c.loss.excb_pairing!r}.")
    if c.method == "excb" and c.loss.centroid_wd_scale < 1.0:
        _fail("loss.centroid_wd_scale", "must be >= 1 (a multiple of the base weight decay at "
              f"the start; 1 = no extra centroid decay), got {c.loss.centroid_wd_scale}.")
    if c.loss.koleo_weight < 0:
        _fail("loss.koleo_weight", f"must be >= 0, got {c.loss.koleo_weight}.")
    for name in ("student_temp", "teacher_temp", "warmup_teacher_temp"):
        if c.loss[name] <= 0:
            _fail(f"loss.{name}", f"must be > 0, got {c.loss[name]}.")

    # Batch layout across devices, processes and micro-batches.
    t = c.train
    bsz, accum = t.batch_size, t.grad_accum_steps
    if accum < 1:
        _fail("train.grad_accum_steps", f"must be >= 1, got {accum}.")
    if bsz <= 0 or bsz % (num_devices * accum) or bsz % num_processes:
        _fail("train.batch_size", f"{bsz} must be a positive multiple of devices x "
              f"grad_accum_steps = {num_devices} x {accum} and of the {num_processes} "
              "process(es).")
    if t.num_steps <= 0:
        _fail("train.num_steps", f"must be > 0, got {t.num_steps}.")
    if t.time_budget_s < 0:
        _fail("train.time_budget_s", f"must be >= 0, got {t.time_budget_s}.")
    for name in ("log_every", "checkpoint_every", "keep_checkpoints"):
        if t[name] <= 0:
            _fail(f"train.{name}", f"must be > 0, got {t[name]}.")

    o = c.optim
    if o.name not in OPTIMIZERS:
        _fail("optim.name", f"must be one of {OPTIMIZERS}, got {o.name!r}.")
    if o.lr <= 0:
        _fail("optim.lr", f"must be > 0, got {o.lr}.")
    if not 0.0 <= o.warmup_start_lr <= o.lr:
        _fail("optim.warmup_start_lr", f"must lie in [0, optim.lr = {o.lr}], got "
              f"{o.warmup_start_lr}.")
    if not 0.0 <= o.warmup_fraction < 1.0:
        _fail("optim.warmup_fraction", f"must lie in [0, 1), got {o.warmup_fraction}.")
    for name in ("momentum", "momentum_end"):
        if not 0.0 <= c.ema[name] <= 1.0:
            _fail(f"ema.{name}", f"must lie in [0, 1], got {c.ema[name]}.")

    from jaxssl.train.step import view_augments
    try:
        for view in sum(view_augments(c), ()):
            view.validate()
    except ValueError as e:
        _fail("augment", str(e))
