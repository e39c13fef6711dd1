"""DINO (Caron et al. 2021), with the optional iBOT patch loss (Zhou et al. 2022) and KoLeo-proto.

Method ``dino``: CLS-token self-distillation over multi-crop views. Method ``ibot`` adds the masked
patch loss on ViTs: the student sees its global views with block-masked patches, the teacher the
unmasked views, and one shared head maps CLS and patch tokens onto the same prototypes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.data.masks import ibot_masks, ibot_max_masked
from jaxssl.losses.dino import dino_loss
from jaxssl.losses.ibot import ibot_patch_loss
from jaxssl.methods import common
from jaxssl.methods.base import (
    LossOutput,
    Method,
    PaperScale,
    Targets,
    config_error,
    flatten_views,
    student_views,
    teacher_views,
    to_views_first,
    views_first,
)
from jaxssl.models import DINOHead
from jaxssl.ops.collectives import global_row_mean
from jaxssl.ops.ema import ema


class DINO(Method):
    """DINO / iBOT, optionally with the KoLeo-proto regulariser (``loss.koleo_weight``)."""

    name = "dino"
    # DINO's and iBOT's released code: utils.clip_gradients(student, clip_grad) rescales every
    # parameter's gradient to norm <= clip_grad on its own.
    paper_clip_mode = "per_parameter"

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        h = config.head
        self.ibot = config.method == "ibot"
        self.model = common.backbone_head(
            config, DINOHead, bottleneck_dim=h.bottleneck_dim, num_layers=h.num_layers,
            use_bn=h.use_bn, norm_last_layer=h.norm_last_layer)
        if self.ibot and not common.is_vit(self.model.backbone):
            raise ValueError("config.method='ibot' needs a ViT backbone (patch tokens); got "
                             f"config.model.backbone={config.model.backbone!r}.")
        # iBOT's loss reads the student's patch logits at the masked patches only, at most
        # ibot_max_masked = int(mask_ratio[1] * N) per crop. The student runs its head on that
        # many tokens per crop (masked first), not on all N: the same loss and gradients for a
        # smaller head cost (on the CPU recipe's ViT the head costs ~60 % of the backbone per
        # token). With a BatchNorm head the subset would change the batch statistics, so that
        # head sees every token. None: every token.
        self.student_patch_tokens = None
        if self.ibot:
            side = config.data.global_crops.size // self.model.backbone.patch_size
            self.mask_grid = (side, side)  # the patch grid of a global crop
            bound = ibot_max_masked(side * side, tuple(config.loss.mask_ratio))
            if bound < side * side and not h.use_bn:
                self.student_patch_tokens = bound

    @classmethod
    def validate(cls, config):
        super().validate(config)
        if config.method == "ibot" and not common.config_is_vit(config):
            raise config_error("model.backbone", "iBOT's patch loss needs a ViT, got "
                               f"{config.model.backbone!r}.")

    @classmethod
    def recipe_defaults(cls, config):
        config.loss.warmup_teacher_temp, config.loss.teacher_temp = 0.04, 0.07

    @classmethod
    def cpu_recipe(cls, config):
        # The teacher-temperature warm-up 0.04 -> 0.07 ends in uniform collapse here: with 0.07
        # reached after 200 steps, DINO's loss sat at log K and teacher confidence at ~2x uniform
        # for the rest of a 9-minute run (measured 2026-12-01). 0.04 throughout is the DINO
        # paper's most stable setting.
        config.loss.teacher_temp = config.loss.warmup_teacher_temp = 0.04

    @classmethod
    def paper_recipe(cls, config: ml_collections.ConfigDict, scale: PaperScale) -> None:
        c, epoch = config, scale.steps_per_epoch
        c.optim.freeze_prototypes_steps = epoch
        c.loss.warmup_teacher_temp_steps = 30 * epoch
        if not scale.vit:  # DINO ResNet-50 reference: SGD, constant wd 1e-4, smaller crops.
            # Its released command leaves clip_grad at main_dino.py's default, 3.0.
            c.optim.update(name="sgd", lr=0.03, weight_decay=1e-4, weight_decay_end=1e-4,
                           grad_clip=3.0)
            c.data.global_crops.scale = (0.14, 1.0)
            c.data.local_crops.scale = (0.05, 0.14)
        if c.method == "ibot":
            c.head.num_prototypes = 8192
            c.data.local_crops.update(num=10, size=96, scale=(0.05, 0.25))
            c.loss.mask_ratio, c.loss.mask_probability = (0.1, 0.5), 0.5

    def prepare_batch(self, batch, step):
        # iBOT's block masks of this process's images, drawn on the host from (seed, process,
        # step), so a resumed run draws the same masks.
        if not self.ibot:
            return batch
        cfg = self.config
        seed = cfg.seed * 1_000_003 + jax.process_index()
        local_batch = cfg.train.batch_size // jax.process_count()
        mask = ibot_masks(seed, step, local_batch, cfg.data.global_crops.num, self.mask_grid,
                          ratio_range=tuple(cfg.loss.mask_ratio),
                          mask_probability=cfg.loss.mask_probability)
        most = int(mask.sum(axis=-1).max(initial=0))
        if self.student_patch_tokens is not None and most > self.student_patch_tokens:
            raise ValueError(  # a changed mask generator must not silently drop masked patches
                f"iBOT masks of step {step}: a crop has {most} masked patches, more than the "
                f"{self.student_patch_tokens} = int(loss.mask_ratio[1] * patches) the student's "
                "patch head is computed for.")
        return {**batch, "mask": mask}

    def initial_state(self):
        k = self.config.head.num_prototypes
        state = {"center": jnp.zeros((k,), jnp.float32)}
        if self.ibot:
            state["patch_center"] = jnp.zeros((k,), jnp.float32)
        return state

    def teacher(self, teacher_params, teacher_batch_stats, views, draws):
        if self.ibot:  # the teacher sees the unmasked global views
            (t_cls, t_patch), tbs = teacher_views(self.model, teacher_params,
                                                  teacher_batch_stats, views, patches=True)
            return {"cls": t_cls, "patch": t_patch}, tbs
        t_cls, tbs = teacher_views(self.model, teacher_params, teacher_batch_stats, views)
        return {"cls": t_cls}, tbs

    def targets(self, params, teacher_outputs, method_state, hyper, draws):
        # The teacher logits are the targets (centred and sharpened per sample in the loss);
        # the centres' batch means (eq. (4)) are over the whole batch, applied once per step.
        teacher = to_views_first(teacher_outputs["cls"])
        stats = {"center": global_row_mean(jax.lax.stop_gradient(teacher), None)}
        metrics = {"teacher_confidence": common.teacher_confidence(
            teacher - method_state["center"], hyper["teacher_temp"])}
        if self.ibot:
            stats["patch_center"] = global_row_mean(
                jax.lax.stop_gradient(to_views_first(teacher_outputs["patch"])), None)
        return Targets(teacher_outputs, stats, metrics)

    def loss(self, params, inputs):
        cfg = self.config
        views, state = inputs.views, inputs.method_state
        # iBOT: the student's global views are masked and it returns CLS and patch logits.
        masked = {"patches": True, "mask": flatten_views(views["mask"])} if self.ibot else {}
        b = views["global"].shape[0]
        teacher_patch = to_views_first(inputs.targets["patch"]) if self.ibot else None
        patch_mask = views_first(masked["mask"], b) if self.ibot else None  # [G, B, N]
        if self.student_patch_tokens is not None:
            # The first M patches of each crop in the order (masked, then unmasked), positions
            # ascending: every masked patch, then unmasked ones as zero-weight padding.
            index = jnp.argsort(~masked["mask"], axis=-1, stable=True)
            masked["patch_index"] = index[:, :self.student_patch_tokens]  # [B * G, M]
            index = views_first(masked["patch_index"], b)  # [G, B, M]
            patch_mask = jnp.take_along_axis(patch_mask, index, axis=-1)
            teacher_patch = jnp.take_along_axis(teacher_patch, index[..., None], axis=2)
        outs, bs = student_views(self.model, params, inputs.batch_stats, views, inputs.key,
                                 **masked)
        s_cls, s_patch = outs[0] if self.ibot else (outs[0], None)
        student = jnp.concatenate([s_cls] + outs[1:], axis=0)
        teacher = to_views_first(inputs.targets["cls"])
        temp = inputs.hyper["teacher_temp"]

        # DINO eq. (1): H(softmax((t - c) / tau_t), softmax(s / tau_s)) over pairs s != t, a mean
        # over the samples.
        cls_loss = dino_loss(student, teacher, state["center"],
                             student_temp=cfg.loss.student_temp, teacher_temp=temp)
        total = cls_loss
        metrics = {"dino_loss": cls_loss}
        if self.ibot:
            # iBOT: per image the mean over its masked patches, then the mean over images: a
            # per-sample mean as well.
            patch = ibot_patch_loss(
                s_patch, teacher_patch, patch_mask, state["patch_center"],
                student_temp=cfg.loss.student_temp, teacher_temp=temp)
            total = total + cfg.loss.patch_loss_weight * patch
            metrics["patch_loss"] = patch
        return LossOutput(total, metrics, bs)

    def update_state(self, method_state, stats, hyper):
        m = self.config.loss.center_momentum
        new = dict(method_state)
        for name in stats:  # DINO eq. (4): c <- m c + (1 - m) mean(teacher logits), after the loss.
            new[name] = ema(method_state[name], stats[name], m)
        return new
