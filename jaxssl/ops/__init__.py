"""jaxssl.ops: pure array functions shared by the layers, the trainer and the evaluation.

Everything here is a jit-able function of arrays and explicit ``jax.random`` keys, with no model,
config or data-pipeline dependency, and imports nothing else from jaxssl, so the losses may use it.
One home per piece:

- ``collectives``: ``global_sum``, ``global_count``, ``global_row_mean`` (batch statistics over
  the devices of a mapped axis);
- ``normalize``: ``l2_normalize`` (safe for zero vectors);
- ``ema``: ``ema``, the moving average of every running statistic (DINO/iBOT centres, ExCB
  cluster sizes), applied once per optimiser step;
- ``cluster_sizes``: ``assignment_fractions`` (ExCB Eq. 8), ``relative_sizes``,
  ``cluster_size_diagnostics``;
- ``confidence``: ``teacher_confidence``, the mean largest target probability;
- ``kmeans``: ``kmeans`` / ``spherical_kmeans``, Lloyd's algorithm with a chunked assignment
  whose samples can be sharded over a device mesh;
- ``schedules``: ``warmup_cosine`` / ``cosine_ramp`` / ``linear_warmup``, the step-indexed
  schedules the trainer and the crop-scale schedule evaluate on the host.
"""

from jaxssl.ops.cluster_sizes import (
    EMPTY_RELATIVE_SIZE,
    assignment_fractions,
    cluster_size_diagnostics,
    relative_sizes,
)
from jaxssl.ops.collectives import global_count, global_row_mean, global_sum
from jaxssl.ops.confidence import teacher_confidence
from jaxssl.ops.ema import ema
from jaxssl.ops.kmeans import (
    KMEANS_PP_MAX_K,
    count_empty,
    default_chunk_size,
    kmeans,
    resolve_init,
    spherical_kmeans,
)
from jaxssl.ops.normalize import l2_normalize
from jaxssl.ops.schedules import cosine_ramp, linear_warmup, warmup_cosine

__all__ = [
    "EMPTY_RELATIVE_SIZE",
    "KMEANS_PP_MAX_K",
    "assignment_fractions",
    "cluster_size_diagnostics",
    "cosine_ramp",
    "count_empty",
    "default_chunk_size",
    "ema",
    "global_count",
    "global_row_mean",
    "global_sum",
    "kmeans",
    "l2_normalize",
    "linear_warmup",
    "relative_sizes",
    "resolve_init",
    "spherical_kmeans",
    "teacher_confidence",
    "warmup_cosine",
]
