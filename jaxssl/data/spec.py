"""Dataset spec strings -> data sources.

Valid forms (``SPEC_FORMS``)::

  fashion_mnist | mnist          official IDX files (see jaxssl.data.sources.idx)
  tfds:NAME                      a TFDS dataset prepared as ArrayRecord, e.g. tfds:imagenet2012
  folder:/path/to/root           root/<class>/<images>
  npz:/path/to/file.npz          arrays 'images' and 'labels'

each with an optional ``:valN`` suffix (e.g. ``fashion_mnist:val10000``): a validation split of
N class-balanced images held out of the train split, served as ``"test"``, the rest as ``"train"``
(jaxssl.data.holdout; for choosing recipes without the test set), then an optional ``:ltRHO``
suffix (e.g. ``fashion_mnist:lt100``) for a long-tailed training split with imbalance ratio RHO
(the test split stays balanced).

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

from jaxssl.data.holdout import holdout_split
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
    "any of these + ':valN' (N train images held out as the test split, e.g. "
    "'fashion_mnist:val10000')",
    "any of these (after ':valN', if any) + ':ltRHO' (long-tailed train split, e.g. "
    "'fashion_mnist:lt100')",
)
_LT_SUFFIX = re.compile(r"^(?P<base>.+):lt(?P<rho>\d+(\.\d*)?)$")
_VAL_SUFFIX = re.compile(r"^(?P<base>.+):val(?P<n>\d+)$")


# Image side of the datasets whose size is fixed and known without reading them.
_IDX_IMAGE_SIDE = {"fashion_mnist": 28, "mnist": 28}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec: ``kind`` in {idx, tfds, folder, npz}, its ``target`` (the IDX name,
    TFDS name, folder root or npz path) and the long-tail ratio ``rho`` (None: balanced).

    Parse a spec string once with ``DatasetSpec.parse`` (or ``parse_spec``) and pass the result
    down; ``str(spec)`` gives the spec string back.

    >>> spec = DatasetSpec.parse("fashion_mnist:lt100")
    >>> spec, str(spec), str(spec.balanced()), spec.image_side
    (DatasetSpec(kind='idx', target='fashion_mnist', rho=100.0, holdout=None), \
'fashion_mnist:lt100', \
'fashion_mnist', 28)
    """

    kind: str
    target: str
    rho: float | None = None
    holdout: int | None = None  # :valN, N train images held out as the test split

    @classmethod
    def parse(cls, spec: str | DatasetSpec) -> DatasetSpec:
        """Parses a spec string without touching any data (a ``DatasetSpec`` passes through).

        >>> DatasetSpec.parse("folder:/data/imagenet")
        DatasetSpec(kind='folder', target='/data/imagenet', rho=None, holdout=None)
        >>> DatasetSpec.parse("cifar")
        Traceback (most recent call last):
        ...
        ValueError: unknown dataset spec 'cifar'; valid forms: ...
        """
        if isinstance(spec, DatasetSpec):
            return spec
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
        holdout = None
        match = _VAL_SUFFIX.match(spec)
        if match:
            spec, holdout = match.group("base"), int(match.group("n"))
            if holdout < 1:
                raise ValueError(
                    f"validation hold-out in dataset spec must be >= 1, got val{holdout}.")
        if spec in _IDX_IMAGE_SIDE:
            return cls("idx", spec, rho, holdout)
        kind, sep, target = spec.partition(":")
        if sep and target and kind in ("tfds", "folder", "npz"):
            return cls(kind, target, rho, holdout)
        raise ValueError(f"unknown dataset spec {spec!r}; valid forms: {', '.join(SPEC_FORMS)}.")

    def __str__(self) -> str:
        base = self.target if self.kind == "idx" else f"{self.kind}:{self.target}"
        base = base if self.holdout is None else f"{base}:val{self.holdout}"
        return base if self.rho is None else f"{base}:lt{self.rho:g}"

    def balanced(self) -> DatasetSpec:
        """The same dataset without the long-tail suffix (its balanced train split); a ``:valN``
        hold-out is kept."""
        return dataclasses.replace(self, rho=None)

    @property
    def image_side(self) -> int | None:
        """The image side when it is fixed and known without reading data (IDX), else None."""
        return _IDX_IMAGE_SIDE[self.target] if self.kind == "idx" else None


def parse_spec(spec: str | DatasetSpec) -> DatasetSpec:
    """``DatasetSpec.parse``: a spec string -> a ``DatasetSpec``, without touching any data.

    >>> parse_spec("fashion_mnist:lt100")
    DatasetSpec(kind='idx', target='fashion_mnist', rho=100.0, holdout=None)
    """
    return DatasetSpec.parse(spec)


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
    spec: DatasetSpec | str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    skip_corrupt: bool = True,
):
    """Builds the random-access source for ``spec`` (a ``DatasetSpec``, or a spec string parsed
    here) and ``split`` ("train" or "test").

    ``data_dir`` is the IDX search directory / TFDS data dir; ``seed`` picks the long-tailed subset.

    >>> src = make_source("fashion_mnist:lt100", "train")
    >>> len(src)  # 6000 + 3596 + 2156 + 1292 + 774 + 464 + 278 + 166 + 100 + 60
    14886
    """
    parsed = DatasetSpec.parse(spec)
    if (parsed.kind != "tfds" or parsed.holdout is not None) and split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test' for {str(parsed)!r}, got {split!r}.")
    if parsed.holdout is not None:
        # Both splits of a :valN spec come from the official train split (jaxssl.data.holdout).
        whole_train = make_source(dataclasses.replace(parsed, rho=None, holdout=None), "train",
                                  data_dir=data_dir, seed=seed, skip_corrupt=skip_corrupt)
        source = holdout_split(whole_train, parsed.holdout, split)
    elif parsed.kind == "idx":
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
