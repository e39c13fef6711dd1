"""jaxssl.ops: pure array functions shared by the layers, the trainer and the evaluation.

Everything here is a jit-able function of arrays and explicit ``jax.random`` keys, with no model,
config or data-pipeline dependency. ``kmeans`` / ``spherical_kmeans`` are Lloyd's algorithm with a
chunked assignment whose samples can be sharded over a device mesh (``jaxssl.ops.kmeans``).
"""

from jaxssl.ops.kmeans import (
    KMEANS_PP_MAX_K,
    count_empty,
    default_chunk_size,
    kmeans,
    resolve_init,
    spherical_kmeans,
)

__all__ = [
    "KMEANS_PP_MAX_K",
    "count_empty",
    "default_chunk_size",
    "kmeans",
    "resolve_init",
    "spherical_kmeans",
]
