"""MSN (Assran et al. 2022) and PMSN (MSN with a power-law or any prior), METHODS.md section 5.

Views: the teacher encodes global view 0 (the target). The student's anchors are global view 1 with
a fraction of its patch tokens dropped (one random index set per batch, CLS kept) plus every local
(focal) view. The prototype matrix is a free parameter of the student; targets use it too, under a
stop-gradient, as in the MSN reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.losses.msn import msn_loss
from jaxssl.methods import common
from jaxssl.methods.base import (
    Method,
    apply_with_stats,
    flatten_views,
    koleo_term,
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

    def loss(self, params, batch_stats, teacher_params, teacher_batch_stats, method_state,
             views, hyper, key):
        from jaxssl.data.masks import msn_keep_indices

        cfg = self.config.loss
        glob = views["global"]
        b = glob.shape[0]
        k_drop, k_a, k_l = jax.random.split(key, 3)
        kwargs = {}
        if self.vit and cfg.patch_drop > 0:
            side = glob.shape[2] // self.model.backbone.patch_size
            kwargs["keep_indices"] = msn_keep_indices(k_drop, side * side, cfg.patch_drop)
        z_anchor, bs = apply_with_stats(self.model, params, batch_stats, glob[:, 1], train=True,
                                        deterministic=False, rng=k_a, **kwargs)
        anchors = [z_anchor[None]]
        if "local" in views:
            z_loc, bs = apply_with_stats(self.model, params, bs, flatten_views(views["local"]),
                                         train=True, deterministic=False, rng=k_l)
            anchors.append(views_first(z_loc, b))
        z_target, tbs = apply_with_stats(self.model, teacher_params, teacher_batch_stats,
                                         glob[:, 0], train=True, deterministic=True)
        loss, aux = msn_loss(
            jnp.concatenate(anchors, axis=0), jax.lax.stop_gradient(z_target),
            self.prototypes(params), temperature=cfg.student_temp,
            sharpen_temperature=cfg.sharpen_temperature, sinkhorn_iters=cfg.sinkhorn_iters,
            prior=self.prior, prior_direction=cfg.prior_direction,
            regularization_weight=cfg.regularization_weight,
            sort_mean_probs=cfg.sort_mean_probs)
        koleo, weight = koleo_term(self, params, self.config)
        metrics = {"msn_loss": loss, "koleo_proto": koleo, **aux}
        return loss + weight * koleo, {"metrics": metrics, "stats": {}, "batch_stats": bs,
                                       "teacher_batch_stats": tbs}

    def assign(self, params, batch_stats, images):
        # The head returns projections; assignments are the nearest prototype by cosine.
        z = self.model.apply(variables(params, batch_stats), images, train=False,
                             deterministic=True).astype(jnp.float32)
        w = self.prototypes(params).astype(jnp.float32)
        return jnp.argmax(z @ w.T / (jnp.linalg.norm(w, axis=-1) + 1e-12), axis=-1)
