"""Patch masks: MSN's random patch dropping (on device) and iBOT's block-wise masks (on the host).

MSN (docs/methods.md §5) drops 15 % of the anchor view's patch tokens with ONE random index set
per batch, so the kept tokens still form a dense [B, n_keep, D] array. iBOT (section 1) masks
rectangular blocks of patches of the student's global views with the BEiT block-wise algorithm;
that is a rejection-sampling loop, natural on the host, seeded explicitly by (seed, step) so any
step's masks can be regenerated exactly (e.g. after a restart).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ibot_block_mask", "ibot_masks", "ibot_max_masked", "msn_keep_indices", "msn_num_keep"]


def msn_num_keep(num_patches: int, drop_ratio: float) -> int:
    """Number of patches MSN keeps: num_patches - round(drop_ratio * num_patches).

    >>> msn_num_keep(196, 0.15)
    167
    """
    if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches < 1:
        raise ValueError(f"num_patches must be a positive int, got {num_patches!r}")
    if not 0.0 <= drop_ratio < 1.0:
        raise ValueError(f"drop_ratio must be in [0, 1), got {drop_ratio!r}")
    n_keep = num_patches - round(drop_ratio * num_patches)
    if n_keep < 1:
        raise ValueError(
            f"drop_ratio={drop_ratio} keeps no patch of num_patches={num_patches}; lower drop_ratio"
        )
    return n_keep


def msn_keep_indices(key: jax.Array, num_patches: int, drop_ratio: float) -> jax.Array:
    """Sorted indices (int32 [n_keep]) of the patches MSN keeps; one set for the whole batch.

    `num_patches` and `drop_ratio` are static (they fix the output shape); under jit pass them as
    static arguments. Gather the kept tokens with `tokens[:, idx]` (the CLS token is handled by the
    model, outside this index set).

    >>> idx = msn_keep_indices(jax.random.key(0), 10, 0.3)
    >>> idx.shape, idx.dtype, bool(jnp.all(jnp.diff(idx) > 0))
    ((7,), dtype('int32'), True)
    """
    n_keep = msn_num_keep(num_patches, drop_ratio)
    perm = jax.random.permutation(key, num_patches)
    return jnp.sort(perm[:n_keep]).astype(jnp.int32)


def _check_grid(grid: tuple[int, int]) -> tuple[int, int]:
    if (
        not isinstance(grid, (tuple, list))
        or len(grid) != 2
        or not all(isinstance(g, (int, np.integer)) and g >= 1 for g in grid)
    ):
        raise ValueError(f"grid must be (height, width) of positive ints, got {grid!r}")
    return int(grid[0]), int(grid[1])


def _place_block(
    rng: np.random.Generator,
    mask: np.ndarray,
    max_new: int,
    min_num_patches: int,
    log_aspect: tuple[float, float],
) -> int:
    """Tries (up to 10 times) to mask one random rectangle adding 1..max_new new patches.

    Returns the number of newly masked patches (0 when every attempt was rejected).
    """
    height, width = mask.shape
    lo, hi = sorted((float(min_num_patches), float(max_new)))
    for _ in range(10):
        # BEiT: target area uniform, aspect ratio log-uniform, side lengths rounded.
        area = rng.uniform(lo, hi)
        aspect = math.exp(rng.uniform(*log_aspect))
        h = int(round(math.sqrt(area * aspect)))
        w = int(round(math.sqrt(area / aspect)))
        if 1 <= h < height and 1 <= w < width:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            block = mask[top : top + h, left : left + w]
            new = h * w - int(block.sum())
            # Accept only if the rectangle adds something and does not overshoot the budget.
            if 0 < new <= max_new:
                block[...] = True
                return new
    return 0


def ibot_block_mask(
    rng: np.random.Generator,
    grid: tuple[int, int],
    num_masked: int,
    *,
    min_num_patches: int = 4,
    aspect_range: tuple[float, float] = (0.3, 1 / 0.3),
) -> np.ndarray:
    """Block-wise mask (BEiT / iBOT) of about `num_masked` patches: bool [h * w], row-major.

    Rectangles with a uniform target area in [min_num_patches, remaining budget] and a
    log-uniform aspect ratio in `aspect_range` are placed at random until `num_masked` patches are
    masked or ten consecutive proposals add nothing (so the count can fall short, never over).

    >>> m = ibot_block_mask(np.random.default_rng(0), (8, 8), 20)
    >>> m.shape, m.dtype, 0 < int(m.sum()) <= 20
    ((64,), dtype('bool'), True)
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng)}")
    height, width = _check_grid(grid)
    if isinstance(num_masked, bool) or not isinstance(num_masked, (int, np.integer)):
        raise ValueError(f"num_masked must be an int, got {num_masked!r}")
    if not 0 <= num_masked <= height * width:
        raise ValueError(f"num_masked must be in [0, {height * width}], got {num_masked}")
    if not isinstance(min_num_patches, int) or min_num_patches < 1:
        raise ValueError(f"min_num_patches must be a positive int, got {min_num_patches!r}")
    if len(aspect_range) != 2 or not 0 < aspect_range[0] <= aspect_range[1]:
        raise ValueError(
            f"aspect_range must be (low, high) with 0 < low <= high, got {aspect_range}"
        )

    log_aspect = (math.log(aspect_range[0]), math.log(aspect_range[1]))
    mask = np.zeros((height, width), dtype=bool)
    count = 0
    while count < num_masked:
        added = _place_block(rng, mask, num_masked - count, min_num_patches, log_aspect)
        if added == 0:
            break
        count += added
    return mask.reshape(-1)


