"""k-means for the evaluation protocols: re-exports ``jaxssl.ops.kmeans``.

Clustering evaluation (k = number of classes, ``jaxssl.eval.clustering``) and the ExCB trainer's
centroid initialisation share one implementation, kept with the other pure array functions in
``jaxssl.ops``. See that module for the algorithm, the chunked assignment and sharding.

>>> from jaxssl.eval.kmeans import kmeans as eval_kmeans
>>> from jaxssl.ops.kmeans import kmeans as ops_kmeans
>>> eval_kmeans is ops_kmeans
True
"""

from jaxssl.ops.kmeans import KMEANS_PP_MAX_K, count_empty, kmeans, spherical_kmeans

__all__ = ["KMEANS_PP_MAX_K", "count_empty", "kmeans", "spherical_kmeans"]
