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

from jaxssl.losses.excb import balance_similarities, excb_loss
from jaxssl.methods import common
from jaxssl.methods.base import (
    Method,
    Targets,
    apply_with_stats,
    flatten_views,
    per_image,
    to_views_first,
    variables,
    views_first,
)
from jaxssl.ops.cluster_sizes import assignment_fractions, cluster_size_diagnostics
from jaxssl.ops.ema import ema


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

    def teacher(self, teacher_params, teacher_batch_stats, views, draws):
        b = views["global"].shape[0]
        (t_sims, _), tbs = apply_with_stats(
            self.model, teacher_params, teacher_batch_stats, flatten_views(views["global"]),
            train=True, deterministic=True, with_predictor=False)
        return per_image(t_sims, b), tbs

    def targets(self, params, teacher_outputs, method_state, hyper, draws):
        # The teacher similarities are the targets (balanced per sample in the loss with the
        # sizes before the step). The assignment fractions f (Eq. 8) are over the whole batch,
        # folded into the EMA (Eq. 9) once per step in update_state.
        sizes = method_state["cluster_sizes"]
        balanced = balance_similarities(to_views_first(teacher_outputs), sizes,
                                        boost=self.config.loss.boost)
        stats = {"cluster_sizes": assignment_fractions(jnp.argmax(balanced, axis=-1),
                                                       sizes.shape[0])}
        # Size diagnostics of the EMA sizes the balancing uses.
        return Targets(teacher_outputs, stats, cluster_size_diagnostics(sizes))

    def loss(self, params, inputs):
        cfg = self.config.loss
        views = inputs.views
        b = views["global"].shape[0]
        k_g, k_l = jax.random.split(inputs.key)
        (direct, pred), bs = apply_with_stats(
            self.model, params, inputs.batch_stats, flatten_views(views["global"]), train=True,
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
        # loss.excb_pairing "paper" puts the local direct projections in the loss (Algorithm 1);
        # "released" uses only the global ones (the loss ignores the local rows).
        loss, aux = excb_loss(
            jnp.concatenate(directs, axis=0), jnp.concatenate(preds, axis=0),
            to_views_first(inputs.targets), inputs.method_state["cluster_sizes"],
            student_temp=cfg.student_temp, teacher_temp=inputs.hyper["teacher_temp"],
            boost=cfg.boost, pairing=cfg.excb_pairing)
        # The sizes and their diagnostics come from the whole batch (targets, update_state);
        # aux's describe this micro-batch alone (unused, so XLA drops them).
        for name in ("cluster_sizes", "min_relative_size", "max_relative_size",
                     "empty_fraction"):
            del aux[name]
        return loss, {"metrics": {"excb_loss": loss, **aux}, "batch_stats": bs}

    def update_state(self, method_state, stats, hyper):
        sizes = ema(method_state["cluster_sizes"], stats["cluster_sizes"],
                    self.config.loss.cluster_momentum)  # Eq. 9, once per optimiser step
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
