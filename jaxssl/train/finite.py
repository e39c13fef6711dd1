"""The NaN guard: a poisoned train state is never saved, and a NaN stop says where to resume.

A finite loss does not make the state finite: the loss of step ``s`` is computed *before* that
step's update, so an update that overflows (a huge learning rate) leaves NaN/Inf parameters behind
a finite loss. The trainer therefore checks the whole state (student and teacher parameters,
BatchNorm statistics, optimiser state, method state such as ExCB's cluster sizes) on the device
before every save (:func:`non_finite_parts`: one reduction per leaf, one small transfer) and
refuses to save a state that is not finite, so every checkpoint in a workdir is finite and
checkpoint retention can only ever delete older finite ones.

After a NaN stop the trainer leaves ``<workdir>/nonfinite.json`` behind; the next resume of that
workdir may change ``optim.*`` (lowering the learning rate is the usual fix), which a resume
otherwise refuses (:mod:`jaxssl.train.resume_config`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp

from jaxssl.train.state import TrainState

# The parts of a TrainState that are checked, in the order messages name them.
PARTS = ("params", "teacher_params", "batch_stats", "teacher_batch_stats", "opt_state",
         "method_state")
MARKER_NAME = "nonfinite.json"


class NonFiniteLossError(FloatingPointError):
    """Training stopped on a NaN/Inf loss or state; the newest finite checkpoint is intact."""


def _leaf_name(path) -> str:
    return ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                    for k in path)


@jax.jit
def _finite_flags(trees: dict[str, Any]) -> dict[str, jax.Array]:
    """{part: bool[n_float_leaves]}: whether each floating-point leaf is finite everywhere."""
    out = {}
    for name, tree in trees.items():
        leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
        out[name] = (jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]) if leaves
                     else jnp.ones((0,), bool))
    return out


def non_finite_parts(state: TrainState) -> list[str]:
    """The parts of ``state`` holding a NaN or Inf, each with its first such leaf, e.g.
    ``["params (first: head.prototypes)"]``; empty when the state is finite.

    The check runs on the device where the state lives; only one boolean per leaf is copied back.

    >>> import jax.numpy as jnp
    >>> s = TrainState(step=jnp.int32(1), total_steps=jnp.int32(2),
    ...                params={"w": jnp.array([1.0, jnp.nan])}, batch_stats={},
    ...                teacher_params={"w": jnp.ones(2)}, teacher_batch_stats={},
    ...                opt_state=(), method_state={"sizes": jnp.array([jnp.inf])})
    >>> non_finite_parts(s)
    ['params (first: w)', 'method_state (first: sizes)']
    """
    trees = {name: getattr(state, name) for name in PARTS}
    flags = jax.device_get(_finite_flags(trees))
    bad = []
    for name in PARTS:
        names = [_leaf_name(p) for p, x in jax.tree_util.tree_leaves_with_path(trees[name])
                 if jnp.issubdtype(x.dtype, jnp.inexact)]
        first = [n for n, ok in zip(names, flags[name]) if not ok]
        if first:
            bad.append(f"{name} (first: {first[0]})")
    return bad


def write_marker(workdir: str, step: int, newest_finite: int | None) -> None:
    """Records a NaN stop at ``step`` in ``<workdir>/nonfinite.json``."""
    with open(os.path.join(workdir, MARKER_NAME), "w", encoding="utf-8") as f:
        json.dump({"step": int(step), "newest_finite_checkpoint": newest_finite}, f)


def read_marker(workdir: str) -> dict | None:
    """The record of the last NaN stop in ``workdir``, or None.

    >>> import tempfile
    >>> d = tempfile.mkdtemp(); write_marker(d, 7, 5); read_marker(d)["step"]
    7
    """
    try:
        with open(os.path.join(workdir, MARKER_NAME), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def clear_marker(workdir: str) -> None:
    """Forgets the last NaN stop (once a resume has accepted the fix)."""
    try:
        os.remove(os.path.join(workdir, MARKER_NAME))
    except FileNotFoundError:
        pass
