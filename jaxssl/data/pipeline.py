"""Host-side input pipelines built on grain: multi-crop training batches and eval batches.

Data order (the contract the trainer and the data-order tests rely on). With ``N`` examples, global
batch ``GB = B * P`` (``P`` processes, ``B`` per process) and ``S = N // GB`` steps per epoch:

* epoch ``e`` visits ``perm_e = default_rng([seed, e, 0]).permutation(N)``; its last
  ``N - S * GB`` positions are dropped (drop_remainder), and the stream runs forever over epochs;
* at step ``s`` of an epoch the *global* batch is ``perm_e[s * GB : (s + 1) * GB]`` and process
  ``p`` holds rows ``p * B : (p + 1) * B`` of it, i.e. the global batch is the concatenation of the
  process batches in process order -- exactly how ``jax.make_array_from_process_local_data`` lays
  out process-local rows -- so it does not depend on the number of processes;
* the views of source example ``i`` in epoch ``e`` are drawn from ``default_rng([seed, e, 1, i])``,
  so they are the same whatever the batch size, thread count or restart point.

grain's iterator state is just the position in this stream, which is why a restored iterator
continues with exactly the batch the uninterrupted run would have produced.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import grain
import numpy as np

from jaxssl.data.config import Crops, DataConfig
from jaxssl.data.crops import eval_view, random_view
from jaxssl.data.scale_schedule import crop_scales
from jaxssl.data.spec import DatasetSpec, make_source


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the ``n`` source indices.

    >>> epoch_permutation(0, 0, 5).tolist() == epoch_permutation(0, 0, 5).tolist()
    True
    >>> sorted(epoch_permutation(0, 3, 5).tolist())
    [0, 1, 2, 3, 4]
    """
    return np.random.default_rng([seed, epoch, 0]).permutation(n)


def stream_position(
    k: int, *, batch: int, process_index: int, process_count: int, steps_per_epoch: int
) -> tuple[int, int]:
    """Maps element ``k`` of process ``process_index``'s stream to ``(epoch, position in perm)``.

    >>> stream_position(5, batch=2, process_index=1, process_count=2, steps_per_epoch=3)
    (0, 11)
    >>> stream_position(6, batch=2, process_index=0, process_count=2, steps_per_epoch=3)
    (1, 0)
    """
    step, row = divmod(k, batch)
    epoch, step_in_epoch = divmod(step, steps_per_epoch)
    return epoch, step_in_epoch * batch * process_count + process_index * batch + row


class _PermutationCache:
    """Keeps the most recent epoch permutation (threads may race; both compute the same array)."""

    def __init__(self, seed: int, n: int):
        self.seed, self.n = seed, n
        self._cached: tuple[int, np.ndarray] | None = None

    def __call__(self, epoch: int) -> np.ndarray:
        cached = self._cached
        if cached is None or cached[0] != epoch:
            cached = (epoch, epoch_permutation(self.seed, epoch, self.n))
            self._cached = cached  # One tuple assignment: atomic under the GIL.
        return cached[1]


class _MultiCropElement:
    """grain ``map_with_index`` transform: stream index -> one multi-crop training example."""

    def __init__(self, source, data: DataConfig, *, seed: int, batch: int, process_index: int,
                 process_count: int, steps_per_epoch: int):
        self.source, self.data, self.seed = source, data, seed
        self.layout = dict(batch=batch, process_index=process_index,
                           process_count=process_count, steps_per_epoch=steps_per_epoch)
        self.permutation = _PermutationCache(seed, len(source))

    def _views(self, rng: np.random.Generator, image: np.ndarray, crops: Crops,
               scale: tuple[float, float]) -> np.ndarray:
        return np.stack([random_view(rng, image, crops.size, scale, self.data.ratio,
                                     self.data.interpolation) for _ in range(crops.num)])

    def __call__(self, k: int, _: Any) -> dict[str, Any]:
        epoch, position = stream_position(k, **self.layout)
        index = int(self.permutation(epoch)[position])
        example = self.source[index]
        rng = np.random.default_rng([self.seed, epoch, 1, index])
        d, schedule = self.data, self.data.crop_scale_schedule
        # Element k belongs to optimiser step k // B of this process's stream.
        global_scale, local_scale = crop_scales(
            k // self.layout["batch"], d.global_crops.scale, d.local_crops.scale,
            start_min=schedule.start_min, steps=schedule.steps)
        # Globals before locals: both draw from the one example generator, in this order.
        out = {
            "global": self._views(rng, example["image"], d.global_crops, global_scale),
            "label": np.int32(example["label"]),
            "index": np.int64(index),
        }
        if d.local_crops.num:
            out["local"] = self._views(rng, example["image"], d.local_crops, local_scale)
        return out


def _per_process_batch(global_batch_size: int, process_index: int, process_count: int) -> int:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"need 0 <= process_index < process_count, got {process_index} and {process_count}."
        )
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be a positive multiple of "
            f"process_count={process_count}."
        )
    return global_batch_size // process_count


def _read_options(num_threads: int, prefetch_batches: int) -> grain.ReadOptions:
    # Batches are assembled inside the MapDataset, so each grain thread builds a whole batch and
    # the buffer counts batches. (Per-example threading with a buffer of thousands of examples was
    # measured ~30x slower on 2 cores: GIL contention between many tiny work items.)
    return grain.ReadOptions(
        num_threads=num_threads, prefetch_buffer_size=max(prefetch_batches, num_threads)
    )


