"""Config validation that runs before anything is built or compiled.

Each error names the offending field (``config.<path>``) and what it received, so a typo in a
``--config.x=y`` override costs seconds, not a compile and a crashed run. Every numeric field has
an allowed range in ``jaxssl.train.ranges.RANGES`` (checked first); the rules here relate fields
to each other, to the method, the backbone, the dataset and the devices.
"""

from __future__ import annotations

import jax
import ml_collections

from jaxssl.data.config import DataConfig
from jaxssl.data.view_augments import view_augments
from jaxssl.losses.excb import PAIRINGS as EXCB_PAIRINGS
from jaxssl.methods.base import config_error
from jaxssl.methods.common import DTYPES, config_is_vit, eval_features_problem
from jaxssl.methods.registry import METHOD_NAMES, method_class
from jaxssl.models import BACKBONES, create_backbone
from jaxssl.train.hyper import peak_learning_rate
from jaxssl.train.optim import CLIP_MODES, OPTIMIZERS
from jaxssl.train.ranges import check_ranges


def _fail(field: str, message: str) -> None:
    raise config_error(field, message)


def validate_config(config: ml_collections.ConfigDict, *, num_devices: int | None = None,
                    num_processes: int | None = None) -> None:
    """Raises ``ValueError`` naming the field for the first invalid setting: the shared rules
    here, the method's own in its :meth:`~jaxssl.methods.base.Method.validate`.

    >>> from jaxssl.train.defaults import base_config
    >>> c = base_config(); c.loss.block_size = 300; c.method = "carp"
    >>> validate_config(c)
    Traceback (most recent call last):
    ...
    ValueError: config.loss.block_size: 300 does not divide config.head.num_prototypes=1024.
    """
    num_devices = jax.device_count() if num_devices is None else num_devices
    num_processes = jax.process_count() if num_processes is None else num_processes
    c = config
    if c.method not in METHOD_NAMES:
        _fail("method", f"must be one of {METHOD_NAMES}, got {c.method!r}.")
    check_ranges(c)
    _check_model(c)
    _check_data(c)
    method_class(c.method).validate(c)
    if c.loss.excb_pairing not in EXCB_PAIRINGS:
        _fail("loss.excb_pairing", f"must be one of {EXCB_PAIRINGS}, got "
              f"{c.loss.excb_pairing!r}.")
    _check_batches(c, num_devices, num_processes)
    _check_optim(c)
    if len(c.augment.std) != len(c.augment.mean):
        _fail("augment.std", f"has {len(c.augment.std)} entries but config.augment.mean has "
              f"{len(c.augment.mean)}.")
    try:
        for view in sum(view_augments(c), ()):
            view.validate()
    except ValueError as e:
        _fail("augment", str(e))


def _check_model(c: ml_collections.ConfigDict) -> None:
    if c.model.backbone not in BACKBONES:
        _fail("model.backbone", f"unknown backbone {c.model.backbone!r}; valid names: "
              f"{sorted(BACKBONES)}.")
    if c.model.dtype not in DTYPES:
        _fail("model.dtype", f"must be one of {sorted(DTYPES)}, got {c.model.dtype!r}.")
    if not isinstance(c.model.remat, bool):
        _fail("model.remat", f"must be True or False, got {c.model.remat!r}.")
    if c.model.gelu_approximate not in (False, True) or (
            c.model.gelu_approximate and not config_is_vit(c)):
        _fail("model.gelu_approximate", "must be True (ViT backbones only) or False.")
    problem = eval_features_problem(c.eval.features, c)
    if problem:
        _fail("eval.features", problem)


def _check_data(c: ml_collections.ConfigDict) -> None:
    """The dataset spec, the crops against the images and the ViT patch size."""
    # The typed view parses the dataset spec and checks the non-numeric data fields.
    try:
        spec = DataConfig.from_config(c.data).spec
    except ValueError as e:
        raise ValueError(f"config.{e}") from e
    g, loc = c.data.global_crops, c.data.local_crops
    if spec.image_side is not None:
        for name, crops in (("global_crops", g), ("local_crops", loc)):
            if crops.num and crops.size > spec.image_side:
                _fail(f"data.{name}.size", f"{crops.size} px crops are larger than the "
                      f"{spec.image_side} px images of {spec.target!r}.")
    if loc.num and loc.size > g.size:
        _fail("data.local_crops.size", f"{loc.size} px local crops are larger than the "
              f"{g.size} px global crops (config.data.global_crops.size); local views are the "
              "small ones.")
    if config_is_vit(c):
        patch = (dict(c.model.backbone_kwargs).get("patch_size")
                 or create_backbone(c.model.backbone).patch_size)
        for name, crops in (("global_crops", g), ("local_crops", loc)):
            if crops.num and crops.size % patch:
                _fail(f"data.{name}.size", f"{crops.size} is not a multiple of the ViT patch "
                      f"size {patch}.")


def _check_batches(c: ml_collections.ConfigDict, num_devices: int, num_processes: int) -> None:
    """The batch layout across devices, processes and micro-batches; the k-NN banks."""
    t = c.train
    bsz, accum = t.batch_size, t.grad_accum_steps
    if bsz % (num_devices * accum) or bsz % num_processes:
        _fail("train.batch_size", f"{bsz} must be a positive multiple of devices x "
              f"grad_accum_steps = {num_devices} x {accum} and of the {num_processes} "
              "process(es).")
    # k-NN banks limited to a subset must hold at least k images (0 = the whole split).
    banks = [("eval.knn_train_size", c.eval.knn_train_size if c.eval.final_knn else 0),
             ("train.online_knn_train_size", t.online_knn_train_size if t.online_knn_every else 0)]
    for size_field, size in banks:
        if size and c.eval.knn_k > size:
            _fail("eval.knn_k", f"{c.eval.knn_k} neighbours but the k-NN bank holds "
                  f"config.{size_field} = {size} images; allowed [1, {size}].")


def _check_optim(c: ml_collections.ConfigDict) -> None:
    o = c.optim
    if o.name not in OPTIMIZERS:
        _fail("optim.name", f"must be one of {OPTIMIZERS}, got {o.name!r}.")
    if not isinstance(o.flatten, bool):
        _fail("optim.flatten", f"must be True or False, got {o.flatten!r}.")
    if o.grad_clip_mode not in CLIP_MODES:
        _fail("optim.grad_clip_mode", f"must be one of {CLIP_MODES}, got {o.grad_clip_mode!r}.")
    if o.warmup_start_lr > o.lr:
        _fail("optim.warmup_start_lr", f"must lie in [0, optim.lr = {o.lr}], got "
              f"{o.warmup_start_lr}.")
    peak = peak_learning_rate(c)
    if o.min_lr > peak:
        _fail("optim.min_lr", f"{o.min_lr} is above the peak learning rate optim.lr x "
              f"train.batch_size / 256 = {peak:g}; allowed [0, {peak:g}] (the cosine schedule "
              "decays from the peak to min_lr).")
