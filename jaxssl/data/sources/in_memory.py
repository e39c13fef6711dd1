"""The random access of the sources whose images and labels are arrays in memory (IDX, npz)."""

from __future__ import annotations

import numpy as np


class InMemorySource:
    """``{"image": _images[i], "label": labels[i]}`` for ``_images`` [N, H, W, C] uint8 and
    ``labels`` [N] int64, set by the subclass.

    >>> class Toy(InMemorySource):
    ...     def __init__(self):
    ...         self._images, self.labels = np.zeros((2, 1, 1, 1), np.uint8), np.array([3, 4])
    >>> len(Toy()), Toy()[1]["label"]
    (2, 4)
    """

    _images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return self._images.shape[0]

    def __getitem__(self, index: int) -> dict:
        return {"image": self._images[index], "label": int(self.labels[index])}
