"""The full configuration schema with defaults; every file in ``configs/`` starts from it.

One ``ConfigDict`` holds every field the trainer reads, so a misspelt ``--config.x=y`` override
fails loudly (ml_collections refuses unknown fields) and ``validate_config`` can check
everything before anything is compiled.
"""

from __future__ import annotations

import ml_collections
from ml_collections.config_dict import placeholder

from jaxssl.data.augment import DINO_VIEWS, IMAGENET_MEAN, IMAGENET_STD, ViewAugment
from jaxssl.data.crops import DEFAULT_RATIO

# The schema fields of one view's photometric augmentation (the rest of ``ViewAugment`` keeps its
# defaults; mean and std are shared by all views: ``augment.mean``/``augment.std``).
VIEW_FIELDS = ("jitter_prob", "brightness", "contrast", "saturation", "hue", "grayscale_prob",
               "blur_prob", "blur_sigma", "solarize_prob")


def view_augment(*, strength: float = 1.0, **overrides) -> ml_collections.ConfigDict:
    """Photometric augmentation of one view (docs/methods.md §0): ``ViewAugment``'s defaults with
    ``overrides`` (e.g. ``blur_prob``), the colour-jitter strengths scaled by ``strength``.

    >>> v = view_augment(blur_prob=1.0, strength=0.5)
    >>> v.blur_prob, v.brightness, v.jitter_prob
    (1.0, 0.2, 0.8)
    """
    view = ViewAugment(**overrides).with_strength(strength)
    return ml_collections.ConfigDict({name: getattr(view, name) for name in VIEW_FIELDS})


def model_config() -> ml_collections.ConfigDict:
    """``config.model``: the backbone and how it runs."""
    return ml_collections.ConfigDict(dict(
        backbone="vit_nano",
        backbone_kwargs=ml_collections.ConfigDict(),
        dtype="float32",  # compute dtype of backbone and heads: float32 | bfloat16
        # Stochastic depth of the last ViT block (linear from 0 over depth); the student only,
        # the EMA teacher and every evaluation run deterministically.
        drop_path_rate=0.0,
        # Activation rematerialisation (nn.remat) of every ViT block / ResNet residual block:
        # recompute activations in the backward pass instead of storing them (less memory, about
        # a third more compute); results are unchanged.
        remat=False,
        # ViT MLP GELU as the tanh approximation (cheaper on CPU) instead of the papers' exact erf.
        gelu_approximate=False,
    ))


def head_config() -> ml_collections.ConfigDict:
    """``config.head``: the projection MLP and the prototype layer."""
    return ml_collections.ConfigDict(dict(
        num_prototypes=1024, hidden_dim=2048, bottleneck_dim=256, num_layers=3, use_bn=False,
        norm_last_layer=True,
    ))


def loss_config() -> ml_collections.ConfigDict:
    """``config.loss``: loss hyper-parameters; methods read the fields that concern them."""
    return ml_collections.ConfigDict(dict(
        student_temp=0.1,
        teacher_temp=0.04,
        warmup_teacher_temp=0.04,
        warmup_teacher_temp_steps=0,
        center_momentum=0.9,
        # iBOT patch loss (method "ibot").
        patch_loss_weight=1.0,
        mask_ratio=(0.1, 0.5),
        mask_probability=0.5,
        # KoLeo-proto regulariser: any method with a prototype matrix.
        koleo_weight=0.0,
        koleo_chunk_size=4096,
        # ExCB.
        boost=1.01,
        cluster_momentum=0.999,
        # Centroid init: spherical k-means on teacher projections of kmeans_samples randomly
        # drawn training images (>= num_prototypes; paper recipes 500,000), kmeans_iters Lloyd
        # iterations (paper recipes 50), restarted until no cluster is empty.
        kmeans_init=True,
        kmeans_samples=4096,
        kmeans_iters=20,
        # Extra centroid weight decay: scale x the base decay at the start, cosine to 1x (the
        # paper's ResNet-50 recipe: 10, i.e. 1e-3 -> 1e-4); 1 = none (its ViT recipe).
        centroid_wd_scale=1.0,
        # Which student views pair with the teacher: "paper" (Algorithm 1: the direct projections
        # of all views but the teacher's own crop and the predictor outputs of all views, 1/2
        # each) | "released" (the released code: no local direct projections, 18 equal pairs).
        excb_pairing="paper",
        # CARP.
        block_size=512,
        entropy_weight=1.0,
        entropy_weight_end=1.0,
        # MSN / PMSN.
        # uniform | power_law | /path/to/weights.npy (K non-negative weights, normalised to sum 1;
        # e.g. class frequencies), read once when the method is built (jaxssl.methods.prior).
        prior="uniform",
        prior_exponent=0.25,  # tau of the power-law prior pi_k ~ k^-tau
        prior_direction="mean_to_prior",
        sort_mean_probs=False,
        regularization_weight=1.0,
        sharpen_temperature=0.25,
        sinkhorn_iters=3,
        patch_drop=0.15,
    ))


