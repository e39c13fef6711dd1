"""The evaluation protocols of ``python -m jaxssl.eval``, run on a restored pretrained model.

Each protocol is a function of ``ProtocolInputs`` (the model and the frozen features of the
train and test splits, ``jaxssl.eval.features``) returning one JSON-ready section; ``PROTOCOL_FNS``
maps the ``--protocols`` names to them and ``run_protocols`` runs the requested ones in order
(the protocols are described in docs/methods.md). ``two_view_agreement`` measures the arg-max
prototype's stability under the training augmentation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.data.eval_split import limited_indices
from jaxssl.data.pipeline import make_train_iterator
from jaxssl.data.spec import make_source
from jaxssl.data.subset import SubsetSource
from jaxssl.data.view_augments import view_augments
from jaxssl.eval.cluster_metrics import normalized_mutual_info, purity
from jaxssl.eval.cluster_sizes import argmax_agreement, cluster_size_stats
from jaxssl.eval.clustering import kmeans_cluster_scores
from jaxssl.eval.features import SplitFeatures
from jaxssl.eval.fewshot import few_shot
from jaxssl.eval.knn import knn_classify
from jaxssl.eval.linear import linear_probe
from jaxssl.eval.prototypes import (
    DEFAULT_THRESHOLDS,
    nn_distance_histogram,
    unique_prototype_counts,
)
from jaxssl.eval.restore import Pretrained
from jaxssl.train.step import augment_batch

FEW_SHOTS = (1, 2, 5, 13)


def two_view_agreement(pre: Pretrained, spec: str, split: str, *, num_images: int,
                       batch_size: int, seed: int = 0) -> dict[str, Any] | None:
    """Agreement of the model's arg-max prototype between two augmented views of one image.

    Each image gets two global views cut and augmented exactly as in training (host crops of
    ``config.data.global_crops``, then the configured photometric augmentation of global views
    1 and 2 on device); the result is the fraction of images whose two views pick the same
    prototype (docs/methods.md: "agreement of the arg-max between two views"). None for a method
    without prototypes.
    """
    method, params, stats, cfg = pre.method, pre.params, pre.batch_stats, pre.config
    if method.prototypes(params) is None:
        return None
    source = make_source(spec, split, data_dir=cfg.data.data_dir)
    n = min(int(num_images), len(source))
    batch = min(int(batch_size), n)
    if n < 1 or batch < 1:
        raise ValueError(f"two_view_agreement: need >= 1 image, got num_images={num_images} for "
                         f"{spec!r} {split!r} ({len(source)} examples)")
    # Two global views and no locals; crops and photometrics both follow this one copy.
    view_cfg = cfg.copy_and_resolve_references()
    view_cfg.data.global_crops.num, view_cfg.data.local_crops.num = 2, 0
    augments = view_augments(view_cfg)
    it = make_train_iterator(view_cfg.data, global_batch_size=batch, seed=seed,
                             source=SubsetSource(source, limited_indices(len(source), n,
                                                                         seed=seed)))

    @jax.jit
    def assign_both(key, crops):
        views = augment_batch(key, {"global": crops}, augments)["global"]  # [B, 2, H, W, C]
        return (method.assign(params, stats, views[:, 0]),
                method.assign(params, stats, views[:, 1]))

    first, second = [], []
    key = jax.random.key(seed)
    for i in range(n // batch):  # one epoch of the subset, the remainder dropped
        a, b = assign_both(jax.random.fold_in(key, i), jnp.asarray(next(it)["global"]))
        first.append(np.asarray(a))
        second.append(np.asarray(b))
    first, second = np.concatenate(first), np.concatenate(second)
    return {"agreement": argmax_agreement(first, second), "num_images": int(first.shape[0]),
            "split": split}


def _num_classes(*labels: np.ndarray) -> int:
    return int(max(int(y.max()) for y in labels)) + 1


def knn_section(train: SplitFeatures, test: SplitFeatures, *, k: int = 20,
                temperature: float = 0.07) -> dict[str, Any]:
    """Weighted k-NN (DINO protocol) top-1 / top-5 of test on the train bank."""
    acc = knn_classify(train.features, train.labels, test.features, test.labels,
                       num_classes=_num_classes(train.labels, test.labels), k=k,
                       temperature=temperature)
    return {**acc, "k": k, "temperature": temperature}


def linear_section(train: SplitFeatures, test: SplitFeatures, *, epochs: int = 100,
                   seed: int = 0) -> dict[str, Any]:
    """Linear probe with a small (lr, weight decay) sweep selected on a train hold-out."""
    n = train.features.shape[0]
    # Full-batch AdamW is fine for small banks; large ones go through minibatches.
    batch = None if n <= 16384 else 4096
    return linear_probe(train.features, train.labels, test.features, test.labels,
                        num_classes=_num_classes(train.labels, test.labels),
                        lrs=(1e-3, 1e-2, 1e-1), weight_decays=(0.0, 1e-4), epochs=epochs,
                        batch_size=batch, seed=seed)


def fewshot_section(train: SplitFeatures, test: SplitFeatures, *,
                    shots: Sequence[int] = FEW_SHOTS, num_splits: int = 3,
                    seed: int = 0) -> dict[str, Any]:
    """Few-shot logistic regression for each shot count that every train class can supply."""
    counts = np.bincount(train.labels)
    fewest = int(counts[counts > 0].min())
    usable = tuple(s for s in shots if s <= fewest)
    if not usable:
        raise ValueError(f"few-shot needs >= {min(shots)} train images per class; the "
                         f"rarest class has {fewest} (raise --train-limit)")
    out = few_shot(train.features, train.labels, test.features, test.labels, shots=usable,
                   num_splits=num_splits, seed=seed,
                   num_classes=_num_classes(train.labels, test.labels))
    skipped = [s for s in shots if s not in usable]
    return {**out, **({"skipped_shots": skipped} if skipped else {})}


def cluster_section(pre: Pretrained, test: SplitFeatures, *, seed: int = 0) -> dict[str, Any]:
    """k-means (k = number of classes) on test features scored against the labels, and the
    model's own arg-max prototype clusters: NMI, purity and cluster-size statistics."""
    out: dict[str, Any] = {"kmeans": kmeans_cluster_scores(jax.random.key(seed), test.features,
                                                          test.labels)}
    out["kmeans"]["num_clusters"] = len(np.unique(test.labels))
    if test.assignments is not None:
        k = int(pre.method.prototypes(pre.params).shape[0])
        sizes = cluster_size_stats(test.assignments, k)
        out["prototype_assignments"] = {
            "nmi": normalized_mutual_info(test.labels, test.assignments),
            "purity": purity(test.labels, test.assignments),
            "num_prototypes": k,
            "num_used": k - sizes["num_empty"],
            **{name: sizes[name] for name in ("num_empty", "frac_empty", "min_relative",
                                              "max_relative", "num_points",
                                              "relative_sizes")},
        }
    return out


