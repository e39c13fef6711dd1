"""Seeded random subsets of a data source: uniform, or class-balanced where labels are known.

Every "sample of the dataset" (the ExCB k-means sample, the online k-NN probe, ``--train-limit``
of the evaluation CLI) goes through these functions instead of taking the first ``n`` examples in
source order, which on a class-sorted source (an image folder, a TFDS split written class by
class) covers only the first classes. The same seed gives the same subset; indices come in a
random order (so fixed-size batches of a class-sorted source mix classes, as training batches
do), and ``SubsetSource`` feeds them to the grain pipelines through their ``source=`` argument.
"""

from __future__ import annotations

import inspect

import numpy as np


def random_subset(num_items: int, n: int, *, seed: int) -> np.ndarray:
    """``min(n, num_items)`` distinct indices of ``range(num_items)``, uniformly drawn, in a
    random order.

    >>> a = random_subset(10, 4, seed=0)
    >>> len(set(a.tolist())), a.tolist() == random_subset(10, 4, seed=0).tolist()
    (4, True)
    >>> sorted(random_subset(3, 5, seed=0).tolist())
    [0, 1, 2]
    """
    if num_items < 0 or n < 0:
        raise ValueError(f"num_items and n must be >= 0; got {num_items} and {n}")
    rng = np.random.default_rng([int(seed), 0])
    return rng.permutation(num_items)[: min(n, num_items)].astype(np.int64)


def balanced_subset(labels: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    """``min(n, len(labels))`` distinct indices whose per-class counts are as equal as the
    classes allow, in a random order.

    Each class's members are taken in a seeded random order, round-robin over the classes (in a
    seeded random class order): every class gets ``n // C`` or one more, and a class with fewer
    members than its share gives its remainder to the others.

    >>> labels = np.repeat(np.arange(4), [10, 10, 10, 1])  # class-sorted, class 3 rare
    >>> idx = balanced_subset(labels, 13, seed=0)
    >>> np.bincount(labels[idx]).tolist()
    [4, 4, 4, 1]
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be [N]; got shape {labels.shape}")
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    rng = np.random.default_rng([int(seed), 1])
    order = rng.permutation(len(labels))
    _, cls = np.unique(labels[order], return_inverse=True)
    num_classes = int(cls.max()) + 1 if len(cls) else 0
    # Rank of each element among the members of its class, in the random order.
    by_class = np.argsort(cls, kind="stable")
    starts = np.searchsorted(cls[by_class], np.arange(num_classes))
    rank = np.empty(len(cls), np.int64)
    rank[by_class] = np.arange(len(cls)) - starts[cls[by_class]]
    class_priority = rng.permutation(num_classes)
    chosen = order[np.argsort(rank * num_classes + class_priority[cls], kind="stable")[:n]]
    return rng.permutation(chosen).astype(np.int64)


def in_memory_labels(source) -> np.ndarray | None:
    """The source's labels when it holds them as an array (IDX, npz, image folders, the
    long-tailed view, subsets of those); None when reading them costs a pass over the data (a
    TFDS source parses every record for its ``labels``) or the source has none.

    >>> class Toy:
    ...     labels = np.array([0, 1])
    >>> in_memory_labels(Toy()).tolist(), in_memory_labels(object())
    ([0, 1], None)
    """
    static = inspect.getattr_static(source, "labels", None)
    if static is None or isinstance(static, property):
        return None
    return np.asarray(source.labels)


def sample_indices(source, n: int, *, seed: int, balanced: bool = True) -> np.ndarray:
    """``min(n, len(source))`` distinct indices of ``source``: class-balanced when ``balanced``
    and the labels are in memory (``in_memory_labels``), uniformly random otherwise.

    >>> class Sorted:  # 3 classes of 5, stored class by class
    ...     labels = np.repeat(np.arange(3), 5)
    ...     def __len__(self): return 15
    >>> idx = sample_indices(Sorted(), 6, seed=0)
    >>> np.bincount(Sorted.labels[idx]).tolist()
    [2, 2, 2]
    """
    labels = in_memory_labels(source) if balanced else None
    if labels is not None:
        return balanced_subset(labels, n, seed=seed)
    return random_subset(len(source), n, seed=seed)


class SubsetSource:
    """Random-access view of ``source`` restricted to ``indices`` (a grain-compatible source).

    >>> class Toy:
    ...     labels = np.arange(5) % 2
    ...     def __len__(self): return 5
    ...     def __getitem__(self, i): return {"image": np.zeros((1, 1)), "label": int(i % 2)}
    >>> sub = SubsetSource(Toy(), np.array([4, 1]))
    >>> len(sub), sub[1]["label"], sub.labels.tolist()
    (2, 1, [0, 1])
    """

    def __init__(self, source, indices: np.ndarray):
        indices = np.asarray(indices, np.int64)
        if indices.ndim != 1 or (len(indices) and not 0 <= indices.min() <= indices.max()
                                 < len(source)):
            raise ValueError(f"indices must be [n] in [0, {len(source)}); got shape "
                             f"{indices.shape}")
        self.source, self.indices = source, indices
        base = in_memory_labels(source)
        if base is not None:
            self.labels = base[indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.source[int(self.indices[i])]

    def __repr__(self) -> str:
        return f"SubsetSource({self.source!r}, n={len(self)})"
