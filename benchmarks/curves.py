"""Learning curves: the online k-NN probe of several runs against training minutes, one PNG.

Run (each workdir from ``python -m jaxssl.train ... --config.train.online_knn_every=N``):
  python benchmarks/curves.py --run ExCB=workdirs/excb --run DINO=workdirs/dino \
      --line "raw pixels=0.846" --line "random init=0.6855" \
      --out benchmarks/results/curves.png

Each run's ``metrics.jsonl`` gives, for every logged step that ran the probe, ``train_seconds``
(the training clock, earlier sessions of a resumed run included) and ``online_knn_top1`` (teacher
k-NN top-1 on the fixed, seeded, class-balanced probe subsets ``train.online_knn_train_size`` /
``online_knn_test_size``). A run's ``report.json`` (the trainer's final evaluation: the full train
bank and test set) adds its final k-NN as a star at its training minutes: the probe subsets give
lower figures than the full bank, so references measured on the full bank (``--line NAME=VALUE``,
a dashed horizontal line) compare with the stars, not with the probe curve. Prints a markdown
table (one row per run: probe points, last step, minutes, last and best probe value, final
full-bank k-NN) and writes the plot.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence


def read_curve(workdir: str) -> list[tuple[int, float, float]]:
    """``(step, minutes, online_knn_top1)`` of every probed row of ``workdir``'s metrics.

    A run resumed after a crash may have logged a step twice; the later row wins.
    """
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no metrics.jsonl in workdir {workdir!r}")
    rows: dict[int, tuple[int, float, float]] = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {n}: not JSON ({e.msg})") from e
            if "online_knn_top1" not in row:
                continue
            if "train_seconds" not in row:
                raise ValueError(f"{path}, line {n}: a probe row without train_seconds (written "
                                 "by a jaxssl older than the training clock in metrics rows)")
            rows[row["step"]] = (row["step"], row["train_seconds"] / 60.0,
                                 float(row["online_knn_top1"]))
    return [rows[s] for s in sorted(rows)]


def read_final(workdir: str) -> tuple[float, float] | None:
    """``(minutes, knn_top1)`` of the run's final evaluation (``report.json``), or None."""
    path = os.path.join(workdir, "report.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    missing = [k for k in ("train_seconds", "knn_top1") if k not in report]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} (not a jaxssl.train final report)")
    return report["train_seconds"] / 60.0, float(report["knn_top1"])


def _pair(text: str, what: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"{what} must be NAME=VALUE, got {text!r}")
    return name, value


def table(curves: dict[str, list[tuple[int, float, float]]],
          finals: dict[str, tuple[float, float] | None] | None = None) -> str:
    """Markdown: one row per run with its probe count, last step and minutes, last and best
    probe value, and its final full-bank k-NN where ``finals`` has one."""
    finals = finals or {}
    lines = ["| run | probes | last step | minutes | last k-NN | best k-NN | final (full bank) |",
             "|---|---|---|---|---|---|---|"]
    for name, pts in curves.items():
        final = finals.get(name)
        end = f"{100 * final[1]:.2f} % at {final[0]:.1f} min" if final else ""
        if not pts:
            lines.append(f"| {name} | 0 | | | | | {end} |")
            continue
        step, minutes, last = pts[-1]
        best = max(p[2] for p in pts)
        lines.append(f"| {name} | {len(pts)} | {step} | {minutes:.1f} | {100 * last:.2f} % | "
                     f"{100 * best:.2f} % | {end} |")
    return "\n".join(lines)


def plot(curves: dict[str, list[tuple[int, float, float]]], lines: dict[str, float],
         out: str, finals: dict[str, tuple[float, float] | None] | None = None) -> None:
    """Writes the PNG: one line per run (the probe), a star per run's final full-bank k-NN,
    dashed horizontal lines for the references."""
    import matplotlib  # lazily: only this command needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    finals = finals or {}
    for name, pts in curves.items():
        (line,) = ax.plot([p[1] for p in pts], [100 * p[2] for p in pts], marker="o", ms=3,
                          label=f"{name}: online probe (subset)")
        final = finals.get(name)
        if final is not None:
            ax.plot([final[0]], [100 * final[1]], marker="*", ms=12, ls="none",
                    color=line.get_color(),
                    label=f"{name}: final, full bank {100 * final[1]:.2f} %")
    for name, value in lines.items():
        ax.axhline(100 * value, ls="--", lw=1, color="gray")
        # x in axes coordinates, y in data: the label stays inside the plot whatever the x range.
        ax.text(0.01, 100 * value, f"{name} {100 * value:.1f} %",
                transform=ax.get_yaxis_transform(), va="bottom", fontsize=8, color="gray")
    ax.set_xlabel("training minutes")
    ax.set_ylabel("k-NN top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, type=lambda t: _pair(t, "--run"),
                   help="NAME=WORKDIR, repeatable")
    p.add_argument("--line", action="append", default=[], type=lambda t: _pair(t, "--line"),
                   help="NAME=VALUE (a fraction, e.g. 0.846), repeatable")
    p.add_argument("--out", required=True, help="PNG path")
    args = p.parse_args(argv)
    curves = {name: read_curve(workdir) for name, workdir in args.run}
    try:
        lines = {name: float(value) for name, value in args.line}
    except ValueError as e:
        p.error(f"--line VALUE must be a number: {e}")
    finals = {name: read_final(workdir) for name, workdir in args.run}
    plot(curves, lines, args.out, finals)
    text = table(curves, finals)
    print(text)
    print(f"\nwrote {args.out}")
    return text


if __name__ == "__main__":
    main()
