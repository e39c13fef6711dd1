"""What a resumed run may change in its config, and how a change is applied and recorded.

Rerunning a training command resumes from the workdir's newest checkpoint. A resumed run must
compute what the interrupted one would have, so a field that changes the run's meaning (method,
model, head, data, batch size, optimiser and schedules, loss, augmentation, EMA, seed, gradient
accumulation: everything not listed below) is refused, with one message listing every differing
field with its old and new value. Safe fields are applied and recorded: ``config.json`` is
rewritten, the previous one is kept as ``config.<step>.json`` and the trainer prints what changed.

Safe to change on resume:

* :data:`SAFE_FIELDS` and every ``eval.*`` field: logging, checkpoint cadence and retention,
  progress bar, online probe, prototype diagnostics, the final evaluation, where the data is
  read from / how fast (``data.data_dir``, ``data.num_threads``, ``data.prefetch``),
  activation rematerialisation (``model.remat``) and ExCB's k-means initialisation
  (``loss.kmeans_*``, used before step 1 only).
* ``train.num_steps`` upwards and ``train.time_budget_s`` upwards (or to 0, no budget): the
  schedules are re-planned to the new end (:func:`resumed_total_steps`; a budget run re-plans
  from its remaining budget after every resume anyway).
* ``optim.*`` on the first resume after a NaN stop (``<workdir>/nonfinite.json``, see
  :mod:`jaxssl.train.finite`): lowering the learning rate is the usual fix.

A field missing from an older checkpoint's config counts as its schema default
(``jaxssl.train.defaults``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import ml_collections

from jaxssl.output_paths import atomic_write
from jaxssl.train.budget import FIRST_PLAN_STEP
from jaxssl.train.defaults import base_config

SAFE_FIELDS = frozenset({
    "train.log_every", "train.checkpoint_every", "train.keep_checkpoints", "train.progress",
    "train.online_knn_every", "train.online_knn_train_size", "train.online_knn_test_size",
    "train.prototype_diag_every",
    # Where and how fast the same data is read; the grain iterator state does not depend on them.
    "data.data_dir", "data.num_threads", "data.prefetch",
    # Recomputes activations instead of storing them: memory, not results.
    "model.remat",
    # ExCB's k-means centroid initialisation runs before step 1 only; a resume does not repeat it.
    "loss.kmeans_init", "loss.kmeans_samples", "loss.kmeans_iters",
})
SAFE_PREFIXES = ("eval.",)
AFTER_NON_FINITE_PREFIXES = ("optim.",)
GROWING_FIELDS = ("train.num_steps", "train.time_budget_s")
_ABSENT = "(absent)"


class ResumeConfigError(ValueError):
    """The config of a resumed run differs in fields that change what the run computes."""


@dataclasses.dataclass(frozen=True)
class Change:
    """One differing config field: its dotted name, the checkpoint's value and the new one."""

    field: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.field} {_show(self.old)} -> {_show(self.new)}"


