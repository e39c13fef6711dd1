"""Command line: ``python -m jaxssl.eval --workdir DIR --protocols knn,linear,...``.

Restores the newest checkpoint of a training workdir (teacher by default), extracts frozen
features of the train and test splits, runs the requested protocols, and writes a JSON report
plus PNG plots next to it (by default into the workdir) and prints a short table.

Single-host: features are extracted by this process over its local devices (batches sharded over
a "data" mesh when the batch size divides the device count).

Example::

  python -m jaxssl.eval --workdir runs/excb --protocols knn,linear,fewshot,cluster,prototypes \
      --train-limit 10000 --test-limit 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np
from absl import logging

from jaxssl.cli_errors import USAGE_ERROR, error_line
from jaxssl.data.eval_split import balanced_spec
from jaxssl.eval import plots
from jaxssl.eval.features import extract_split, load_features, save_features
from jaxssl.eval.protocols import PROTOCOLS, run_protocols, two_view_agreement
from jaxssl.eval.report import to_jsonable, write_report
from jaxssl.eval.restore import WHICH, load_pretrained
from jaxssl.methods.base import EVAL_FEATURES
from jaxssl.methods.common import eval_features_problem
from jaxssl.output_paths import PathError, check_output_file

# Training-curve keys plotted when metrics.jsonl has them (methods log different subsets).
CURVE_KEYS = ("loss", "teacher_confidence", "min_relative_size", "max_relative_size",
              "empty_fraction", "consistency", "view_agreement", "entropy",
              "unique_prototypes_1e-2", "unique_prototypes_1e-3", "online_knn_top1")


def parse_protocols(text: str) -> tuple[str, ...]:
    """Comma-separated ``--protocols`` names -> a tuple in the given order, duplicates dropped.

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m jaxssl.eval``.

    >>> a = build_parser().parse_args(["--workdir", "w", "--protocols", "knn"])
    >>> a.which, a.protocols, a.train_limit
    ('teacher', 'knn', 0)
    """
    p = argparse.ArgumentParser(
        prog="python -m jaxssl.eval",
        description="Frozen-feature evaluation of a jaxssl training workdir.")
    p.add_argument("--workdir", required=True,
                   help="workdir of a `python -m jaxssl.train` run (has checkpoints/)")
    p.add_argument("--protocols", default=",".join(PROTOCOLS),
                   help=f"comma-separated subset of {','.join(PROTOCOLS)} (default: all)")
    p.add_argument("--which", choices=WHICH, default="teacher",
                   help="network to evaluate (default: teacher)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    p.add_argument("--dataset", default=None,
                   help="dataset spec (default: the run's config.data.dataset); a long-tailed "
                        "':ltRHO' spec is evaluated on its balanced splits")
    p.add_argument("--data-dir", default=None, help="data directory (default: the run's)")
    p.add_argument("--features", choices=EVAL_FEATURES, default=None,
                   help="what to embed (default: the run's config.eval.features): cls, or "
                        "cls_avgpool = CLS next to the mean patch token (ViT only)")
    p.add_argument("--train-limit", type=int, default=0,
                   help="evaluate on a seeded random subset of this many train images (0: all)")
    p.add_argument("--test-limit", type=int, default=0,
                   help="the same for the test split (0: all)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="feature-extraction batch (default: the run's config.eval.batch_size)")
    p.add_argument("--linear-epochs", type=int, default=100, help="epochs of each linear probe")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the subsets, probe splits and k-means")
    p.add_argument("--save-features", default=None, metavar="NPZ",
                   help="also write the extracted features (and prototype ids) to this .npz")
    p.add_argument("--features-from", default=None, metavar="NPZ",
                   help="skip extraction: use features written by --save-features")
    p.add_argument("--out", default=None,
                   help="report path (default: WORKDIR/report_eval.json); plots go beside it")
    p.add_argument("--no-plots", action="store_true", help="write the JSON report only")
    return p


def _write_plots(report: dict[str, Any], workdir: str, out_dir: str) -> list[str]:
    written = []
    assign = report.get("cluster", {}).get("prototype_assignments")
    if assign is not None:
        written.append(plots.plot_relative_cluster_sizes(
            np.asarray(assign["relative_sizes"]), os.path.join(out_dir, "eval_cluster_sizes.png"),
            title=f"Relative cluster sizes (test arg-max, K = {assign['num_prototypes']})"))
    protos = report.get("prototypes", {})
    if protos.get("unique"):
        written.append(plots.plot_unique_prototypes(
            protos["unique"], os.path.join(out_dir, "eval_unique_prototypes.png"),
            num_prototypes=protos["num_prototypes"]))
    metrics = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(metrics):
        records = plots.read_metrics_jsonl(metrics)
        keys = [k for k in CURVE_KEYS if any(k in r for r in records)]
        if keys:
            written.append(plots.plot_metric_curves(
                metrics, keys, os.path.join(out_dir, "eval_training_curves.png")))
    return written


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(protocol, metric, value) rows of the headline numbers in a report.

    >>> summary_rows({"knn": {"top1": 0.5, "top5": 0.9, "k": 20}})
    [('knn', 'top1', 0.5), ('knn', 'top5', 0.9)]
    """
    rows = []
    if "knn" in report:
        rows += [("knn", m, report["knn"][m]) for m in ("top1", "top5")]
    if "linear" in report:
        rows += [("linear", m, report["linear"][m]) for m in ("top1", "top5")]
    for shot, r in report.get("fewshot", {}).items():
        if isinstance(r, dict):
            rows.append(("fewshot", f"{shot} mean", r["mean"]))
    cluster = report.get("cluster", {})
    if "kmeans" in cluster:
        rows += [("cluster", f"kmeans {m}", cluster["kmeans"][m])
                 for m in ("nmi", "ari", "purity", "hungarian_accuracy")]
    if "prototype_assignments" in cluster:
        pa = cluster["prototype_assignments"]
        rows += [("cluster", f"argmax {m}", pa[m])
                 for m in ("nmi", "purity", "frac_empty", "min_relative", "max_relative")]
    if "two_view_agreement" in cluster:
        rows.append(("cluster", "argmax two-view agreement",
                     cluster["two_view_agreement"]["agreement"]))
    for t, n in report.get("prototypes", {}).get("unique", {}).items():
        rows.append(("prototypes", f"unique @ {t}", n))
    return rows


