"""jaxssl.data.masks: MSN keep indices and iBOT block masks (counts, determinism, block shape)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.data.masks import (
    ibot_block_mask,
    ibot_masks,
    ibot_max_masked,
    msn_keep_indices,
    msn_num_keep,
)

# ---- MSN ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,ratio,keep", [(196, 0.15, 167), (10, 0.3, 7), (16, 0.0, 16), (49, 0.5, 25)]
)
def test_msn_keep_indices_sorted_unique_count(n, ratio, keep):
    # keep = n - round(ratio * n), by hand: 196 - 29, 10 - 3, 16 - 0, 49 - round(24.5) = 49 - 24
    # (Python rounds halves to even).
    assert msn_num_keep(n, ratio) == keep
    idx = np.asarray(msn_keep_indices(jax.random.key(0), n, ratio))
    assert idx.dtype == np.int32 and idx.shape == (keep,)
    assert (np.diff(idx) > 0).all() and idx.min() >= 0 and idx.max() < n


def test_msn_keep_indices_deterministic_and_uniform_under_jit():
    fn = jax.jit(msn_keep_indices, static_argnums=(1, 2))
    a = fn(jax.random.key(1), 196, 0.15)
    np.testing.assert_array_equal(a, fn(jax.random.key(1), 196, 0.15))
    assert not np.array_equal(a, fn(jax.random.key(2), 196, 0.15))
    # Each patch is dropped with probability 3/16 over many keys.
    keys = jax.random.split(jax.random.key(3), 800)
    idx = np.asarray(jax.vmap(lambda k: msn_keep_indices(k, 16, 0.1875))(keys))
    kept = np.bincount(idx.ravel(), minlength=16)
    p = 13 / 16
    assert np.abs(kept - 800 * p).max() <= 4 * math.sqrt(800 * p * (1 - p))


def test_msn_errors():
    with pytest.raises(ValueError, match="num_patches"):
        msn_keep_indices(jax.random.key(0), 0, 0.1)
    with pytest.raises(ValueError, match="drop_ratio"):
        msn_keep_indices(jax.random.key(0), 10, 1.0)
    with pytest.raises(ValueError, match="keeps no patch"):
        msn_num_keep(1, 0.6)


# ---- iBOT -----------------------------------------------------------------------------------


def _has_masked_neighbour_fraction(mask2d: np.ndarray) -> float:
    padded = np.pad(mask2d, 1)
    neigh = padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return float((neigh & mask2d).sum() / max(mask2d.sum(), 1))


def _has_2x2_block(mask2d: np.ndarray) -> bool:
    return bool((mask2d[:-1, :-1] & mask2d[1:, :-1] & mask2d[:-1, 1:] & mask2d[1:, 1:]).any())


def test_block_mask_count_and_shape():
    rng = np.random.default_rng(0)
    counts, targets = [], []
    for target in [0, 1, 5, 20, 40, 60, 98]:
        for _ in range(5):
            m = ibot_block_mask(rng, (14, 14), target)
            assert m.shape == (196,) and m.dtype == bool
            assert m.sum() <= target  # never overshoots
            counts.append(m.sum())
            targets.append(target)
    assert sum(counts) >= 0.9 * sum(targets)  # rarely falls short
    assert not ibot_block_mask(rng, (14, 14), 0).any()


def test_block_mask_is_blocky_unlike_random_masks():
    rng = np.random.default_rng(1)
    block_fracs, iid_fracs = [], []
    for _ in range(40):
        target = int(rng.uniform(0.1, 0.5) * 196)
        m = ibot_block_mask(rng, (14, 14), target).reshape(14, 14)
        block_fracs.append(_has_masked_neighbour_fraction(m))
        if m.sum() >= 16:
            assert _has_2x2_block(m)
        iid = np.zeros(196, bool)
        iid[rng.permutation(196)[: int(m.sum())]] = True
        iid_fracs.append(_has_masked_neighbour_fraction(iid.reshape(14, 14)))
    # Masked patches of a union of rectangles (area >= 3) nearly always touch another masked one;
    # for a uniformly random mask of the same size that happens far less often.
    assert np.mean(block_fracs) > 0.97
    assert np.mean(iid_fracs) < 0.85


def test_block_mask_single_square_when_aspect_and_area_are_pinned():
    # aspect_range (1, 1) and min_num_patches = budget = 9 pin the first proposal to a 3x3 square
    # (h = w = round(sqrt(9)) = 3), which must be accepted on an empty 6x6 grid.
    for seed in range(5):
        m = ibot_block_mask(np.random.default_rng(seed), (6, 6), 9, min_num_patches=9,
                            aspect_range=(1.0, 1.0)).reshape(6, 6)
        rows, cols = np.nonzero(m)
        assert m.sum() == 9
        assert rows.max() - rows.min() == 2 and cols.max() - cols.min() == 2


def test_ibot_masks_deterministic_shapes_and_fractions():
    grid = (14, 14)
    a = ibot_masks(7, 100, 32, 2, grid)
    assert a.shape == (32, 2, 196) and a.dtype == bool
    np.testing.assert_array_equal(a, ibot_masks(7, 100, 32, 2, grid))
    assert not np.array_equal(a, ibot_masks(7, 101, 32, 2, grid))
    assert not np.array_equal(a, ibot_masks(8, 100, 32, 2, grid))

    ratios = a.reshape(64, 196).mean(-1)
    masked = ratios > 0
    assert masked.sum() == 32  # floor(0.5 * 64) crops masked, the rest all-False
    assert ratios[masked].max() <= 0.5 + 1e-9
    assert ratios[masked].min() >= 0.08  # target >= 0.1 (may fall a few patches short)
    assert 0.22 < ratios[masked].mean() < 0.38  # uniform(0.1, 0.5) has mean 0.3

    b = ibot_masks(0, 0, 50, 4, (8, 8), ratio_range=(0.2, 0.3), mask_probability=0.25)
    frac_unmasked = 1 - b.any(-1).mean()
    assert frac_unmasked == 1 - int(0.25 * 200) / 200
    r = b.reshape(200, 64).mean(-1)
    assert r[r > 0].max() <= 0.3 + 1e-9
    assert not ibot_masks(0, 0, 4, 2, grid, mask_probability=0.0).any()


def test_ibot_masks_errors():
    with pytest.raises(ValueError, match="grid"):
        ibot_masks(0, 0, 2, 2, (14,))
    with pytest.raises(ValueError, match="ratio_range"):
        ibot_masks(0, 0, 2, 2, (14, 14), ratio_range=(0.5, 0.1))
    with pytest.raises(ValueError, match="mask_probability"):
        ibot_masks(0, 0, 2, 2, (14, 14), mask_probability=1.5)
    with pytest.raises(ValueError, match="step"):
        ibot_masks(0, -1, 2, 2, (14, 14))
    with pytest.raises(ValueError, match="num_masked"):
        ibot_block_mask(np.random.default_rng(0), (4, 4), 17)
    with pytest.raises(ValueError, match="rng"):
        ibot_block_mask(0, (4, 4), 3)


def test_masks_usable_as_jax_arrays():
    m = jnp.asarray(ibot_masks(0, 0, 2, 2, (4, 4)))
    assert m.shape == (2, 2, 16) and m.dtype == jnp.bool_


@pytest.mark.parametrize("grid,ratio_range", [((4, 4), (0.1, 0.5)), ((14, 14), (0.1, 0.5)),
                                              ((7, 5), (0.2, 0.3))])
def test_ibot_masks_never_exceed_ibot_max_masked(grid, ratio_range):
    # The bound iBOT's student head relies on (jaxssl.methods.dino): no crop above it, and the
    # bound is reached (a ratio near the top of the range) so it is not slack.
    bound = ibot_max_masked(grid[0] * grid[1], ratio_range)
    assert bound == int(ratio_range[1] * grid[0] * grid[1])
    counts = np.concatenate([ibot_masks(0, step, 16, 2, grid, ratio_range=ratio_range,
                                        mask_probability=1.0).sum(-1).ravel()
                             for step in range(20)])
    assert counts.max() <= bound
    assert counts.max() >= bound - 1
