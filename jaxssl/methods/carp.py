"""CARP: consistent assignment over random partitions of the prototypes (docs/methods.md).

Each optimiser step draws one permutation of the K prototypes from the replicated step key, so
student, teacher, every micro-batch and every device use the same partition. The head has no
temperature and no L2 normalisation: the norm of the projection acts as the temperature.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from jaxssl.losses.carp import carp_loss, random_partition
from jaxssl.methods import common
from jaxssl.methods.base import (
    LossOutput,
    Method,
    PaperScale,
    config_error,
    student_views,
    teacher_views,
    to_views_first,
)
from jaxssl.models import CARPHead


class CARP(Method):
    """CARP with a (possibly decaying) entropy weight from the schedules."""

    name = "carp"
    # The released main_carp.py clips nothing (grad_clip = 0 in its recipe): the mode has no
    # effect and stays the default, "global".

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        self.model = common.backbone_head(config, CARPHead,
                                          bottleneck_dim=config.head.bottleneck_dim)

    @classmethod
    def validate(cls, config):
        k, block = config.head.num_prototypes, config.loss.block_size
        if block <= 0 or k % block:
            raise config_error("loss.block_size", f"{block} does not divide "
                               f"config.head.num_prototypes={k}.")
        super().validate(config)

    @classmethod
    def recipe_defaults(cls, config):
        config.optim.name = "lars"
        config.optim.grad_clip = 0.0

    @classmethod
    def cpu_recipe(cls, config):
        # The paper's LARS (lr 0.3 per 256, wd 1e-6, no clipping) is a ResNet recipe; on this ViT
        # it collapsed the backbone in 9 minutes (k-NN 41.2 %, below the 68.0 % of random init;
        # measured 2026-12-01), so the CPU recipe uses AdamW like the other ViT recipes.
        config.optim.update(name="adamw", lr=1e-3, grad_clip=3.0)

    @classmethod
    def paper_recipe(cls, config: ml_collections.ConfigDict, scale: PaperScale) -> None:
        c = config
        c.head.update(hidden_dim=2048, bottleneck_dim=256)
        c.loss.block_size = 512
        c.data.global_crops.scale = (0.2, 1.0)
        c.data.local_crops.update(num=6, size=96, scale=(0.05, 0.2))
        c.optim.update(name="lars", lr=0.45, weight_decay=1e-6, weight_decay_end=1e-6,
                       grad_clip=0.0)
        c.ema.momentum = 0.99

    def draw(self, key, views):
        # One partition per optimiser step, shared by every micro-batch (and every device).
        cfg = self.config
        return {"partition": random_partition(key, cfg.head.num_prototypes, cfg.loss.block_size)}

    def teacher(self, teacher_params, teacher_batch_stats, views, draws):
        return teacher_views(self.model, teacher_params, teacher_batch_stats, views)

    def loss(self, params, inputs):
        student, bs = student_views(self.model, params, inputs.batch_stats, inputs.views,
                                    inputs.key)
        # The uniformity term is a function of the batch-mean block distribution: under
        # accumulation it is evaluated at the whole batch's mean (exact linearisation).
        loss, aux = carp_loss(jnp.concatenate(student, axis=0), to_views_first(inputs.targets),
                              inputs.draws["partition"],
                              entropy_weight=inputs.hyper["entropy_weight"],
                              mean_block_probs=inputs.full_mean("mean_block_probs"))
        means = {"mean_block_probs": aux.pop("mean_block_probs")}
        return LossOutput(loss, {"carp_loss": loss, **aux}, bs, means)
