"""PNG figures for the diagnostics: cluster sizes, unique prototypes, training curves.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so nothing touches a global
backend or needs a display, and concurrent callers do not share state.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PathLike = str | os.PathLike


def _save(fig: Figure, path: PathLike) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=110)
    return path


def _named(series: Any) -> dict[str, Any]:
    """One unnamed series or a {label: series} mapping -> {label: series}."""
    return dict(series) if isinstance(series, Mapping) else {"": series}


def plot_relative_cluster_sizes(
    relative_sizes: np.ndarray | Mapping[str, np.ndarray],
    path: PathLike,
    *,
    log_scale: bool = False,
    title: str = "Relative cluster sizes",
) -> str:
    """Sorted relative sizes K n_k / N against cluster rank, balance line at 1, empties marked.

    As in the ExCB appendix figure: y is the relative size (largest first); empty clusters are
    drawn as a red band on the x axis and counted in the legend. Pass {run name: sizes} to
    overlay several runs. Returns the PNG path.

    >>> import tempfile
    >>> p = plot_relative_cluster_sizes(np.array([2.0, 1.0, 1.0, 0.0]),
    ...                                 tempfile.mkdtemp() + "/sizes.png", log_scale=True)
    >>> os.path.getsize(p) > 0
    True
    """
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    positive_min = math.inf
    for name, sizes in _named(relative_sizes).items():
        r = np.sort(np.asarray(sizes, np.float64).ravel())[::-1]
        if r.size == 0:
            raise ValueError(f"relative_sizes {name!r} is empty (shape {np.shape(sizes)})")
        ranks = np.arange(1, r.size + 1)
        empty = r <= 0
        label = f"{name} " if name else ""
        line = ax.plot(ranks[~empty], r[~empty], lw=1.2,
                       label=f"{label}({int(empty.sum())} empty, {100 * empty.mean():.1f}%)")[0]
        if empty.any():
            # Empty clusters have no height (and none on a log axis): mark their rank range.
            ax.axvspan(ranks[empty][0] - 0.5, ranks[empty][-1] + 0.5, color=line.get_color(),
                       alpha=0.15, hatch="//")
        if (~empty).any():
            positive_min = min(positive_min, float(r[~empty].min()))
    ax.axhline(1.0, color="k", ls="--", lw=0.8, label="balanced (1)")
    if log_scale:
        ax.set_yscale("log")
        if math.isfinite(positive_min):
            ax.set_ylim(bottom=positive_min / 2)
    ax.set_xlabel("cluster rank (largest first)")
    ax.set_ylabel("relative size K n_k / N")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_unique_prototypes(
    counts: Mapping[float, int] | Mapping[str, Mapping[float, int]],
    path: PathLike,
    *,
    num_prototypes: int | None = None,
    title: str = "Unique prototypes",
) -> str:
    """Unique-prototype count against threshold (log x); optional line at K.

    ``counts`` is {threshold: count} or {run name: {threshold: count}}.

    >>> import tempfile
    >>> p = plot_unique_prototypes({1e-1: 3, 1e-2: 5}, tempfile.mkdtemp() + "/u.png",
    ...                            num_prototypes=8)
    >>> os.path.getsize(p) > 0
    True
    """
    runs = counts if counts and isinstance(next(iter(counts.values())), Mapping) else {"": counts}
    fig = Figure(figsize=(5.6, 4.0))
    ax = fig.add_subplot()
    for name, run in runs.items():
        if not run:
            raise ValueError(f"counts for run {name!r} is empty")
        t = sorted(float(x) for x in run)
        ax.plot(t, [run[x] if x in run else run[str(x)] for x in t], marker="o",
                label=name or None)
    if num_prototypes is not None:
        ax.axhline(num_prototypes, color="k", ls="--", lw=0.8, label=f"K = {num_prototypes}")
    ax.set_xscale("log")
    ax.set_xlabel("distance threshold")
    ax.set_ylabel("unique prototypes")
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return _save(fig, path)


def read_metrics_jsonl(path: PathLike) -> list[dict[str, Any]]:
    """Records of a metrics JSONL file (one JSON object per line, blank lines ignored).

    >>> import tempfile
    >>> f = tempfile.mkdtemp() + "/m.jsonl"
    >>> _ = open(f, "w").write('{"step": 1, "loss": 2.0}\\n\\n{"step": 2, "loss": 1.5}\\n')
    >>> [r["loss"] for r in read_metrics_jsonl(f)]
    [2.0, 1.5]
    """
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{os.fspath(path)} line {lineno}: not JSON ({err.msg})") from err
            if not isinstance(rec, dict):
                raise ValueError(f"{os.fspath(path)} line {lineno}: expected an object, got "
                                 f"{type(rec).__name__}")
            records.append(rec)
    return records


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def plot_metric_curves(
    metrics_path: PathLike,
    keys: Sequence[str],
    path: PathLike,
    *,
    title: str | None = None,
) -> str:
    """One panel per requested key: value against "step" from a metrics JSONL file.

    Keys that never appear with a finite number are skipped; if none remain a ValueError lists
    the keys that do exist.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = open(d + "/m.jsonl", "w").write('{"step": 0, "loss": 1}\\n{"step": 1, "loss": 0.5}\\n')
    >>> os.path.getsize(plot_metric_curves(d + "/m.jsonl", ["loss", "absent"], d + "/c.png")) > 0
    True
    """
    records = [r for r in read_metrics_jsonl(metrics_path) if _is_number(r.get("step"))]
    series = {}
    for key in keys:
        pts = [(r["step"], r[key]) for r in records if _is_number(r.get(key))]
        if pts:
            series[key] = np.array(pts, np.float64)
    if not series:
        available = sorted({k for r in records for k in r if k != "step"})
        raise ValueError(
            f"none of keys {list(keys)} has numeric values with a 'step' in "
            f"{os.fspath(metrics_path)}; available keys: {available}"
        )
    cols = min(3, len(series))
    rows = -(-len(series) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    for i, (key, pts) in enumerate(series.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot(pts[:, 0], pts[:, 1], lw=1.0)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
