"""Host batch -> sharded global jax.Arrays on the 8 fake CPU devices."""

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, PartitionSpec

from jaxssl.data.delivery import to_global_batch


def test_batch_is_split_over_the_data_axis():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    batch = {
        "global": np.arange(16 * 2 * 3 * 3 * 3, dtype=np.uint8).reshape(16, 2, 3, 3, 3),
        "label": np.arange(16, dtype=np.int32),
        "index": np.arange(16, dtype=np.int64) * 10,
    }
    out = to_global_batch(batch, mesh)
    for key, value in batch.items():
        arr = out[key]
        assert arr.shape == value.shape and arr.sharding.spec == PartitionSpec("data")
        assert len({s.device for s in arr.addressable_shards}) == 8
        for shard in arr.addressable_shards:
            rows = shard.index[0]
            assert (rows.stop - rows.start) == 2  # 16 rows / 8 devices
            np.testing.assert_array_equal(np.asarray(shard.data), value[rows])
        np.testing.assert_array_equal(np.asarray(arr), value)


def test_two_axis_mesh_replicates_over_the_other_axis():
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
    out = to_global_batch({"label": np.arange(8, dtype=np.int32)}, mesh)["label"]
    shard_rows = sorted((s.index[0].start, s.device.id) for s in out.addressable_shards)
    assert len(shard_rows) == 8
    starts = [start for start, _ in shard_rows]
    assert starts == [0, 0, 2, 2, 4, 4, 6, 6]  # each row block lives on the 2 model devices


def test_indivisible_batch_and_bad_axis():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    with pytest.raises(ValueError, match=r"\['label'\] has shape \(6,\).*8 shards"):
        to_global_batch({"label": np.zeros(6, np.int32)}, mesh)
    with pytest.raises(ValueError, match="axis_name 'batch' is not a mesh axis"):
        to_global_batch({"label": np.zeros(8, np.int32)}, mesh, axis_name="batch")
