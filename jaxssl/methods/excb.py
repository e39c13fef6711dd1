"""ExCB: explicit online cluster balancing (Maniadis Metaxas et al., 2024).

Student: backbone -> projector -> centroid cosines (direct), and projector -> predictor -> centroid
cosines. Teacher (EMA): backbone -> projector -> centroid cosines on the global views. The centroid
matrix gets gradient only through the direct projections of the global views; the model's
``stop_gradient_centroids`` switch treats it as a constant for predictor outputs and local crops.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses.excb import excb_loss
from jaxssl.methods import common
from jaxssl.methods.base import (
    Method,
    apply_with_stats,
    flatten_views,
    koleo_term,
    variables,
    views_first,
)


class ExCBModel(nn.Module):
    """Backbone, projector h, predictor g and centroid layer q of ExCB."""

    backbone: nn.Module
    projector: nn.Module
    predictor: nn.Module
    centroids: nn.Module

    def __call__(self, x, *, train: bool = False, deterministic: bool | None = None,
                 centroid_grad: bool = True, with_predictor: bool = True):
        # train: BatchNorm batch statistics; deterministic: no stochastic depth (None: not train).
        h = self.projector(self.backbone(x, train=train, deterministic=deterministic),
                           train=train)
        direct = self.centroids(h, stop_gradient_centroids=not centroid_grad)
        # The predictor always sees the centroids as constants (paper: only global direct
        # projections train the centroids).
        pred = self.centroids(self.predictor(h, train=train), stop_gradient_centroids=True)
        return direct, pred if with_predictor else None

    def features(self, x, *, train: bool = False, deterministic: bool | None = None):
        return self.backbone(x, train=train, deterministic=deterministic)

    def project(self, x, *, train: bool = False, deterministic: bool | None = None):
        return self.projector(self.backbone(x, train=train, deterministic=deterministic),
                              train=train)


class ExCB(Method):
    """ExCB with cluster sizes held in the method state (simplex, initialised to 1/K)."""

    name = "excb"
    prototype_module = "centroids"

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        from jaxssl.models import CentroidLayer, ExCBPredictor, ExCBProjector

        h, dt = config.head, common.compute_dtype(config)
        self.model = ExCBModel(
            backbone=common.build_backbone(config),
            projector=ExCBProjector(hidden_dim=h.hidden_dim, out_dim=h.bottleneck_dim,
                                    use_bn=h.use_bn, dtype=dt),
            predictor=ExCBPredictor(hidden_dim=h.hidden_dim, out_dim=h.bottleneck_dim, dtype=dt),
            centroids=CentroidLayer(num_prototypes=h.num_prototypes, dtype=dt),
        )

    def initial_state(self):
        k = self.config.head.num_prototypes  # cluster sizes start uniform, in the simplex
        return {"cluster_sizes": jnp.full((k,), 1.0 / k, jnp.float32)}

    def loss(self, params, batch_stats, teacher_params, teacher_batch_stats, method_state,
             views, hyper, key):
        cfg = self.config.loss
        b = views["global"].shape[0]
        k_g, k_l = jax.random.split(key)
        (direct, pred), bs = apply_with_stats(
            self.model, params, batch_stats, flatten_views(views["global"]), train=True,
            deterministic=False, rng=k_g)
        directs, preds = [views_first(direct, b)], [views_first(pred, b)]
        if "local" in views:
            # Local crops: centroids are constants (centroid_grad=False), so the centroids learn
            # only through the global direct projections (paper Eq. 2, Algorithm 1).
            (direct_l, pred_l), bs = apply_with_stats(
                self.model, params, bs, flatten_views(views["local"]), train=True,
                deterministic=False, rng=k_l, centroid_grad=False)
            directs.append(views_first(direct_l, b))
            preds.append(views_first(pred_l, b))
        (t_sims, _), tbs = apply_with_stats(
            self.model, teacher_params, teacher_batch_stats, flatten_views(views["global"]),
            train=True, deterministic=True, with_predictor=False)
        # momentum=0 makes aux["cluster_sizes"] the batch's assignment fractions f; the EMA
        # c <- m c + (1 - m) f is applied once per optimiser step in update_state.
        # loss.excb_pairing "paper" puts the local direct projections in the loss (Algorithm 1);
        # "released" uses only the global ones (the loss ignores the local rows).
        loss, aux = excb_loss(
            jnp.concatenate(directs, axis=0), jnp.concatenate(preds, axis=0),
            jax.lax.stop_gradient(views_first(t_sims, b)), method_state["cluster_sizes"],
            student_temp=cfg.student_temp, teacher_temp=hyper["teacher_temp"], boost=cfg.boost,
            momentum=0.0, pairing=cfg.excb_pairing)
        stats = {"cluster_sizes": aux.pop("cluster_sizes")}
        # aux's size diagnostics describe the momentum-0 "sizes" (one batch's fractions); report
        # them for the EMA sizes the balancing actually used.
        sizes = method_state["cluster_sizes"]
        rel = self.config.head.num_prototypes * sizes / jnp.sum(sizes)
        aux["min_relative_size"], aux["max_relative_size"] = jnp.min(rel), jnp.max(rel)
        aux["empty_fraction"] = jnp.mean(rel < 0.01)
        koleo, weight = koleo_term(self, params, self.config)
        metrics = {"excb_loss": loss, "koleo_proto": koleo, **aux}
        return loss + weight * koleo, {"metrics": metrics, "stats": stats, "batch_stats": bs,
                                       "teacher_batch_stats": tbs}

    def update_state(self, method_state, stats, hyper):
        m = self.config.loss.cluster_momentum
        sizes = m * method_state["cluster_sizes"] + (1.0 - m) * stats["cluster_sizes"]
        return {**method_state, "cluster_sizes": sizes}

    def project(self, params, batch_stats, images, *, train: bool = False):
        """Projector outputs, used by the spherical k-means centroid initialisation.

        ``train=True`` normalises BatchNorm layers with the statistics of ``images`` (the
        running statistics are not updated), as the teacher does inside the train step. Always
        deterministic (no stochastic depth), like the teacher.
        """
        if not train:
            return self.model.apply(variables(params, batch_stats), images, train=False,
                                    deterministic=True, method="project")
        out, _ = self.model.apply(variables(params, batch_stats), images, train=True,
                                  deterministic=True, method="project", mutable=["batch_stats"])
        return out

    def assign(self, params, batch_stats, images):
        direct, _ = self.model.apply(variables(params, batch_stats), images, train=False,
                                     deterministic=True, with_predictor=False)
        return jnp.argmax(direct, axis=-1)
