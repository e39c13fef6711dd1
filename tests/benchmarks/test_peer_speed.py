"""benchmarks/peer_speed.py: the interleaved jaxssl / PyTorch step-time benchmark, end to end on a
tiny model, and the built-in DINO loss its peer falls back to without lightly.

PyTorch is an optional extra of the package (``pip install -e ".[torch]"``, which CI installs); the
tests that need it skip with that reason where it is missing. lightly is optional even for the
benchmark (the DINO peer then uses the built-in loss), so only the lightly comparison skips
without it.
"""

import importlib.util
import json
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
BENCH = os.path.join(REPO, "benchmarks")


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peer_speed = load("peer_speed")


def test_percentile_is_numpys_linear_percentile():
    rng = np.random.default_rng(0)
    for n in (2, 3, 10, 61):
        xs = list(rng.normal(size=n))
        for q in (10, 50, 90):
            np.testing.assert_allclose(peer_speed.percentile(xs, q), np.percentile(xs, q),
                                       rtol=1e-12)


def dino_reference(t, s, center, t_temp, s_temp):
    """DINO's loss in float64 by loops: mean over (teacher view a, student view b != a, image i)
    of -sum_k softmax((t_a - c) / tau_t)_k log softmax(s_b / tau_s)_k."""
    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    terms = []
    for a in range(len(t)):
        for b in range(len(s)):
            if a != b:
                p = softmax((t[a] - center) / t_temp)
                log_q = np.log(softmax(s[b] / s_temp))
                terms += list(-(p * log_q).sum(-1))
    return np.mean(terms)


def test_builtin_dino_loss_is_the_equation_with_the_centre_update():
    torch = pytest.importorskip("torch", reason="PyTorch is the optional [torch] extra")
    peer_lightly = load("peer_lightly")
    rng = np.random.default_rng(1)
    t = rng.normal(size=(2, 5, 7))  # 2 teacher views, 5 images, K = 7
    s = rng.normal(size=(4, 5, 7))  # 4 student views (2 global + 2 local)
    loss_fn = peer_lightly.BuiltinDINOLoss(output_dim=7, student_temp=0.1, center_momentum=0.9)
    center = np.zeros(7)
    for _ in range(2):  # the second call sees the centre the first one moved
        got = loss_fn([torch.tensor(x, dtype=torch.float32) for x in t],
                      [torch.tensor(x, dtype=torch.float32) for x in s], teacher_temp=0.04)
        np.testing.assert_allclose(float(got), dino_reference(t, s, center, 0.04, 0.1),
                                   rtol=2e-5)
        center = 0.9 * center + 0.1 * t.mean(axis=(0, 1))
        np.testing.assert_allclose(loss_fn.center.numpy().ravel(), center, rtol=1e-5, atol=1e-7)


def test_builtin_dino_loss_equals_lightlys():
    torch = pytest.importorskip("torch", reason="PyTorch is the optional [torch] extra")
    if importlib.util.find_spec("lightly") is None:
        pytest.skip("lightly is not installed (pip install --no-deps lightly==1.6.0)")
    peer_lightly = load("peer_lightly")
    DINOLoss = peer_lightly.import_lightly_losses()[0]
    ref = DINOLoss(output_dim=16, student_temp=0.1, center_momentum=0.9)
    ours = peer_lightly.BuiltinDINOLoss(output_dim=16, student_temp=0.1, center_momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        t = [torch.randn(6, 16, generator=gen) for _ in range(2)]
        s = [torch.randn(6, 16, generator=gen) for _ in range(4)]
        torch.testing.assert_close(ours(t, s, teacher_temp=0.05), ref(t, s, teacher_temp=0.05))
        torch.testing.assert_close(ours.center, ref.center)


def table(lines, header_start):
    """The rows (lists of cells) of the markdown table whose header starts with header_start."""
    i = next(k for k, ln in enumerate(lines) if ln.startswith(header_start))
    rows = []
    for ln in lines[i + 2:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows


def test_end_to_end_tiny_interleaved_run_prints_well_formed_tables(tmp_path):
    pytest.importorskip("torch", reason="PyTorch is the optional [torch] extra")
    out = tmp_path / "speed.json"
    rounds, per_round, batch = 2, 2, 8
    cmd = [sys.executable, os.path.join(BENCH, "peer_speed.py"), "--tiny", "--threads", "1",
           "--rounds", str(rounds), "--steps-per-round", str(per_round), "--batch", str(batch),
           "--warmup", "1", "--breakdown-reps", "2", "--out", str(out)]
    # XLA's cheapest optimisation level: this checks the plumbing, not the figures, and the
    # tiny step's compilations (train step and the breakdown's three parts) dominate the test.
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "XLA_FLAGS": flags.strip()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()

    summary = table(lines, peer_speed.SUMMARY_HEADER)
    assert [r[:2] for r in summary] == [["1", "jaxssl"], ["1", "torch"]]
    medians = {}
    for r in summary:
        med, p10, p90, img_s, cpu, cores = map(float, r[2:8])
        assert med > 0 and cpu > 0 and p10 <= med <= p90, r
        np.testing.assert_allclose(img_s, 1e3 * batch / med, rtol=0.01)
        assert int(r[8]) == rounds * per_round
        medians[r[1]] = med
    ratio = table(lines, "| threads | jaxssl time / torch time")
    np.testing.assert_allclose(float(ratio[0][1]), medians["jaxssl"] / medians["torch"],
                               rtol=0.02, atol=0.01)
    parts = table(lines, peer_speed.BREAKDOWN_HEADER)
    assert len(parts) == 5 and parts[-1][0].startswith("whole step")
    assert all(float(p[2]) > 0 and float(p[5]) >= 0 for p in parts)  # torch's phases, timed
    assert float(parts[-1][1]) == float(summary[0][2])  # whole step: the rounds' median
    assert len(table(lines, "| threads | round |")) == rounds

    result = json.loads(out.read_text())
    (setting,) = result["settings"]
    for side in ("jaxssl", "torch"):
        info = setting["workers"][side]
        assert info["cpus"] == [0], info  # pinned, as taskset -c 0
        steps = setting["steps"][side]
        assert len(steps) == rounds * per_round
        # One CPU: the process CPU time of a step cannot exceed its wall time.
        assert all(cpu <= 1.05 * wall + 1e-3 for wall, cpu, _ in steps), steps
        np.testing.assert_allclose(statistics.median(1e3 * s[0] for s in steps),
                                   medians[side], atol=0.051)
    assert setting["workers"]["torch"]["torch_threads"] == 1
    # The breakdown's jitted update (optax update + EMA) is the train step's own: one real step
    # equals augmentation -> gradients -> update on the same keys.
    assert 0 <= setting["update_vs_step"] < 1e-5
    assert setting["workers"]["torch"]["params"] == setting["workers"]["jaxssl"]["params"]
    assert len(setting["blocks"]) == 2 * rounds
    assert [b["side"] for b in setting["blocks"]] == ["jaxssl", "torch"] * rounds

