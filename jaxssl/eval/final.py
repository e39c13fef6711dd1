"""Evaluation at the end of a run (and the online probe): k-NN accuracy, cluster sizes, plots.

The trainer does not import this module: the entry point passes :func:`online_knn_probe` and
:func:`final_evaluation` to :func:`jaxssl.train.loop.train` as its ``on_log`` / ``on_end``
callbacks (:data:`CALLBACKS`). A notebook or script calling ``train`` directly does the same::

    from jaxssl.eval.final import CALLBACKS
    summary = train(config, workdir, **CALLBACKS)
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl.data.augment import normalize_images
from jaxssl.data.config import DataConfig
from jaxssl.data.pipeline import make_eval_iterator
from jaxssl.data.subset import SubsetSource, sample_indices
from jaxssl.eval import plots
from jaxssl.eval.features import extract_features
from jaxssl.eval.knn import knn_classify
from jaxssl.train.callbacks import EndEvent, LogEvent
from jaxssl.train.state import TrainState


def _normalise_fn(config: ml_collections.ConfigDict):
    mean, std = tuple(config.augment.mean), tuple(config.augment.std)
    return lambda images: normalize_images(images, mean, std)


def eval_batches(config: ml_collections.ConfigDict, split: str, limit: int = 0):
    """Un-augmented batches of a split at the global-crop size (rows with ``valid`` False are
    padding). ``limit`` > 0 keeps ``limit`` examples drawn with ``config.seed``, class-balanced
    where the source holds its labels (``jaxssl.data.subset.sample_indices``): the same subset
    at every call, so the online probe's figures are comparable from step to step, and all the
    classes of a class-sorted source, not its first ones."""
    data = DataConfig.from_config(config.data)
    source = data.source(split)
    if 0 < limit < len(source):
        source = SubsetSource(source, sample_indices(source, int(limit), seed=int(config.seed)))
    # Round up to a multiple of the local devices: batches are sharded over the data axis.
    n = jax.local_device_count()
    bsz = -(-int(config.eval.batch_size) // n) * n
    yield from make_eval_iterator(data.spec, split,
                                  image_size=config.data.global_crops.size, batch_size=bsz,
                                  data_dir=config.data.data_dir,
                                  process_index=jax.process_index(),
                                  process_count=jax.process_count(), source=source)


def teacher_features(method, state: TrainState, config, split: str, mesh, limit: int = 0):
    """Teacher-backbone features (eval mode) of a split: (features [N, D], labels [N])."""
    norm = _normalise_fn(config)
    embed = jax.jit(lambda x: method.embed(state.teacher_params, state.teacher_batch_stats,
                                           norm(x)))
    return extract_features(embed, eval_batches(config, split, limit), mesh=mesh)


def knn_accuracy(method, state: TrainState, config, mesh, *, train_limit: int = 0,
                 test_limit: int = 0) -> dict:
    """DINO-protocol weighted k-NN (k, temperature from ``config.eval``) of teacher features."""
    train_x, train_y = teacher_features(method, state, config, "train", mesh, train_limit)
    test_x, test_y = teacher_features(method, state, config, "test", mesh, test_limit)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    return knn_classify(train_x, train_y, test_x, test_y, num_classes=num_classes,
                        k=int(config.eval.knn_k), temperature=float(config.eval.knn_temperature))


def cluster_sizes(method, state: TrainState, config, split: str = "test") -> np.ndarray | None:
    """Relative cluster sizes K * n_k / N of the teacher's arg-max over a split, or None."""
    if method.prototypes(state.teacher_params) is None:
        return None
    norm = _normalise_fn(config)
    assign = jax.jit(lambda x: method.assign(state.teacher_params, state.teacher_batch_stats,
                                             norm(x)))
    k = int(config.head.num_prototypes)
    counts = np.zeros(k, np.int64)
    for batch in eval_batches(config, split):
        a = np.asarray(assign(jnp.asarray(batch["image"])))[np.asarray(batch["valid"], bool)]
        counts += np.bincount(a, minlength=k)
    return k * counts / max(counts.sum(), 1)


def write_report_and_plots(workdir: str, report: dict, sizes: np.ndarray | None) -> list[str]:
    """Writes ``report.json`` and the PNG plots (loss curve, sorted cluster sizes)."""

    written = []
    with open(os.path.join(workdir, "report.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    written.append(os.path.join(workdir, "report.json"))
    metrics = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(metrics):
        path = os.path.join(workdir, "loss_curve.png")
        plots.plot_metric_curves(metrics, ["loss"], path)
        written.append(path)
    if sizes is not None:
        path = os.path.join(workdir, "cluster_sizes.png")
        plots.plot_relative_cluster_sizes(sizes, path)
        written.append(path)
    return written


def online_knn_probe(event: LogEvent) -> dict:
    """``on_log`` callback: every ``train.online_knn_every`` steps, the k-NN top-1 of teacher
    features on the balanced probe subsets (``train.online_knn_train_size`` /
    ``online_knn_test_size``) as ``online_knn_top1``; nothing at other logged steps."""
    every = event.config.train.online_knn_every
    if not every or event.step % every:
        return {}
    t = event.config.train
    acc = knn_accuracy(event.method, event.state, event.config, event.mesh,
                       train_limit=t.online_knn_train_size, test_limit=t.online_knn_test_size)
    return {"online_knn_top1": acc["top1"]}


def final_evaluation(event: EndEvent) -> dict:
    """``on_end`` callback: with ``eval.final_knn``, the k-NN accuracy of the teacher and its
    cluster sizes; process 0 writes ``report.json`` and the plots and prints the report and the
    ``k-NN top-1`` line. Returns ``knn_top1``, ``knn_top5`` and ``report`` for the summary."""
    config, state, method = event.config, event.state, event.method
    if not config.eval.final_knn:
        return {}
    t0 = time.perf_counter()
    acc = knn_accuracy(method, state, config, event.mesh,
                       train_limit=int(config.eval.knn_train_size))
    sizes = cluster_sizes(method, state, config)
    report = {"method": config.method, "dataset": config.data.dataset, "steps": event.step,
              "knn_top1": acc["top1"], "knn_top5": acc["top5"],
              "train_seconds": event.train_seconds, "images_per_s": event.images_per_s,
              "eval_seconds": time.perf_counter() - t0}
    if sizes is not None:
        report.update(min_relative_cluster_size=float(sizes.min()),
                      max_relative_cluster_size=float(sizes.max()),
                      empty_cluster_fraction=float(np.mean(sizes == 0)))
    if event.is_main:
        written = write_report_and_plots(event.workdir, report,
                                         sizes if config.eval.plots else None)
        print(json.dumps({k: v for k, v in report.items()}, indent=2))
        print(f"k-NN top-1 (k={config.eval.knn_k}) on {config.data.dataset} test: "
              f"{100 * acc['top1']:.2f}%  |  wrote {', '.join(written)}")
    return {"knn_top1": acc["top1"], "knn_top5": acc["top5"], "report": report}


# The callbacks of ``python -m jaxssl.train``: ``train(config, workdir, **CALLBACKS)``.
CALLBACKS = {"on_log": online_knn_probe, "on_end": final_evaluation}
