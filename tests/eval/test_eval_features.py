"""Feature extraction: padding rows dropped, order kept, mesh placement, empty-stream error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.eval.features import extract_features


def _batches(n, batch_size):
    """Images whose pixels all equal the example index; the last batch padded with zeros."""
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size)
        valid = idx < n
        image = np.where(valid, idx, 0).astype(np.uint8)[:, None, None, None]
        yield {"image": np.broadcast_to(image, (batch_size, 2, 2, 3)).copy(),
               "label": np.where(valid, idx % 3, -1).astype(np.int32), "valid": valid}


@jax.jit
def _embed(images):
    x = images.astype(jnp.float32)
    return jnp.stack([x.mean(axis=(1, 2, 3)), -x.max(axis=(1, 2, 3))], axis=1)


def test_drops_padding_and_keeps_order():
    feats, labels = extract_features(_embed, _batches(10, 4))
    assert feats.dtype == np.float32 and labels.dtype == np.int32
    np.testing.assert_array_equal(feats[:, 0], np.arange(10))
    np.testing.assert_array_equal(feats[:, 1], -np.arange(10))
    np.testing.assert_array_equal(labels, np.arange(10) % 3)


def test_mesh_shards_batch_over_data_axis():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    seen = []

    def embed(images):
        seen.append(images.sharding)
        return _embed(images)

    feats, _ = extract_features(embed, _batches(13, 8), mesh=mesh)
    np.testing.assert_array_equal(feats[:, 0], np.arange(13))
    assert len(seen) == 2
    for sharding in seen:
        assert sharding.spec[0] == "data" and len(sharding.device_set) == 8
    with pytest.raises(ValueError, match=r"\(6, 2, 2, 3\).*8"):
        extract_features(embed, _batches(6, 6), mesh=mesh)


def test_empty_dataset_raises():
    with pytest.raises(ValueError, match="empty"):
        extract_features(_embed, [])
    padded_only = {"image": np.zeros((2, 2, 2, 3), np.uint8), "label": np.zeros(2, np.int32),
                   "valid": np.zeros(2, bool)}
    with pytest.raises(ValueError, match="empty"):
        extract_features(_embed, [padded_only])


def test_bad_shapes_raise():
    bad = {"image": np.zeros((2, 2, 2, 3), np.uint8), "label": np.zeros(3, np.int32)}
    with pytest.raises(ValueError, match=r"image \(2, 2, 2, 3\), label \(3,\)"):
        extract_features(_embed, [bad])
    ok = {"image": np.zeros((2, 2, 2, 3), np.uint8), "label": np.zeros(2, np.int32)}
    with pytest.raises(ValueError, match=r"\[B, D\].*\(2,\)"):
        extract_features(jax.jit(lambda im: im.sum(axis=(1, 2, 3))), [ok])
