"""Plots write real PNG files; reports round-trip through JSON with numpy values converted."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.eval.plots import (
    plot_metric_curves,
    plot_relative_cluster_sizes,
    plot_unique_prototypes,
    read_metrics_jsonl,
)
from jaxssl.eval.report import assemble_report, to_jsonable, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    with open(path, "rb") as fh:
        head = fh.read(8)
    return head == PNG_MAGIC


@pytest.mark.parametrize("log_scale", [False, True])
def test_cluster_size_plot_single_and_overlaid(tmp_path, log_scale):
    sizes = np.r_[np.linspace(3, 0.1, 60), np.zeros(4)]
    p = plot_relative_cluster_sizes(sizes, tmp_path / "a.png", log_scale=log_scale)
    assert _is_png(p)
    p = plot_relative_cluster_sizes({"dino": sizes, "excb": np.ones(64)}, tmp_path / "b.png",
                                    log_scale=log_scale)
    assert _is_png(p)


def test_unique_prototype_plot_accepts_json_round_tripped_keys(tmp_path):
    counts = json.loads(json.dumps(to_jsonable({1e-1: 40, 1e-2: 43, 1e-3: 45, 1e-4: 47})))
    assert _is_png(plot_unique_prototypes({"run": counts}, tmp_path / "u.png", num_prototypes=48))


def test_metric_curves_skip_missing_keys(tmp_path):
    f = tmp_path / "metrics.jsonl"
    lines = [{"step": s, "loss": 1.0 / (s + 1), "lr": 0.1} for s in range(5)]
    lines.append({"step": 5, "eval/knn_top1": 0.5})
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert len(read_metrics_jsonl(f)) == 6
    assert _is_png(plot_metric_curves(f, ["loss", "eval/knn_top1", "missing"], tmp_path / "c.png"))
    with pytest.raises(ValueError, match=r"available keys: \['eval/knn_top1', 'loss', 'lr'\]"):
        plot_metric_curves(f, ["missing"], tmp_path / "d.png")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl line 2"):
        read_metrics_jsonl(bad)


def test_report_round_trip(tmp_path):
    report = assemble_report(
        knn={"top1": np.float32(0.75), "top5": jnp.float32(1.0)},
        prototypes={1e-4: np.int64(7)},
        sizes=np.arange(3, dtype=np.int32),
        nan=float("nan"),
        skipped=None,
    )
    path = write_report(report, tmp_path / "out" / "report.json")
    loaded = json.loads(open(path).read())
    assert loaded == {"knn": {"top1": 0.75, "top5": 1.0}, "prototypes": {"0.0001": 7},
                      "sizes": [0, 1, 2], "nan": None}
    with pytest.raises(ValueError, match="object"):
        to_jsonable({"x": object()})
