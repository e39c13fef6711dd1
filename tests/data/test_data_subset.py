"""Seeded subsets: uniform without replacement, class-balanced with water-filling."""

import numpy as np
import pytest

from jaxssl.data.subset import (
    SubsetSource,
    balanced_subset,
    in_memory_labels,
    random_subset,
    sample_indices,
)


def test_random_subset_is_uniform_distinct_and_seeded():
    a = random_subset(1000, 100, seed=3)
    assert len(set(a.tolist())) == 100 and a.min() >= 0 and a.max() < 1000
    np.testing.assert_array_equal(a, random_subset(1000, 100, seed=3))
    assert not np.array_equal(a, random_subset(1000, 100, seed=4))
    # Uniform: over many seeds every index is drawn about n / N = 10 % of the time.
    hits = np.bincount(np.concatenate([random_subset(50, 5, seed=s) for s in range(2000)]),
                       minlength=50)
    np.testing.assert_allclose(hits / 2000, 0.1, atol=0.03)
    # Random order: a class-sorted source gives mixed fixed-size batches.
    assert not np.all(np.diff(a) > 0)
    with pytest.raises(ValueError, match="n must be >= 0|num_items"):
        random_subset(10, -1, seed=0)


@pytest.mark.parametrize("n", [1, 7, 30, 31, 45, 46])
def test_balanced_subset_water_fills(n):
    counts = np.array([20, 1, 12, 5, 8])
    labels = np.repeat(np.arange(5), counts) * 10 + 3  # non-contiguous label values
    idx = balanced_subset(labels, n, seed=0)
    assert len(set(idx.tolist())) == len(idx) == min(n, counts.sum())
    got = np.array([np.sum(labels[idx] == 10 * c + 3) for c in range(5)])
    # Expected by hand: the largest level t with sum(min(count, t)) <= n, the rest one each to
    # classes that still have members.
    t = max(t for t in range(21) if np.minimum(counts, t).sum() <= n)
    base = np.minimum(counts, t)
    extra = n - base.sum()
    assert np.all(got >= base) and np.all(got <= np.minimum(counts, t + 1))
    assert got.sum() - base.sum() == extra


def test_sample_indices_balanced_only_with_labels_in_memory():
    class Sorted:
        labels = np.repeat(np.arange(4), 25)

        def __len__(self):
            return 100

    class Lazy:  # labels behind a property: reading them is a pass over the data
        @property
        def labels(self):
            raise AssertionError("read the labels")

        def __len__(self):
            return 100

    idx = sample_indices(Sorted(), 20, seed=0)
    assert np.bincount(Sorted.labels[idx]).tolist() == [5, 5, 5, 5]
    assert in_memory_labels(Lazy()) is None
    np.testing.assert_array_equal(sample_indices(Lazy(), 20, seed=0),
                                  random_subset(100, 20, seed=0))
    np.testing.assert_array_equal(sample_indices(Sorted(), 20, seed=0, balanced=False),
                                  random_subset(100, 20, seed=0))
    sub = SubsetSource(Sorted(), idx)
    np.testing.assert_array_equal(sub.labels, Sorted.labels[idx])
    with pytest.raises(ValueError, match=r"indices must be \[n\] in \[0, 100\)"):
        SubsetSource(Sorted(), np.array([100]))
