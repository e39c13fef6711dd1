"""jaxssl.ops: pure array functions shared by the layers, the trainer and the evaluation.

Everything here is a jit-able function of arrays and explicit ``jax.random`` keys, with no model,
config or data-pipeline dependency. ``kmeans`` / ``spherical_kmeans`` are Lloyd's algorithm with a
chunked assignment whose samples can be sharded over a device mesh (``jaxssl.ops.kmeans``);
``warmup_cosine`` / ``cosine_ramp`` / ``linear_warmup`` are the step-indexed schedules the trainer
and the crop-scale schedule evaluate on the host (``jaxssl.ops.schedules``).
"""

from jaxssl.ops.kmeans import (
    KMEANS_PP_MAX_K,
    count_empty,
    default_chunk_size,
    kmeans,
    resolve_init,
    spherical_kmeans,
)
from jaxssl.ops.schedules import cosine_ramp, linear_warmup, warmup_cosine

__all__ = [
    "KMEANS_PP_MAX_K",
    "cosine_ramp",
    "count_empty",
    "default_chunk_size",
    "kmeans",
    "linear_warmup",
    "resolve_init",
    "spherical_kmeans",
    "warmup_cosine",
]
