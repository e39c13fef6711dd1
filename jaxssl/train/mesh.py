"""Device mesh and multi-host initialisation.

Every array the train step sees is a global ``jax.Array``; the batch axis is sharded over the mesh
axis ``data`` and parameters are replicated. XLA's GSPMD partitioner inserts the collectives, so the
losses compute global batch statistics with no ``axis_name`` plumbing.
"""

from __future__ import annotations

import os

import jax
from jax._src import distributed
from jax.sharding import NamedSharding, PartitionSpec

DATA_AXIS = "data"


def maybe_initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Calls ``jax.distributed.initialize`` when the run spans several processes.

    On Cloud TPU pods JAX discovers the topology itself (``JAXSSL_DISTRIBUTED=auto``, or the TPU
    environment variables). Elsewhere the coordinator address, process count and id come from the
    arguments or from ``JAXSSL_COORDINATOR``, ``JAXSSL_NUM_PROCESSES`` and ``JAXSSL_PROCESS_ID``.
    Returns whether the run is multi-process (initialised now or by an earlier call).
    """
    coordinator_address = coordinator_address or os.environ.get("JAXSSL_COORDINATOR")
    if num_processes is None and os.environ.get("JAXSSL_NUM_PROCESSES"):
        num_processes = int(os.environ["JAXSSL_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAXSSL_PROCESS_ID"):
        process_id = int(os.environ["JAXSSL_PROCESS_ID"])
    if jax.distributed.is_initialized():
        return True  # already initialised (a second train() in the same process)
    if coordinator_address:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
        return True
    on_tpu_pod = bool(os.environ.get("TPU_WORKER_HOSTNAMES")
                      or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"))
    if os.environ.get("JAXSSL_DISTRIBUTED") == "auto" or on_tpu_pod:
        jax.distributed.initialize()
        return True
    return False


def sync_processes(name: str, timeout_s: float = 900.0) -> None:
    """Waits until every process of a multi-process run reaches the barrier ``name``.

    Uses the coordination service's key-value barrier, whose timeout is ours to set, rather than a
    device collective: the first cross-process collective on CPU also builds the Gloo context,
    which gives up after a fixed 30 s. A process still compiling (compile times differ by tens of
    seconds on a loaded host) would make its peers fail there. A no-op in a single process.

    >>> sync_processes("doctest")  # one process: returns at once
    """
    if jax.process_count() == 1:
        return
    client = distributed.global_state.client
    if client is None:
        raise RuntimeError(f"sync_processes({name!r}): {jax.process_count()} processes but no "
                           "jax.distributed client; call maybe_initialize_distributed first.")
    client.wait_at_barrier(name, int(timeout_s * 1000))


def make_data_mesh() -> jax.sharding.Mesh:
    """A 1-D mesh over all devices of all processes, with GSPMD (Auto) axis semantics.

    >>> make_data_mesh().axis_names
    ('data',)
    """
    return jax.make_mesh(
        (jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
    )


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Shards the leading (batch) axis over ``data``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Replicates an array on every device (parameters, optimiser and method state)."""
    return NamedSharding(mesh, PartitionSpec())
