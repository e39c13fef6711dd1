"""Loss and balancing functions of jaxssl: the public contract of docs/api.md.

Pure, jit-able functions; view axis first (``[V, B, K]``); float32 inside; teacher-side inputs
under ``stop_gradient``; every batch statistic takes ``axis_name`` for ``jax.shard_map``.

>>> import jax.numpy as jnp
>>> from jaxssl import losses
>>> s = jnp.zeros((4, 2, 8)); t = jnp.zeros((2, 2, 8))
>>> print(round(float(losses.dino_loss(s, t, jnp.zeros(8))), 4))  # uniform: log K
2.0794
"""

from jaxssl.losses.carp import carp_loss, random_partition
from jaxssl.losses.dino import dino_loss, update_center
from jaxssl.losses.excb import balance_similarities, excb_loss, update_cluster_sizes
from jaxssl.losses.ibot import ibot_patch_loss, update_patch_center
from jaxssl.losses.koleo import count_unique_prototypes, koleo_loss, koleo_proto_loss
from jaxssl.losses.msn import (
    msn_loss,
    msn_targets,
    power_law_prior,
    prior_matching_loss,
    sharpen,
    sinkhorn,
    uniform_prior,
)

__all__ = [
    "balance_similarities",
    "carp_loss",
    "count_unique_prototypes",
    "dino_loss",
    "excb_loss",
    "ibot_patch_loss",
    "koleo_loss",
    "koleo_proto_loss",
    "msn_loss",
    "msn_targets",
    "power_law_prior",
    "prior_matching_loss",
    "random_partition",
    "sharpen",
    "sinkhorn",
    "uniform_prior",
    "update_center",
    "update_cluster_sizes",
    "update_patch_center",
]
