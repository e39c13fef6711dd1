"""Issue 13 item 2: the NaN guard never saves a poisoned checkpoint, names the newest checkpoint
that really is finite, and retention (keep_checkpoints=1) never deletes it; a rerun with a sane
learning rate resumes from it and trains."""

from __future__ import annotations

import glob
import os
import re

import jax
import numpy as np
import pytest

from jaxssl.train.checkpoint import Checkpointer
from jaxssl.train.loop import train
from jaxssl.train.recipes import tiny

# lr = 1e45 overflows float32 on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")

def diverging_config(*, warmup_steps: int, keep: int):
    """The issue's repro: lr = 1e45 (inf in float32), a checkpoint every step, 6 steps."""
    c = tiny("excb")
    c.optim.lr = 1e45
    c.optim.warmup_steps = warmup_steps
    c.train.update(checkpoint_every=1, num_steps=6, keep_checkpoints=keep)
    return c


def assert_all_finite(workdir):
    """Every checkpoint left in ``workdir``: every floating leaf of every part is finite."""
    ckpt = Checkpointer(workdir)
    try:
        for step in ckpt.all_steps():
            raw = ckpt.restore_raw(step)
            for part in ("params", "teacher_params", "opt_state", "method_state"):
                leaves = [np.asarray(x) for x in jax.tree.leaves(raw[part])]
                floats = [x for x in leaves if x.dtype.kind == "f"]
                assert floats and all(np.isfinite(x).all() for x in floats), (step, part)
        return ckpt.all_steps()
    finally:
        ckpt.close()


def test_divergence_at_the_first_update_saves_nothing(tmp_path):
    # No warm-up: the very first update is made with lr = inf, so the state after step 1 (whose
    # loss is still finite) is already poisoned and must not become checkpoint 1.
    workdir = str(tmp_path / "run")
    with pytest.raises(FloatingPointError, match=r"not finite.*params.*no checkpoint was saved"):
        train(diverging_config(warmup_steps=0, keep=3), workdir)
    assert assert_all_finite(workdir) == []


def test_divergence_mid_run_keeps_the_newest_finite_checkpoint_and_resumes(tmp_path, capsys):
    # Warm-up from 0: step 1 trains with lr 0 (checkpoint 1 is finite), step 2 with lr = inf.
    workdir = str(tmp_path / "run")
    with pytest.raises(FloatingPointError) as err:
        train(diverging_config(warmup_steps=3, keep=1), workdir)
    named = re.search(r"checkpoints/(\d+)", str(err.value))
    assert named, str(err.value)
    # keep_checkpoints=1 must not have replaced the one finite checkpoint by a poisoned one.
    assert assert_all_finite(workdir) == [int(named.group(1))] == [1]

    sane = diverging_config(warmup_steps=3, keep=1)
    sane.optim.lr = 1e-3  # the fix; allowed on the first resume after a NaN stop
    capsys.readouterr()
    out = train(sane, workdir)
    assert out["resumed"] and out["step"] == 6
    printed = capsys.readouterr().out
    assert f"Resumed from {os.path.join(workdir, 'checkpoints', '1')} at step 1" in printed
    assert "optim.lr 1e+45 -> 0.001" in printed
    assert assert_all_finite(workdir) == [6]


def test_a_poisoned_checkpoint_left_by_an_older_version_is_skipped(trained, run_copy, capsys):
    # Before this fix a NaN state could be saved; resuming must not pick such a checkpoint up.
    from jaxssl.data.pipeline import make_train_iterator
    from jaxssl.train import mesh as mesh_lib
    from jaxssl.train.checkpoint import abstract_like
    from jaxssl.train.resume import restore_newest_good

    config, _, summary = trained
    state = summary["state"]
    poisoned = state.replace(params=jax.tree.map(lambda x: x * np.nan, state.params))

    def data():
        return make_train_iterator(config.data, global_batch_size=config.train.batch_size,
                                   seed=config.seed)

    ckpt = Checkpointer(run_copy)
    ckpt.save(6, poisoned, data(), config)
    rep = mesh_lib.replicated(mesh_lib.make_data_mesh())
    found = restore_newest_good(ckpt, abstract_like(state, rep), data(), config)
    assert found.step == 4 and ckpt.all_steps() == [2, 4]
    assert "Skipping checkpoint" in capsys.readouterr().out
    (moved,) = glob.glob(os.path.join(run_copy, "checkpoints", "6.corrupt-*"))
    with open(os.path.join(moved, "WHY.txt")) as f:
        assert f.read().startswith("its state is not finite: params (first: ")
    ckpt.close()
