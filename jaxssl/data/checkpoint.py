"""Saving and restoring the input iterator with orbax, using the handler grain ships.

grain registers ``grain.checkpoint.CheckpointSave`` / ``CheckpointRestore`` as orbax
``CheckpointArgs`` bound to ``grain.checkpoint.CheckpointHandler``, which writes the iterator state
as ``process_<i>-of-<n>.json`` (one file per JAX process). Put them next to the train state in one
``orbax.checkpoint.CheckpointManager`` step::

    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(train_state),
        data=iterator_save_args(train_iter)))
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=iterator_restore_args(train_iter)))   # train_iter is restored in place

``train_iter`` must be a fresh ``make_train_iterator`` built with the same config, seed and
process layout; after the restore its next batch is the one the uninterrupted run would have seen.
"""

from __future__ import annotations

import grain

try:
    from grain.checkpoint import CheckpointRestore, CheckpointSave
except ImportError as err:  # grain only defines these when orbax imports.
    raise ImportError("jaxssl.data.checkpoint needs orbax-checkpoint installed.") from err


def iterator_checkpoint_handler() -> grain.checkpoint.CheckpointHandler:
    """The orbax handler for grain iterators (for managers built with explicit handlers)."""
    return grain.checkpoint.CheckpointHandler()


def iterator_save_args(iterator: grain.DatasetIterator) -> CheckpointSave:
    """orbax args that save ``iterator``'s position (use as an item of ``ocp.args.Composite``)."""
    return CheckpointSave(iterator)


def iterator_restore_args(iterator: grain.DatasetIterator) -> CheckpointRestore:
    """orbax args that restore the saved position into ``iterator`` (in place)."""
    return CheckpointRestore(iterator)
