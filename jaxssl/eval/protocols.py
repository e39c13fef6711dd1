"""The evaluation protocols of ``python -m jaxssl.eval``, run on a restored pretrained model.

``extract_split`` turns one split of a dataset into frozen features (and, for methods with
prototypes, arg-max prototype ids); ``run_protocols`` runs the requested protocols on the train
and test features and returns one JSON-ready section per protocol (docs/methods.md §6).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.eval.restore import Pretrained

PROTOCOLS = ("knn", "linear", "fewshot", "cluster", "prototypes")
FEW_SHOTS = (1, 2, 5, 13)


def parse_protocols(text: str) -> tuple[str, ...]:
    """Comma-separated protocol names -> a tuple in the given order, duplicates dropped.

    >>> parse_protocols("knn, cluster,knn")
    ('knn', 'cluster')
    >>> parse_protocols("knn,svm")
    Traceback (most recent call last):
    ...
    ValueError: unknown protocol 'svm' in --protocols; valid: knn, linear, fewshot, ...
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--protocols is empty; valid: {', '.join(PROTOCOLS)}")
    for name in names:
        if name not in PROTOCOLS:
            raise ValueError(f"unknown protocol {name!r} in --protocols; valid: "
                             f"{', '.join(PROTOCOLS)}")
    return tuple(dict.fromkeys(names))


def balanced_spec(spec: str) -> str:
    """The dataset spec without a long-tail suffix: long-tailed pretraining is evaluated on the
    balanced splits (the test split of an ``:ltRHO`` spec is balanced already).

    >>> balanced_spec("fashion_mnist:lt100"), balanced_spec("folder:/data/x")
    ('fashion_mnist', 'folder:/data/x')
    """
    from jaxssl.data.spec import DatasetSpec

    return str(DatasetSpec.parse(spec).balanced())


class _Subset:
    """Random-access view of ``source`` restricted to ``indices`` (for --train/--test-limit)."""

    def __init__(self, source, indices: np.ndarray):
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.source[int(self.indices[i])]


def subset_indices(n: int, limit: int, seed: int) -> np.ndarray:
    """``limit`` distinct indices of ``range(n)`` drawn with a seeded generator, sorted (so
    sources stored class by class, like image folders, are not cut to their first classes);
    all of them when ``limit`` is 0 or at least ``n``.

    >>> subset_indices(10, 0, 0).tolist() == list(range(10))
    True
    >>> idx = subset_indices(10, 4, 0); len(set(idx.tolist())), bool(np.all(np.diff(idx) > 0))
    (4, True)
    """
    if limit <= 0 or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


@dataclasses.dataclass
class SplitFeatures:
    """Frozen features of one split: features [N, D], labels [N], prototype ids [N] or None."""

    features: np.ndarray
    labels: np.ndarray
    assignments: np.ndarray | None = None


def _batches(spec: str, split: str, *, image_size: int, batch_size: int, data_dir, limit: int,
             seed: int) -> Iterator[dict[str, Any]]:
    from jaxssl.data.pipeline import make_eval_iterator
    from jaxssl.data.spec import make_source

    source = make_source(spec, split, data_dir=data_dir)
    if len(source) == 0:
        raise ValueError(f"dataset {spec!r} split {split!r} is empty (0 examples)"
                         + (f" in data_dir {data_dir}" if data_dir else ""))
    source = _Subset(source, subset_indices(len(source), limit, seed))
    return make_eval_iterator(spec, split, image_size=image_size, batch_size=batch_size,
                              source=source)


