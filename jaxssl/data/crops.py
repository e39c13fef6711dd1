"""Host-side multi-crop geometry: random-resized-crop, horizontal flip and eval resizing.

Photometric augmentations (colour jitter, blur, solarize) live in ``jaxssl.data.augment``; this
module only decides *which pixels* each view shows, with numpy Generators so every view is a pure
function of the example's generator.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
DEFAULT_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def sample_crop_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = DEFAULT_RATIO,
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """Samples a random-resized-crop box ``(top, left, h, w)`` (torchvision's algorithm).

    Up to ``attempts`` times: draw an area fraction uniformly from ``scale`` and a log-uniform
    aspect ratio ``w / h`` from ``ratio``; accept the first box that fits. Otherwise fall back to
    the largest centred box whose aspect ratio is clamped into ``ratio``.

    >>> sample_crop_box(np.random.default_rng(0), 100, 80, (0.25, 1.0))
    (5, 0, 82, 71)
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    h, w = max(1, min(h, height)), max(1, min(w, width))
    return (height - h) // 2, (width - w) // 2, h, w


def resize_box(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    size: int,
    interpolation: str = "bicubic",
) -> np.ndarray:
    """Crops ``box = (top, left, h, w)`` of a uint8 HWC image and resizes it to ``size x size``.

    PIL's ``box=`` argument does crop and resize in one pass (and upsamples crops smaller than
    ``size``). Grayscale (C = 1) inputs come out with 3 identical channels.

    >>> img = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
    >>> resize_box(img, (1, 1, 2, 2), 2, "bilinear")[..., 0]  # a same-size box is an exact crop
    array([[ 5,  6],
           [ 9, 10]], dtype=uint8)
    >>> resize_box(img, (0, 0, 4, 4), 8).shape  # upsampling a small image
    (8, 8, 3)
    """
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"image must be uint8 [H, W, 1|3], got shape {image.shape}.")
    top, left, h, w = box
    channels = image.shape[-1]
    pil = Image.fromarray(image[..., 0] if channels == 1 else image)
    out = np.asarray(
        pil.resize((size, size), _RESAMPLE[interpolation], box=(left, top, left + w, top + h))
    )
    if channels == 1:
        out = np.repeat(out[..., None], 3, axis=-1)
    return out


def random_view(
    rng: np.random.Generator,
    image: np.ndarray,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = DEFAULT_RATIO,
    interpolation: str = "bicubic",
) -> np.ndarray:
    """One augmented view: random-resized-crop to ``size``, then a horizontal flip with p = 0.5.

    >>> v = random_view(np.random.default_rng(0), np.zeros((28, 28, 1), np.uint8), 16, (0.4, 1.0))
    >>> v.shape, v.dtype
    ((16, 16, 3), dtype('uint8'))
    """
    box = sample_crop_box(rng, image.shape[0], image.shape[1], scale, ratio)
    view = resize_box(image, box, size, interpolation)
    if rng.random() < 0.5:
        view = view[:, ::-1]
    return np.ascontiguousarray(view)


def eval_view(
    image: np.ndarray,
    size: int,
    *,
    crop_fraction: float = 0.875,
    interpolation: str = "bicubic",
) -> np.ndarray:
    """Deterministic evaluation view of a uint8 HWC image, ``size x size x 3``.

    Images that fit inside ``size`` (e.g. 28 px MNIST at 32) get a plain resize. Larger ones follow
    the DINO evaluation: resize the shorter side to ``size / crop_fraction`` (256 for 224), then
    take the centred ``size x size`` crop.

    >>> eval_view(np.zeros((28, 28, 1), np.uint8), 32).shape
    (32, 32, 3)
    >>> eval_view(np.zeros((300, 400, 3), np.uint8), 224).shape
    (224, 224, 3)
    """
    height, width = image.shape[:2]
    if max(height, width) <= size:
        return resize_box(image, (0, 0, height, width), size, interpolation)
    short = int(round(size / crop_fraction))
    # The centred box in source pixels that maps onto the centred size x size crop after resizing
    # the shorter side to `short` (one resampling pass instead of two).
    factor = short / min(height, width)
    h = min(height, size / factor)
    w = min(width, size / factor)
    top, left = (height - h) / 2, (width - w) / 2
    channels = image.shape[-1]
    pil = Image.fromarray(image[..., 0] if channels == 1 else image)
    out = np.asarray(
        pil.resize((size, size), _RESAMPLE[interpolation], box=(left, top, left + w, top + h))
    )
    return np.repeat(out[..., None], 3, axis=-1) if channels == 1 else out
