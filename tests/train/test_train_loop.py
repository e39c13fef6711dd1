"""The training loop: resume reproduces an uninterrupted run; a NaN stops with the last good
checkpoint intact."""

import json
import os

import chex
import jax
import numpy as np
import pytest

from jaxssl.eval.final import online_knn_probe
from jaxssl.train import loop as loop_lib
from jaxssl.train.checkpoint import Checkpointer
from jaxssl.train.recipes import tiny


def metrics_rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_stop_and_resume_equals_uninterrupted_run(tmp_path):
    c = tiny("excb")
    c.train.num_steps = 6
    # The online k-NN probe runs on held-out subsets every 3 steps; it must not disturb training.
    c.train.update(online_knn_every=3, online_knn_train_size=1000, online_knn_test_size=500)
    # The probe comes in as the on_log callback (the CLI passes it the same way).
    full = loop_lib.train(c, str(tmp_path / "full"), on_log=online_knn_probe)
    part = loop_lib.train(c, str(tmp_path / "part"), stop_after=3)
    assert part["stopped"] and part["step"] == 3
    rest = loop_lib.train(c, str(tmp_path / "part"))
    assert rest["resumed"] and rest["step"] == 6
    # Bit-identical parameters, teacher and cluster sizes.
    chex.assert_trees_all_equal(jax.device_get(full["state"].params),
                                jax.device_get(rest["state"].params))
    chex.assert_trees_all_equal(jax.device_get(full["state"].teacher_params),
                                jax.device_get(rest["state"].teacher_params))
    np.testing.assert_array_equal(np.asarray(full["state"].method_state["cluster_sizes"]),
                                  np.asarray(rest["state"].method_state["cluster_sizes"]))
    # Same data order: the per-step fingerprints of the examples seen agree step by step.
    a = {r["step"]: r["data_fingerprint"] for r in metrics_rows(tmp_path / "full")}
    b = {r["step"]: r["data_fingerprint"] for r in metrics_rows(tmp_path / "part")}
    assert sorted(b) == list(range(1, 7)) and a == b
    assert len(set(a.values())) == 6  # and the batches really differ from step to step
    probes = {r["step"]: r["online_knn_top1"] for r in metrics_rows(tmp_path / "full")
              if "online_knn_top1" in r}
    assert sorted(probes) == [3, 6]
    assert all(0.1 < v <= 1.0 for v in probes.values())  # above chance for 10 classes
    # The training clock of the rows runs on across the stop: the resumed session starts from
    # the seconds saved with the step-3 checkpoint.
    clock = [r["train_seconds"] for r in metrics_rows(tmp_path / "part")]
    assert len(clock) == 6 and clock[0] > 0 and all(b >= a for a, b in zip(clock, clock[1:]))


def test_flattened_optimizer_state_resumes_bit_identically(tmp_path):
    """optim.flatten=True keeps one moment vector per parameter group (and empty states for
    absent groups): orbax saves and restores that layout, and resuming reproduces the run."""
    c = tiny("dino")
    c.optim.flatten = True
    c.train.num_steps = 4
    full = loop_lib.train(c, str(tmp_path / "full"))
    loop_lib.train(c, str(tmp_path / "part"), stop_after=2)
    rest = loop_lib.train(c, str(tmp_path / "part"))
    assert rest["resumed"] and rest["step"] == 4
    flat_moments = [x for x in jax.tree.leaves(full["state"].opt_state) if x.ndim == 1]
    assert flat_moments and max(x.size for x in flat_moments) > 1000  # really flattened
    chex.assert_trees_all_equal(jax.device_get(full["state"].params),
                                jax.device_get(rest["state"].params))
    chex.assert_trees_all_equal(jax.device_get(full["state"].opt_state),
                                jax.device_get(rest["state"].opt_state))


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    c = tiny("dino")
    c.train.num_steps = 8
    c.train.checkpoint_every = 2
    real = loop_lib.hyperparams

    def poisoned(config, step, total):
        h = real(config, step, total)
        if step == 2:  # the update of step 3 makes every parameter NaN
            h["learning_rate"] = np.float32(np.nan)
        return h

    monkeypatch.setattr(loop_lib, "hyperparams", poisoned)
    workdir = str(tmp_path / "run")
    with pytest.raises(loop_lib.NonFiniteLossError, match=r"at step 4.*checkpoints/2"):
        loop_lib.train(c, workdir)
    ckpt = Checkpointer(workdir)
    assert ckpt.all_steps() == [2]
    restored = ckpt.restore_raw()
    leaves = jax.tree.leaves(restored["params"])
    assert leaves and all(np.all(np.isfinite(np.asarray(x))) for x in leaves)


def test_callbacks_see_logged_steps_and_the_end(tmp_path):
    """on_log runs at every logged step and adds to its metrics row; on_end runs once, after the
    last step, and adds to the summary; the trainer itself evaluates nothing (no report.json)."""
    c = tiny("carp")
    c.train.update(num_steps=3, log_every=2)
    logged, ended = [], []

    def on_log(event: loop_lib.LogEvent) -> dict:
        logged.append((event.step, int(event.state.step)))
        return {"probe": 10.0 * event.step}

    def on_end(event: loop_lib.EndEvent) -> dict:
        ended.append((event.step, int(event.state.step), event.is_main, event.workdir))
        return {"extra": "done"}

    out = loop_lib.train(c, str(tmp_path), on_log=on_log, on_end=on_end)
    assert logged == [(2, 2), (3, 3)]  # every log_every steps and the last one
    assert ended == [(3, 3, True, str(tmp_path))]
    assert out["extra"] == "done" and out["step"] == 3 and not out["stopped"]
    assert {r["step"]: r["probe"] for r in metrics_rows(tmp_path)} == {2: 20.0, 3: 30.0}
    assert not os.path.exists(tmp_path / "report.json")


def test_prototype_diagnostics_at_diag_steps_and_the_last(tmp_path):
    """Unique prototypes at 1e-2 and 1e-3 are logged at the logged steps that are multiples of
    prototype_diag_every and at the last step, and nowhere else; the last row's counts are those
    of the returned teacher's prototypes."""
    from jaxssl.losses.koleo import count_unique_prototypes
    from jaxssl.methods.registry import build_method

    c = tiny("dino")
    c.train.update(num_steps=5, log_every=1, prototype_diag_every=2)
    out = loop_lib.train(c, str(tmp_path))
    rows = {r["step"]: r for r in metrics_rows(tmp_path)}
    assert sorted(rows) == [1, 2, 3, 4, 5]
    for key in ("unique_prototypes_1e-2", "unique_prototypes_1e-3"):
        assert sorted(s for s, r in rows.items() if key in r) == [2, 4, 5], key
    protos = build_method(c).prototypes(jax.device_get(out["state"].teacher_params))
    assert rows[5]["unique_prototypes_1e-2"] == int(count_unique_prototypes(protos, 1e-2))
    assert rows[5]["unique_prototypes_1e-3"] == int(count_unique_prototypes(protos, 1e-3))
    for s in (2, 4, 5):
        # A smaller threshold links fewer pairs: never fewer components; at most K = 64.
        assert (1 <= rows[s]["unique_prototypes_1e-2"] <= rows[s]["unique_prototypes_1e-3"]
                <= c.head.num_prototypes)
