"""A labelled image set stored in one ``.npz`` file (keys ``images`` and ``labels``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def load_npz_arrays(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Loads and validates ``images`` uint8 [N, H, W] or [N, H, W, C] and ``labels`` int [N].

    Raises:
      FileNotFoundError: the file does not exist (the message names it).
      ValueError: a key is missing or has the wrong dtype/shape (naming the file and the key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"npz file {path} does not exist. Fix: pass the path of an existing .npz file with "
            "arrays 'images' (uint8 [N,H,W] or [N,H,W,C]) and 'labels' (int [N])."
        )
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("images", "labels") if k not in data.files]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}; the file has keys {data.files}.")
        images, labels = data["images"], data["labels"]
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: key 'images' must be uint8, got dtype {images.dtype}.")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{path}: key 'images' must have shape [N,H,W] or [N,H,W,C] with C in (1, 3), "
            f"got {images.shape}."
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
        raise ValueError(
            f"{path}: key 'labels' must be an integer array [N], got dtype {labels.dtype} "
            f"shape {labels.shape}."
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{path}: key 'labels' has {labels.shape[0]} entries but 'images' has "
            f"{images.shape[0]}."
        )
    if labels.size and labels.min() < 0:
        raise ValueError(f"{path}: key 'labels' has negative value {labels.min()}.")
    return images, labels.astype(np.int64)


class NpzSource:
    """Random-access source over an ``.npz`` file, yielding ``{"image": uint8 HWC, "label": int}``.

    >>> import tempfile, numpy as np
    >>> path = tempfile.mkdtemp() + "/toy.npz"
    >>> np.savez(path, images=np.zeros((3, 4, 5), np.uint8), labels=np.array([0, 2, 1]))
    >>> src = NpzSource(path)
    >>> len(src), src[1]["image"].shape, src[1]["label"]
    (3, (4, 5, 1), 2)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self._images, self.labels = load_npz_arrays(path)
        self.num_classes = int(self.labels.max()) + 1 if self.labels.size else 0

    def __len__(self) -> int:
        return self._images.shape[0]

    def __getitem__(self, index: int) -> dict:
        return {"image": self._images[index], "label": int(self.labels[index])}

    def __repr__(self) -> str:
        return f"NpzSource({self.path!r}, n={len(self)})"
