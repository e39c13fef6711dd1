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

from jaxssl.losses.msn import msn_loss, msn_targets
from jaxssl.methods import common
from jaxssl.methods.base import (
    Method,
    Targets,
    apply_with_stats,
    flatten_views,
    variables,
    views_first,
)
from jaxssl.methods.prior import make_prior


class MSN(Method):
    """MSN / PMSN; the prior comes from the config (``loss.prior``: a name or a ``.npy`` file,
    :mod:`jaxssl.methods.prior`)."""

    name = "msn"

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        from jaxssl.models import MSNHead

        h = config.head
        self.model = common.BackboneHead(
            backbone=common.build_backbone(config),
            head=MSNHead(num_prototypes=h.num_prototypes, hidden_dim=h.hidden_dim,
                         out_dim=h.bottleneck_dim, dtype=common.compute_dtype(config)),
        )
        self.prior = make_prior(config)
        self.vit = common.is_vit(self.model.backbone)

    def draw(self, key, views):
        # One patch-drop index set per optimiser step, shared by every micro-batch.
        from jaxssl.data.masks import msn_keep_indices

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
        return loss, {"metrics": {"msn_loss": loss, **aux}, "batch_stats": bs,
                      "batch_means": means}

    def assign(self, params, batch_stats, images):
        # The head returns projections; assignments are the nearest prototype by cosine.
        z = self.model.apply(variables(params, batch_stats), images, train=False,
                             deterministic=True).astype(jnp.float32)
        w = self.prototypes(params).astype(jnp.float32)
        return jnp.argmax(z @ w.T / (jnp.linalg.norm(w, axis=-1) + 1e-12), axis=-1)
