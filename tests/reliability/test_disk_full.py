"""A full disk while a checkpoint is being written (ENOSPC at the commit of step 4, with
keep_checkpoints=1): the previous checkpoint is kept and restores, and the next run resumes from
it to the uninterrupted run's weights."""

from __future__ import annotations

import errno
import os
import shutil

import chex
import jax
import pytest
from orbax.checkpoint._src.path import async_path

from jaxssl.train.checkpoint import Checkpointer
from jaxssl.train.loop import train


def test_disk_full_during_a_save_keeps_the_last_good_checkpoint(trained, run_copy,
                                                                 monkeypatch):
    config, _, uninterrupted = trained
    config = config.copy_and_resolve_references()
    config.train.keep_checkpoints = 1  # retention must not drop 2 for a 4 that never landed
    shutil.rmtree(os.path.join(run_copy, "checkpoints", "4"))
    rename = async_path.rename

    async def full_disk(src, dst):
        if os.path.basename(str(dst)) == "4":
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return await rename(src, dst)

    monkeypatch.setattr(async_path, "rename", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        train(config, run_copy)
    ckpt = Checkpointer(run_copy)
    assert ckpt.all_steps() == [2]
    assert int(ckpt.restore_raw(2)["step"]) == 2
    ckpt.close()

    monkeypatch.setattr(async_path, "rename", rename)  # space again
    out = train(config, run_copy)
    assert out["resumed"] and out["step"] == 4
    chex.assert_trees_all_equal(jax.device_get(out["state"].params),
                                jax.device_get(uninterrupted["state"].params))