def optim_config() -> ml_collections.ConfigDict:
    """``config.optim``: the optimiser, learning-rate and weight-decay schedules, clipping."""
    return ml_collections.ConfigDict(dict(
        name="adamw",  # adamw | sgd | lars
        lr=5e-4,  # per 256 images; scaled by batch_size / 256
        min_lr=1e-6,
        warmup_steps=0,
        warmup_fraction=0.1,  # used when warmup_steps == 0
        warmup_start_lr=0.0,  # per 256 images, like lr: the warm-up starts here (MSN: 2e-4)
        weight_decay=0.04,
        weight_decay_end=0.4,
        momentum=0.9,  # sgd / lars
        grad_clip=3.0,  # max gradient norm; 0 disables
        # per_parameter: each parameter's gradient clipped to norm grad_clip on its own (DINO's
        # clip_gradients); global: the whole gradient's norm (torch clip_grad_norm_, MSN).
        grad_clip_mode="global",
        # The prototype layer gets no update at all (no decay, no momentum, optimiser state left
        # untouched) for this many first steps (DINO's freeze_last_layer, one epoch).
        freeze_prototypes_steps=0,
        # AdamW / SGD on a few flattened parameter groups (optax.flatten: a handful of fused
        # updates instead of several per parameter leaf, same arithmetic; jaxssl/train/optim.py).
        # Off: on a 2-core CPU it measured ~50 % slower (the concatenations cost more memory
        # traffic than the per-leaf kernels save); meant for launch-bound accelerators.
        flatten=False,
    ))


def train_config() -> ml_collections.ConfigDict:
    """``config.train``: batch, length, logging, checkpoints and the online probes."""
    return ml_collections.ConfigDict(dict(
        batch_size=128,  # global, across all devices and processes
        num_steps=1000,
        time_budget_s=0.0,  # > 0: fix num_steps from the measured step time (wall-clock budget)
        # n > 1: n equal micro-batches whose gradients equal the whole batch's (BatchNorm, which
        # normalises each micro-batch on its own, excepted; jaxssl/train/grads.py)
        grad_accum_steps=1,
        log_every=20,
        checkpoint_every=500,
        keep_checkpoints=3,
        online_knn_every=0,  # 0 disables the online k-NN probe
        online_knn_train_size=5000,
        online_knn_test_size=2000,
        prototype_diag_every=200,
        progress=True,
    ))


def eval_config() -> ml_collections.ConfigDict:
    """``config.eval``: the k-NN evaluation and plots at the end of a run."""
    return ml_collections.ConfigDict(dict(
        final_knn=True,
        knn_k=20,
        knn_temperature=0.07,
        knn_train_size=0,  # 0 = whole train split
        # What every evaluation embeds (final k-NN, online probe, jaxssl.eval): "cls" = the
        # backbone's output (ViT: final-norm CLS token; ResNet: global average pool);
        # "cls_avgpool" (ViT only) = CLS concatenated with the mean of the final-norm patch
        # tokens, [B, 2D], as DINO's ViT linear evaluation. Compare methods (and the random-init
        # baseline) only with the same setting.
        features="cls",
        batch_size=512,
        plots=True,
    ))


