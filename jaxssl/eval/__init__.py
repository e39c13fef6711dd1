"""jaxssl.eval: frozen-feature evaluation and prototype / cluster diagnostics.

Protocols (docs/methods.md §6): weighted k-NN (``knn_classify``), linear probe
(``linear_probe``), few-shot logistic regression (``few_shot``), k-means clustering scores
(``kmeans_cluster_scores``); diagnostics for partial prototype collapse
(``unique_prototype_counts``, ``nn_distance_histogram``) and ExCB cluster balance
(``cluster_size_stats``, ``argmax_agreement``); PNG plots and a JSON report.
``load_pretrained`` restores a training workdir's checkpoint; ``python -m jaxssl.eval`` runs the
protocols on it (``jaxssl.eval.cli``).
"""

from jaxssl._extras import require_train_extra

require_train_extra(__name__)

from jaxssl.eval.cluster_metrics import (
    adjusted_rand_index,
    cluster_scores,
    contingency_matrix,
    hungarian_accuracy,
    normalized_mutual_info,
    purity,
)
from jaxssl.eval.cluster_sizes import (
    argmax_agreement,
    cluster_size_stats,
    cluster_size_stats_from_counts,
    count_assignments,
    mean_max_probability,
)
from jaxssl.eval.clustering import kmeans_cluster_scores
from jaxssl.eval.features import extract_features, put_on_mesh
from jaxssl.eval.fewshot import few_shot, few_shot_indices
from jaxssl.eval.knn import knn_classify, knn_votes, topk_accuracy
from jaxssl.eval.linear import fit_softmax_regression, linear_probe, predict_logits, standardise
from jaxssl.eval.plots import (
    plot_metric_curves,
    plot_relative_cluster_sizes,
    plot_unique_prototypes,
    read_metrics_jsonl,
)
from jaxssl.eval.prototypes import (
    DEFAULT_THRESHOLDS,
    nearest_neighbour_distances,
    nn_distance_histogram,
    unique_prototype_counts,
)
from jaxssl.eval.report import assemble_report, to_jsonable, write_report
from jaxssl.eval.restore import Pretrained, load_pretrained
from jaxssl.ops.kmeans import count_empty, kmeans, spherical_kmeans  # re-export: one home, in ops

__all__ = [
    "DEFAULT_THRESHOLDS",
    "Pretrained",
    "adjusted_rand_index",
    "argmax_agreement",
    "assemble_report",
    "cluster_scores",
    "cluster_size_stats",
    "cluster_size_stats_from_counts",
    "contingency_matrix",
    "count_assignments",
    "count_empty",
    "extract_features",
    "few_shot",
    "few_shot_indices",
    "fit_softmax_regression",
    "hungarian_accuracy",
    "kmeans",
    "kmeans_cluster_scores",
    "knn_classify",
    "knn_votes",
    "linear_probe",
    "load_pretrained",
    "mean_max_probability",
    "nearest_neighbour_distances",
    "nn_distance_histogram",
    "normalized_mutual_info",
    "plot_metric_curves",
    "plot_relative_cluster_sizes",
    "plot_unique_prototypes",
    "predict_logits",
    "purity",
    "put_on_mesh",
    "read_metrics_jsonl",
    "spherical_kmeans",
    "standardise",
    "to_jsonable",
    "topk_accuracy",
    "unique_prototype_counts",
    "write_report",
]
