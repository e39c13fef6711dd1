"""ExCB: explicit online cluster balancing (Maniadis Metaxas et al., 2024).

Student: backbone -> projector -> centroid cosines (direct), and projector -> predictor -> centroid
cosines. Teacher (EMA): backbone -> projector -> centroid cosines on the global views. The centroid
matrix gets gradient only through the direct projections of the global views; the model's
``stop_gradient_centroids`` switch treats it as a constant for predictor outputs and local crops.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from jaxssl.losses.excb import balance_similarities, excb_loss
from jaxssl.methods import common
from jaxssl.methods.base import (
    LossOutput,
    Method,
    PaperScale,
    Targets,
    config_error,
    student_views,
    teacher_views,
    to_views_first,
    variables,
)
from jaxssl.methods.excb_init import kmeans_init_centroids
from jaxssl.models import CentroidLayer, ExCBPredictor, ExCBProjector
from jaxssl.ops.cluster_sizes import assignment_fractions, cluster_size_diagnostics
from jaxssl.ops.ema import ema
from jaxssl.ops.schedules import cosine_ramp


class ExCBModel(common.BackboneFeatures, nn.Module):
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

    def project(self, x, *, train: bool = False, deterministic: bool | None = None):
        return self.projector(self.backbone(x, train=train, deterministic=deterministic),
                              train=train)


class ExCB(Method):
    """ExCB with cluster sizes held in the method state (simplex, initialised to 1/K)."""

    name = "excb"
    prototype_module = "centroids"
    # ExCB's trainer calls DINO's utils.clip_gradients (per parameter); note its released configs
    # set clip_grad: 0, i.e. no clipping at all.
    paper_clip_mode = "per_parameter"

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        h, dt = config.head, common.compute_dtype(config)
        self.model = ExCBModel(
            backbone=common.build_backbone(config),
            projector=ExCBProjector(hidden_dim=h.hidden_dim, out_dim=h.bottleneck_dim,
                                    use_bn=h.use_bn, dtype=dt),
            predictor=ExCBPredictor(hidden_dim=h.hidden_dim, out_dim=h.bottleneck_dim, dtype=dt),
            centroids=CentroidLayer(num_prototypes=h.num_prototypes, dtype=dt),
        )

    @classmethod
    def validate(cls, config):
        super().validate(config)
        k, loss = config.head.num_prototypes, config.loss
        if loss.kmeans_init and loss.kmeans_samples < k:
            raise config_error("loss.kmeans_samples", f"{loss.kmeans_samples} is below "
                               f"config.head.num_prototypes={k}: the centroid k-means needs at "
                               "least one sample per cluster.")

    @classmethod
    def recipe_defaults(cls, config):
        config.loss.teacher_temp = config.loss.warmup_teacher_temp = 0.04

    @classmethod
    def cpu_recipe(cls, config):
        # 2 x 64 teacher assignments per step: with K = 512 each cluster gets 0.25 of one per
        # step, and the EMA sizes are so noisy that balancing rewrites ~98 % of the teacher's
        # labels (measured); K = 64 gives each cluster ~2 per step.
        config.head.num_prototypes = 64
        # A BatchNorm projector spreads the random-init projections, so the first balanced
        # targets depend on the image and not only on the cluster sizes.
        config.head.use_bn = True

    @classmethod
    def paper_recipe(cls, config: ml_collections.ConfigDict, scale: PaperScale) -> None:
        c, bsz = config, scale.batch_size
        c.data.local_crops.update(num=6, size=96, scale=(0.05, 0.14))
        c.data.global_crops.scale = (0.14, 1.0)
        # Global crops' minimum scale 0.26 -> 0.14 by cosine; locals (0.05, s_min).
        c.data.crop_scale_schedule.update(start_min=0.26, steps=c.train.num_steps)
        c.head.use_bn = not scale.vit
        # Teacher EMA 0.996 -> 1 by cosine for both backbones (the base setting).
        # Released recipe: k-means on 500,000 teacher projections of random images, 50 iterations.
        c.loss.kmeans_samples, c.loss.kmeans_iters = 500_000, 50
        if scale.vit:
            # The released ExCB configs set clip_grad: 0 (no clipping) for both backbones.
            c.optim.update(lr=2e-3 * 256 / bsz, grad_clip=0.0)
        else:
            c.optim.update(name="sgd", lr=0.6 * 256 / bsz, weight_decay=1e-4,
                           weight_decay_end=1e-4, grad_clip=0.0)
            # ResNet-50 only: the centroids' own weight decay, cosine 1e-3 -> 1e-4 (10x -> 1x).
            c.loss.centroid_wd_scale = 10.0

    @classmethod
    def extra_hyperparams(cls, config, step, total_steps, hyper):
        # The centroid decay: loss.centroid_wd_scale x the base at the start, cosine to 1x (the
        # paper's ResNet-50 recipe: 10x, 1e-3 -> 1e-4; 1 = none); the base decay already reaches
        # the centroids, so only the excess is added.
        scale = cosine_ramp(step, total_steps, config.loss.centroid_wd_scale, 1.0)
        return {"prototype_decay": hyper["weight_decay"] * (scale - 1.0)}

    def post_init(self, state, key, mesh):
        # The released recipe initialises the centroids by spherical k-means on teacher
        # projections of a random training sample (jaxssl.methods.excb_init).
        if not self.config.loss.kmeans_init:
            return state
        return kmeans_init_centroids(self, state, self.config, key, mesh=mesh)

    def initial_state(self):
        k = self.config.head.num_prototypes  # cluster sizes start uniform, in the simplex
        return {"cluster_sizes": jnp.full((k,), 1.0 / k, jnp.float32)}

    def teacher(self, teacher_params, teacher_batch_stats, views, draws):
        (t_sims, _), tbs = teacher_views(self.model, teacher_params, teacher_batch_stats, views,
                                         with_predictor=False)
        return t_sims, tbs

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
        # Local crops: centroids are constants (centroid_grad=False), so the centroids learn only
        # through the global direct projections (paper Eq. 2, Algorithm 1).
        outs, bs = student_views(self.model, params, inputs.batch_stats, inputs.views, inputs.key,
                                 local_kwargs={"centroid_grad": False})
        directs, preds = [d for d, _ in outs], [p for _, p in outs]
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
        return LossOutput(loss, {"excb_loss": loss, **aux}, bs)

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
