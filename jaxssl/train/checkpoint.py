"""Orbax checkpoints of the whole train state together with the grain iterator state.

Each checkpoint is one orbax step directory with three items: ``state`` (the TrainState pytree),
``data`` (the grain iterator position, so a resumed run sees exactly the batches the uninterrupted
run would have) and ``config`` (JSON, so evaluation and export rebuild the same model).
Saves are synchronous: the train step donates the state buffers, and a finished save is what
makes a preemption or a NaN stop safe.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp


class Checkpointer:
    """A thin wrapper over ``ocp.CheckpointManager`` in ``<workdir>/checkpoints``."""

    def __init__(self, workdir: str, *, keep: int = 3):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False),
        )

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of every finished checkpoint, oldest first."""
        return sorted(self.manager.all_steps())

    def path(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state: Any, data_iterator, config: ml_collections.ConfigDict
             ) -> str:
        """Saves state, iterator position and config at ``step``; returns the directory."""
        items = dict(state=ocp.args.StandardSave(state),
                     config=ocp.args.JsonSave(config.to_dict()))
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        self.manager.wait_until_finished()
        return self.path(step)

    def restore(self, abstract_state: Any, data_iterator=None, step: int | None = None) -> Any:
        """Restores the state (with the shardings of ``abstract_state``) and, when given, moves
        ``data_iterator`` to the saved position in place."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        items = dict(state=ocp.args.StandardRestore(abstract_state))
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        return restored["state"]

    def restore_raw(self, step: int | None = None) -> Any:
        """The saved state as plain nested dicts of host arrays, without a target structure
        (for inspection and export when the model cannot be rebuilt)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore()))
        return restored["state"]

    def restore_config(self, step: int | None = None) -> ml_collections.ConfigDict:
        """The config a checkpoint was written with."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        restored = self.manager.restore(step, args=ocp.args.Composite(
            config=ocp.args.JsonRestore()))
        return ml_collections.ConfigDict(restored["config"])

    def close(self) -> None:
        self.manager.close()


def abstract_like(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """ShapeDtypeStructs of ``tree`` with ``sharding``: the restore target of a checkpoint."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