def format_table(rows: list[tuple[str, str, float]]) -> str:
    """Fixed-width text table of ``summary_rows``.

    >>> print(format_table([("knn", "top1", 0.51234), ("prototypes", "unique @ 0.1", 12)]))
    protocol    metric         value
    knn         top1          0.5123
    prototypes  unique @ 0.1      12
    """
    width = max([len("metric")] + [len(metric) for _, metric, _ in rows])
    lines = [f"{'protocol':<11} {'metric':<{width}} {'value':>7}"]
    for proto, metric, value in rows:
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{proto:<11} {metric:<{width}} {text:>7}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the evaluation described by parsed ``args``; returns the report (also written)."""
    protocols = parse_protocols(args.protocols)
    for name, value in (("--train-limit", args.train_limit), ("--test-limit", args.test_limit)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0 (0 = whole split); got {value}")
    if os.path.exists(args.workdir) and not os.path.isdir(args.workdir):
        raise PathError(f"--workdir {args.workdir} is a file, not a training workdir (a "
                        "directory with checkpoints/).")
    t0 = time.perf_counter()
    pre = load_pretrained(args.workdir, which=args.which, step=args.step)
    # Where the results go is checked before minutes of feature extraction.
    check_output_file(args.out or os.path.join(pre.workdir, "report_eval.json"),
                      what="--out" if args.out else "the report",
                      hint="" if args.out else "Choose another path with --out.")
    if args.save_features:
        check_output_file(args.save_features, what="--save-features")
    cfg = pre.config
    if args.data_dir is not None:
        cfg.data.data_dir = args.data_dir
    if args.features is not None:
        problem = eval_features_problem(args.features, cfg)
        if problem:
            raise ValueError(f"--features {problem}")
        # pre.method embeds with this config (Method.embed reads eval.features at each call).
        cfg.eval.features = args.features
    spec = balanced_spec(args.dataset or cfg.data.dataset)
    batch = int(args.batch_size or cfg.eval.batch_size)
    if batch < 1:
        raise ValueError(f"--batch-size must be >= 1; got {batch}")

    needs_train = any(p in protocols for p in ("knn", "linear", "fewshot"))
    needs_test = needs_train or "cluster" in protocols
    train = test = None
    if args.features_from:
        saved = load_features(args.features_from, pre.feature_dim())
        train, test = saved.get("train"), saved.get("test")
        for split, needed, got in (("train", needs_train, train), ("test", needs_test, test)):
            if needed and got is None:
                raise ValueError(f"--features-from {args.features_from} has no {split} "
                                 f"features, which --protocols {args.protocols} needs")
    else:
        if needs_train:
            train = extract_split(pre, spec, "train", batch_size=batch,
                                  limit=args.train_limit, seed=args.seed)
        if needs_test:
            test = extract_split(pre, spec, "test", batch_size=batch, limit=args.test_limit,
                                 with_assignments="cluster" in protocols, seed=args.seed + 1)
    if args.save_features:
        save_features(args.save_features, train, test)
    t_features = time.perf_counter() - t0
    results = run_protocols(pre, protocols, train, test, linear_epochs=args.linear_epochs,
                            seed=args.seed)
    if "cluster" in protocols:
        views = two_view_agreement(pre, spec, "test", num_images=args.test_limit or 2000,
                                   batch_size=batch, seed=args.seed + 2)
        if views is not None:
            results["cluster"]["two_view_agreement"] = views
    report = to_jsonable({
        "workdir": pre.workdir, "step": pre.step, "which": pre.which,
        "method": cfg.method, "dataset": spec, "train_dataset": cfg.data.dataset,
        "num_train": 0 if train is None else int(train.features.shape[0]),
        "num_test": 0 if test is None else int(test.features.shape[0]),
        "feature_dim": pre.feature_dim(), "protocols": list(protocols),
        "feature_seconds": t_features, "total_seconds": time.perf_counter() - t0,
        **results,
    })
    out = args.out or os.path.join(pre.workdir, "report_eval.json")
    out_dir = os.path.dirname(os.path.abspath(out))
    report["plots"] = [] if args.no_plots else _write_plots(report, pre.workdir, out_dir)
    report["report_path"] = write_report(report, out)
    return report


def main(argv: list[str] | None = None) -> int:
    """Entry point: parses ``argv`` (default ``sys.argv[1:]``), evaluates, prints a table.

    Returns the exit status: 0 on success, 2 for a bad argument, a missing workdir / checkpoint,
    an unusable path or input file, or an empty dataset; 1 for another I/O error. The message
    goes to stderr, one line.
    """
    args = build_parser().parse_args(argv)
    # Orbax logs every restore at INFO/WARNING through absl; the table says what matters.
    logging.set_verbosity(logging.ERROR)
    try:
        report = run(args)
    except (ValueError, PathError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
            PermissionError) as err:
        print(f"error: {error_line(err)}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as err:  # e.g. a full disk while writing the report
        print(f"error: {error_line(err)}", file=sys.stderr)
        return 1
    print(f"{report['method']} ({report['which']}, step {report['step']}) on "
          f"{report['dataset']}: {report['num_train']} train / {report['num_test']} test "
          f"images, D = {report['feature_dim']}")
    print(format_table(summary_rows(report)))
    print(f"wrote {report['report_path']}" + "".join(f", {p}" for p in report["plots"]))
    return 0
