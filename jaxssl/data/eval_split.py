"""The images a frozen-feature evaluation reads: a balanced split, optionally a seeded subset.

``python -m jaxssl.eval`` evaluates long-tailed pretraining on the balanced splits
(``balanced_spec``), and ``--train-limit`` / ``--test-limit`` keep a seeded uniform subset
(``jaxssl.data.subset.random_subset``, the one subset implementation), sorted so the images are
read in source order. ``eval_batches`` streams it through the un-augmented eval pipeline.
"""

from __future__ import annotations

import os

import grain
import numpy as np

from jaxssl.data.pipeline import make_eval_iterator
from jaxssl.data.spec import DatasetSpec, make_source
from jaxssl.data.subset import SubsetSource, random_subset


def balanced_spec(spec: str) -> str:
    """The dataset spec without a long-tail suffix: long-tailed pretraining is evaluated on the
    balanced splits (the test split of an ``:ltRHO`` spec is balanced already).

    >>> balanced_spec("fashion_mnist:lt100"), balanced_spec("folder:/data/x")
    ('fashion_mnist', 'folder:/data/x')
    """
    return str(DatasetSpec.parse(spec).balanced())


def limited_indices(num_items: int, limit: int, *, seed: int) -> np.ndarray:
    """``min(limit, num_items)`` distinct indices drawn by ``random_subset`` with ``seed``,
    sorted; all of them when ``limit`` is 0.

    >>> limited_indices(5, 0, seed=0).tolist()
    [0, 1, 2, 3, 4]
    >>> idx = limited_indices(10, 4, seed=0)
    >>> len(set(idx.tolist())), bool(np.all(np.diff(idx) > 0)), sorted(idx.tolist()) == sorted(
    ...     random_subset(10, 4, seed=0).tolist())
    (4, True, True)
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0 (0 = the whole split); got {limit}")
    return np.sort(random_subset(num_items, limit or num_items, seed=seed))


def limited_source(spec: str, split: str, *, data_dir: str | os.PathLike | None, limit: int,
                   seed: int) -> SubsetSource:
    """Split ``split`` of ``spec`` restricted to ``limited_indices``; a ValueError naming the
    split (and ``data_dir``) when it is empty."""
    source = make_source(spec, split, data_dir=data_dir)
    if len(source) == 0:
        raise ValueError(f"dataset {spec!r} split {split!r} is empty (0 examples)"
                         + (f" in data_dir {data_dir}" if data_dir else ""))
    return SubsetSource(source, limited_indices(len(source), limit, seed=seed))


def eval_batches(spec: str, split: str, *, image_size: int, batch_size: int,
                 data_dir: str | os.PathLike | None, limit: int, seed: int
                 ) -> grain.DatasetIterator:
    """Un-augmented centre crops of ``limited_source`` in batches of ``batch_size`` (the last
    one padded; see ``jaxssl.data.pipeline.make_eval_iterator``)."""
    source = limited_source(spec, split, data_dir=data_dir, limit=limit, seed=seed)
    return make_eval_iterator(spec, split, image_size=image_size, batch_size=batch_size,
                              source=source)

