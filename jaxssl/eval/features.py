"""Feature extraction: run a frozen embedding function over a padded batch stream."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

EmbedFn = Callable[[jax.Array], jax.Array]


def put_on_mesh(image: np.ndarray, mesh: Mesh | None) -> jax.Array:
    """Puts one batch on the devices: rows split over the mesh's "data" axis (or default device).

    >>> put_on_mesh(np.zeros((2, 3), np.uint8), None).shape
    (2, 3)
    """
    if mesh is None:
        return jax.numpy.asarray(image)
    if "data" not in mesh.axis_names:
        raise ValueError(f"mesh must have a 'data' axis; got axis names {mesh.axis_names}")
    n_data = mesh.shape["data"]
    if image.shape[0] % n_data:
        raise ValueError(
            f"batch size {image.shape[0]} (image shape {image.shape}) is not divisible by the "
            f"mesh 'data' axis size {n_data}; pad the last batch to a full batch"
        )
    spec = PartitionSpec("data", *([None] * (image.ndim - 1)))
    return jax.device_put(image, NamedSharding(mesh, spec))


def extract_features(
    embed_fn: EmbedFn,
    batches: Iterable[Mapping[str, Any]],
    *,
    mesh: Mesh | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeds every valid example of ``batches`` and returns host arrays.

    Args:
      embed_fn: a (jitted) function from uint8 images [B, H, W, C] to features [B, D].
      batches: an iterable of dicts with "image" uint8 [B, H, W, C], "label" int [B] and
        optionally "valid" bool [B]; rows whose "valid" is False (padding of the last batch)
        are dropped. A missing "valid" means every row is valid.
      mesh: optional device mesh; each batch is then sharded over its "data" axis before
        ``embed_fn`` is called, so the batch size must be divisible by that axis.

    Returns:
      (features float32 [N, D], labels int32 [N]) in the order of the stream.

    Raises:
      ValueError: for an empty stream (no valid rows), a batch whose fields disagree in
        length, or features that are not [B, D].

    >>> import jax.numpy as jnp
    >>> embed = jax.jit(lambda im: jnp.mean(im.astype(jnp.float32), axis=(1, 2)))
    >>> batch = {"image": np.full((2, 4, 4, 3), 2, np.uint8), "label": np.array([3, 0]),
    ...          "valid": np.array([True, False])}
    >>> feats, labels = extract_features(embed, [batch])
    >>> feats.shape, feats.dtype, labels.tolist()
    ((1, 3), dtype('float32'), [3])
    """
    feature_chunks: list[np.ndarray] = []
    label_chunks: list[np.ndarray] = []
    for i, batch in enumerate(batches):
        image = np.asarray(batch["image"])
        label = np.asarray(batch["label"])
        valid = np.asarray(batch["valid"], bool) if "valid" in batch else None
        if image.ndim < 2 or label.shape != (image.shape[0],):
            raise ValueError(
                f"batch {i}: 'label' must have shape [B] matching 'image' [B, ...]; got image "
                f"{image.shape}, label {label.shape}"
            )
        if valid is not None and valid.shape != label.shape:
            raise ValueError(
                f"batch {i}: 'valid' shape {valid.shape} does not match 'label' {label.shape}"
            )
        if valid is not None and not valid.any():
            continue  # A fully padded batch still has the fixed shape; nothing to keep.
        feats = np.asarray(jax.device_get(embed_fn(put_on_mesh(image, mesh))), np.float32)
        if feats.ndim != 2 or feats.shape[0] != image.shape[0]:
            raise ValueError(
                f"batch {i}: embed_fn must return features [B, D] with B = {image.shape[0]}; "
                f"got shape {feats.shape}"
            )
        if valid is not None:
            feats, label = feats[valid], label[valid]
        feature_chunks.append(feats)
        label_chunks.append(label.astype(np.int32))
    if not feature_chunks:
        raise ValueError("extract_features: the dataset is empty (no batch had a valid row)")
    return np.concatenate(feature_chunks), np.concatenate(label_chunks)
