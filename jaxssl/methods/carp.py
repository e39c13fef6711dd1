"""CARP: consistent assignment over random partitions of the prototypes (METHODS.md section 4).

Each step draws one permutation of the K prototypes from the replicated step key, so student,
teacher and every device use the same partition. The head has no temperature and no L2
normalisation: the norm of the projection acts as the temperature.
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
    koleo_term,
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

    def loss(self, params, batch_stats, teacher_params, teacher_batch_stats, method_state,
             views, hyper, key):
        cfg = self.config
        b = views["global"].shape[0]
        k_part, k_g, k_l = jax.random.split(key, 3)
        xg = flatten_views(views["global"])
        s_g, bs = apply_with_stats(self.model, params, batch_stats, xg, train=True,
                                   deterministic=False, rng=k_g)
        student = [views_first(s_g, b)]
        if "local" in views:
            s_l, bs = apply_with_stats(
                self.model, params, bs, flatten_views(views["local"]), train=True,
                deterministic=False, rng=k_l)
            student.append(views_first(s_l, b))
        t_g, tbs = apply_with_stats(self.model, teacher_params, teacher_batch_stats, xg,
                                    train=True, deterministic=True)
        partition = random_partition(k_part, cfg.head.num_prototypes, cfg.loss.block_size)
        loss, aux = carp_loss(jnp.concatenate(student, axis=0),
                              jax.lax.stop_gradient(views_first(t_g, b)), partition,
                              entropy_weight=hyper["entropy_weight"])
        koleo, weight = koleo_term(self, params, cfg)
        metrics = {"carp_loss": loss, "koleo_proto": koleo, **aux}
        return loss + weight * koleo, {"metrics": metrics, "stats": {}, "batch_stats": bs,
                                       "teacher_batch_stats": tbs}
