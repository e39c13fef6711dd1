"""Crop geometry: random-resized-crop bounds, fallback, flips, small images, eval resizing."""

import math

import numpy as np
import pytest
from PIL import Image

from jaxssl.data.crops import eval_view, random_view, resize_box, sample_crop_box


def _fallback_box(height, width, ratio):
    """torchvision's centre fallback, restated: clamp the aspect ratio, keep the full extent."""
    if width / height < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif width / height > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.32, 1.0), (0.05, 0.32)])
@pytest.mark.parametrize("height, width", [(224, 180), (96, 160)])
def test_crop_boxes_respect_scale_and_aspect_bounds(scale, height, width):
    ratio = (3 / 4, 4 / 3)
    rng = np.random.default_rng(0)
    fractions, aspects = [], []
    for _ in range(2000):
        top, left, h, w = sample_crop_box(rng, height, width, scale, ratio)
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
        if (top, left, h, w) == _fallback_box(height, width, ratio):
            continue
        # w and h are rounded to integers: allow that much relative slack.
        tol = 1.0 / w + 1.0 / h
        fraction, aspect = h * w / (height * width), w / h
        assert scale[0] * (1 - tol) <= fraction <= scale[1] * (1 + tol), (h, w)
        assert ratio[0] * (1 - tol) <= aspect <= ratio[1] * (1 + tol), (h, w)
        fractions.append(fraction)
        aspects.append(aspect)
    # The draws span the allowed ranges (not just a corner of them).
    assert len(fractions) > 1500
    assert min(fractions) < scale[0] + 0.05 * (scale[1] - scale[0])
    assert max(fractions) > scale[0] + 0.6 * (scale[1] - scale[0])
    assert min(aspects) < 0.8 and max(aspects) > 1.25
    if scale[1] <= 0.32:  # Every candidate fits, so the log-uniform draw is unbiased:
        assert 0.4 < np.mean(np.array(aspects) > 1) < 0.6  # as many tall crops as wide ones.


def test_crop_positions_cover_the_image():
    rng = np.random.default_rng(1)
    tops = [sample_crop_box(rng, 100, 100, (0.1, 0.1))[0] for _ in range(500)]
    # sqrt(0.1 * 100 * 100) ~ 32 px boxes can start anywhere in [0, ~68].
    assert min(tops) <= 3 and max(tops) >= 60


def test_crop_fallback_when_no_attempt_fits():
    # A 10 x 200 strip with scale >= 0.9: every candidate box is taller than 10 px, so the sampler
    # must fall back to the centred full-height box with aspect clamped to 4/3: w = round(13.3).
    box = sample_crop_box(np.random.default_rng(0), 10, 200, (0.9, 1.0))
    assert box == (0, (200 - 13) // 2, 10, 13)


def test_random_view_is_crop_then_flip():
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    flips = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        box = sample_crop_box(rng, 40, 50, (0.2, 1.0))
        flip = rng.random() < 0.5
        expected = resize_box(image, box, 16, "bicubic")
        view = random_view(np.random.default_rng(seed), image, 16, (0.2, 1.0))
        np.testing.assert_array_equal(view, expected[:, ::-1] if flip else expected)
        flips += flip
    assert 10 <= flips <= 30


def test_small_and_grayscale_images_are_upscaled_to_rgb():
    image = np.arange(25, dtype=np.uint8).reshape(5, 5, 1)
    view = random_view(np.random.default_rng(0), image, 32, (0.5, 1.0))
    assert view.shape == (32, 32, 3) and view.dtype == np.uint8
    np.testing.assert_array_equal(view[..., 0], view[..., 2])
    tiny = random_view(np.random.default_rng(0), np.full((1, 1, 3), 7, np.uint8), 8, (0.1, 1.0))
    np.testing.assert_array_equal(tiny, np.full((8, 8, 3), 7, np.uint8))


def test_resize_box_of_the_whole_image_matches_pil():
    image = np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize((12, 12), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(resize_box(image, (0, 0, 30, 20), 12, "bilinear"), expected)


def test_eval_view_matches_resize_then_center_crop():
    # Smooth image so one-pass and two-pass resampling agree up to rounding.
    yy, xx = np.mgrid[0:300, 0:400]
    image = np.stack([yy * 255 // 299, xx * 255 // 399, (yy + xx) * 255 // 699], -1)
    image = image.astype(np.uint8)
    short = round(224 / 0.875)  # 256
    resized = Image.fromarray(image).resize(
        (round(400 * short / 300), short), Image.Resampling.BICUBIC
    )
    arr = np.asarray(resized)
    top, left = (arr.shape[0] - 224) // 2, (arr.shape[1] - 224) // 2
    expected = arr[top : top + 224, left : left + 224].astype(int)
    got = eval_view(image, 224).astype(int)
    assert got.shape == (224, 224, 3)
    assert np.abs(got - expected).max() <= 3


def test_eval_view_small_image_is_plain_resize():
    image = np.random.default_rng(0).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    got = eval_view(image, 28)
    np.testing.assert_array_equal(got[..., 0], image[..., 0])  # same size: identity
    assert eval_view(image, 32).shape == (32, 32, 3)
    assert math.isclose(eval_view(np.full((28, 28, 1), 9, np.uint8), 40).mean(), 9)
