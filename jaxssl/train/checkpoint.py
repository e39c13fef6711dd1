"""Orbax checkpoints of the whole train state together with the grain iterator state.

Each checkpoint is one orbax step directory with three items: ``state`` (the TrainState pytree),
``data`` (the grain iterator position, so a resumed run sees exactly the batches the uninterrupted
run would have) and ``config`` (JSON, so evaluation and export rebuild the same model).
Saves are synchronous: the train step donates the state buffers, and a finished save is what
makes a preemption or a NaN stop safe. Each step also records the training seconds spent so far
(orbax custom metadata), which a resumed wall-clock budget needs.

A checkpoint that cannot be read is moved aside (:meth:`Checkpointer.set_aside`) to
``<step>.corrupt-<UTC time>``, a name orbax does not list as a step, with the reason next to it.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp

from jaxssl.train.defaults import fill_defaults


class CorruptCheckpointError(ValueError):
    """A checkpoint that cannot be read; the message names it and the intact alternatives."""


class Checkpointer:
    """A thin wrapper over ``ocp.CheckpointManager`` in ``<workdir>/checkpoints``."""

    def __init__(self, workdir: str, *, keep: int = 3, cleanup_tmp: bool = False):
        """``cleanup_tmp`` removes the temporary directories of saves that never finished (a
        ``kill -9`` mid-save): only for the trainer, which holds the workdir's lock; a reader
        (eval, export) must not delete a running trainer's save in progress."""
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=False,
                cleanup_tmp_directories=cleanup_tmp),
        )

    def latest_step(self) -> int | None:
        """The newest finished checkpoint's step, or None."""
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of every finished checkpoint, oldest first."""
        return sorted(self.manager.all_steps())

    def path(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state: Any, data_iterator, config: ml_collections.ConfigDict,
             *, train_seconds: float | None = None) -> str:
        """Saves state, iterator position and config at ``step``; returns the directory.

        ``train_seconds`` (the training time spent up to ``step``) goes into the step's metadata.
        """
        items = dict(state=ocp.args.StandardSave(state),
                     config=ocp.args.JsonSave(config.to_dict()))
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        meta = {} if train_seconds is None else {"train_seconds": float(train_seconds)}
        self.manager.save(step, args=ocp.args.Composite(**items), force=True,
                          custom_metadata=meta)
        self.manager.wait_until_finished()
        return self.path(step)

    def train_seconds(self, step: int) -> float | None:
        """Training seconds spent up to ``step`` (None for checkpoints that did not record it)."""
        try:
            value = (self.manager.metadata(step).custom_metadata or {}).get("train_seconds")
        except (OSError, ValueError, KeyError):
            return None
        return None if value is None else float(value)

    def saved_shapes(self, step: int) -> dict[str, tuple[int, ...]]:
        """{"params.head.prototypes": shape, ...} of the saved state, read from its metadata."""
        saved = ocp.StandardCheckpointer().metadata(os.path.join(self.path(step), "state"))
        return shapes_by_name(saved.item_metadata.tree)

    def set_aside(self, step: int, reason: str) -> str:
        """Moves checkpoint ``step`` to ``<step>.corrupt-<UTC time>`` (orbax no longer lists it;
        nothing is deleted), writes ``reason`` into ``WHY.txt`` there and returns the new path."""
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = f"{self.path(step)}.corrupt-{stamp}"
        os.rename(self.path(step), target)
        with open(os.path.join(target, "WHY.txt"), "w", encoding="utf-8") as f:
            f.write(reason + "\n")
        self.manager.reload()
        return target

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
        """The config a checkpoint was written with (fields added to the schema since then
        read as their defaults)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        restored = self.manager.restore(step, args=ocp.args.Composite(
            config=ocp.args.JsonRestore()))
        return fill_defaults(ml_collections.ConfigDict(restored["config"]))

    def unreadable(self, step: int, error: BaseException) -> CorruptCheckpointError:
        """The error for checkpoint ``step`` failing to read with ``error``: names the checkpoint,
        says why, and suggests ``--step`` with the other steps (for eval and export)."""
        others = [s for s in self.all_steps() if s != step]
        pick = (f"pick another with --step (available: {', '.join(map(str, others[::-1]))})"
                if others else f"there is no other checkpoint in {self.directory}")
        return CorruptCheckpointError(
            f"checkpoint {self.path(step)} cannot be read ({describe_error(error)}); {pick}. "
            "Resuming training moves an unreadable checkpoint aside and uses the newest one "
            "that restores.")

    def close(self) -> None:
        self.manager.close()


def describe_error(error: BaseException, limit: int = 300) -> str:
    """One line saying why a read failed: the innermost cause's first line (orbax wraps the
    tensorstore error that names the file in generic ones).

    >>> try:
    ...     try:
    ...         raise ValueError("OUT_OF_RANGE: byte range [0, 9) of file x\\nmore")
    ...     except ValueError as e:
    ...         raise Exception("error while reading array index") from e
    ... except Exception as e:
    ...     describe_error(e)
    'ValueError: OUT_OF_RANGE: byte range [0, 9) of file x'
    """
    while error.__cause__ is not None or (error.__context__ is not None
                                          and not error.__suppress_context__):
        error = error.__cause__ or error.__context__
    text = (str(error).strip().splitlines() or [""])[0]
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _key_name(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def shapes_by_name(tree: Any) -> dict[str, tuple[int, ...]]:
    """{"params.backbone.x.kernel": shape} for every array leaf, whatever the container types.

    >>> import numpy as np
    >>> shapes_by_name({"params": {"w": np.zeros((2, 3))}, "step": np.int32(0)})
    {'params.w': (2, 3), 'step': ()}
    """
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if hasattr(leaf, "shape"):
            out[".".join(_key_name(e) for e in path)] = tuple(leaf.shape)
    return out


def check_state_shapes(saved: dict[str, tuple[int, ...]], expected: Any, where: str) -> None:
    """Raises ValueError naming both shapes when the model built from the config disagrees with
    the checkpoint (a changed head width, backbone or prototype count).

    >>> import jax.numpy as jnp
    >>> check_state_shapes({"w": (2, 3)}, {"w": jnp.zeros((2, 4))}, "ckpt")
    Traceback (most recent call last):
    ...
    ValueError: ckpt does not match the model built from its config: w: checkpoint (2, 3) vs ...
    """
    want = shapes_by_name(expected)
    problems = [f"{name}: checkpoint {saved[name]} vs model {shape}"
                for name, shape in want.items() if name in saved and saved[name] != shape]
    problems += [f"{name}: missing from the checkpoint (model {shape})"
                 for name, shape in want.items() if name not in saved]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(f"{where} does not match the model built from its config: "
                         f"{'; '.join(problems[:3])}{more}")


def abstract_like(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """ShapeDtypeStructs of ``tree`` with ``sharding``: the restore target of a checkpoint."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
