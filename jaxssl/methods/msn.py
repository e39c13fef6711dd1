"""MSN (Assran et al. 2022) and PMSN (MSN with a power-law or any prior), docs/methods.md.

Views: the teacher encodes global view 0 (the target). The student's anchors are global view 1 with
a fraction of its patch tokens dropped (one random index set per optimiser step, CLS kept) plus
every local (focal) view. The prototype matrix is a free parameter of the student; targets use it
too, under a stop-gradient, as in the MSN reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.data.masks import msn_keep_indices
from jaxssl.losses.msn import msn_loss, msn_targets
from jaxssl.methods import common
from jaxssl.methods.base import (
    LossOutput,
    Method,
    PaperScale,
    Targets,
    apply_with_stats,
    config_error,
    flatten_views,
    variables,
    views_first,
)
from jaxssl.methods.prior import PRIOR_NAMES, is_prior_file, load_prior_file, make_prior
from jaxssl.models import MSNHead
from jaxssl.ops.normalize import l2_normalize

DIRECTIONS = ("mean_to_prior", "prior_to_mean")
VIEWS = ("global1", "global2", "local")


def _msn_view(view: ml_collections.ConfigDict, blur_prob: float) -> None:
    """MSN's photometric augmentation of one view, in place: half-strength colour jitter
    (brightness/contrast 0.2, saturation 0.1, hue 0.05), jitter 0.8, grayscale 0.2, no
    solarisation, blur sigma in [0.1, 2]."""
    view.update(jitter_prob=0.8, brightness=0.2, contrast=0.2, saturation=0.1, hue=0.05,
                grayscale_prob=0.2, blur_prob=blur_prob, blur_sigma=(0.1, 2.0),
                solarize_prob=0.0)


class MSN(Method):
    """MSN / PMSN; the prior comes from the config (``loss.prior``: a name or a ``.npy`` file,
    :mod:`jaxssl.methods.prior`)."""

    name = "msn"
    # MSN's released code: torch.nn.utils.clip_grad_norm_(encoder.parameters(), 3.0), a global
    # norm (PMSN reuses MSN's training code); it leaves the prototypes out of that norm, jaxssl's
    # global norm includes them.
    paper_clip_mode = "global"

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        self.model = common.backbone_head(config, MSNHead, out_dim=config.head.bottleneck_dim)
        self.prior = make_prior(config)
        self.vit = common.is_vit(self.model.backbone)

    @classmethod
    def validate(cls, config):
        c, k = config, config.head.num_prototypes
        if c.data.global_crops.num < 2:
            raise config_error("data.global_crops.num", "MSN uses global view 0 as target and "
                               "view 1 as the masked anchor: needs 2, got "
                               f"{c.data.global_crops.num}.")
        if c.loss.patch_drop > 0 and not common.config_is_vit(c):
            raise config_error("loss.patch_drop", "patch dropping needs a ViT, got "
                               f"{c.model.backbone!r}.")
        if is_prior_file(c.loss.prior):
            load_prior_file(c.loss.prior, k)  # its errors name config.loss.prior and the file
        elif c.loss.prior not in PRIOR_NAMES:
            raise config_error("loss.prior", "must be 'uniform', 'power_law' or a path to a "
                               f".npy file of K = {k} weights, got {c.loss.prior!r}.")
        if c.loss.prior_direction not in DIRECTIONS:
            raise config_error("loss.prior_direction", f"must be one of {DIRECTIONS}, got "
                               f"{c.loss.prior_direction!r}.")

    @classmethod
    def recipe_defaults(cls, config):
        config.loss.student_temp = 0.1
        for view, blur in zip(VIEWS, (1.0, 0.1, 0.5)):
            _msn_view(config.augment[view], blur)

    @classmethod
    def cpu_recipe(cls, config):
        config.loss.sort_mean_probs = False

    @classmethod
    def paper_recipe(cls, config: ml_collections.ConfigDict, scale: PaperScale) -> None:
        c, bsz = config, scale.batch_size
        c.head.update(num_prototypes=1024, hidden_dim=2048, bottleneck_dim=256)
        c.data.global_crops.scale = (0.3, 1.0)
        c.data.local_crops.update(num=10, size=96, scale=(0.05, 0.3))
        # MSN's released recipe: absolute lr 1e-3 (not scaled with the batch), warm-up from
        # 2e-4 over 15 epochs; lr here is per 256 images, so both are rescaled.
        c.optim.update(lr=1e-3 * 256 / bsz, warmup_start_lr=2e-4 * 256 / bsz,
                       warmup_steps=15 * scale.steps_per_epoch)
        c.loss.patch_drop = 0.15
        for view in VIEWS:
            c.augment[view].solarize_prob = 0.0

    def draw(self, key, views):
        # One patch-drop index set per optimiser step, shared by every micro-batch.
        drop = self.config.loss.patch_drop
        if not (self.vit and drop > 0):
            return {}
        side = views["global"].shape[2] // self.model.backbone.patch_size
        return {"keep_indices": msn_keep_indices(key, side * side, drop)}

    def teacher(self, teacher_params, teacher_batch_stats, views, draws):
        # The target view is global view 0, unmasked.
        return apply_with_stats(self.model, teacher_params, teacher_batch_stats,
                                views["global"][:, 0], train=True, deterministic=True)

    def targets(self, params, teacher_outputs, method_state, hyper, draws):
        # Sharpened targets, Sinkhorn-balanced over the whole batch, with the student's
        # prototypes (stop-gradient), as in the MSN reference.
        cfg = self.config.loss
        q = msn_targets(teacher_outputs, self.prototypes(params), temperature=cfg.student_temp,
                        sharpen_temperature=cfg.sharpen_temperature,
                        sinkhorn_iters=cfg.sinkhorn_iters)
        return Targets(q, {}, {})

    def loss(self, params, inputs):
        cfg = self.config.loss
        views = inputs.views
        glob = views["global"]
        b = glob.shape[0]
        k_a, k_l = jax.random.split(inputs.key)
        drop = {k: v for k, v in inputs.draws.items() if k == "keep_indices"}
        z_anchor, bs = apply_with_stats(self.model, params, inputs.batch_stats, glob[:, 1],
                                        train=True, deterministic=False, rng=k_a, **drop)
        anchors = [z_anchor[None]]
        if "local" in views:
            z_loc, bs = apply_with_stats(self.model, params, bs, flatten_views(views["local"]),
                                         train=True, deterministic=False, rng=k_l)
            anchors.append(views_first(z_loc, b))
        # The prior-matching term is a function of the batch-mean prediction p_bar: under
        # accumulation it is evaluated at the whole batch's p_bar (exact linearisation).
        loss, aux = msn_loss(
            jnp.concatenate(anchors, axis=0), None, self.prototypes(params),
            temperature=cfg.student_temp, sharpen_temperature=cfg.sharpen_temperature,
            sinkhorn_iters=cfg.sinkhorn_iters, prior=self.prior,
            prior_direction=cfg.prior_direction, regularization_weight=cfg.regularization_weight,
            sort_mean_probs=cfg.sort_mean_probs, target_probs=inputs.targets,
            mean_probs=inputs.full_mean("mean_probs"))
        means = {"mean_probs": aux.pop("mean_probs")}
        return LossOutput(loss, {"msn_loss": loss, **aux}, bs, means)

    def assign(self, params, batch_stats, images):
        # The head returns projections; assignments are the nearest prototype by cosine.
        z = self.model.apply(variables(params, batch_stats), images, train=False,
                             deterministic=True).astype(jnp.float32)
        w = self.prototypes(params).astype(jnp.float32)
        return jnp.argmax(z @ l2_normalize(w).T, axis=-1)