def extract_split(
    pre: Pretrained,
    spec: str,
    split: str,
    *,
    batch_size: int,
    limit: int = 0,
    with_assignments: bool = False,
    seed: int = 0,
) -> SplitFeatures:
    """Eval-mode features of ``split`` ("train" / "test") of dataset ``spec``.

    Images are un-augmented centre crops at ``config.data.global_crops.size``, normalised with
    ``config.augment.mean/std`` as in training. When ``batch_size`` divides the device count,
    each batch is sharded over a 1-D "data" mesh. ``limit`` > 0 keeps a seeded random subset of
    that many examples. ``with_assignments`` also records the arg-max prototype of each image
    (methods with prototypes only) in the same pass over the data.
    """
    from jaxssl.data.augment import normalize_images
    from jaxssl.eval.features import extract_features

    cfg = pre.config
    mean, std = tuple(cfg.augment.mean), tuple(cfg.augment.std)
    n_dev = jax.device_count()
    mesh = (jax.make_mesh((n_dev,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
            if batch_size % n_dev == 0 else None)
    with_assignments = with_assignments and pre.method.prototypes(pre.params) is not None
    method, params, stats = pre.method, pre.params, pre.batch_stats

    def features_and_ids(images):
        x = normalize_images(images, mean, std)
        feats = method.embed(params, stats, x).astype(jnp.float32)
        if not with_assignments:
            return feats
        # One pass serves both: ids < 2^24 are exact in float32, split off again below.
        ids = method.assign(params, stats, x).astype(jnp.float32)
        return jnp.concatenate([feats, ids[:, None]], axis=1)

    batches = _batches(spec, split, image_size=int(cfg.data.global_crops.size),
                       batch_size=batch_size, data_dir=cfg.data.data_dir, limit=limit, seed=seed)
    out, labels = extract_features(jax.jit(features_and_ids), batches, mesh=mesh)
    if not with_assignments:
        return SplitFeatures(out, labels)
    return SplitFeatures(out[:, :-1], labels, out[:, -1].astype(np.int64))


def two_view_agreement(pre: Pretrained, spec: str, split: str, *, num_images: int,
                       batch_size: int, seed: int = 0) -> dict[str, Any] | None:
    """Agreement of the model's arg-max prototype between two augmented views of one image.

    Each image gets two global views cut and augmented exactly as in training (host crops of
    ``config.data.global_crops``, then the configured photometric augmentation of global views
    1 and 2 on device); the result is the fraction of images whose two views pick the same
    prototype (docs/methods.md: "agreement of the arg-max between two views"). None for a method
    without prototypes.
    """
    from jaxssl.data.pipeline import make_train_iterator
    from jaxssl.data.spec import make_source
    from jaxssl.data.view_augments import view_augments
    from jaxssl.eval.cluster_sizes import argmax_agreement
    from jaxssl.train.step import augment_batch

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
                             source=_Subset(source, subset_indices(len(source), n, seed)))

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


def save_features(path: str, train: SplitFeatures | None, test: SplitFeatures | None) -> str:
    """Writes the extracted splits to one ``.npz`` (keys ``<split>_features``, ``_labels``,
    ``_assignments``), so protocols can be re-run without touching the images."""
    arrays = {}
    for split, feats in (("train", train), ("test", test)):
        if feats is None:
            continue
        arrays[f"{split}_features"], arrays[f"{split}_labels"] = feats.features, feats.labels
        if feats.assignments is not None:
            arrays[f"{split}_assignments"] = feats.assignments
    np.savez(path, **arrays)
    return path


def load_features(path: str, feature_dim: int) -> dict[str, SplitFeatures]:
    """{split: SplitFeatures} from a ``save_features`` file, checked against the model's
    feature width ``feature_dim``.

    >>> import tempfile
    >>> p = tempfile.mkdtemp() + "/f.npz"
    >>> _ = save_features(p, None, SplitFeatures(np.zeros((2, 3), np.float32), np.arange(2)))
    >>> load_features(p, 3)["test"].features.shape
    (2, 3)
    >>> load_features(p, 4)
    Traceback (most recent call last):
    ...
    ValueError: ...f.npz: test_features has shape (2, 3) but the model's features are [N, 4]...
    """
    from jaxssl.data.sources.npz import open_npz

    out = {}
    # open_npz names the file when it is missing or not an .npz archive.
    with open_npz(path, what="features file",
                  hint="the <split>_features / _labels arrays that --save-features writes"
                  ) as data:
        for split in ("train", "test"):
            if f"{split}_features" not in data.files:
                continue
            feats = data[f"{split}_features"]
            if feats.ndim != 2 or feats.shape[1] != feature_dim:
                raise ValueError(
                    f"{path}: {split}_features has shape {feats.shape} but the model's features "
                    f"are [N, {feature_dim}]; the file was written by a different model")
            ids = data[f"{split}_assignments"] if f"{split}_assignments" in data.files else None
            out[split] = SplitFeatures(feats, data[f"{split}_labels"], ids)
    return out


def _num_classes(*labels: np.ndarray) -> int:
    return int(max(int(y.max()) for y in labels)) + 1


def knn_section(train: SplitFeatures, test: SplitFeatures, *, k: int = 20,
                temperature: float = 0.07) -> dict[str, Any]:
    """Weighted k-NN (DINO protocol) top-1 / top-5 of test on the train bank."""
    from jaxssl.eval.knn import knn_classify

    acc = knn_classify(train.features, train.labels, test.features, test.labels,
                       num_classes=_num_classes(train.labels, test.labels), k=k,
                       temperature=temperature)
    return {**acc, "k": k, "temperature": temperature}


def linear_section(train: SplitFeatures, test: SplitFeatures, *, epochs: int = 100,
                   seed: int = 0) -> dict[str, Any]:
    """Linear probe with a small (lr, weight decay) sweep selected on a train hold-out."""
    from jaxssl.eval.linear import linear_probe

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
    from jaxssl.eval.fewshot import few_shot

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
    from jaxssl.eval.cluster_metrics import normalized_mutual_info, purity
    from jaxssl.eval.cluster_sizes import cluster_size_stats
    from jaxssl.eval.clustering import kmeans_cluster_scores

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
    from jaxssl.eval.prototypes import (
        DEFAULT_THRESHOLDS,
        nn_distance_histogram,
        unique_prototype_counts,
    )

    protos = pre.method.prototypes(pre.params)
    if protos is None:
        return None
    protos = np.asarray(jax.device_get(protos), np.float32)
    return {"num_prototypes": int(protos.shape[0]),
            "unique": unique_prototype_counts(protos, DEFAULT_THRESHOLDS),
            "nn_distance_histogram": nn_distance_histogram(protos)}


def run_protocols(pre: Pretrained, protocols: Sequence[str], train: SplitFeatures | None,
                  test: SplitFeatures | None, *, linear_epochs: int = 100,
                  seed: int = 0) -> dict[str, Any]:
    """{protocol: result section} for each of ``protocols`` (see ``PROTOCOLS``).

    ``train`` is needed by knn / linear / fewshot, ``test`` by those and cluster;
    "prototypes" needs neither. A method without prototypes reports
    ``{"available": False}`` for the prototype parts.
    """
    out: dict[str, Any] = {}
    for name in protocols:
        if name == "knn":
            out[name] = knn_section(train, test)
        elif name == "linear":
            out[name] = linear_section(train, test, epochs=linear_epochs, seed=seed)
        elif name == "fewshot":
            out[name] = fewshot_section(train, test, seed=seed)
        elif name == "cluster":
            out[name] = cluster_section(pre, test, seed=seed)
        elif name == "prototypes":
            out[name] = prototypes_section(pre) or {"available": False}
        else:
            raise ValueError(f"unknown protocol {name!r}; valid: {', '.join(PROTOCOLS)}")
    return out
