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
from jaxssl.methods.registry import METHOD_NAMES
from jaxssl.train.ranges import check_ranges

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
    from jaxssl.methods.common import DTYPES
    from jaxssl.methods.prior import PRIOR_NAMES, is_prior_file, load_prior_file
    from jaxssl.models import BACKBONES
    from jaxssl.train.optim import CLIP_MODES, OPTIMIZERS

    num_devices = jax.device_count() if num_devices is None else num_devices
    num_processes = jax.process_count() if num_processes is None else num_processes
    c = config
    if c.method not in METHOD_NAMES:
        _fail("method", f"must be one of {METHOD_NAMES}, got {c.method!r}.")
    check_ranges(c)
    if c.model.backbone not in BACKBONES:
        _fail("model.backbone", f"unknown backbone {c.model.backbone!r}; valid names: "
              f"{sorted(BACKBONES)}.")
    if c.model.dtype not in DTYPES:
        _fail("model.dtype", f"must be one of {sorted(DTYPES)}, got {c.model.dtype!r}.")
    if not isinstance(c.model.remat, bool):
        _fail("model.remat", f"must be True or False, got {c.model.remat!r}.")
    if c.model.gelu_approximate not in (False, True) or (
            c.model.gelu_approximate and not c.model.backbone.startswith("vit")):
        _fail("model.gelu_approximate", "must be True (ViT backbones only) or False.")
    k = c.head.num_prototypes
    if c.method == "carp" and (c.loss.block_size <= 0 or k % c.loss.block_size):
        _fail("loss.block_size", f"{c.loss.block_size} does not divide "
              f"config.head.num_prototypes={k}.")

    # Data: the typed view parses the dataset spec and checks the non-numeric data fields.
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
        if c.loss.patch_drop > 0 and not is_vit:
            _fail("loss.patch_drop", f"patch dropping needs a ViT, got {c.model.backbone!r}.")
        if is_prior_file(c.loss.prior):
            load_prior_file(c.loss.prior, k)  # its errors name config.loss.prior and the file
        elif c.loss.prior not in PRIOR_NAMES:
            _fail("loss.prior", f"must be 'uniform', 'power_law' or a path to a .npy file of "
                  f"K = {k} weights, got {c.loss.prior!r}.")
        if c.loss.prior_direction not in DIRECTIONS:
            _fail("loss.prior_direction", f"must be one of {DIRECTIONS}, got "
                  f"{c.loss.prior_direction!r}.")
    if c.loss.excb_pairing not in EXCB_PAIRINGS:
        _fail("loss.excb_pairing", f"must be one of {EXCB_PAIRINGS}, got "
              f"{c.loss.excb_pairing!r}.")
    if c.method == "excb" and c.loss.kmeans_init and c.loss.kmeans_samples < k:
        _fail("loss.kmeans_samples", f"{c.loss.kmeans_samples} is below "
              f"config.head.num_prototypes={k}: the centroid k-means needs at least one "
              "sample per cluster.")
    # Batch layout across devices, processes and micro-batches.
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

    o = c.optim
    if o.name not in OPTIMIZERS:
        _fail("optim.name", f"must be one of {OPTIMIZERS}, got {o.name!r}.")
    if not isinstance(o.get("flatten", False), bool):
        _fail("optim.flatten", f"must be True or False, got {o.flatten!r}.")
    if o.grad_clip_mode not in CLIP_MODES:
        _fail("optim.grad_clip_mode", f"must be one of {CLIP_MODES}, got {o.grad_clip_mode!r}.")
    if o.warmup_start_lr > o.lr:
        _fail("optim.warmup_start_lr", f"must lie in [0, optim.lr = {o.lr}], got "
              f"{o.warmup_start_lr}.")
    from jaxssl.train.hyper import peak_learning_rate
    peak = peak_learning_rate(c)
    if o.min_lr > peak:
        _fail("optim.min_lr", f"{o.min_lr} is above the peak learning rate optim.lr x "
              f"train.batch_size / 256 = {peak:g}; allowed [0, {peak:g}] (the cosine schedule "
              "decays from the peak to min_lr).")
    if len(c.augment.std) != len(c.augment.mean):
        _fail("augment.std", f"has {len(c.augment.std)} entries but config.augment.mean has "
              f"{len(c.augment.mean)}.")

    try:
        for view in sum(view_augments(c), ()):
            view.validate()
    except ValueError as e:
        _fail("augment", str(e))
