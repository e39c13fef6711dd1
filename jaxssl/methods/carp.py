"""CARP: consistent assignment over random partitions of the prototypes (docs/methods.md).

Each optimiser step draws one permutation of the K prototypes from the replicated step key, so
student, teacher, every micro-batch and every device use the same partition. The head has no
temperature and no L2 normalisation: the norm of the projection acts as the temperature.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses.carp import carp_loss, random_partition
from jaxssl.methods import common
from jaxssl.methods.base import (
    Method,
    apply_with_stats,
    flatten_views,
    per_image,
    to_views_first,
    views_first,
)


class CARP(Method):
    """CARP with a (possibly decaying) entropy weight from the schedules."""

    name = "carp"

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        from jaxssl.models import CARPHead

        h = config.head
        self.model = common.BackboneHead(
            backbone=common.build_backbone(config),
            head=CARPHead(num_prototypes=h.num_prototypes, hidden_dim=h.hidden_dim,
                          bottleneck_dim=h.bottleneck_dim, dtype=common.compute_dtype(config)),
        )

    def draw(self, key, views):
        # One partition per optimiser step, shared by every micro-batch (and every device).
        cfg = self.config
        return {"partition": random_partition(key, cfg.head.num_prototypes, cfg.loss.block_size)}

    def teacher(self, teacher_params, teacher_batch_stats, views, draws):
        b = views["global"].shape[0]
        t_g, tbs = apply_with_stats(self.model, teacher_params, teacher_batch_stats,
                                    flatten_views(views["global"]), train=True,
                                    deterministic=True)
        return per_image(t_g, b), tbs

    def loss(self, params, inputs):
        views = inputs.views
        b = views["global"].shape[0]
        k_g, k_l = jax.random.split(inputs.key)
        s_g, bs = apply_with_stats(self.model, params, inputs.batch_stats,
                                   flatten_views(views["global"]), train=True,
                                   deterministic=False, rng=k_g)
        student = [views_first(s_g, b)]
        if "local" in views:
            s_l, bs = apply_with_stats(
                self.model, params, bs, flatten_views(views["local"]), train=True,
                deterministic=False, rng=k_l)
            student.append(views_first(s_l, b))
        # The uniformity term is a function of the batch-mean block distribution: under
        # accumulation it is evaluated at the whole batch's mean (exact linearisation).
        loss, aux = carp_loss(jnp.concatenate(student, axis=0), to_views_first(inputs.targets),
                              inputs.draws["partition"],
                              entropy_weight=inputs.hyper["entropy_weight"],
                              mean_block_probs=inputs.full_mean("mean_block_probs"))
        means = {"mean_block_probs": aux.pop("mean_block_probs")}
        return loss, {"metrics": {"carp_loss": loss, **aux}, "batch_stats": bs,
                      "batch_means": means}
