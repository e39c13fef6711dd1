"""Long-tailed views of a labelled source (exponential profile, as in Cao et al., 2019 (LDAM)).

Class ``c`` keeps ``n_c = floor(n_max * rho ** (-c / (C - 1)))`` examples, so the head class keeps
``n_max`` and the tail class ``n_max / rho``. ``n_max`` is the size of the smallest class of the
source, so every class has enough examples (for balanced sets like Fashion-MNIST it is simply the
per-class count, 6,000). Class rank ``c`` is the label id by default; with ``shuffle_classes=True``
the ranks are a permutation drawn from the seed. Which examples of a class survive is drawn from the
seed as well, so the view is a deterministic function of ``(source, rho, seed)``. Only training
splits are made long-tailed; evaluation uses the balanced test split.
"""

from __future__ import annotations

import math

import numpy as np

from jaxssl.data.subset import SubsetSource


def source_labels(source) -> np.ndarray:
    """The int64 labels of a source: its ``labels`` attribute, or read item by item."""
    labels = getattr(source, "labels", None)
    if labels is None:
        labels = [source[i]["label"] for i in range(len(source))]
    return np.asarray(labels, dtype=np.int64)


def long_tail_counts(n_max: int, num_classes: int, rho: float) -> np.ndarray:
    """Per-rank counts ``floor(n_max * rho ** (-c / (C - 1)))`` for ``c = 0 .. C-1``.

    >>> long_tail_counts(6000, 10, 100.0).tolist()
    [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    """
    if rho < 1:
        raise ValueError(f"imbalance ratio rho must be >= 1, got {rho}.")
    if num_classes < 2:
        return np.full((num_classes,), n_max, dtype=np.int64)
    # The 1e-9 guards against floor(59.99999999) when n_max / rho is an exact integer.
    return np.array(
        [math.floor(n_max * rho ** (-c / (num_classes - 1)) + 1e-9) for c in range(num_classes)],
        dtype=np.int64,
    )


def long_tail_indices(
    labels: np.ndarray, rho: float, *, seed: int = 0, shuffle_classes: bool = False
) -> np.ndarray:
    """Sorted source indices of the long-tailed subset (see the module docstring).

    >>> labels = np.repeat(np.arange(3), 10)
    >>> idx = long_tail_indices(labels, 10.0, seed=0)
    >>> np.bincount(labels[idx]).tolist()
    [10, 3, 1]
    """
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1
    per_class = np.bincount(labels, minlength=num_classes)
    if per_class.min() == 0:
        raise ValueError(
            f"long-tailed view needs every class 0..{num_classes - 1} present; class counts are "
            f"{per_class.tolist()}."
        )
    counts = long_tail_counts(int(per_class.min()), num_classes, rho)
    rng = np.random.default_rng(seed)
    rank_of_class = rng.permutation(num_classes) if shuffle_classes else np.arange(num_classes)
    keep = []
    for cls in range(num_classes):
        members = np.flatnonzero(labels == cls)
        keep.append(rng.permutation(members)[: counts[rank_of_class[cls]]])
    return np.sort(np.concatenate(keep))


class LongTailSource(SubsetSource):
    """A long-tailed subset of ``source``: the ``SubsetSource`` of ``long_tail_indices``;
    ``index`` here maps to ``base_indices[index]`` there.

    >>> class Toy:
    ...     labels = np.repeat(np.arange(2), 4)
    ...     def __len__(self): return 8
    ...     def __getitem__(self, i):
    ...         return {"image": np.zeros((1, 1, 1), np.uint8), "label": int(self.labels[i])}
    >>> lt = LongTailSource(Toy(), rho=4.0)
    >>> len(lt), np.bincount(lt.labels).tolist(), lt[4]["label"]
    (5, [4, 1], 1)
    """

    def __init__(self, source, rho: float, *, seed: int = 0, shuffle_classes: bool = False):
        base_labels = source_labels(source)
        super().__init__(source, long_tail_indices(base_labels, rho, seed=seed,
                                                   shuffle_classes=shuffle_classes))
        self.rho, self.seed = float(rho), seed
        self.labels = base_labels[self.indices]  # also when the source reads labels lazily
        self.num_classes = int(base_labels.max()) + 1

    @property
    def base_indices(self) -> np.ndarray:
        """Index ``i`` of this view is ``source[base_indices[i]]``."""
        return self.indices

    def __repr__(self) -> str:
        return f"LongTailSource({self.source!r}, rho={self.rho}, n={len(self)})"