def _show(value: Any) -> str:
    return value if value is _ABSENT else json.dumps(value, separators=(",", ":"))


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"train.batch_size": 128, ...} of a (Config)dict, with values as JSON would store them.

    >>> flatten({"a": {"b": (1, 2)}, "c": None})
    {'a.b': [1, 2], 'c': None}
    """
    if isinstance(tree, ml_collections.ConfigDict):
        tree = json.loads(tree.to_json_best_effort())
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.loads(json.dumps(value))  # tuples -> lists, as in a saved config
    return out


def diff_configs(saved: Any, new: Any) -> list[Change]:
    """Every field whose value differs between the checkpoint's config and the new one; a field
    absent from the checkpoint compares as the schema default.

    >>> from jaxssl.train.defaults import base_config
    >>> a, b = base_config(), base_config(); b.optim.lr = 0.01
    >>> [str(c) for c in diff_configs(a, b)]
    ['optim.lr 0.0005 -> 0.01']
    """
    old, cur, default = flatten(saved), flatten(new), flatten(base_config())
    changes = []
    for name, value in cur.items():
        before = old.get(name, default.get(name, _ABSENT))
        if before != value:
            changes.append(Change(name, before, value))
    return changes


def _grows(change: Change) -> bool:
    old, new = change.old, change.new
    if not isinstance(old, (int, float)) or not isinstance(new, (int, float)):
        return False
    if change.field == "train.time_budget_s":  # 0 = no budget: the longest
        return new == 0 or (old != 0 and new > old)
    return new > old


def is_safe(change: Change, *, after_non_finite: bool = False) -> bool:
    """Whether ``change`` may be applied to a resumed run.

    >>> is_safe(Change("train.log_every", 20, 5)), is_safe(Change("optim.lr", 1e-3, 1e-4))
    (True, False)
    >>> is_safe(Change("train.num_steps", 100, 200)), is_safe(Change("train.num_steps", 100, 50))
    (True, False)
    >>> is_safe(Change("optim.lr", 1e-3, 1e-4), after_non_finite=True)
    True
    """
    f = change.field
    if f in SAFE_FIELDS or f.startswith(SAFE_PREFIXES):
        return True
    if f in GROWING_FIELDS:
        return _grows(change)
    return after_non_finite and f.startswith(AFTER_NON_FINITE_PREFIXES)


def check_resume_config(saved: Any, new: Any, *, where: str,
                        after_non_finite: bool = False) -> list[Change]:
    """The safe changes from ``saved`` (a checkpoint's config) to ``new``; raises
    :class:`ResumeConfigError` listing every other change, with old and new values.

    >>> from jaxssl.train.defaults import base_config
    >>> a, b = base_config(), base_config()
    >>> b.train.log_every, b.train.batch_size, b.optim.lr = 5, 64, 0.01
    >>> check_resume_config(a, b, where="run")
    Traceback (most recent call last):
    ...
    jaxssl.train.resume_config.ResumeConfigError: cannot resume run with a changed config:
    optim.lr 0.0005 -> 0.01; train.batch_size 128 -> 64. These fields change what the run ...
    >>> [str(c) for c in check_resume_config(a, b, where="run", after_non_finite=True)
    ...  if c.field != "train.batch_size"]
    Traceback (most recent call last):
    ...
    jaxssl.train.resume_config.ResumeConfigError: cannot resume run with a changed config:
    train.batch_size 128 -> 64. These fields ...
    """
    changes = diff_configs(saved, new)
    refused = [c for c in changes if not is_safe(c, after_non_finite=after_non_finite)]
    if refused:
        notes = []
        if any(c.field in GROWING_FIELDS for c in refused):
            notes.append("train.num_steps and train.time_budget_s may only grow")
        if not after_non_finite and any(c.field.startswith("optim.") for c in refused):
            notes.append("optim.* may change only on the first resume after a NaN stop")
        note = f" ({'; '.join(notes)})" if notes else ""
        raise ResumeConfigError(
            f"cannot resume {where} with a changed config: "
            f"{'; '.join(str(c) for c in refused)}. These fields change what the run computes"
            f"{note}; rerun with the checkpoint's values or use a new --workdir.")
    return changes


def resumed_total_steps(restored_total: int, step: int, changes: list[Change],
                        config: ml_collections.ConfigDict, *, spent_s: float | None
                        ) -> tuple[int, bool]:
    """The total step count a resumed run starts from, and whether its wall-clock budget is
    re-planned in this run.

    Without a budget the checkpoint's total stands, unless ``num_steps`` grew: then the run goes
    to the new ``num_steps``. A budget run re-plans from the budget left after the ``spent_s``
    training seconds of its earlier runs (the budget is the whole run's, restarts included), at
    its first plan ``FIRST_PLAN_STEP`` steps in, as a fresh run does; it keeps the checkpoint's plan
    when the budget is used up or ``spent_s`` was not recorded. A larger ``num_steps`` or budget
    first extends the run to that first plan.

    >>> from jaxssl.train.defaults import base_config
    >>> c = base_config(); c.train.num_steps = 300
    >>> resumed_total_steps(100, 40, [Change("train.num_steps", 100, 300)], c, spent_s=9.0)
    (300, False)
    >>> resumed_total_steps(100, 40, [Change("train.log_every", 20, 5)], c, spent_s=9.0)
    (100, False)
    >>> c.train.time_budget_s = 60.0
    >>> resumed_total_steps(100, 90, [], c, spent_s=50.0)
    (100, True)
    >>> resumed_total_steps(100, 90, [Change("train.num_steps", 100, 300)], c, spent_s=50.0)
    (106, True)
    """
    grown = any(c.field in GROWING_FIELDS for c in changes)
    num_steps = int(config.train.num_steps)
    budget = float(config.train.time_budget_s)
    if not budget:
        return (num_steps if grown else restored_total), False
    if spent_s is None or spent_s >= budget:
        return restored_total, False
    if grown:
        return min(num_steps, max(restored_total, step + FIRST_PLAN_STEP + 1)), True
    return restored_total, True


def record_config(workdir: str, config: ml_collections.ConfigDict, *, step: int | None,
                  changes: list[Change]) -> str | None:
    """Writes ``<workdir>/config.json``; on a resume with changes, first keeps the previous one as
    ``config.<step>.json`` and returns that name (None otherwise).

    >>> import tempfile
    >>> from jaxssl.train.defaults import base_config
    >>> d = tempfile.mkdtemp(); c = base_config()
    >>> record_config(d, c, step=None, changes=[])
    >>> record_config(d, c, step=40, changes=[Change("train.log_every", 20, 5)])
    'config.40.json'
    """
    path = os.path.join(workdir, "config.json")
    kept = None
    if changes and os.path.exists(path):
        kept, n = f"config.{step}.json", 1
        while os.path.exists(os.path.join(workdir, kept)):
            n += 1
            kept = f"config.{step}.{n}.json"
        os.replace(path, os.path.join(workdir, kept))
    if changes or not os.path.exists(path) or step is None:
        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(config.to_json_best_effort(indent=2))

        atomic_write(path, write)
    return kept
