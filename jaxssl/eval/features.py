"""Frozen features: run an embedding function over a padded batch stream (``extract_features``),
extract one split of a restored model (``extract_split``), and keep them in an ``.npz``
(``save_features`` / ``load_features``) so protocols can be re-run without the images."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxssl.data.augment import normalize_images
from jaxssl.data.eval_split import eval_batches
from jaxssl.data.sources.npz import open_npz
from jaxssl.eval.restore import Pretrained

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


@dataclasses.dataclass
class SplitFeatures:
    """Frozen features of one split: features [N, D], labels [N], prototype ids [N] or None."""

    features: np.ndarray
    labels: np.ndarray
    assignments: np.ndarray | None = None


def extract_split(
    pre: Pretrained,
    spec: str,
    split: str,
    *,
    batch_size: int,
    limit: int = 0,
    with_assignments: bool = False,
    seed: int = 0,
) -> SplitFeatures:
    """Eval-mode features of ``split`` ("train" / "test") of dataset ``spec``.

    Images are un-augmented centre crops at ``config.data.global_crops.size``, normalised with
    ``config.augment.mean/std`` as in training. When the device count divides ``batch_size``,
    each batch is sharded over a 1-D "data" mesh. ``limit`` > 0 keeps a seeded random subset of
    that many examples (``jaxssl.data.eval_split.limited_indices``). ``with_assignments`` also
    records the arg-max prototype of each image (methods with prototypes only) in the same pass
    over the data.
    """
    cfg = pre.config
    mean, std = tuple(cfg.augment.mean), tuple(cfg.augment.std)
    n_dev = jax.device_count()
    mesh = (jax.make_mesh((n_dev,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
            if batch_size % n_dev == 0 else None)
    with_assignments = with_assignments and pre.method.prototypes(pre.params) is not None
    method, params, stats = pre.method, pre.params, pre.batch_stats

    def features_and_ids(images):
        x = normalize_images(images, mean, std)
        feats = method.embed(params, stats, x).astype(jnp.float32)
        if not with_assignments:
            return feats
        # One pass serves both: ids < 2^24 are exact in float32, split off again below.
        ids = method.assign(params, stats, x).astype(jnp.float32)
        return jnp.concatenate([feats, ids[:, None]], axis=1)

    batches = eval_batches(spec, split, image_size=int(cfg.data.global_crops.size),
                           batch_size=batch_size, data_dir=cfg.data.data_dir, limit=limit,
                           seed=seed)
    out, labels = extract_features(jax.jit(features_and_ids), batches, mesh=mesh)
    if not with_assignments:
        return SplitFeatures(out, labels)
    return SplitFeatures(out[:, :-1], labels, out[:, -1].astype(np.int64))


def save_features(path: str, train: SplitFeatures | None, test: SplitFeatures | None) -> str:
    """Writes the extracted splits to one ``.npz`` (keys ``<split>_features``, ``_labels``,
    ``_assignments``), so protocols can be re-run without touching the images."""
    arrays = {}
    for split, feats in (("train", train), ("test", test)):
        if feats is None:
            continue
        arrays[f"{split}_features"], arrays[f"{split}_labels"] = feats.features, feats.labels
        if feats.assignments is not None:
            arrays[f"{split}_assignments"] = feats.assignments
    np.savez(path, **arrays)
    return path


def load_features(path: str, feature_dim: int) -> dict[str, SplitFeatures]:
    """{split: SplitFeatures} from a ``save_features`` file, checked against the model's
    feature width ``feature_dim``.

    >>> import tempfile
    >>> p = tempfile.mkdtemp() + "/f.npz"
    >>> _ = save_features(p, None, SplitFeatures(np.zeros((2, 3), np.float32), np.arange(2)))
    >>> load_features(p, 3)["test"].features.shape
    (2, 3)
    >>> load_features(p, 4)
    Traceback (most recent call last):
    ...
    ValueError: ...f.npz: test_features has shape (2, 3) but the model's features are [N, 4]...
    """
    out = {}
    # open_npz names the file when it is missing or not an .npz archive.
    with open_npz(path, what="features file",
                  hint="the <split>_features / _labels arrays that --save-features writes"
                  ) as data:
        for split in ("train", "test"):
            if f"{split}_features" not in data.files:
                continue
            feats = data[f"{split}_features"]
            if feats.ndim != 2 or feats.shape[1] != feature_dim:
                raise ValueError(
                    f"{path}: {split}_features has shape {feats.shape} but the model's features "
                    f"are [N, {feature_dim}]; the file was written by a different model")
            ids = data[f"{split}_assignments"] if f"{split}_assignments" in data.files else None
            out[split] = SplitFeatures(feats, data[f"{split}_labels"], ids)
    return out