def make_train_iterator(
    data_config: DataConfig | Mapping[str, Any],
    *,
    global_batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    source=None,
) -> grain.DatasetIterator:
    """Infinite multi-crop training iterator: a grain ``DatasetIterator`` (get_state/set_state).

    Each batch is ``{"global": uint8 [B, G, Hg, Wg, 3], "local": uint8 [B, L, Hl, Wl, 3]`` (absent
    when L == 0) ``, "label": int32 [B], "index": int64 [B]}`` with ``B = global_batch_size //
    process_count``; see the module docstring for the order. ``data_config`` is ``config.data``
    (the schema's data section, ``jaxssl.train.defaults``; its numeric ranges are checked by
    ``validate_config``) or the ``DataConfig`` built from it. ``source`` overrides the source
    built from the dataset spec (the spec is still parsed).

    >>> from jaxssl.train.defaults import base_config
    >>> cfg = base_config().data
    >>> cfg.global_crops.size, cfg.local_crops.size, cfg.local_crops.num = 16, 8, 3
    >>> batch = next(make_train_iterator(cfg, global_batch_size=4, seed=0))
    >>> {k: (v.shape, str(v.dtype)) for k, v in sorted(batch.items())}
    ... # doctest: +NORMALIZE_WHITESPACE
    {'global': ((4, 2, 16, 16, 3), 'uint8'), 'index': ((4,), 'int64'),
     'label': ((4,), 'int32'), 'local': ((4, 3, 8, 8, 3), 'uint8')}
    """
    data = DataConfig.from_config(data_config)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    batch = _per_process_batch(global_batch_size, process_index, process_count)
    source = data.source("train") if source is None else source
    steps_per_epoch = len(source) // global_batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"global_batch_size={global_batch_size} exceeds the {len(source)} training examples "
            f"of {str(data.spec)!r}."
        )
    element = _MultiCropElement(
        source, data, seed=int(seed), batch=batch, process_index=process_index,
        process_count=process_count, steps_per_epoch=steps_per_epoch,
    )
    ds = grain.MapDataset.range(steps_per_epoch * batch).repeat().map_with_index(element)
    ds = ds.batch(batch, drop_remainder=True)
    return iter(ds.to_iter_dataset(read_options=_read_options(data.num_threads, data.prefetch)))


class _EvalElement:
    """grain ``map_with_index`` transform: padded eval position -> one eval example."""

    def __init__(self, source, *, batch: int, process_index: int, process_count: int,
                 image_size: int, crop_fraction: float, interpolation: str):
        self.source, self.batch = source, batch
        self.process_index, self.process_count = process_index, process_count
        self.image_size, self.crop_fraction = image_size, crop_fraction
        self.interpolation = interpolation

    def __call__(self, k: int, _: Any) -> dict[str, Any]:
        step, row = divmod(k, self.batch)
        position = (step * self.process_count + self.process_index) * self.batch + row
        if position >= len(self.source):  # Padding: a black image that the caller masks out.
            return {
                "image": np.zeros((self.image_size, self.image_size, 3), np.uint8),
                "label": np.int32(0),
                "valid": np.bool_(False),
            }
        example = self.source[position]
        image = eval_view(example["image"], self.image_size, crop_fraction=self.crop_fraction,
                          interpolation=self.interpolation)
        return {"image": image, "label": np.int32(example["label"]), "valid": np.bool_(True)}


def make_eval_iterator(
    spec: DatasetSpec | str,
    split: str,
    *,
    image_size: int,
    batch_size: int,
    data_dir: str | os.PathLike | None = None,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 2,
    crop_fraction: float = 0.875,
    interpolation: str = "bicubic",
    skip_corrupt: bool = True,
    source=None,
) -> grain.DatasetIterator:
    """One deterministic, un-augmented pass: ``{"image": uint8 [B,H,W,3], "label": int32 [B],
    "valid": bool [B]}`` with ``B = batch_size`` per process.

    Every process yields ``ceil(N / (batch_size * process_count))`` batches (so collectives stay
    in step); process ``p``'s row ``r`` of step ``s`` is example ``(s * P + p) * B + r`` in source
    order, and positions past ``N`` are padding with ``valid=False`` (black image, label 0), so
    every example is seen exactly once over all processes. Images are resized as in ``eval_view``.
    ``spec`` is a ``DatasetSpec`` (or a spec string, parsed here); ``source`` overrides the
    source built from it.

    >>> batches = list(make_eval_iterator("fashion_mnist", "test", image_size=8, batch_size=4096))
    >>> len(batches), batches[0]["image"].shape, int(sum(b["valid"].sum() for b in batches))
    (3, (4096, 8, 8, 3), 10000)
    """
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    _per_process_batch(batch_size * process_count, process_index, process_count)
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must lie in (0, 1], got {crop_fraction}.")
    if source is None:
        source = make_source(spec, split, data_dir=data_dir, skip_corrupt=skip_corrupt)
    steps = math.ceil(len(source) / (batch_size * process_count))
    element = _EvalElement(
        source, batch=batch_size, process_index=process_index, process_count=process_count,
        image_size=image_size, crop_fraction=crop_fraction, interpolation=interpolation,
    )
    ds = grain.MapDataset.range(steps * batch_size).map_with_index(element).batch(batch_size)
    return iter(ds.to_iter_dataset(read_options=_read_options(num_threads, 2)))
