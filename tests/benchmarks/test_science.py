"""benchmarks/science.py: the run plan, the seed aggregation and the claim verdicts, on synthetic
rows whose verdicts are set by hand (no training)."""

import importlib.util
import os
import sys

import pytest

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "science.py")
spec = importlib.util.spec_from_file_location("science", PATH)
science = importlib.util.module_from_spec(spec)
sys.modules["science"] = science  # dataclasses resolve their annotations through it
spec.loader.exec_module(science)

FM, LT = science.DATASETS


def row(variant, dataset=FM, batch=64, seed=0, **kw):
    base = dict(variant=variant, dataset=dataset, batch=batch, seed=seed, knn=0.75, linear=0.76,
                nmi=0.3, num_prototypes=512, num_used=100, frac_empty=0.5, min_relative=0.0,
                max_relative=10.0, **{"unique_1e-1": 500, "unique_1e-2": 512},
                train_entropy=0.1, train_wall_s=100.0)
    base.update(kw)
    return base


def test_plan_covers_every_method_on_both_datasets_and_the_sweeps():
    runs = science.plan_runs([0, 1], batch_sweep=[32, 64, 128])
    names = [r.name for r in runs]
    assert len(names) == len(set(names)) == 2 * (2 * 6 + 1 + 2 * 2)
    for m in science.METHODS:
        for d in science.DATASETS:
            assert any(r.variant == m and r.dataset == d and r.batch == 64 for r in runs)
    assert {(r.variant, r.batch) for r in runs if r.batch != 64} == {
        ("excb", 32), ("dino", 32), ("excb", 128), ("dino", 128)}


def test_aggregate_is_mean_and_sample_std_over_seeds():
    rows = [row("msn", seed=0, knn=0.70), row("msn", seed=1, knn=0.74), row("pmsn", knn=0.8)]
    agg = science.aggregate(rows, "knn")
    m, s, n = agg[("msn", FM, 64)]
    assert (n, round(m, 6), round(s, 6)) == (2, 0.72, round(0.04 / 2 ** 0.5, 6))
    assert agg[("pmsn", FM, 64)] == (0.8, 0.0, 1)


def test_train_command_fixes_steps_not_wall_clock():
    cmd = science.train_command(science.Run("dino_k64", LT, 32, 3), "/w", 300)
    assert "--config.train.time_budget_s=0" in cmd and "--config.train.num_steps=300" in cmd
    assert "--config.head.num_prototypes=64" in cmd
    assert f"--config.data.dataset={LT}" in cmd and "--config.train.batch_size=32" in cmd
    assert cmd[cmd.index("--config") + 1].endswith("configs/dino_fashion_mnist.py")


@pytest.mark.parametrize("excb_empty,verdict", [(0.0, "holds"), (0.6, "does not hold")])
def test_claim1_verdict_follows_the_numbers(excb_empty, verdict):
    rows = [row("excb", num_prototypes=64, frac_empty=excb_empty, min_relative=0.8,
                max_relative=1.2),
            row("dino_k64", num_prototypes=64, frac_empty=0.5),
            row("dino")]
    claims = {c[:2]: v for c, v, _ in science.verdicts(rows)}
    assert claims["1."] == verdict


def test_claims_3_5_6_from_hand_set_numbers():
    rows = [row("msn", FM, knn=0.80), row("pmsn", FM, knn=0.79),
            row("msn", LT, knn=0.70), row("pmsn", LT, knn=0.72),
            row("excb", FM, 32, knn=0.74), row("excb", FM, 64, knn=0.75),
            row("excb", FM, 128, knn=0.76), row("dino", FM, 32, knn=0.60),
            row("dino", FM, 64, knn=0.72), row("dino", FM, 128, knn=0.73)]
    claims = {c[:2]: v for c, v, _ in science.verdicts(rows)}
    assert claims["3."] == "holds"
    assert claims["5."] == "does not hold"  # every k-NN here is below 84.6 %
    assert claims["6."] == "holds"  # ExCB spread 2 pt and min 74 vs DINO 13 pt and min 60
    rows[0]["knn"] = 0.78  # the uniform prior now loses on the balanced set
    assert {c[:2]: v for c, v, _ in science.verdicts(rows)}["3."] == "does not hold"
