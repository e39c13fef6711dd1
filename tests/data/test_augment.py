"""jaxssl.data.augment against colorsys, scipy.ndimage, numpy formulas and sampling statistics."""

from __future__ import annotations

import colorsys
import itertools
import math

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import ndimage

from jaxssl.data import augment as aug

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
# Eager augment_views dispatches hundreds of small ops; jit it once for the tests.
augment_views = jax.jit(aug.augment_views, static_argnums=2)
OFF = aug.ViewAugment(jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0)


def _pixels() -> np.ndarray:
    """A 6x6x6 grid of RGB values (greys, primaries and ties included) as a [216, 1, 3] image."""
    levels = np.linspace(0.0, 1.0, 6)
    return np.array(list(itertools.product(levels, repeat=3)), np.float32)[:, None, :]


def _image(seed: int, shape=(6, 7, 3)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


# ---- torchvision-style formulas in numpy (float64) -------------------------------------------


def _np_gray(x):
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def _np_brightness(x, f):
    return np.clip(f * x, 0, 1)


def _np_contrast(x, f):
    return np.clip(f * x + (1 - f) * _np_gray(x).mean(), 0, 1)


def _np_saturation(x, f):
    return np.clip(f * x + (1 - f) * _np_gray(x)[..., None], 0, 1)


def _np_hue(x, delta):
    out = np.empty_like(x, dtype=np.float64)
    for idx in np.ndindex(*x.shape[:-1]):
        h, s, v = colorsys.rgb_to_hsv(*map(float, x[idx]))
        out[idx] = colorsys.hsv_to_rgb((h + float(delta)) % 1.0, s, v)
    return out


# ---- deterministic ops ----------------------------------------------------------------------


def test_rgb_hsv_round_trip_matches_colorsys():
    px = _pixels()
    hsv = np.asarray(aug.rgb_to_hsv(jnp.asarray(px)))
    want = np.array([colorsys.rgb_to_hsv(*map(float, p)) for p in px[:, 0]])
    # Hue is circular: compare angles modulo 1.
    dh = np.abs(hsv[:, 0, 0] - want[:, 0])
    np.testing.assert_allclose(np.minimum(dh, 1 - dh), 0.0, atol=1e-6)
    np.testing.assert_allclose(hsv[:, 0, 1:], want[:, 1:], atol=1e-6)
    back = np.array([colorsys.hsv_to_rgb(*map(float, p)) for p in want])
    np.testing.assert_allclose(np.asarray(aug.hsv_to_rgb(jnp.asarray(hsv)))[:, 0], back, atol=1e-5)
    np.testing.assert_allclose(back, px[:, 0], atol=1e-6)


@pytest.mark.parametrize("delta", [-0.5, -0.37, -0.1, 0.0, 0.05, 0.25, 0.4999])
def test_adjust_hue_matches_colorsys(delta):
    px = np.concatenate([_pixels(), _image(0, (40, 1, 3))])
    got = np.asarray(aug.adjust_hue(jnp.asarray(px), delta))
    np.testing.assert_allclose(got, _np_hue(px, delta), atol=2e-5)


def test_adjust_hue_known_values():
    red = jnp.array([[[1.0, 0.0, 0.0]]])
    np.testing.assert_allclose(aug.adjust_hue(red, 1 / 6)[0, 0], [1.0, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(aug.adjust_hue(red, -1 / 3)[0, 0], [0.0, 0.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("factor", [0.0, 0.6, 1.0, 1.4])
def test_brightness_contrast_saturation_match_numpy(factor):
    x = _image(1)
    xj = jnp.asarray(x)
    np.testing.assert_allclose(
        aug.adjust_brightness(xj, factor), _np_brightness(x, factor), atol=1e-6
    )
    np.testing.assert_allclose(aug.adjust_contrast(xj, factor), _np_contrast(x, factor), atol=1e-6)
    np.testing.assert_allclose(
        aug.adjust_saturation(xj, factor), _np_saturation(x, factor), atol=1e-6
    )


def test_grayscale_and_solarize_definitions():
    x = _image(2)
    gray = np.asarray(aug.rgb_to_grayscale(jnp.asarray(x)))
    for c in range(3):
        np.testing.assert_allclose(gray[..., c], _np_gray(x), atol=1e-6)
    sol = np.asarray(aug.solarize(jnp.asarray(x), 0.3))
    np.testing.assert_array_equal(sol, np.where(x >= 0.3, 1.0 - x, x))
    edge = aug.solarize(jnp.array([0.49, 0.5, 0.51]), 0.5)
    np.testing.assert_allclose(edge, [0.49, 0.5, 0.49], atol=1e-6)


@pytest.mark.parametrize("sigma,ksize", [(0.5, 3), (1.0, 5), (1.7, 9), (2.0, 23)])
def test_gaussian_blur_matches_scipy(sigma, ksize):
    x = _image(3, (30, 26, 3))
    got = np.asarray(aug.gaussian_blur(jnp.asarray(x), sigma, ksize))
    half = (ksize - 1) // 2
    # torchvision pads with torch "reflect" (edge not repeated) = scipy's "mirror" mode; the
    # radius fixes scipy's kernel to the same truncated support.
    want = np.stack(
        [ndimage.gaussian_filter(x[..., c].astype(np.float64), sigma, mode="mirror", radius=half)
         for c in range(3)],
        axis=-1,
    )
    interior = (slice(half, -half), slice(half, -half))
    np.testing.assert_allclose(got[interior], want[interior], atol=1e-5)
    np.testing.assert_allclose(got[:half], want[:half], atol=1e-5)  # top border band
    np.testing.assert_allclose(got[:, -half:], want[:, -half:], atol=1e-5)  # right border band
    if sigma >= 1.0:  # the padding mode matters: scipy's half-sample "reflect" differs at borders
        other = ndimage.gaussian_filter(x[..., 0].astype(np.float64), sigma, mode="reflect",
                                        radius=half)
        assert np.abs(got[0, :, 0] - other[0]).max() > 1e-3


def test_default_kernel_size_and_kernel_weights():
    assert aug.default_blur_kernel_size(224) == 23
    assert aug.default_blur_kernel_size(96) == 9
    w = np.asarray(aug.gaussian_kernel_1d(1.3, 7))
    x = np.arange(7) - 3
    want = np.exp(-(x**2) / (2 * 1.3**2))
    np.testing.assert_allclose(w, want / want.sum(), atol=1e-6)


def test_color_jitter_applies_ops_in_given_order():
    x = _image(4)
    fb, fc, fs, dh = 1.3, 0.7, 1.6, 0.12
    numpy_ops = {
        0: lambda y: _np_brightness(y, fb),
        1: lambda y: _np_contrast(y, fc),
        2: lambda y: _np_saturation(y, fs),
        3: lambda y: _np_hue(y, dh),
    }
    results = []
    for order in [(0, 1, 2, 3), (3, 2, 1, 0), (1, 3, 0, 2), (2, 0, 3, 1)]:
        params = aug.JitterParams(jnp.array(order), fb, fc, fs, dh)
        got = np.asarray(aug.color_jitter(jnp.asarray(x), params))
        want = x.astype(np.float64)
        for op in order:
            want = numpy_ops[op](want)
        np.testing.assert_allclose(got, want, atol=3e-5)
        results.append(got)
    assert np.abs(results[0] - results[1]).max() > 1e-2  # the order changes the output


def test_random_order_varies_and_random_jitter_uses_sampled_params():
    keys = jax.random.split(jax.random.key(0), 240)
    params = jax.vmap(aug.sample_jitter_params)(keys)
    orders = {tuple(o) for o in np.asarray(params.order).tolist()}
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders)
    assert len(orders) >= 20  # 24 permutations, 240 draws: nearly all appear
    first = np.bincount(np.asarray(params.order)[:, 0], minlength=4)
    assert first.min() > 30  # each op leads ~60 times
    b = np.asarray(params.brightness)
    assert 0.6 <= b.min() and b.max() <= 1.4 and b.std() > 0.15
    h = np.asarray(params.hue)
    assert -0.1 <= h.min() and h.max() <= 0.1

    # random_color_jitter(key) == color_jitter with sample_jitter_params(split(key)[1]).
    x = jnp.asarray(_image(5))
    for i in range(3):
        k_params = jax.random.split(keys[i])[1]
        want = aug.color_jitter(x, aug.sample_jitter_params(k_params))
        got = aug.random_color_jitter(keys[i], x, prob=1.0)
        chex.assert_trees_all_close(got, want, atol=1e-6)


def _count_applied(fn, n=2000, seed=0):
    x = jnp.asarray(_image(6, (4, 4, 3)))
    keys = jax.random.split(jax.random.key(seed), n)
    out = np.asarray(jax.jit(jax.vmap(lambda k: fn(k, x)))(keys))
    return int((np.abs(out - np.asarray(x)).max(axis=(1, 2, 3)) > 1e-6).sum())


@pytest.mark.parametrize(
    "name,p,fn",
    [
        ("grayscale", 0.2, lambda k, x: aug.random_grayscale(k, x, 0.2)),
        ("jitter", 0.8, lambda k, x: aug.random_color_jitter(k, x, prob=0.8)),
        ("blur", 0.5, lambda k, x: aug.random_gaussian_blur(
            k, x, sigma_range=(0.5, 2.0), kernel_size=3, prob=0.5)),
        ("solarize", 0.2, lambda k, x: aug.random_solarize(k, x, prob=0.2)),
    ],
)
def test_probabilities_respected(name, p, fn):
    n = 2000
    count = _count_applied(fn, n)
    assert abs(count - p * n) <= 3 * math.sqrt(n * p * (1 - p)), (name, count)


def test_augment_views_probabilities_per_view():
    # View 0 always grayscale, view 1 never: checks each view gets its own ViewAugment.
    views = (
        aug.ViewAugment(jitter_prob=0, grayscale_prob=1.0, blur_prob=0),
        aug.ViewAugment(jitter_prob=0, grayscale_prob=0.2, blur_prob=0),
    )
    rng = np.random.default_rng(0)
    imgs = jnp.asarray(rng.integers(0, 256, (1000, 2, 2, 2, 3), dtype=np.uint8))
    out = np.asarray(augment_views(jax.random.key(3), imgs, views))
    raw = out * STD + MEAN  # undo the normalisation
    is_gray = np.ptp(raw, axis=-1).max(axis=(-2, -1)) < 1e-5
    assert is_gray[:, 0].all()
    n, p = 1000, 0.2
    assert abs(is_gray[:, 1].sum() - p * n) <= 3 * math.sqrt(n * p * (1 - p))


def test_zero_probabilities_are_identity_and_normalisation_matches():
    x = jnp.asarray(_image(7, (8, 8, 3)))
    chex.assert_trees_all_equal(aug.augment_image(jax.random.key(0), x, OFF), x)
    imgs = np.random.default_rng(1).integers(0, 256, (2, 3, 8, 8, 3), dtype=np.uint8)
    out = augment_views(jax.random.key(0), jnp.asarray(imgs), (OFF,) * 3)
    want = (imgs / 255.0 - MEAN) / STD
    np.testing.assert_allclose(out, want, atol=1e-5)
    np.testing.assert_allclose(aug.normalize_images(jnp.asarray(imgs)), want, atol=1e-5)


def _batch(seed=0, shape=(3, 2, 16, 16, 3)):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


DEFAULT_VIEWS = (
    aug.ViewAugment(blur_prob=1.0),
    aug.ViewAugment(blur_prob=0.1, solarize_prob=0.2),
)


def test_augment_views_jit_shape_dtype_determinism():
    imgs = _batch()
    fn = augment_views
    a = fn(jax.random.key(0), imgs, DEFAULT_VIEWS)
    chex.assert_shape(a, imgs.shape)
    chex.assert_type(a, jnp.float32)
    chex.assert_tree_all_finite(a)
    chex.assert_trees_all_equal(a, fn(jax.random.key(0), imgs, DEFAULT_VIEWS))
    b = fn(jax.random.key(1), imgs, DEFAULT_VIEWS)
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 0.1
    # Values stay in the normalised range of [0, 1] inputs.
    raw = np.asarray(a) * STD + MEAN
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_augment_views_independent_per_example_and_view_and_grouping_invariant():
    one = _batch(1, (1, 1, 16, 16, 3))
    imgs = jnp.tile(one, (4, 2, 1, 1, 1))  # the same picture everywhere
    view = aug.ViewAugment(jitter_prob=1.0, blur_prob=1.0)
    out = np.asarray(augment_views(jax.random.key(0), imgs, (view, view)))
    flat = out.reshape(8, -1)
    dists = np.abs(flat[:, None] - flat[None]).max(-1)
    assert (dists[~np.eye(8, dtype=bool)] > 1e-3).all()
    # View 0's randomness does not depend on what the other views are.
    mixed = np.asarray(augment_views(jax.random.key(0), imgs, (view, OFF)))
    np.testing.assert_allclose(mixed[:, 0], out[:, 0], atol=1e-5)  # fusion may differ


def test_errors_name_the_problem():
    imgs = _batch()
    with pytest.raises(ValueError, match=r"len\(views\) = 3.*images.shape\[1\] = 2"):
        aug.augment_views(jax.random.key(0), imgs, DEFAULT_VIEWS + (OFF,))
    with pytest.raises(ValueError, match="uint8"):
        aug.augment_views(jax.random.key(0), imgs.astype(jnp.float32), DEFAULT_VIEWS)
    with pytest.raises(ValueError, match="blur_prob"):
        aug.ViewAugment(blur_prob=1.5)
    with pytest.raises(ValueError, match="blur_sigma"):
        aug.ViewAugment(blur_sigma=(2.0, 0.1))
    with pytest.raises(ValueError, match="blur_kernel_size"):
        aug.ViewAugment(blur_kernel_size=4)
    with pytest.raises(ValueError, match="hue"):
        aug.ViewAugment(hue=0.6)
    with pytest.raises(ValueError, match="std"):
        aug.ViewAugment(std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="unknown fields.*blurr_prob"):
        aug.ViewAugment.from_config(ml_collections.ConfigDict({"blurr_prob": 0.1}))


def test_from_config_and_hashable():
    cfg = ml_collections.ConfigDict({"blur_prob": 0.1, "blur_sigma": [0.2, 1.0], "hue": 0.05})
    v = aug.ViewAugment.from_config(cfg)
    assert v == aug.ViewAugment(blur_prob=0.1, blur_sigma=(0.2, 1.0), hue=0.05)
    assert isinstance(v.blur_sigma, tuple) and hash(v) == hash(aug.ViewAugment.from_config(cfg))
    assert v.kernel_size(96, 96) == 9 and aug.ViewAugment(blur_kernel_size=5).kernel_size(8, 8) == 5


# The DINO jitter (hue 0.1, saturation 0.2) at probability 1 with grayscale, blur and solarize,
# so every op of the chain runs on every view.
_GRAY_VIEWS = (
    aug.ViewAugment(jitter_prob=1.0, grayscale_prob=0.5, blur_prob=1.0, blur_kernel_size=5,
                    mean=(0.286,) * 3, std=(0.353,) * 3),
    aug.ViewAugment(jitter_prob=1.0, grayscale_prob=0.5, blur_prob=0.5, solarize_prob=0.5),
)


def _gray_batch(seed=0, b=6, side=12):
    rng = np.random.default_rng(seed)
    one = rng.integers(0, 256, (b, 2, side, side, 1), np.uint8)
    return one, np.repeat(one, 3, axis=-1)


def test_gray_fast_path_equals_the_three_channel_path():
    """Gray data stored as RGB (the Fashion-MNIST crops): the automatic one-channel path, the
    stated one (gray=True) and one-channel input all give the three-channel chain's result
    (gray=False), hue and saturation jitter included, to float32 rounding: XLA vectorises the
    one- and three-channel loops differently (a last-bit difference in the blends)."""
    fn = jax.jit(aug.augment_views, static_argnums=(2, 3))
    one, rgb = _gray_batch()
    key = jax.random.key(3)
    reference = np.asarray(fn(key, rgb, _GRAY_VIEWS, False))
    assert np.ptp(reference) > 1.0  # the chain did something
    for got in (fn(key, rgb, _GRAY_VIEWS, None), fn(key, rgb, _GRAY_VIEWS, True),
                fn(key, one, _GRAY_VIEWS, None)):
        np.testing.assert_allclose(np.asarray(got), reference, rtol=0, atol=1e-6)


def test_colour_batches_take_the_three_channel_path():
    """One coloured pixel anywhere in the batch sends it down the full RGB chain: the result
    equals gray=False and differs from the gray path (hue and saturation act on it)."""
    fn = jax.jit(aug.augment_views, static_argnums=(2, 3))
    _, rgb = _gray_batch(1)
    rgb = rgb.copy()
    rgb[0, 0, :, :, 0] = 255 - rgb[0, 0, :, :, 0]  # one view of one example becomes colourful
    key = jax.random.key(4)
    auto = np.asarray(fn(key, rgb, _GRAY_VIEWS, None))
    np.testing.assert_array_equal(auto, np.asarray(fn(key, rgb, _GRAY_VIEWS, False)))
    assert not np.array_equal(auto, np.asarray(fn(key, rgb, _GRAY_VIEWS, True)))
