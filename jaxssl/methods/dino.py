"""DINO (Caron et al. 2021), with the optional iBOT patch loss (Zhou et al. 2022) and KoLeo-proto.

Method ``dino``: CLS-token self-distillation over multi-crop views. Method ``ibot`` adds the masked
patch loss on ViTs: the student sees its global views with block-masked patches, the teacher the
unmasked views, and one shared head maps CLS and patch tokens onto the same prototypes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses.dino import dino_loss, update_center
from jaxssl.losses.ibot import ibot_patch_loss, update_patch_center
from jaxssl.methods import common
from jaxssl.methods.base import (
    Method,
    Targets,
    apply_with_stats,
    flatten_views,
    per_image,
    to_views_first,
    views_first,
)


class DINO(Method):
    """DINO / iBOT, optionally with the KoLeo-proto regulariser (``loss.koleo_weight``)."""

    name = "dino"

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        from jaxssl.models import DINOHead

        h = config.head
        self.ibot = config.method == "ibot"
        self.model = common.BackboneHead(
            backbone=common.build_backbone(config),
            head=DINOHead(
                num_prototypes=h.num_prototypes, hidden_dim=h.hidden_dim,
                bottleneck_dim=h.bottleneck_dim, num_layers=h.num_layers, use_bn=h.use_bn,
                norm_last_layer=h.norm_last_layer, dtype=common.compute_dtype(config),
            ),
        )
        if self.ibot and not common.is_vit(self.model.backbone):
            raise ValueError("config.method='ibot' needs a ViT backbone (patch tokens); got "
                             f"config.model.backbone={config.model.backbone!r}.")

    def initial_state(self):
        k = self.config.head.num_prototypes
        state = {"center": jnp.zeros((k,), jnp.float32)}
        if self.ibot:
            state["patch_center"] = jnp.zeros((k,), jnp.float32)
        return state

    def teacher(self, teacher_params, teacher_batch_stats, views, draws):
        glob = views["global"]
        b = glob.shape[0]
        xg = flatten_views(glob)
        # The teacher: batch statistics as the student, but no stochastic depth (DINO).
        if self.ibot:  # the teacher sees the unmasked global views
            (t_cls, t_patch), tbs = apply_with_stats(
                self.model, teacher_params, teacher_batch_stats, xg, train=True,
                deterministic=True, patches=True)
            return {"cls": per_image(t_cls, b), "patch": per_image(t_patch, b)}, tbs
        t_cls, tbs = apply_with_stats(self.model, teacher_params, teacher_batch_stats, xg,
                                      train=True, deterministic=True)
        return {"cls": per_image(t_cls, b)}, tbs

    def targets(self, params, teacher_outputs, method_state, hyper, draws):
        # The teacher logits are the targets (centred and sharpened per sample in the loss);
        # the centres' batch means (eq. (4)) are over the whole batch, applied once per step.
        teacher = to_views_first(teacher_outputs["cls"])
        stats = {"center": update_center(jnp.zeros_like(method_state["center"]), teacher,
                                         momentum=0.0)}
        metrics = {"teacher_confidence": common.teacher_confidence(
            teacher - method_state["center"], hyper["teacher_temp"])}
        if self.ibot:
            stats["patch_center"] = update_patch_center(
                jnp.zeros_like(method_state["patch_center"]),
                to_views_first(teacher_outputs["patch"]), momentum=0.0)
        return Targets(teacher_outputs, stats, metrics)

    def loss(self, params, inputs):
        cfg = self.config
        views, state = inputs.views, inputs.method_state
        b = views["global"].shape[0]
        xg = flatten_views(views["global"])
        k_g, k_l = jax.random.split(inputs.key)
        if self.ibot:
            mask = flatten_views(views["mask"])
            (s_cls, s_patch), bs = apply_with_stats(
                self.model, params, inputs.batch_stats, xg, train=True, deterministic=False,
                rng=k_g, patches=True, mask=mask)
        else:
            s_cls, bs = apply_with_stats(self.model, params, inputs.batch_stats, xg, train=True,
                                         deterministic=False, rng=k_g)
        student = [views_first(s_cls, b)]
        if "local" in views:
            s_loc, bs = apply_with_stats(
                self.model, params, bs, flatten_views(views["local"]), train=True,
                deterministic=False, rng=k_l)
            student.append(views_first(s_loc, b))
        student = jnp.concatenate(student, axis=0)
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
                views_first(s_patch, b), to_views_first(inputs.targets["patch"]),
                views_first(mask, b), state["patch_center"],
                student_temp=cfg.loss.student_temp, teacher_temp=temp)
            total = total + cfg.loss.patch_loss_weight * patch
            metrics["patch_loss"] = patch
        return total, {"metrics": metrics, "batch_stats": bs}

    def update_state(self, method_state, stats, hyper):
        m = self.config.loss.center_momentum
        new = dict(method_state)
        for name in stats:  # c <- m c + (1 - m) mean(teacher logits), after the loss.
            new[name] = m * method_state[name] + (1.0 - m) * stats[name]
        return new
