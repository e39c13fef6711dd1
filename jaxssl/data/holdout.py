"""A validation split carved out of a training split, so recipes are chosen without the test set.

``fashion_mnist:val10000`` (dataset spec suffix ``:valN``) holds out N images of the official
*train* split: the spec's ``"test"`` split is those N, its ``"train"`` split the remaining ones.
Every choice of recipe (augmentations, K, schedules, ...) is then made on that spec; the figure
reported is the plain spec's, on the real test split, once per chosen recipe.

Which N: :func:`holdout_indices`, a class-balanced sample (``balanced_subset``: every class gets
N // C or one more) drawn with the fixed seed ``HOLDOUT_SEED``, the same for every run, method and
training seed, so that all validation figures are measured on the same images and no image is
both trained on and validated on. A long-tail suffix after it (``fashion_mnist:val10000:lt100``)
subsamples the remaining train part; the held-out part stays balanced, like a test split.
"""

from __future__ import annotations

import numpy as np

from jaxssl.data.long_tail import source_labels
from jaxssl.data.subset import SubsetSource, balanced_subset

# One fixed seed for every run: the validation images must not change with the training seed.
HOLDOUT_SEED = 20261205


def holdout_indices(labels: np.ndarray, n: int) -> np.ndarray:
    """Sorted indices of the ``n`` held-out examples (class-balanced, ``HOLDOUT_SEED``).

    >>> labels = np.repeat(np.arange(4), 5)  # 4 classes x 5
    >>> held = holdout_indices(labels, 8)
    >>> len(held), np.bincount(labels[held]).tolist()
    (8, [2, 2, 2, 2])
    >>> held.tolist() == holdout_indices(labels, 8).tolist()  # fixed seed: the same every time
    True
    """
    labels = np.asarray(labels)
    if not 0 < n < len(labels):
        raise ValueError(
            f"validation hold-out :val{n} must keep at least one example on each side: "
            f"0 < N < {len(labels)} (the train split's size)."
        )
    return np.sort(balanced_subset(labels, n, seed=HOLDOUT_SEED))


def holdout_split(train_source, n: int, split: str) -> SubsetSource:
    """``split`` of the hold-out view of ``train_source``: "test" -> the ``n`` held-out examples,
    "train" -> every other example, both in source order.

    >>> class Toy:
    ...     labels = np.repeat(np.arange(2), 5)
    ...     def __len__(self): return 10
    ...     def __getitem__(self, i): return {"label": int(self.labels[i])}
    >>> val, rest = holdout_split(Toy(), 4, "test"), holdout_split(Toy(), 4, "train")
    >>> len(val), len(rest), np.bincount(val.labels).tolist()
    (4, 6, [2, 2])
    >>> sorted(val.indices.tolist() + rest.indices.tolist()) == list(range(10))
    True
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test' for a :val{n} spec, got {split!r}.")
    held = holdout_indices(source_labels(train_source), n)
    if split == "test":
        return SubsetSource(train_source, held)
    return SubsetSource(train_source, np.setdiff1d(np.arange(len(train_source)), held))
