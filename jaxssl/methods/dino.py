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
    apply_with_stats,
    flatten_views,
    koleo_term,
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

    def loss(self, params, batch_stats, teacher_params, teacher_batch_stats, method_state,
             views, hyper, key):
        cfg = self.config
        glob = views["global"]
        b, g = glob.shape[:2]
        xg = flatten_views(glob)
        k_g, k_l = jax.random.split(key)
        stats = {}
        if self.ibot:
            mask = flatten_views(views["mask"])
            (s_cls, s_patch), bs = apply_with_stats(
                self.model, params, batch_stats, xg, train=True, deterministic=False, rng=k_g,
                patches=True, mask=mask)
            # The teacher: batch statistics as the student, but no stochastic depth (DINO).
            (t_cls, t_patch), tbs = apply_with_stats(
                self.model, teacher_params, teacher_batch_stats, xg, train=True,
                deterministic=True, patches=True)
        else:
            s_cls, bs = apply_with_stats(self.model, params, batch_stats, xg, train=True,
                                         deterministic=False, rng=k_g)
            t_cls, tbs = apply_with_stats(
                self.model, teacher_params, teacher_batch_stats, xg, train=True,
                deterministic=True)
        student = [views_first(s_cls, b)]
        if "local" in views:
            s_loc, bs = apply_with_stats(
                self.model, params, bs, flatten_views(views["local"]), train=True,
                deterministic=False, rng=k_l)
            student.append(views_first(s_loc, b))
        student = jnp.concatenate(student, axis=0)
        teacher = jax.lax.stop_gradient(views_first(t_cls, b))
        temp = hyper["teacher_temp"]

        # DINO eq. (1): H(softmax((t - c) / tau_t), softmax(s / tau_s)) over pairs s != t.
        cls_loss = dino_loss(student, teacher, method_state["center"],
                             student_temp=cfg.loss.student_temp, teacher_temp=temp)
        total = cls_loss
        metrics = {"dino_loss": cls_loss,
                   "teacher_confidence": common.teacher_confidence(
                       teacher - method_state["center"], temp)}
        # Batch mean of the teacher logits; the EMA is applied once per optimiser step.
        stats["center"] = update_center(jnp.zeros_like(method_state["center"]), teacher,
                                        momentum=0.0)
        if self.ibot:
            s_p = views_first(s_patch, b)  # [G, B, N, K]
            t_p = jax.lax.stop_gradient(views_first(t_patch, b))
            patch = ibot_patch_loss(s_p, t_p, views_first(mask, b), method_state["patch_center"],
                                    student_temp=cfg.loss.student_temp, teacher_temp=temp)
            total = total + cfg.loss.patch_loss_weight * patch
            metrics["patch_loss"] = patch
            stats["patch_center"] = update_patch_center(
                jnp.zeros_like(method_state["patch_center"]), t_p, momentum=0.0)
        koleo, weight = koleo_term(self, params, cfg)
        total = total + weight * koleo
        metrics["koleo_proto"] = koleo
        del g
        return total, {"metrics": metrics, "stats": stats, "batch_stats": bs,
                       "teacher_batch_stats": tbs}

    def update_state(self, method_state, stats, hyper):
        m = self.config.loss.center_momentum
        new = dict(method_state)
        for name in stats:  # c <- m c + (1 - m) mean(teacher logits), after the loss.
            new[name] = m * method_state[name] + (1.0 - m) * stats[name]
        return new
