"""Issue 13 item 4: a corrupt newest checkpoint (a truncated array file, or state/_METADATA
removed) is skipped by training, which says why, moves it aside and resumes from the newest one
that restores; eval and export name the bad checkpoint and suggest --step."""

from __future__ import annotations

import glob
import os

import chex
import jax
import pytest

from jaxssl.eval.cli import main as eval_main
from jaxssl.eval.restore import load_pretrained
from jaxssl.export.__main__ import main as export_main
from jaxssl.train.checkpoint import Checkpointer
from jaxssl.train.loop import train


def truncate_largest_array_file(step_dir: str) -> None:
    files = glob.glob(os.path.join(step_dir, "state", "**", "d", "*"), recursive=True)
    os.truncate(max(files, key=os.path.getsize), 100)


def remove_metadata(step_dir: str) -> None:
    os.remove(os.path.join(step_dir, "state", "_METADATA"))


CORRUPTIONS = {"truncated": truncate_largest_array_file, "no_metadata": remove_metadata}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_training_falls_back_to_the_newest_checkpoint_that_restores(kind, trained, run_copy,
                                                                     capsys):
    config, _, uninterrupted = trained
    CORRUPTIONS[kind](os.path.join(run_copy, "checkpoints", "4"))
    capsys.readouterr()
    out = train(config, run_copy)
    printed = capsys.readouterr().out
    assert out["resumed"] and out["step"] == 4
    assert f"Skipping checkpoint {os.path.join(run_copy, 'checkpoints', '4')}: " in printed
    assert "cannot be read" in printed
    assert f"Resumed from {os.path.join(run_copy, 'checkpoints', '2')} at step 2" in printed
    moved = glob.glob(os.path.join(run_copy, "checkpoints", "4.corrupt-*"))
    assert len(moved) == 1 and os.path.isdir(os.path.join(moved[0], "state"))  # kept, not deleted
    with open(os.path.join(moved[0], "WHY.txt")) as f:
        assert "cannot be read" in f.read()
    assert Checkpointer(run_copy).all_steps() == [2, 4]  # a fresh 4, the bad one unlisted
    # Steps 3 and 4 redone from checkpoint 2 give the uninterrupted run's weights, bit for bit.
    chex.assert_trees_all_equal(jax.device_get(out["state"].params),
                                jax.device_get(uninterrupted["state"].params))


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_eval_and_export_name_the_bad_checkpoint_and_suggest_step(kind, run_copy, capsys):
    bad = os.path.join(run_copy, "checkpoints", "4")
    CORRUPTIONS[kind](bad)
    with pytest.raises(ValueError, match=rf"checkpoint {bad} cannot be read .*--step.*2"):
        load_pretrained(run_copy)
    assert load_pretrained(run_copy, step=2).step == 2  # the suggestion works
    capsys.readouterr()
    assert eval_main(["--workdir", run_copy, "--protocols", "knn"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and bad in err and "--step" in err
    assert export_main(["--workdir", run_copy, "--format", "msgpack"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and bad in err and "--step" in err
    assert os.path.isdir(bad)  # eval and export only report; they move nothing


def test_when_no_checkpoint_restores_nothing_is_moved(trained, run_copy):
    config, _, _ = trained
    for step in ("2", "4"):
        remove_metadata(os.path.join(run_copy, "checkpoints", step))
    with pytest.raises(ValueError, match=r"no checkpoint in .* restores \(4: .*; 2: .*\)"):
        train(config, run_copy)
    assert sorted(os.listdir(os.path.join(run_copy, "checkpoints"))) == ["2", "4"]
