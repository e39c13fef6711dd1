"""The full configuration schema with defaults; every file in ``configs/`` starts from it.

One ``ConfigDict`` holds every field the trainer reads, so a misspelt ``--config.x=y`` override
fails loudly (ml_collections refuses unknown fields) and ``validate_config`` can check
everything before anything is compiled.
"""

from __future__ import annotations

import ml_collections


def view_augment(
    *, blur_prob: float, solarize_prob: float = 0.0, saturation: float = 0.2,
    jitter_prob: float = 0.8, grayscale_prob: float = 0.2, blur_sigma=(0.1, 2.0),
    strength: float = 1.0,
) -> ml_collections.ConfigDict:
    """Photometric augmentation of one view (METHODS.md section 0); ``strength`` scales the jitter.

    >>> view_augment(blur_prob=1.0).blur_prob
    1.0
    """
    return ml_collections.ConfigDict(dict(
        jitter_prob=jitter_prob, brightness=0.4 * strength, contrast=0.4 * strength,
        saturation=saturation * strength, hue=0.1 * strength, grayscale_prob=grayscale_prob,
        blur_prob=blur_prob, blur_sigma=tuple(blur_sigma), solarize_prob=solarize_prob,
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

    c.model = ml_collections.ConfigDict(dict(
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
    ))
    c.head = ml_collections.ConfigDict(dict(
        num_prototypes=1024,
        hidden_dim=2048,
        bottleneck_dim=256,
        num_layers=3,
        use_bn=False,
        norm_last_layer=True,
    ))
    # Loss hyper-parameters; methods read the fields that concern them.
    c.loss = ml_collections.ConfigDict(dict(
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
    c.data = ml_collections.ConfigDict(dict(
        dataset="fashion_mnist",
        data_dir=None,
        global_crops=ml_collections.ConfigDict(dict(num=2, size=28, scale=(0.4, 1.0))),
        local_crops=ml_collections.ConfigDict(dict(num=4, size=16, scale=(0.1, 0.4))),
        num_threads=2,
        prefetch=2,
        skip_corrupt=True,
        # ExCB: the global crops' minimum scale goes start_min -> global_crops.scale[0] by cosine
        # over `steps`, and locals sample (local_crops.scale[0], s_min). start_min 0 = off.
        crop_scale_schedule=ml_collections.ConfigDict(dict(start_min=0.0, steps=0)),
    ))
    c.augment = ml_collections.ConfigDict(dict(
        global1=view_augment(blur_prob=1.0),
        global2=view_augment(blur_prob=0.1, solarize_prob=0.2),
        local=view_augment(blur_prob=0.5),
        # ExCB's released code inverts the blur probabilities (METHODS.md section 3 decision).
        released_excb_blur=False,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    ))
    c.optim = ml_collections.ConfigDict(dict(
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
    c.ema = ml_collections.ConfigDict(dict(momentum=0.996, momentum_end=1.0))
    c.train = ml_collections.ConfigDict(dict(
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
    c.eval = ml_collections.ConfigDict(dict(
        final_knn=True,
        knn_k=20,
        knn_temperature=0.07,
        knn_train_size=0,  # 0 = whole train split
        batch_size=512,
        plots=True,
    ))
    return c
