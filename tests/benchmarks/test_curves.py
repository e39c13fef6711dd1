"""benchmarks/curves.py: reading probe rows from metrics.jsonl, the table, the PNG, bad input."""

import importlib.util
import json
import os

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")
_spec = importlib.util.spec_from_file_location("curves", os.path.join(BENCH, "curves.py"))
curves = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(curves)


def _workdir(tmp_path, name, rows):
    d = tmp_path / name
    d.mkdir()
    with open(d / "metrics.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return str(d)


def test_curve_table_and_png(tmp_path, capsys):
    a = _workdir(tmp_path, "a", [
        {"step": 50, "loss": 1.0, "train_seconds": 30.0},  # no probe: skipped
        {"step": 100, "train_seconds": 60.0, "online_knn_top1": 0.70},
        {"step": 200, "train_seconds": 126.0, "online_knn_top1": 0.78},
        {"step": 200, "train_seconds": 132.0, "online_knn_top1": 0.76},  # resumed: later row wins
    ])
    assert curves.read_curve(a) == [(100, 1.0, 0.70), (200, 2.2, 0.76)]
    b = _workdir(tmp_path, "b", [{"step": 10, "train_seconds": 600.0, "online_knn_top1": 0.5}])
    # B's final evaluation (the full bank): 0.8412 after 3300 s = 55.0 minutes.
    with open(os.path.join(b, "report.json"), "w") as f:
        json.dump({"train_seconds": 3300.0, "knn_top1": 0.8412, "steps": 20}, f)
    out = str(tmp_path / "plots" / "curves.png")
    text = curves.main(["--run", f"A={a}", "--run", f"B={b}", "--line", "raw pixels=0.846",
                        "--out", out])
    assert "| A | 2 | 200 | 2.2 | 76.00 % | 76.00 % |  |" in text
    assert "| B | 1 | 10 | 10.0 | 50.00 % | 50.00 % | 84.12 % at 55.0 min |" in text
    assert curves.read_final(b) == (55.0, 0.8412) and curves.read_final(a) is None
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out


def test_bad_input_names_the_file_and_line(tmp_path):
    bad = _workdir(tmp_path, "bad", [{"step": 1, "online_knn_top1": 0.5}])
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 1: a probe row without"):
        curves.read_curve(bad)
    with open(os.path.join(bad, "report.json"), "w") as f:
        json.dump({"knn_top1": 0.5}, f)
    with pytest.raises(ValueError, match="report.json: no train_seconds"):
        curves.read_final(bad)
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        curves.read_curve(str(tmp_path))
    with pytest.raises(SystemExit):
        curves.main(["--run", "no-equals-sign", "--out", str(tmp_path / "x.png")])
