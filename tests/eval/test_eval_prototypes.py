"""Prototype-collapse diagnostics on planted near-duplicates with known distances."""

import numpy as np
import pytest

from jaxssl.eval.prototypes import (
    nearest_neighbour_distances,
    nn_distance_histogram,
    unique_prototype_counts,
)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _planted():
    """40 spread prototypes plus near-copies at known normalised distances."""
    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=(40, 16)))
    d = np.linalg.norm(base[:, None] - base[None], axis=-1) + 10 * np.eye(40)
    assert d.min() > 0.3  # precondition: base prototypes are far apart at every threshold

    def copies(i, eps, n):
        # Offsets along distinct directions orthogonal to base[i]: each copy is ~eps from the
        # original and ~eps * sqrt(2) from the other copies.
        dirs = np.linalg.qr(np.c_[base[i], rng.normal(size=(16, n))])[0][:, 1:].T
        return base[i] + eps * dirs

    extra = [
        copies(0, 5e-2, 3),  # merged at 1e-1 only
        copies(1, 5e-3, 2),  # merged at 1e-1, 1e-2
        copies(2, 5e-4, 2),  # merged down to 1e-3
        2.5 * base[3:4],  # exact duplicate after normalisation: always merged
    ]
    return np.concatenate([base, *extra]).astype(np.float32)


def test_unique_counts_on_planted_duplicates_are_exact():
    counts = unique_prototype_counts(_planted(), chunk_size=16)
    assert counts == {1e-1: 40, 1e-2: 43, 1e-3: 45, 1e-4: 47}


def test_nearest_neighbour_distances_match_brute_force():
    w = _planted()
    got = nearest_neighbour_distances(w, chunk_size=7)
    wn = _unit(w.astype(np.float64))
    full = np.linalg.norm(wn[:, None] - wn[None], axis=-1)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(got, full.min(axis=1), rtol=1e-4, atol=1e-7)
    # The 2.5x copy differs only by float32 rounding, far below cosine resolution (~3e-4).
    assert got[3] < 1e-6 and got[-1] < 1e-6
    np.testing.assert_allclose(got[[40, 43, 45]], [5e-2, 5e-3, 5e-4], rtol=1e-3)


def test_histogram_bins_every_prototype():
    h = nn_distance_histogram(_planted())
    assert sum(h["counts"]) == 48
    assert len(h["edges"]) == len(h["counts"]) + 1
    assert h["counts"][0] == 2  # the exact duplicate pair falls in [0, 1e-6)
    assert h["min"] < 1e-6 and h["max"] > 0.3


def test_bad_shape_raises():
    with pytest.raises(ValueError, match=r"\(1, 4\)"):
        unique_prototype_counts(np.ones((1, 4)))
    with pytest.raises(ValueError, match=r"\(5,\)"):
        nearest_neighbour_distances(np.ones(5))