def ibot_max_masked(num_patches: int, ratio_range: tuple[float, float]) -> int:
    """The most patches :func:`ibot_masks` masks in one crop: int(ratio_range[1] * num_patches).

    Each masked crop targets int(r * num_patches) patches with r <= ratio_range[1], and its block
    mask never overshoots the target.

    >>> ibot_max_masked(196, (0.1, 0.5)), ibot_max_masked(16, (0.1, 0.5))
    (98, 8)
    """
    return min(num_patches, int(ratio_range[1] * num_patches))


def ibot_masks(
    seed: int,
    step: int,
    batch_size: int,
    num_views: int,
    grid: tuple[int, int],
    *,
    ratio_range: tuple[float, float] = (0.1, 0.5),
    mask_probability: float = 0.5,
) -> np.ndarray:
    """iBOT masks for one step: bool [batch_size, num_views, h * w], deterministic in (seed, step).

    Of the batch_size * num_views crops, floor(mask_probability * batch_size * num_views) chosen at
    random are masked (the rest all-False, as in iBOT/DINOv2: the unmasked crops still train the
    CLS loss); each masked crop draws its ratio r uniform in `ratio_range` and gets a block mask
    of int(r * h * w) patches.

    >>> m = ibot_masks(seed=0, step=3, batch_size=4, num_views=2, grid=(14, 14))
    >>> m.shape, int(m.any(axis=-1).sum())
    ((4, 2, 196), 4)
    >>> bool((m == ibot_masks(0, 3, 4, 2, (14, 14))).all())
    True
    """
    checks = (("seed", seed, 0), ("step", step, 0), ("batch_size", batch_size, 1),
              ("num_views", num_views, 1))
    for name, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    height, width = _check_grid(grid)
    if len(ratio_range) != 2 or not 0.0 <= ratio_range[0] <= ratio_range[1] <= 1.0:
        raise ValueError(
            f"ratio_range must be (low, high) with 0 <= low <= high <= 1, got {ratio_range}"
        )
    if not 0.0 <= mask_probability <= 1.0:
        raise ValueError(f"mask_probability must be in [0, 1], got {mask_probability!r}")

    # SeedSequence of (seed, step): independent, reproducible streams for every step.
    rng = np.random.default_rng([int(seed), int(step)])
    num_patches = height * width
    total = batch_size * num_views
    num_masked_crops = int(mask_probability * total)
    chosen = rng.permutation(total)[:num_masked_crops]
    masks = np.zeros((total, num_patches), dtype=bool)
    for crop in np.sort(chosen):
        ratio = rng.uniform(*ratio_range)
        masks[crop] = ibot_block_mask(rng, (height, width), int(ratio * num_patches))
    return masks.reshape(batch_size, num_views, num_patches)
