"""benchmarks/claims.py: the run plan, the statistics and verdicts against hand-computed numbers,
the report on synthetic rows, and one end-to-end run of the real train / eval commands on a tiny
model (a few steps, a 200-image k-NN bank)."""

import doctest
import importlib.util
import json
import math
import os
import sys

import numpy as np
import pytest

PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "claims.py")
spec = importlib.util.spec_from_file_location("claims", PATH)
claims = importlib.util.module_from_spec(spec)
sys.modules["claims"] = claims  # dataclasses resolve their annotations through it
spec.loader.exec_module(claims)

FM = "fashion_mnist"


def test_module_doctests_pass():
    result = doctest.testmod(claims, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 15 and result.failed == 0


# ------------------------------------------------------------------------------------ plan


def test_default_plan_is_seed_major_with_every_arm():
    jobs = claims.plan(claims.Settings())
    names = [j.name for j in jobs]
    # Per seed: claim 2 two arms, claim 3 three arms x 4 datasets, claim 6 two arms x 3 batches.
    assert len(names) == len(set(names)) == 3 * (2 + 12 + 6)
    seeds = [j.seed for j in jobs]
    assert seeds == [0] * 20 + [1] * 20 + [2] * 20
    assert names[:3] == ["dino_k4096-fashion_mnist-b64-st6000-s0",
                         "dino_koleo_k4096-fashion_mnist-b64-st6000-s0",
                         "msn-fashion_mnist-b64-st5500-s0"]
    per_seed = names[:20]
    assert "pmsn_rev-fashion_mnist_lt50-b64-st5500-s0" in per_seed
    assert per_seed[-6:] == ["excb-fashion_mnist-b32-st8438-s0", "dino-fashion_mnist-b32-st8438-s0",
                             "excb-fashion_mnist-b64-st4219-s0", "dino-fashion_mnist-b64-st4219-s0",
                             "excb-fashion_mnist-b128-st2109-s0",
                             "dino-fashion_mnist-b128-st2109-s0"]
    assert not any(isinstance(j, claims.PeerRun) for j in jobs)


def test_claim6_steps_are_equal_epochs_and_the_floor_is_enforced():
    # 4.5 epochs x 60000 images: 8437.5, 4218.75 and 2109.375 steps, rounded.
    assert [claims.claim6_steps(4.5, b) for b in (32, 64, 128)] == [8438, 4219, 2109]
    claims.check_claim6_epochs(4.27)  # 2001.6 -> 2002 steps at batch 128
    with pytest.raises(ValueError, match=r"--claim6-epochs 4.26 gives 1997 steps at batch 128"):
        claims.check_claim6_epochs(4.26)  # 1996.9 -> 1997
    with pytest.raises(ValueError, match="--claim6-epochs"):
        claims.plan(claims.Settings(claims=(6,), claim6_epochs=2.0))
    claims.plan(claims.Settings(claims=(3,), claim6_epochs=2.0))  # not checked without claim 6


def test_main_refuses_bad_flags_naming_them(capsys, tmp_path):
    out = str(tmp_path / "o")
    assert claims.main(["--out", out, "--claim6-epochs", "4", "--dry-run"]) == 2
    assert "--claim6-epochs 4.0 gives 1875 steps" in capsys.readouterr().err
    assert claims.main(["--out", out, "--claims", "2,5", "--dry-run"]) == 2
    assert "--claims: [5]" in capsys.readouterr().err
    assert claims.main(["--out", out, "--only", "nosuch", "--dry-run"]) == 2
    assert "--only names no planned run or arm: ['nosuch']" in capsys.readouterr().err
    assert not os.path.exists(out)


def test_commands_carry_each_arms_overrides_and_the_fixed_protocol():
    k2 = claims.Run(claims.claim2_arms(4096)[1], FM, 1, 6000)
    cmd = claims.train_command(k2, "/w")
    assert cmd[cmd.index("--config") + 1].endswith("configs/dino_koleo_fashion_mnist.py")
    for flag in ("--config.train.time_budget_s=0", "--config.train.num_steps=6000",
                 "--config.seed=1", "--config.data.dataset=fashion_mnist",
                 "--config.train.batch_size=64", "--config.train.progress=False",
                 "--config.eval.final_knn=False", "--config.train.log_every=25",
                 "--config.head.num_prototypes=4096", "--config.train.prototype_diag_every=250"):
        assert flag in cmd, flag
    rev = claims.train_command(claims.Run(claims.PMSN_REV, "fashion_mnist:lt10", 0, 5000), "/w")
    assert rev[rev.index("--config") + 1].endswith("configs/pmsn_fashion_mnist.py")
    assert "--config.loss.prior_direction=prior_to_mean" in rev
    pmsn = claims.train_command(claims.Run(claims.PMSN, FM, 0, 5000), "/w")
    assert not any("prior_direction" in f for f in pmsn)  # the recipe's KL(p_bar || prior)
    b32 = claims.train_command(claims.Run(claims.EXCB, FM, 0, 8438, 32), "/w")
    assert "--config.train.batch_size=32" in b32 and "--config.train.num_steps=8438" in b32
    # A test override replaces the harness's value of the same field instead of repeating it.
    tiny = claims.train_command(k2, "/w", ["--config.train.log_every=1", "--config.x.y=2"])
    assert [f for f in tiny if f.startswith("--config.train.log_every")] == [
        "--config.train.log_every=1"]
    assert tiny[-1] == "--config.x.y=2"
    ev = claims.eval_command("/w")
    assert ev[ev.index("--protocols") + 1] == "knn,linear,cluster,prototypes"
    assert ev[ev.index("--train-limit") + 1] == "0" and ev[ev.index("--test-limit") + 1] == "0"
    assert "--no-plots" in ev


def test_only_filters_by_run_or_arm_name_in_plan_order():
    jobs = claims.plan(claims.Settings(claims=(3, 6), seeds=(0, 1)))
    got = [j.name for j in claims.select(jobs, "pmsn_rev,excb-fashion_mnist-b128-st2109-s1")]
    assert got == [f"pmsn_rev-{d}-b64-st5500-s0" for d in
                   ("fashion_mnist", "fashion_mnist_lt100", "fashion_mnist_lt50",
                    "fashion_mnist_lt10")] + [
        f"pmsn_rev-{d}-b64-st5500-s1" for d in
        ("fashion_mnist", "fashion_mnist_lt100", "fashion_mnist_lt50", "fashion_mnist_lt10")] + [
        "excb-fashion_mnist-b128-st2109-s1"]
    with pytest.raises(ValueError, match="dino_k4096"):
        claims.select(jobs, "dino_k4096")  # claim 2 is not in this plan


def test_peer_adds_a_dino_arm_and_lightly_runs_without_repeating_shared_runs():
    jobs = claims.plan(claims.Settings(claims=(3,), seeds=(0,), peer=True))
    names = [j.name for j in jobs]
    assert len(names) == len(set(names)) == 12 + 1 + 3
    assert names[12] == "dino-fashion_mnist-b64-st5500-s0"
    assert names[13:] == [f"peer_{m}-fashion_mnist-b64-st5500-s0" for m in ("dino", "msn", "pmsn")]
    assert claims.PeerRun("pmsn", 0, 5000).arm is claims.PMSN_REV  # lightly: KL(prior || p_bar)
    without = [j.name for j in claims.plan(claims.Settings(claims=(3,), seeds=(0,)))]
    assert "dino-fashion_mnist-b64-st5500-s0" not in without
    peer_cmd = claims.peer_command(claims.PeerRun("msn", 2, 5000), "/o.json")
    assert peer_cmd[1].endswith("benchmarks/peer_lightly.py")
    for flag, value in (("--method", "msn"), ("--steps", "5000"), ("--seed", "2"),
                        ("--train-limit", "0"), ("--test-limit", "0"), ("--batch", "64")):
        assert peer_cmd[peer_cmd.index(flag) + 1] == value


def test_estimates_from_the_step_rate_table(capsys, tmp_path):
    s = claims.Settings()
    # MSN: 5000 / 11 steps/s = 454.5 s = 7.58 min, + 2.5 min start-up and eval.
    assert claims.estimate_minutes(claims.Run(claims.MSN, FM, 0, 5000), s) == pytest.approx(
        5000 / 11 / 60 + 2.5)
    # ExCB at batch 32: half the batch-64 step time (1 / 7.2 s) per step.
    assert claims.estimate_minutes(claims.Run(claims.EXCB, FM, 0, 8438, 32), s) == pytest.approx(
        8438 * 0.5 / 7.2 / 60 + 2.5)
    peer_s = claims.Settings(peer=True)
    # A run compared with the peer also gets its CLS-feature k-NN (1 min).
    assert claims.estimate_minutes(claims.Run(claims.MSN, FM, 0, 5500), peer_s) == pytest.approx(
        5500 / 11 / 60 + 3.5)
    assert claims.main(["--out", str(tmp_path / "o"), "--claims", "2", "--seeds", "0,1",
                        "--dry-run"]) == 0
    text = capsys.readouterr().out
    # Per seed: DINO 6000 / 8 = 750 s and DINO + KoLeo 6000 / 7.5 = 800 s, + 2 x 2.5 min.
    total = 2 * ((750 + 800) / 60 + 5)
    assert f"total: 4 runs, ~{total:.0f} min" in text
    assert "dino_koleo_k4096-fashion_mnist-b64-st6000-s1" in text
    assert not os.path.exists(tmp_path / "o")


# ------------------------------------------------------------------------------ statistics


def test_contrast_hand_computed_holds():
    c = claims.compare({0: 0.80, 1: 0.81, 2: 0.82}, {0: 0.70, 1: 0.71, 2: 0.72})
    # s = 0.01 in both arms: SE = sqrt(0.01^2 / 3 + 0.01^2 / 3) = sqrt(2 * 0.0001 / 3).
    np.testing.assert_allclose([c.diff, c.se], [0.10, 0.0081650], atol=1e-7)
    assert c.verdict == "holds" and c.min_n == 3
    # Every seed differs by exactly 0.10: the paired SE is 0.
    assert c.n_pairs == 3 and c.paired_diff == pytest.approx(0.10) and c.paired_se < 1e-12


def test_contrast_hand_computed_reversed_and_no_difference():
    rev = claims.compare({0: 0.70, 1: 0.71, 2: 0.72}, {0: 0.80, 1: 0.81, 2: 0.82})
    assert rev.verdict == "reversed" and rev.diff == pytest.approx(-0.10)
    # s = 0.02 in both arms: SE = sqrt(2 * 0.0004 / 3) = 0.016330; 0.01 < 2 SE = 0.03266.
    flat = claims.compare({0: 0.80, 1: 0.82, 2: 0.84}, {0: 0.79, 1: 0.81, 2: 0.83})
    np.testing.assert_allclose([flat.diff, flat.se], [0.01, 0.0163299], atol=1e-7)
    assert flat.verdict == "no detectable difference at this scale"


def test_verdict_uses_the_unpaired_se_even_where_pairing_is_tighter():
    # Per-seed differences 0.02, 0.03, 0.01: paired mean 0.02, SE 0.01 / sqrt(3) = 0.005774.
    # Unpaired: s_a = 0.015275, s_b = 0.011547, SE = sqrt((2.3333e-4 + 1.3333e-4) / 3) = 0.011055,
    # and 0.02 < 2 x 0.011055.
    c = claims.compare({0: 0.80, 1: 0.83, 2: 0.81}, {0: 0.78, 1: 0.80, 2: 0.80})
    np.testing.assert_allclose([c.diff, c.se, c.paired_diff, c.paired_se],
                               [0.02, 0.0110554, 0.02, 0.0057735], atol=1e-6)
    assert c.verdict == "no detectable difference at this scale"


def test_fewer_than_two_seeds_and_unshared_seeds():
    one = claims.compare({0: 0.9}, {0: 0.7, 1: 0.71})
    assert one.verdict == "needs >= 2 seeds" and math.isnan(one.se)
    assert one.diff == pytest.approx(0.195)
    # An arm with no finished run says so rather than asking for seeds.
    assert claims.compare({}, {0: 0.7, 1: 0.71}).verdict == "not run yet"
    assert claims.contrast([{0: 0.9}], [{0: 0.8}, {}]).verdict == "not run yet"
    # Seeds {0, 1, 2} against {0, 1}: no pairing; SE = sqrt(0.0001 / 3 + 0.0002 / 2) = 0.011547.
    c = claims.compare({0: 0.80, 1: 0.81, 2: 0.82}, {0: 0.70, 1: 0.72})
    assert c.paired_diff is None and c.n_pairs == 0
    np.testing.assert_allclose([c.diff, c.se], [0.10, 0.0115470], atol=1e-7)
    assert c.verdict == "holds"


def test_drop_contrast_sums_four_arms():
    dino_hi, dino_lo = {0: 0.80, 1: 0.82}, {0: 0.70, 1: 0.70}
    excb_hi, excb_lo = {0: 0.80, 1: 0.80}, {0: 0.79, 1: 0.79}
    # DINO drops 0.81 - 0.70 = 0.11, ExCB 0.80 - 0.79 = 0.01; only dino_hi varies:
    # SE = sqrt(0.0002 / 2) = 0.01. Per seed: 0.09 and 0.11, paired SE 0.01414 / sqrt(2) = 0.01.
    c = claims.contrast([dino_hi, excb_lo], [dino_lo, excb_hi])
    np.testing.assert_allclose([c.diff, c.se, c.paired_diff, c.paired_se],
                               [0.10, 0.01, 0.10, 0.01], atol=1e-9)
    assert c.verdict == "holds"


# ------------------------------------------------------------------------------ the report


def run_row(arm, seed, knn, dataset=FM, batch=64, steps=5500, **kw):
    base = {"name": f"{arm}-{seed}", "arm": arm, "dataset": dataset, "batch": batch,
            "seed": seed, "steps": steps, "features": "cls_avgpool", "num_train": 60000,
            "num_test": 10000, "knn_top1": knn, "knn_cls_top1": None, "linear_top1": knn + 0.01,
            "prototypes_used": 10, "unique_1e-2": None, "unique_1e-3": None,
            "images_per_s": 600.0, "unique_curve": []}
    base.update(kw)
    return base


def claim3_rows():
    rows = []
    for seed in range(3):
        d = 0.01 * seed
        rows += [run_row("msn", seed, 0.80 + d), run_row("pmsn", seed, 0.70 + d),
                 run_row("pmsn_rev", seed, 0.81 + d)]
        for lt in ("lt100", "lt50", "lt10"):
            ds = f"fashion_mnist:{lt}"
            rows += [run_row("msn", seed, 0.80 + d, ds), run_row("pmsn", seed, 0.70 + d, ds),
                     run_row("pmsn_rev", seed, 0.90 + d, ds)]
    return rows


def test_claim3_verdicts_and_markdown_from_synthetic_rows():
    s = claims.Settings(claims=(3,))
    got = {v.what: v.comparison.verdict for v in claims.claim3_verdicts(claim3_rows(), s)}
    assert got == {
        "balanced: msn - pmsn, k-NN": "holds",  # +0.10 vs SE 0.0082
        "balanced: msn - pmsn_rev, k-NN": "no detectable difference at this scale",  # -0.01
        **{f"{lt}: pmsn - msn, k-NN": "reversed" for lt in ("lt100", "lt50", "lt10")},
        **{f"{lt}: pmsn_rev - msn, k-NN": "holds" for lt in ("lt100", "lt50", "lt10")}}
    md = claims.markdown(claim3_rows(), [], s, "python benchmarks/claims.py --claims 3", 36)
    assert md.startswith("# Claims 2, 3 and 6") and "Smoke test" not in md
    assert "Command: `python benchmarks/claims.py --claims 3`" in md
    assert "36 of 36 planned runs finished; seeds [0, 1, 2]" in md
    assert "bank of 60000 train images, 10000 test images" in md and "cls_avgpool" in md
    assert ("| balanced: msn - pmsn, k-NN | +10.00 ± 0.82 pt | +10.00 ± 0.00 (3 pairs) | "
            "**holds** |") in md
    # Seeds 0, 1, 2 add 0, 0.01, 0.02: means 0.81 / 0.71 / 0.91, std 0.01.
    assert "| fashion_mnist:lt100 | 81.00 ± 1.00 (3) | 71.00 ± 1.00 (3) | 91.00 ± 1.00 (3) |" in md
    assert "Claim 2" not in md and "Claim 6" not in md


def test_claim2_collapse_wording_follows_the_numbers():
    s = claims.Settings(claims=(2,), claim2_k=(64,), claim2_steps=1000)
    full = [run_row(arm, seed, 0.75, steps=1000, **{"unique_1e-2": 64, "unique_1e-3": 64},
                    nn_distance_median=1.0, unique_curve=[[250, 64, 64], [1000, 64, 64]])
            for arm in ("dino_k64", "dino_koleo_k64") for seed in range(3)]
    md = claims.markdown(full, [], s, "cmd", 6)
    assert "nothing for KoLeo-proto to undo" in md and "K = 64 and 1000 steps" in md
    assert {v.comparison.verdict for v in claims.claim2_verdicts(full, s)} == {
        "no detectable difference at this scale"}
    # DINO collapses (fewest: 38 at 1e-2 in seed 1 at step 250); KoLeo keeps 60-64.
    collapsed = [run_row("dino_k64", seed, 0.75, steps=1000,
                         **{"unique_1e-2": 40 + 2 * seed, "unique_1e-3": 50 + seed},
                         unique_curve=[[250, 38 if seed == 1 else 45, 55], [1000, 40, 50]])
                 for seed in range(3)]
    collapsed += [run_row("dino_koleo_k64", seed, 0.74 + 0.01 * seed, steps=1000,
                          **{"unique_1e-2": 60 + 2 * seed, "unique_1e-3": 64})
                  for seed in range(3)]
    text = claims.dino_collapse(collapsed, 64, 1000)
    assert text.startswith("DINO collapsed partially")
    assert "38 of 64 at 1e-2 (seed 1, step 250)" in text
    assert "50 of 64 at 1e-3 (seed 0, end)" in text
    v = {x.what: x.comparison for x in claims.claim2_verdicts(collapsed, s)}
    # 1e-2: KoLeo 62 vs DINO 42, s = 2 each: SE = sqrt(8 / 3) = 1.633 -> holds.
    c = v["K = 64: dino_koleo_k64 - dino_k64, unique_1e-2"]
    np.testing.assert_allclose([c.diff, c.se], [20.0, math.sqrt(8 / 3)])
    assert c.verdict == "holds"
    # k-NN: KoLeo 0.75 +- 0.01 vs DINO 0.75 (s = 0): no detectable difference ("not lower").
    assert v["K = 64: dino_koleo_k64 - dino_k64, knn_top1"].verdict == (
        "no detectable difference at this scale")
    md = claims.markdown(collapsed, [], s, "cmd", 6)
    assert "| K = 64: dino_koleo_k64 - dino_k64, unique_1e-2 | +20.0 ± 1.6 count |" in md


def test_claim2_nearest_neighbour_distance_row():
    # No duplicates in either arm, yet KoLeo-proto's prototypes sit further apart: median NN
    # distance 1.20 / 1.22 / 1.24 (s = 0.02) against DINO's 1.06 / 1.06 / 1.06 (s = 0).
    s = claims.Settings(claims=(2,), claim2_k=(64,), claim2_steps=1000)
    rows = [run_row("dino_k64", seed, 0.75, steps=1000, nn_distance_median=1.06,
                    nn_distance_min=0.09, **{"unique_1e-1": 63, "unique_1e-2": 64,
                                             "unique_1e-3": 64})
            for seed in range(3)]
    rows += [run_row("dino_koleo_k64", seed, 0.75, steps=1000,
                     nn_distance_median=1.20 + 0.02 * seed, nn_distance_min=0.12,
                     **{"unique_1e-1": 64, "unique_1e-2": 64, "unique_1e-3": 64})
             for seed in range(3)]
    c = {v.what: v.comparison for v in claims.claim2_verdicts(rows, s)}[
        "K = 64: dino_koleo_k64 - dino_k64, nn_distance_median"]
    # diff 1.22 - 1.06 = 0.16; SE = 0.02 / sqrt(3) = 0.01155; paired: the same.
    np.testing.assert_allclose([c.diff, c.se, c.paired_diff, c.paired_se],
                               [0.16, 0.02 / math.sqrt(3), 0.16, 0.02 / math.sqrt(3)])
    assert c.verdict == "holds"
    md = claims.markdown(rows, [], s, "cmd", 6)
    assert ("| K = 64: dino_koleo_k64 - dino_k64, nn_distance_median | +0.160 ± 0.012 dist | "
            "+0.160 ± 0.012 (3 pairs) | **holds** |") in md
    # The arm table: unique @1e-1 / 1e-2 / 1e-3, then the median and minimum NN distance.
    assert "| dino_k64 | 75.00 ± 0.00 (3) | 76.00 ± 0.00 (3) | 63.0 ± 0.0 (3) | 64.0 ± 0.0 (3) | " \
        "64.0 ± 0.0 (3) | 1.060 ± 0.000 (3) | 0.090 ± 0.000 (3) |" in md
    assert "the mechanism, not the claim" in md


def test_claim6_and_peer_sections_from_synthetic_rows():
    s = claims.Settings(claims=(6,), seeds=(0, 1), peer=True)
    steps = {b: claims.claim6_steps(4.5, b) for b in (32, 64, 128)}
    knn = {("excb", 32): (0.79, 0.79), ("excb", 64): (0.80, 0.80), ("excb", 128): (0.80, 0.80),
           ("dino", 32): (0.70, 0.70), ("dino", 64): (0.78, 0.80), ("dino", 128): (0.80, 0.82)}
    rows = [run_row(m, seed, knn[m, b][seed], batch=b, steps=steps[b])
            for (m, b) in knn for seed in (0, 1)]
    v = {x.what: x.comparison for x in claims.claim6_verdicts(rows, s)}
    assert v["batch 32: excb - dino, k-NN"].verdict == "holds"  # +0.09, SE 0
    assert v["batch 64: excb - dino, k-NN"].verdict == "no detectable difference at this scale"
    # Drops: DINO 0.81 - 0.70 = 0.11, ExCB 0.01; SE = sqrt(0.0002 / 2) = 0.01 -> holds.
    drop = v["drop 128 -> 32: dino's drop - excb's drop, k-NN"]
    np.testing.assert_allclose([drop.diff, drop.se], [0.10, 0.01], atol=1e-9)
    assert drop.verdict == "holds"
    # Peer: jaxssl pmsn_rev (CLS k-NN) vs lightly pmsn, two seeds.
    rows += [run_row("pmsn_rev", seed, 0.85, knn_cls_top1=0.81 + 0.02 * seed)
             for seed in (0, 1)]
    peers = [{"method": "pmsn", "seed": seed, "steps": 5500, "knn_top1": 0.80 + 0.01 * seed,
              "images_per_s": 400.0} for seed in (0, 1)]
    md = claims.markdown(rows, peers, s, "cmd", 16)
    # CLS k-NN 0.82 (s^2 = 0.0002) vs 0.805 (s^2 = 0.00005): +0.015, SE = sqrt(0.000125) = 0.0112.
    assert ("| pmsn | pmsn_rev | 85.00 ± 0.00 (2) | 82.00 ± 1.41 (2) | 80.50 ± 0.71 (2) | "
            "+1.50 ± 1.12 pt | no detectable difference at this scale | 600 ± 0 (2) | "
            "400 ± 0 (2) |") in md
    assert "| pmsn | pmsn | - | - | 80.50 ± 0.71 (2) | - | other objective |" in md
    assert "| 32 | 8438 | 79.00 ± 0.00 (2) | 70.00 ± 0.00 (2) |" in md
    assert "k-NN drop from batch 128 to 32" in md and "dino +11.00 ± 1.00 pt" in md


def claim6_file(tmp_path, seeds, name="earlier.json", **fields):
    """A results.json of claim 6's runs for ``seeds``: excb 0.80 + seed / 100, dino 0.70."""
    s = claims.Settings(claims=(6,), seeds=seeds)
    rows = [run_row(j.arm.name, j.seed, (0.80 if j.arm.name == "excb" else 0.70) + j.seed / 100,
                    batch=j.batch, steps=j.steps, name=j.name) for j in claims.plan(s)]
    path = tmp_path / name
    path.write_text(json.dumps({"runs": rows, "peer": [], "extra_override": [],
                                "eval_extra": [], **fields}))
    return str(path)


def test_rows_from_stand_in_for_runs_whose_folders_are_gone(tmp_path, capsys):
    early, late = claim6_file(tmp_path, (0,)), claim6_file(tmp_path, (1,), "late.json")
    out = tmp_path / "out"
    assert claims.main(["--out", str(out), "--claims", "6", "--seeds", "0,1", "--dry-run",
                        "--rows-from", early]) == 0
    plan = capsys.readouterr().out
    assert "excb-fashion_mnist-b32-st8438-s0" in plan and plan.count("(row from --rows-from)") == 6
    # Every planned run has a row: nothing trains (no --report-only), the report has all six.
    argv = ["--out", str(out), "--claims", "6", "--seeds", "0,1", "--rows-from", early,
            "--rows-from", late]
    assert claims.main(argv) == 0
    assert "] train " not in capsys.readouterr().out and not (out / "runs").exists()
    result = json.loads((out / "results.json").read_text())
    assert len(result["runs"]) == 12 and sorted(result["rows_from"]) == sorted([early, late])
    assert len(result["rows_from"][early]) == 6
    md = (out / "claims.md").read_text()
    assert "12 of 12 planned runs finished; seeds [0, 1]" in md
    assert f"6 of them are rows of `{early}`" in md
    # excb 80.5 +- 0.71 (2), dino 70.5 +- 0.71: +10.00, SE = sqrt(2 * 0.00005) = 0.71 pt.
    assert "| 32 | 8438 | 80.50 ± 0.71 (2) | 70.50 ± 0.71 (2) |" in md
    assert "| batch 32: excb - dino, k-NN | +10.00 ± 0.71 pt |" in md
    # Report-only with seed 0's file alone: its six rows, seed 1 neither run nor reported.
    assert claims.main(["--out", str(out), "--claims", "6", "--seeds", "0,1",
                        "--report-only", "--rows-from", early]) == 0
    assert "6 of 12 planned runs finished; seeds [0]" in (out / "claims.md").read_text()


@pytest.mark.parametrize("content, message", [
    ("not json", "cannot read it as JSON"),
    (json.dumps({"runs": "x"}), "no 'runs' list"),
    (json.dumps({"runs": [], "extra_override": ["--config.x=1"]}), "its runs had extra_override"),
    (json.dumps({"runs": [{"arm": "excb"}]}), "a row without a 'name'"),
    (json.dumps({"runs": [["excb"]]}), "a row without a 'name'"),
])
def test_rows_from_refuses_other_files_naming_them(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    argv = ["--out", str(tmp_path / "out"), "--claims", "6", "--rows-from", str(bad)]
    assert claims.main(argv) == 2
    err = capsys.readouterr().err
    assert f"--rows-from {bad}" in err and message in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_rows_from_refuses_a_run_in_two_files(tmp_path, capsys):
    a, b = claim6_file(tmp_path, (0,)), claim6_file(tmp_path, (0,), "again.json")
    assert claims.main(["--out", str(tmp_path / "out"), "--claims", "6", "--seeds", "0",
                        "--rows-from", a, "--rows-from", b]) == 2
    assert f"is in both {a} and {b}" in capsys.readouterr().err


def test_plots_written_from_synthetic_rows(tmp_path):
    s = claims.Settings(claims=(2, 3, 6), claim2_k=(64,), claim2_steps=1000, seeds=(0, 1))
    rows = claim3_rows()
    rows += [run_row(a, seed, 0.75, steps=1000, unique_curve=[[250, 60 + seed, 64],
                                                              [500, 58, 64], [1000, 57, 63]])
             for a in ("dino_k64", "dino_koleo_k64") for seed in (0, 1)]
    rows += [run_row(m, seed, 0.8, batch=b, steps=claims.claim6_steps(4.5, b))
             for m in ("excb", "dino") for b in (32, 64, 128) for seed in (0, 1)]
    paths = claims.plot_all(rows, s, str(tmp_path))
    assert sorted(os.path.basename(p) for p in paths) == [
        "claim2_unique_prototypes.png", "claim3_pmsn_vs_msn.png", "claim6_batch.png"]
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------- end to end, tiny model

TINY = ["--config.model.backbone_kwargs.depth=1", "--config.head.hidden_dim=32",
        "--config.head.bottleneck_dim=16", "--config.train.batch_size=16",
        "--config.train.log_every=1", "--config.train.prototype_diag_every=2",
        "--config.data.num_threads=1", "--config.eval.batch_size=100"]


def test_end_to_end_tiny_run_then_resume(tmp_path, capsys):
    out = tmp_path / "claims"
    name = "dino_k64-fashion_mnist-b64-st4-s0"
    stale = out / "runs" / name
    stale.mkdir(parents=True)
    (stale / "junk.txt").write_text("a killed run's leftovers")
    argv = ["--out", str(out), "--claims", "2", "--claim2-k", "64", "--claim2-steps", "4",
            "--seeds", "0", "--only", "dino_k64",
            *[f"--extra-override={f}" for f in TINY],
            "--eval-extra=--train-limit 200 --test-limit 100 --linear-epochs 1"]
    assert claims.main(argv) == 0
    assert not (stale / "junk.txt").exists()  # nothing saved: restarted from scratch
    result = json.loads((out / "results.json").read_text())
    (row,) = result["runs"]
    assert (row["name"], row["arm"], row["method"], row["seed"]) == (name, "dino_k64", "dino", 0)
    assert row["steps"] == 4 and row["num_train"] == 200 and row["num_test"] == 100
    assert row["num_prototypes"] == 64 and 0.0 < row["knn_top1"] <= row["knn_top5"] <= 1.0
    # Diagnostics at steps 2 and 4 (prototype_diag_every = 2), and at the end from the eval.
    assert [p[0] for p in row["unique_curve"]] == [2, 4]
    assert all(1 <= p[1] <= p[2] <= 64 for p in row["unique_curve"])
    assert row["unique_1e-2"] == row["unique_curve"][-1][1]  # same teacher, same count
    assert row["unique_1e-3"] == row["unique_curve"][-1][2]
    assert row["unique_1e-1"] <= row["unique_1e-2"]  # a coarser threshold merges more
    assert 0.0 <= row["nn_distance_min"] <= row["nn_distance_median"] <= 2.0
    train_cmd = (out / "runs" / name / "train.log").read_text().splitlines()[0]
    assert "--config.head.num_prototypes=64" in train_cmd and "log_every=1" in train_cmd
    md = (out / "claims.md").read_text()
    assert "--claim2-steps 4" in md and "bank of 200 train images, 100 test images" in md
    # Only dino_k64 ran: the comparisons with dino_koleo_k64 say it has not run.
    assert "**not run yet**" in md and "**Smoke test**" in md
    assert (out / "claim2_unique_prototypes.png").exists()
    # Again: the finished run is reused, not retrained.
    stamp = os.path.getmtime(out / "runs" / name / "train.log")
    capsys.readouterr()
    assert claims.main(argv) == 0
    assert "] train " not in capsys.readouterr().out
    assert os.path.getmtime(out / "runs" / name / "train.log") == stamp
    assert json.loads((out / "results.json").read_text())["runs"] == result["runs"]
    assert row["sessions"] == 1 and row["train_wall_s"] > 0


def test_a_run_stopped_part_way_resumes_from_its_checkpoint(tmp_path, capsys):
    # A session that ended after step 2 of 4: its workdir holds a checkpoint and train.log.
    out = tmp_path / "claims"
    name = "dino_k64-fashion_mnist-b64-st4-s0"
    workdir = out / "runs" / name
    workdir.mkdir(parents=True)
    run = claims.Run(claims.claim2_arms(64)[0], FM, 0, 4)
    first = claims.train_command(run, str(workdir), [*TINY, "--config.train.num_steps=2"])
    claims.run_logged(first, str(workdir / "train.log"))
    assert claims.has_checkpoint(str(workdir)) and claims.session_logs(str(workdir)) == [
        "train.log"]
    argv = ["--out", str(out), "--claims", "2", "--claim2-k", "64", "--claim2-steps", "4",
            "--seeds", "0", "--only", "dino_k64",
            *[f"--extra-override={f}" for f in TINY],
            "--eval-extra=--train-limit 200 --test-limit 100 --linear-epochs 1"]
    capsys.readouterr()
    assert claims.main(argv) == 0
    assert f"resume (session 2) {name}" in capsys.readouterr().out
    assert "Resumed from" in (workdir / "train.resume1.log").read_text()
    (row,) = json.loads((out / "results.json").read_text())["runs"]
    assert row["steps"] == 4 and row["sessions"] == 2
    metrics = claims.read_metrics(str(workdir))
    assert [r["step"] for r in metrics] == [1, 2, 3, 4]  # one row per step, none repeated
    # The wall time is the trainer's clock over both sessions, not the second session's wall.
    assert row["train_wall_s"] == metrics[-1]["train_seconds"] > metrics[1]["train_seconds"]