def base_config() -> ml_collections.ConfigDict:
    """Defaults shared by every method; method configs override what they need.

    >>> c = base_config()
    >>> c.method, c.data.dataset, c.train.batch_size
    ('excb', 'fashion_mnist', 128)
    """
    c = ml_collections.ConfigDict()
    c.method = "excb"  # dino | ibot | carp | excb | msn (PMSN = msn with a power-law prior)
    c.seed = 0
    c.model = model_config()
    c.head = head_config()
    c.loss = loss_config()
    c.data = data_config()
    c.augment = augment_config()
    c.optim = optim_config()
    c.ema = ml_collections.ConfigDict(dict(momentum=0.996, momentum_end=1.0))  # teacher EMA
    c.train = train_config()
    c.eval = eval_config()
    return c


def data_config() -> ml_collections.ConfigDict:
    """``config.data``: the dataset and the host-side multi-crop pipeline (read through the typed
    view ``jaxssl.data.config.DataConfig``)."""
    return ml_collections.ConfigDict(dict(
        # A dataset spec (jaxssl.data.spec): fashion_mnist | mnist | tfds:NAME | folder:/root |
        # npz:/file.npz, each with an optional :ltRHO long-tailed train split.
        dataset="fashion_mnist",
        data_dir=placeholder(str),  # IDX search directory / TFDS data dir; None = the default
        global_crops=dict(num=2, size=28, scale=(0.4, 1.0)),
        local_crops=dict(num=4, size=16, scale=(0.1, 0.4)),
        ratio=DEFAULT_RATIO,  # aspect-ratio range (w / h) of the random-resized crops
        interpolation="bicubic",  # crop resampling filter: bilinear | bicubic
        num_threads=2,  # grain threads, each building whole batches
        prefetch=2,  # batches buffered ahead
        skip_corrupt=True,  # skip undecodable images (with a warning) instead of failing
        subset_seed=0,  # seed of the :ltRHO long-tailed subset (not the training seed)
        # ExCB: the global crops' minimum scale goes start_min -> global_crops.scale[0] by cosine
        # over `steps`, and locals sample (local_crops.scale[0], s_min). start_min 0 = off.
        crop_scale_schedule=dict(start_min=0.0, steps=0),
    ))


def augment_config() -> ml_collections.ConfigDict:
    """``config.augment``: the photometric augmentation of each view, on device."""
    return ml_collections.ConfigDict(dict(
        global1=view_augment(**DINO_VIEWS["global1"]),
        global2=view_augment(**DINO_VIEWS["global2"]),
        local=view_augment(**DINO_VIEWS["local"]),
        # ExCB's released code inverts the blur probabilities (docs/methods.md §3).
        released_excb_blur=False,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ))


def fill_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Adds to ``config`` (in place, and returns it) every schema field it lacks, with its
    default: a config saved before a field existed reads that field as the schema default (as
    ``jaxssl.train.resume_config.diff_configs`` compares it). Fields it has are left alone.

    >>> old = ml_collections.ConfigDict(dict(data=dict(dataset="mnist")))
    >>> c = fill_defaults(old)
    >>> c.data.dataset, c.data.interpolation, c.train.batch_size
    ('mnist', 'bicubic', 128)
    """

    def fill(node: ml_collections.ConfigDict, schema: ml_collections.ConfigDict) -> None:
        for name, value in schema.items():
            if name not in node:
                node[name] = value
            elif isinstance(value, ml_collections.ConfigDict) and isinstance(
                    node[name], ml_collections.ConfigDict):
                fill(node[name], value)

    fill(config, base_config())
    return config