def prototypes_section(pre: Pretrained) -> dict[str, Any] | None:
    """Unique prototypes at thresholds 1e-1 ... 1e-4 and the nearest-neighbour distance
    histogram of the prototype matrix; None for a method without prototypes."""
    protos = pre.method.prototypes(pre.params)
    if protos is None:
        return None
    protos = np.asarray(jax.device_get(protos), np.float32)
    return {"num_prototypes": int(protos.shape[0]),
            "unique": unique_prototype_counts(protos, DEFAULT_THRESHOLDS),
            "nn_distance_histogram": nn_distance_histogram(protos)}


@dataclasses.dataclass(frozen=True)
class ProtocolInputs:
    """What a protocol may use: the model, the train / test features (None when not extracted)
    and the CLI's ``--linear-epochs`` and ``--seed``."""

    pre: Pretrained
    train: SplitFeatures | None
    test: SplitFeatures | None
    linear_epochs: int = 100
    seed: int = 0


# ``--protocols`` name -> protocol; knn / linear / fewshot need train and test features, cluster
# the test features, prototypes neither. The order is the default ``--protocols``.
PROTOCOL_FNS: dict[str, Callable[[ProtocolInputs], dict[str, Any]]] = {
    "knn": lambda i: knn_section(i.train, i.test),
    "linear": lambda i: linear_section(i.train, i.test, epochs=i.linear_epochs, seed=i.seed),
    "fewshot": lambda i: fewshot_section(i.train, i.test, seed=i.seed),
    "cluster": lambda i: cluster_section(i.pre, i.test, seed=i.seed),
    "prototypes": lambda i: prototypes_section(i.pre) or {"available": False},
}
PROTOCOLS = tuple(PROTOCOL_FNS)


def run_protocols(pre: Pretrained, protocols: Sequence[str], train: SplitFeatures | None,
                  test: SplitFeatures | None, *, linear_epochs: int = 100,
                  seed: int = 0) -> dict[str, Any]:
    """{protocol: result section} for each of ``protocols`` (names of ``PROTOCOL_FNS``).

    A method without prototypes reports ``{"available": False}`` for the prototype parts.
    """
    unknown = [name for name in protocols if name not in PROTOCOL_FNS]
    if unknown:
        raise ValueError(f"unknown protocol {unknown[0]!r}; valid: {', '.join(PROTOCOLS)}")
    inputs = ProtocolInputs(pre, train, test, linear_epochs=linear_epochs, seed=seed)
    return {name: PROTOCOL_FNS[name](inputs) for name in protocols}
