"""Dataset spec strings -> data sources.

Valid forms (``SPEC_FORMS``)::

  fashion_mnist | mnist          official IDX files (see jaxssl.data.sources.idx)
  tfds:NAME                      a TFDS dataset prepared as ArrayRecord, e.g. tfds:imagenet2012
  folder:/path/to/root           root/<class>/<images>
  npz:/path/to/file.npz          arrays 'images' and 'labels'

each with an optional ``:ltRHO`` suffix (e.g. ``fashion_mnist:lt100``) for a long-tailed training
split with imbalance ratio RHO (the test split stays balanced).

Splits are ``"train"`` and ``"test"``. Folder: ``train`` is ``root/train`` and ``test`` is the
first of ``root/val``, ``root/validation``, ``root/test`` that exists; when ``root/train`` does not
exist the root itself serves both splits. npz: a ``{split}`` in the path is replaced by the split
name (``npz:/d/cifar_{split}.npz``); otherwise the one file serves both splits. npz label values
are remapped to contiguous class ids shared by both split files (``NpzSource.class_values``).
TFDS: the split name is passed through (``test`` falls back to ``validation`` when there is no
test split).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from jaxssl.data.long_tail import LongTailSource
from jaxssl.data.sources.folder import ImageFolderSource
from jaxssl.data.sources.idx import IdxSource
from jaxssl.data.sources.npz import NpzSource, split_label_values
from jaxssl.data.sources.tfds import TfdsSource  # imports tensorflow_datasets only when used

SPEC_FORMS = (
    "fashion_mnist",
    "mnist",
    "tfds:NAME",
    "folder:/path/to/root",
    "npz:/path/to/file.npz",
    "any of these + ':ltRHO' (long-tailed train split, e.g. 'fashion_mnist:lt100')",
)
_LT_SUFFIX = re.compile(r"^(?P<base>.+):lt(?P<rho>\d+(\.\d*)?)$")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A parsed spec: ``kind`` in {idx, tfds, folder, npz}, its ``target`` and optional ``rho``."""

    kind: str
    target: str
    rho: float | None = None


def parse_spec(spec: str) -> DatasetSpec:
    """Parses a spec string without touching any data (for config validation).

    >>> parse_spec("fashion_mnist:lt100")
    DatasetSpec(kind='idx', target='fashion_mnist', rho=100.0)
    >>> parse_spec("folder:/data/imagenet")
    DatasetSpec(kind='folder', target='/data/imagenet', rho=None)
    >>> parse_spec("cifar")
    Traceback (most recent call last):
    ...
    ValueError: unknown dataset spec 'cifar'; valid forms: ...
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(
            f"dataset spec must be a non-empty string, got {spec!r}; valid forms: "
            f"{', '.join(SPEC_FORMS)}."
        )
    rho = None
    match = _LT_SUFFIX.match(spec)
    if match:
        spec, rho = match.group("base"), float(match.group("rho"))
        if rho < 1:
            raise ValueError(f"long-tail ratio in dataset spec must be >= 1, got lt{rho:g}.")
    if spec in ("fashion_mnist", "mnist"):
        return DatasetSpec("idx", spec, rho)
    kind, sep, target = spec.partition(":")
    if sep and target and kind in ("tfds", "folder", "npz"):
        return DatasetSpec(kind, target, rho)
    raise ValueError(f"unknown dataset spec {spec!r}; valid forms: {', '.join(SPEC_FORMS)}.")


def folder_split_root(root: str | os.PathLike, split: str) -> Path:
    """The directory serving ``split`` of an image-folder dataset (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {root} does not exist. Fix: pass folder:/path to a directory laid out "
            "as root/<class>/<images> or root/{train,val}/<class>/<images>."
        )
    if not (root / "train").is_dir():
        return root
    candidates = ("train",) if split == "train" else ("val", "validation", "test")
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(
        f"image folder {root} has a train/ directory but none of {candidates} for split {split!r}."
    )


def make_source(
    spec: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    skip_corrupt: bool = True,
):
    """Builds the random-access source for ``spec`` and ``split`` ("train" or "test").

    ``data_dir`` is the IDX search directory / TFDS data dir; ``seed`` picks the long-tailed subset.

    >>> src = make_source("fashion_mnist:lt100", "train")
    >>> len(src)  # 6000 + 3596 + 2156 + 1292 + 774 + 464 + 278 + 166 + 100 + 60
    14886
    """
    parsed = parse_spec(spec)
    if parsed.kind != "tfds" and split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test' for {spec!r}, got {split!r}.")
    if parsed.kind == "idx":
        source = IdxSource(parsed.target, split, data_dir=data_dir)
    elif parsed.kind == "tfds":
        source = TfdsSource(
            parsed.target,
            split,
            data_dir=None if data_dir is None else str(data_dir),
            skip_corrupt=skip_corrupt,
        )
    elif parsed.kind == "folder":
        source = ImageFolderSource(
            folder_split_root(parsed.target, split), skip_corrupt=skip_corrupt
        )
    else:
        # Train and test files share one class table (label value -> contiguous id).
        source = NpzSource(parsed.target.replace("{split}", split),
                           label_values=split_label_values(parsed.target))
    if parsed.rho is not None and split == "train":
        source = LongTailSource(source, parsed.rho, seed=seed)
    return source
