"""A labelled image set stored in one ``.npz`` file (keys ``images`` and ``labels``).

Labels. The file's label values may be any non-negative integers (e.g. sparse ids such as WordNet
offsets); they are remapped to contiguous class ids ``0..C-1`` in increasing order of value, and
``NpzSource.class_values[c]`` is the file's label of class id ``c``. A model head, a k-NN vote or
a linear probe is sized by ``C`` (the number of classes present), never by the largest label,
so one label of 2e9 cannot ask XLA for a 2e9-wide array. Labels that already are ``0..C-1``
(every value present) map to themselves.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from jaxssl.data.sources.in_memory import InMemorySource

_FORMAT_HINT = ("arrays 'images' (uint8 [N,H,W] or [N,H,W,C]) and 'labels' (int [N]), written by "
                "numpy.savez or numpy.savez_compressed")


@contextlib.contextmanager
def open_npz(path: str | os.PathLike, *, what: str = "npz file",
             hint: str = _FORMAT_HINT) -> Iterator[np.lib.npyio.NpzFile]:
    """``np.load(path)`` of an ``.npz`` archive, with one-line errors that name the file.

    numpy reads a non-zip file as a pickle and reports "Cannot load file containing pickled data
    when allow_pickle=False", which names neither the file nor the real problem; a truncated
    archive raises ``zipfile.BadZipFile``. Both become a ``ValueError`` naming ``path``.

    Raises:
      FileNotFoundError: ``path`` is not a file.
      ValueError: ``path`` is not a readable zip (``.npz``) archive.

    >>> import tempfile
    >>> bad = tempfile.mkdtemp() + "/x.npz"
    >>> _ = open(bad, "w").write("not a zip")
    >>> with open_npz(bad) as data: pass  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: .../x.npz is not an .npz archive (a zip file of .npy arrays); expected arrays ...
    """
    path = Path(path)
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "missing"
        raise FileNotFoundError(f"{what} {path} is {kind}, not a file. Fix: pass the path of an "
                                f"existing .npz file with {hint}.")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz archive (a zip file of .npy arrays); expected "
                         f"{hint}.")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: cannot read the .npz archive ({err}).") from err
    with data:
        yield data


def _read(data: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return data[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # a damaged member
        raise ValueError(f"{path}: cannot read key {key!r} ({err}).") from err


def load_npz_arrays(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Loads and validates ``images`` uint8 [N, H, W] or [N, H, W, C] and ``labels`` int [N].

    The labels are returned as stored (int64); ``NpzSource`` remaps them to contiguous ids.

    Raises:
      FileNotFoundError: the file does not exist (the message names it).
      ValueError: not an .npz archive, or a key is missing or has the wrong dtype/shape (naming
        the file and the key).
    """
    path = Path(path)
    with open_npz(path) as data:
        missing = [k for k in ("images", "labels") if k not in data.files]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}; the file has keys {data.files}.")
        images, labels = _read(data, "images", path), _read(data, "labels", path)
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: key 'images' must be uint8, got dtype {images.dtype}.")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{path}: key 'images' must have shape [N,H,W] or [N,H,W,C] with C in (1, 3), "
            f"got {images.shape}."
        )
    _check_labels(labels, path)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{path}: key 'labels' has {labels.shape[0]} entries but 'images' has "
            f"{images.shape[0]}."
        )
    return images, labels.astype(np.int64)


def _check_labels(labels: np.ndarray, path: Path) -> None:
    if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
        raise ValueError(
            f"{path}: key 'labels' must be an integer array [N], got dtype {labels.dtype} "
            f"shape {labels.shape}."
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"{path}: key 'labels' has negative value {labels.min()}.")


def npz_label_values(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """The sorted distinct label values over several ``.npz`` files (int64), reading only their
    ``labels`` arrays: the class table shared by the train and test files of one dataset, so a
    label value maps to the same class id in both.

    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> np.savez(d + "/a.npz", images=np.zeros((2, 1, 1), np.uint8), labels=np.array([7, 3]))
    >>> np.savez(d + "/b.npz", images=np.zeros((1, 1, 1), np.uint8), labels=np.array([9]))
    >>> npz_label_values([d + "/a.npz", d + "/b.npz"]).tolist()
    [3, 7, 9]
    """
    values = []
    for path in paths:
        with open_npz(path) as data:
            if "labels" not in data.files:
                raise ValueError(f"{path}: missing key ['labels']; the file has keys "
                                 f"{data.files}.")
            labels = _read(data, "labels", Path(path))
        _check_labels(labels, Path(path))
        values.append(np.unique(labels.astype(np.int64)))
    return np.unique(np.concatenate(values)) if values else np.zeros((0,), np.int64)


def split_label_values(template: str, splits: Sequence[str] = ("train", "test")
                       ) -> np.ndarray | None:
    """The class table of an ``npz:`` spec path: for a ``{split}`` template, the distinct labels
    over every existing split file (so train and test share class ids); None for a single file
    (it is its own table)."""
    if "{split}" not in template:
        return None
    paths = [template.replace("{split}", s) for s in splits]
    return npz_label_values([p for p in paths if os.path.isfile(p)])


class NpzSource(InMemorySource):
    """Random-access source over an ``.npz`` file, yielding ``{"image": uint8 HWC, "label": int}``.

    Args:
      path: the ``.npz`` file.
      label_values: the class table (sorted distinct label values) when it is shared with other
        files (see ``npz_label_values``); default: this file's own distinct labels. Every label of
        the file must be in it.

    Attributes:
      labels: contiguous class ids ``0..num_classes-1``, int64 ``[N]``.
      class_values: the file's label value of each class id (``class_values[labels]`` gives the
        stored labels back).
      num_classes: ``len(class_values)``.

    >>> import tempfile, numpy as np
    >>> path = tempfile.mkdtemp() + "/toy.npz"
    >>> np.savez(path, images=np.zeros((3, 4, 5), np.uint8), labels=np.array([0, 2, 1]))
    >>> src = NpzSource(path)
    >>> len(src), src[1]["image"].shape, src[1]["label"]
    (3, (4, 5, 1), 2)
    >>> np.savez(path, images=np.zeros((3, 4, 5), np.uint8), labels=np.array([5, 2_000_000_000, 5]))
    >>> src = NpzSource(path)
    >>> src.labels.tolist(), src.class_values.tolist(), src.num_classes
    ([0, 1, 0], [5, 2000000000], 2)
    """

    def __init__(self, path: str | os.PathLike,
                 label_values: np.ndarray | Sequence[int] | None = None):
        self.path = str(path)
        self._images, raw = load_npz_arrays(path)
        if label_values is None:
            self.class_values = np.unique(raw)
        else:
            self.class_values = np.unique(np.asarray(label_values, np.int64))
            unknown = np.setdiff1d(raw, self.class_values)
            if unknown.size:
                raise ValueError(f"{path}: key 'labels' has values {unknown[:5].tolist()} that "
                                 "are not in the dataset's class table.")
        self.labels = np.searchsorted(self.class_values, raw).astype(np.int64)
        self.num_classes = int(self.class_values.size)

    def __repr__(self) -> str:
        return f"NpzSource({self.path!r}, n={len(self)}, classes={self.num_classes})"
