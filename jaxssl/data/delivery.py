"""Host batches -> globally sharded ``jax.Array`` s (batch dimension split over the data axis)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def to_global_batch(batch: Any, mesh: Mesh, axis_name: str = "data") -> Any:
    """Assembles each process's rows into global arrays sharded on the leading dimension.

    Every leaf of ``batch`` (a pytree of numpy arrays holding this process's ``B`` rows) becomes a
    ``jax.Array`` of leading size ``B * jax.process_count()`` with
    ``NamedSharding(mesh, PartitionSpec(axis_name))``: split over ``axis_name``, replicated over
    the mesh's other axes. Process ``p``'s rows land at ``p * B : (p + 1) * B``, matching the
    data order of ``make_train_iterator``.

    >>> mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    >>> out = to_global_batch({"label": np.arange(16, dtype=np.int32)}, mesh)
    >>> out["label"].shape, tuple(out["label"].sharding.spec), len(out["label"].addressable_shards)
    ((16,), ('data',), 8)
    """
    if axis_name not in mesh.axis_names:
        raise ValueError(f"axis_name {axis_name!r} is not a mesh axis; mesh has {mesh.axis_names}.")
    sharding = NamedSharding(mesh, PartitionSpec(axis_name))
    shards = mesh.shape[axis_name]
    processes = jax.process_count()

    def put(path, leaf):
        leaf = np.asarray(leaf)
        if leaf.ndim == 0 or (leaf.shape[0] * processes) % shards:
            raise ValueError(
                f"batch{jax.tree_util.keystr(path)} has shape {leaf.shape}; its leading (batch) "
                f"dimension times {processes} process(es) must be divisible by the {shards} "
                f"shards of mesh axis {axis_name!r}."
            )
        return jax.make_array_from_process_local_data(sharding, leaf)

    return jax.tree_util.tree_map_with_path(put, batch)
