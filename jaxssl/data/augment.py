"""Photometric view augmentation on the accelerator, inside the jitted train step.

The host pipeline only does geometry (random-resized-crop, flip); everything that changes pixel
values lives here as pure JAX, vmapped over the batch and driven by an explicit key. The recipe is
the DINO/BYOL one (docs/methods.md §0): colour jitter in a random order with probability 0.8,
grayscale 0.2, Gaussian blur, solarize, then ImageNet mean/std normalisation.

All ops take float images in [0, 1], channels last (``[..., H, W, C]``, C = 3 for the colour
ops), and mirror torchvision's tensor ops (clamping to [0, 1] after each blend), so a model
trained with these views sees the same distribution as one trained with the public PyTorch recipes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "JitterParams",
    "ViewAugment",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "augment_image",
    "augment_views",
    "color_jitter",
    "default_blur_kernel_size",
    "DINO_VIEWS",
    "dino_view_augments",
    "gaussian_blur",
    "gaussian_kernel_1d",
    "hsv_to_rgb",
    "normalize",
    "normalize_images",
    "random_color_jitter",
    "random_gaussian_blur",
    "random_grayscale",
    "random_solarize",
    "rgb_to_grayscale",
    "rgb_to_hsv",
    "sample_jitter_params",
    "solarize",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The DINO recipe's per-view settings (docs/methods.md §0); every other setting is a
# ``ViewAugment`` default (colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale 0.2, blur
# sigma (0.1, 2.0), ImageNet mean/std). The config schema (``jaxssl.train.defaults``) and
# ``dino_view_augments`` are both built from these two places.
DINO_VIEWS: dict[str, dict[str, float]] = {
    "global1": {"blur_prob": 1.0},  # the first global view is always blurred
    "global2": {"blur_prob": 0.1, "solarize_prob": 0.2},
    "local": {"blur_prob": 0.5},
}

# ITU-R 601-2 luma weights, as PIL's convert("L") and torchvision's rgb_to_grayscale use.
_LUMA = (0.299, 0.587, 0.114)


# ----------------------------------------------------------------------------------------------
# Configuration.


@dataclasses.dataclass(frozen=True)
class ViewAugment:
    """Photometric augmentation of one view; frozen and hashable, so usable as a static jit arg.

    Attributes:
      jitter_prob: probability of applying colour jitter.
      brightness, contrast, saturation: jitter strengths b; factors are uniform in
        [max(0, 1 - b), 1 + b].
      hue: hue jitter strength h in [0, 0.5]; the shift is uniform in [-h, h] turns.
      grayscale_prob: probability of converting to (3-channel) grayscale.
      blur_prob: probability of a Gaussian blur.
      blur_sigma: (low, high) range of the blur's standard deviation, in pixels.
      blur_kernel_size: odd kernel size; None derives it from the image side
        (see `default_blur_kernel_size`, 23 at 224 as in the torchvision DINO/BYOL recipe).
      solarize_prob: probability of solarizing.
      solarize_threshold: pixels >= threshold (on the [0, 1] scale) are inverted; 0.5 equals
        PIL's 128 on images that come from uint8.
      mean, std: per-channel normalisation applied last.

    >>> aug = ViewAugment(blur_prob=1.0)
    >>> aug.blur_prob, hash(aug) == hash(ViewAugment(blur_prob=1.0))
    (1.0, True)
    """

    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_size: int | None = None
    solarize_prob: float = 0.0
    solarize_threshold: float = 0.5
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        # Lists (e.g. from a ConfigDict or YAML) would make the dataclass unhashable, so store
        # the sequence fields as tuples before validating.
        for name in ("blur_sigma", "mean", "std"):
            value = getattr(self, name)
            if isinstance(value, Sequence) and not isinstance(value, str):
                object.__setattr__(self, name, tuple(float(v) for v in value))
        self.validate()

    def validate(self) -> None:
        """Raises ValueError naming the first invalid field.

        >>> ViewAugment(hue=0.7)
        Traceback (most recent call last):
        ...
        ValueError: ViewAugment.hue must be in [0, 0.5], got 0.7
        """
        for name in ("jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
            p = getattr(self, name)
            if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"ViewAugment.{name} must be a probability in [0, 1], got {p!r}")
        for name in ("brightness", "contrast", "saturation"):
            s = getattr(self, name)
            if not isinstance(s, (int, float)) or not 0.0 <= s < float("inf"):
                raise ValueError(f"ViewAugment.{name} must be a finite number >= 0, got {s!r}")
        if not isinstance(self.hue, (int, float)) or not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"ViewAugment.hue must be in [0, 0.5], got {self.hue!r}")
        sigma = self.blur_sigma
        if not isinstance(sigma, tuple) or len(sigma) != 2 or not 0.0 < sigma[0] <= sigma[1]:
            raise ValueError(
                f"ViewAugment.blur_sigma must be (low, high) with 0 < low <= high, got {sigma!r}"
            )
        k = self.blur_kernel_size
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0):
            raise ValueError(
                f"ViewAugment.blur_kernel_size must be None or an odd int >= 1, got {k!r}"
            )
        t = self.solarize_threshold
        if not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
            raise ValueError(f"ViewAugment.solarize_threshold must be in [0, 1], got {t!r}")
        if not isinstance(self.mean, tuple) or len(self.mean) == 0:
            raise ValueError(f"ViewAugment.mean must be a non-empty sequence, got {self.mean!r}")
        if not isinstance(self.std, tuple) or len(self.std) != len(self.mean):
            raise ValueError(
                f"ViewAugment.std must have len(mean) = {len(self.mean)} entries, got {self.std!r}"
            )
        if any(not s > 0.0 for s in self.std):
            raise ValueError(f"ViewAugment.std entries must be > 0, got {self.std!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ViewAugment:
        """Builds a ViewAugment from an ml_collections ConfigDict (or any mapping).

        Unknown keys raise ValueError, so a typo in a config never silently falls back to a default.

        >>> import ml_collections
        >>> cfg = ml_collections.ConfigDict({"blur_prob": 0.1, "solarize_prob": 0.2})
        >>> ViewAugment.from_config(cfg).solarize_prob
        0.2
        """
        items = dict(config.items())
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(items) - known)
        if unknown:
            raise ValueError(
                f"ViewAugment config has unknown fields {unknown}; known: {sorted(known)}"
            )
        return cls(**items)

    def kernel_size(self, height: int, width: int) -> int:
        """The blur kernel size for an image of the given size.

        >>> ViewAugment().kernel_size(224, 224), ViewAugment(blur_kernel_size=5).kernel_size(96, 96)
        (23, 5)
        """
        if self.blur_kernel_size is not None:
            return self.blur_kernel_size
        return default_blur_kernel_size(min(height, width))

    def with_strength(self, strength: float) -> ViewAugment:
        """The same view with the four colour-jitter strengths multiplied by ``strength``.

        >>> v = ViewAugment().with_strength(0.5)
        >>> v.brightness, v.contrast, v.saturation, v.hue
        (0.2, 0.2, 0.1, 0.05)
        """
        return dataclasses.replace(
            self, brightness=self.brightness * strength, contrast=self.contrast * strength,
            saturation=self.saturation * strength, hue=self.hue * strength)


def dino_view_augments(
    num_local: int,
) -> tuple[tuple[ViewAugment, ViewAugment], tuple[ViewAugment, ...]]:
    """The DINO recipe (docs/methods.md §0): (global views, local views) for `augment_views`.

    Global 1 always blurred; global 2 blurred with p 0.1 and solarized with p 0.2; locals blurred
    with p 0.5. Jitter (0.4, 0.4, 0.2, 0.1) with p 0.8 and grayscale 0.2 everywhere.

    >>> globals_, locals_ = dino_view_augments(num_local=6)
    >>> [v.blur_prob for v in globals_], globals_[1].solarize_prob, len(locals_)
    ([1.0, 0.1], 0.2, 6)
    """
    if isinstance(num_local, bool) or not isinstance(num_local, int) or num_local < 0:
        raise ValueError(f"num_local must be an int >= 0, got {num_local!r}")
    globals_ = (ViewAugment(**DINO_VIEWS["global1"]), ViewAugment(**DINO_VIEWS["global2"]))
    return globals_, (ViewAugment(**DINO_VIEWS["local"]),) * num_local


def default_blur_kernel_size(side: int) -> int:
    """Odd kernel size of about 10 % of the image side (23 at 224, 9 at 96), at least 3.

    This is the torchvision BYOL/DINO choice `GaussianBlur(kernel_size=23)` at 224, scaled.

    >>> default_blur_kernel_size(224), default_blur_kernel_size(96), default_blur_kernel_size(8)
    (23, 9, 3)
    """
    k = max(3, int(0.1 * side))
    return k if k % 2 == 1 else k + 1


# ----------------------------------------------------------------------------------------------
# Deterministic ops on float images in [0, 1].


def _luma(image: jax.Array) -> jax.Array:
    """Grayscale intensity [..., H, W] (ITU-R 601-2) of C = 3 channels, or of C = 1 channel that
    stands for three equal ones (the same products and sums in the same order)."""
    if image.shape[-1] == 1:
        r = g = b = image[..., 0]
    else:
        r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return _LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b


def _blend(image: jax.Array, other: jax.Array, factor: jax.Array | float) -> jax.Array:
    """factor * image + (1 - factor) * other, clamped to [0, 1] (torchvision's _blend)."""
    return jnp.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0)


def rgb_to_grayscale(image: jax.Array) -> jax.Array:
    """ITU-R 601-2 luma (0.299 R + 0.587 G + 0.114 B), replicated to 3 channels.

    >>> img = jnp.array([[[1.0, 0.0, 0.0]]])
    >>> print(rgb_to_grayscale(img)[0, 0].round(3))
    [0.299 0.299 0.299]
    """
    gray = _luma(image)[..., None]
    return jnp.broadcast_to(gray, image.shape).astype(image.dtype)


def adjust_brightness(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """Multiplies by `factor` and clamps to [0, 1].

    >>> print(adjust_brightness(jnp.array([[[0.2, 0.4, 0.8]]]), 1.5)[0, 0].round(3))
    [0.3 0.6 1. ]
    """
    return _blend(image, jnp.zeros((), image.dtype), factor)


def adjust_contrast(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """Blends with the mean of the grayscale image: factor * x + (1 - factor) * mean(gray(x)).

    >>> img = jnp.array([[[0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]]])
    >>> print(adjust_contrast(img, 0.5)[:, 0, 0].round(3))
    [0.25 0.75]
    """
    mean = jnp.mean(_luma(image), axis=(-2, -1), keepdims=True)[..., None]
    return _blend(image, mean, factor)


def adjust_saturation(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """Blends with the grayscale image: factor * x + (1 - factor) * gray(x).

    >>> print(adjust_saturation(jnp.array([[[1.0, 0.0, 0.0]]]), 0.0)[0, 0].round(3))
    [0.299 0.299 0.299]
    """
    return _blend(image, _luma(image)[..., None], factor)


def rgb_to_hsv(image: jax.Array) -> jax.Array:
    """RGB in [0, 1] -> HSV in [0, 1] (hue in turns), the same convention as Python's colorsys.

    >>> print(rgb_to_hsv(jnp.array([0.0, 0.5, 1.0])).round(4))
    [0.5833 1.     1.    ]
    """
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    maxc = jnp.maximum(jnp.maximum(r, g), b)
    minc = jnp.minimum(jnp.minimum(r, g), b)
    chroma = maxc - minc
    s = chroma / jnp.where(maxc > 0, maxc, 1.0)
    safe = jnp.where(chroma > 0, chroma, 1.0)  # grey pixels have hue 0; avoid 0/0
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    # The sector is chosen by which channel is the maximum, R first then G (as colorsys does).
    h = jnp.where(r == maxc, bc - gc, jnp.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
    h = jnp.where(chroma > 0, jnp.mod(h / 6.0, 1.0), 0.0)
    return jnp.stack([h, s, maxc], axis=-1)


def hsv_to_rgb(image: jax.Array) -> jax.Array:
    """HSV in [0, 1] (hue in turns) -> RGB in [0, 1], the inverse of `rgb_to_hsv`.

    >>> print(hsv_to_rgb(jnp.array([0.5833333, 1.0, 1.0])).round(3))
    [0.  0.5 1. ]
    """
    h, s, v = image[..., 0], image[..., 1], image[..., 2]
    h6 = jnp.mod(h, 1.0) * 6.0
    sector = jnp.floor(h6)
    f = h6 - sector
    sector = sector.astype(jnp.int32) % 6
    p = v * (1.0 - s)
    q = v * (1.0 - s * f)
    t = v * (1.0 - s * (1.0 - f))
    # (R, G, B) for the six 60-degree sectors of the hue circle.
    r = jnp.select([sector == k for k in range(6)], [v, q, p, p, t, v])
    g = jnp.select([sector == k for k in range(6)], [t, v, v, q, p, p])
    b = jnp.select([sector == k for k in range(6)], [p, p, t, v, v, q])
    return jnp.stack([r, g, b], axis=-1)


def adjust_hue(image: jax.Array, delta: jax.Array | float) -> jax.Array:
    """Rotates the hue by `delta` turns (delta in [-0.5, 0.5]) in HSV space.

    >>> print(adjust_hue(jnp.array([[[1.0, 0.0, 0.0]]]), 1.0 / 3.0)[0, 0].round(3))
    [0. 1. 0.]
    """
    hsv = rgb_to_hsv(image)
    hue = jnp.mod(hsv[..., 0] + delta, 1.0)
    return jnp.clip(hsv_to_rgb(hsv.at[..., 0].set(hue)), 0.0, 1.0)


def gaussian_kernel_1d(sigma: jax.Array | float, kernel_size: int) -> jax.Array:
    """Normalised 1-D Gaussian weights exp(-x^2 / (2 sigma^2)) on x = -(k-1)/2 .. (k-1)/2.

    >>> print([round(float(w), 4) for w in gaussian_kernel_1d(1.0, 3)])
    [0.2741, 0.4519, 0.2741]
    """
    half = (kernel_size - 1) / 2.0
    x = jnp.arange(kernel_size, dtype=jnp.float32) - half
    w = jnp.exp(-0.5 * jnp.square(x / sigma))
    return w / jnp.sum(w)


def _blur_axis(image: jax.Array, weights: jax.Array, axis: int) -> jax.Array:
    """1-D convolution along `axis` with reflect padding (the edge pixel is not repeated)."""
    k = weights.shape[0]
    half = (k - 1) // 2
    pad = [(0, 0)] * image.ndim
    pad[axis] = (half, half)
    padded = jnp.pad(image, pad, mode="reflect")
    n = image.shape[axis]
    # A weighted sum of k shifted slices: XLA fuses it into one loop, and it vmaps over a
    # per-example sigma for free (no per-example conv kernels).
    out = jnp.zeros_like(image)
    for i in range(k):
        out = out + weights[i] * jax.lax.slice_in_dim(padded, i, i + n, axis=axis)
    return out


def gaussian_blur(image: jax.Array, sigma: jax.Array | float, kernel_size: int) -> jax.Array:
    """Separable Gaussian blur of [..., H, W, C] with reflect padding, as torchvision's.

    torchvision pads with torch's "reflect" (d c b | a b c d), which is numpy's "reflect" and
    scipy.ndimage's "mirror" mode.

    >>> img = jnp.zeros((5, 5, 3)).at[2, 2].set(1.0)
    >>> print(round(float(gaussian_blur(img, 1.0, 3)[2, 2, 0]), 4))
    0.2042
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd int >= 1, got {kernel_size}")
    w = gaussian_kernel_1d(sigma, kernel_size).astype(image.dtype)
    # Channels-first while blurring: with C = 3 innermost the shifted slices vectorise poorly on
    # CPU (measured ~2x slower than [..., C, H, W]).
    planes = jnp.moveaxis(image, -1, -3)
    planes = _blur_axis(_blur_axis(planes, w, planes.ndim - 2), w, planes.ndim - 1)
    return jnp.moveaxis(planes, -3, -1)


def solarize(image: jax.Array, threshold: float = 0.5) -> jax.Array:
    """Inverts pixels at or above `threshold`: x >= t -> 1 - x.

    >>> print(solarize(jnp.array([0.2, 0.5, 0.9])).round(3))
    [0.2 0.5 0.1]
    """
    return jnp.where(image >= threshold, 1.0 - image, image)


def normalize(image: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """(x - mean) / std per channel (last axis).

    >>> print(normalize(jnp.array([0.5, 0.5]), (0.5, 0.25), (0.5, 0.25)).round(3))
    [0. 1.]
    """
    mean_arr = jnp.asarray(mean, jnp.float32)
    std_arr = jnp.asarray(std, jnp.float32)
    return (image - mean_arr) / std_arr


def normalize_images(
    images: jax.Array,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> jax.Array:
    """uint8 images [..., H, W, C] -> float32 (x / 255 - mean) / std, for evaluation.

    >>> x = normalize_images(jnp.full((1, 2, 2, 3), 255, jnp.uint8))
    >>> x.dtype, x.shape, round(float(x[0, 0, 0, 0]), 4)
    (dtype('float32'), (1, 2, 2, 3), 2.2489)
    """
    images = jnp.asarray(images)
    if images.ndim < 3 or images.shape[-1] != len(mean) or len(std) != len(mean):
        raise ValueError(
            f"normalize_images: images must be [..., H, W, C] with C = len(mean) = len(std) "
            f"= {len(mean)}, got images.shape={images.shape}, len(std)={len(std)}"
        )
    return normalize(images.astype(jnp.float32) / 255.0, mean, std)


# ----------------------------------------------------------------------------------------------
# Random ops on one float image [H, W, 3], each applied with a probability.


class JitterParams(NamedTuple):
    """One draw of colour-jitter parameters (scalars, or batched under vmap).

    Attributes:
      order: int32 [4], a permutation of (0 brightness, 1 contrast, 2 saturation, 3 hue).
      brightness, contrast, saturation: blend factors.
      hue: hue shift in turns.
    """

    order: jax.Array
    brightness: jax.Array
    contrast: jax.Array
    saturation: jax.Array
    hue: jax.Array


def sample_jitter_params(
    key: jax.Array,
    *,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
) -> JitterParams:
    """Draws torchvision-ColorJitter parameters: a random order and the four factors.

    Factors are uniform in [max(0, 1 - s), 1 + s] for strength s; the hue shift is uniform in
    [-hue, hue]; the order is a uniformly random permutation.

    >>> p = sample_jitter_params(jax.random.key(0), brightness=0.0)
    >>> sorted(p.order.tolist()), float(p.brightness)
    ([0, 1, 2, 3], 1.0)
    """
    # One draw of 8 uniforms (one threefry call keeps the traced graph small): 3 factors, the
    # hue shift, and 4 i.i.d. sort keys whose argsort is a uniformly random permutation.
    u = jax.random.uniform(key, (8,))

    def factor(v: jax.Array, strength: float) -> jax.Array:
        low = max(0.0, 1.0 - strength)
        return low + v * (1.0 + strength - low)

    return JitterParams(
        order=jnp.argsort(u[4:]).astype(jnp.int32),
        brightness=factor(u[0], brightness),
        contrast=factor(u[1], contrast),
        saturation=factor(u[2], saturation),
        hue=(2.0 * u[3] - 1.0) * hue,
    )


def color_jitter(image: jax.Array, params: JitterParams) -> jax.Array:
    """Applies brightness, contrast, saturation and hue to one image in the order `params.order`.

    >>> img = jnp.array([[[0.2, 0.4, 0.6]]])
    >>> p = JitterParams(jnp.array([3, 2, 1, 0]), 1.5, 1.0, 1.0, 0.0)
    >>> print(color_jitter(img, p)[0, 0].round(3))
    [0.3 0.6 0.9]
    """
    order = jnp.asarray(params.order)
    # Hue (the only costly op: an HSV round trip) is computed once. The three cheap ops are
    # applied at the positions before the hue in the permutation, then hue, then the positions
    # after it; every op still runs exactly once, in the permuted order.
    hue_pos = jnp.argmax(order == 3)
    x = _blend_pass(image, params, active=[pos < hue_pos for pos in range(4)])
    x = adjust_hue(x, params.hue)
    return _blend_pass(x, params, active=[pos > hue_pos for pos in range(4)])


def _blend_pass(image: jax.Array, params: JitterParams, active: list[jax.Array]) -> jax.Array:
    """The brightness/contrast/saturation ops of `params.order` at the active positions.

    All three are one blend f * x + (1 - f) * other, with other = 0, mean(gray(x)) or gray(x), so
    each position is a single select-then-blend (a much smaller XLA graph than three candidates).
    """
    order = jnp.asarray(params.order)
    factors = jnp.stack(
        [jnp.asarray(params.brightness), jnp.asarray(params.contrast),
         jnp.asarray(params.saturation), jnp.ones(())]
    ).astype(image.dtype)
    x = image
    for pos in range(4):
        op = order[pos]
        gray = _luma(x)[..., None]
        mean = jnp.mean(gray, axis=(-3, -2), keepdims=True)
        other = jnp.where(op == 0, 0.0, jnp.where(op == 1, mean, gray))
        y = _blend(x, other, factors[op])
        x = jnp.where(active[pos] & (op != 3), y, x)
    return x


def random_color_jitter(
    key: jax.Array,
    image: jax.Array,
    *,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.2,
    hue: float = 0.1,
    prob: float = 0.8,
) -> jax.Array:
    """Colour jitter with probability `prob`: the four adjustments in a random order.

    The parameters are `sample_jitter_params(split(key)[1], ...)`, as torchvision's ColorJitter.

    >>> img = jnp.full((2, 2, 3), 0.5)
    >>> out = random_color_jitter(jax.random.key(0), img, prob=0.0)
    >>> bool(jnp.all(out == img))
    True
    """
    k_apply, k_params = jax.random.split(key)
    params = sample_jitter_params(
        k_params, brightness=brightness, contrast=contrast, saturation=saturation, hue=hue
    )
    # Static: a zero hue shift is the identity, and so is any hue shift of a gray image (one
    # channel standing for three equal ones: saturation 0, hue 0, and HSV -> RGB gives v back
    # exactly), so both skip the HSV round trip.
    if hue == 0 or image.shape[-1] == 1:
        x = _blend_pass(image, params, active=[jnp.array(True)] * 4)
    else:
        x = color_jitter(image, params)
    return jnp.where(jax.random.bernoulli(k_apply, prob), x, image)


def random_grayscale(key: jax.Array, image: jax.Array, prob: float = 0.2) -> jax.Array:
    """`rgb_to_grayscale` with probability `prob`.

    >>> img = jnp.array([[[1.0, 0.0, 0.0]]])
    >>> print(random_grayscale(jax.random.key(0), img, prob=1.0)[0, 0].round(3))
    [0.299 0.299 0.299]
    """
    return jnp.where(jax.random.bernoulli(key, prob), rgb_to_grayscale(image), image)


def random_gaussian_blur(
    key: jax.Array,
    image: jax.Array,
    *,
    sigma_range: tuple[float, float] = (0.1, 2.0),
    kernel_size: int = 23,
    prob: float = 0.5,
) -> jax.Array:
    """`gaussian_blur` with probability `prob`, sigma uniform in `sigma_range` (pixels).

    >>> img = jnp.zeros((5, 5, 3)).at[2, 2].set(1.0)
    >>> out = random_gaussian_blur(jax.random.key(0), img, kernel_size=3, prob=1.0)
    >>> round(float(out.sum()), 4)
    3.0
    """
    k_apply, k_sigma = jax.random.split(key)
    sigma = jax.random.uniform(k_sigma, (), minval=sigma_range[0], maxval=sigma_range[1])
    return jnp.where(
        jax.random.bernoulli(k_apply, prob), gaussian_blur(image, sigma, kernel_size), image
    )


def random_solarize(
    key: jax.Array, image: jax.Array, *, threshold: float = 0.5, prob: float = 0.2
) -> jax.Array:
    """`solarize` with probability `prob`.

    >>> print(random_solarize(jax.random.key(0), jnp.array([0.9]), prob=1.0).round(3))
    [0.1]
    """
    return jnp.where(jax.random.bernoulli(key, prob), solarize(image, threshold), image)


def augment_image(key: jax.Array, image: jax.Array, view: ViewAugment) -> jax.Array:
    """The photometric chain on one float image [H, W, 3] in [0, 1], before normalisation.

    Order as in the DINO recipe: colour jitter, grayscale, blur, solarize. Ops whose probability
    is 0 are skipped at trace time (so p = 0 is exactly the identity).

    >>> img = jnp.full((4, 4, 3), 0.25)
    >>> off = ViewAugment(jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0)
    >>> bool(jnp.all(augment_image(jax.random.key(1), img, off) == img))
    True
    """
    k_jitter, k_gray, k_blur, k_solar = jax.random.split(key, 4)
    x = image
    if view.jitter_prob > 0:
        x = random_color_jitter(
            k_jitter,
            x,
            brightness=view.brightness,
            contrast=view.contrast,
            saturation=view.saturation,
            hue=view.hue,
            prob=view.jitter_prob,
        )
    if view.grayscale_prob > 0:
        x = random_grayscale(k_gray, x, view.grayscale_prob)
    if view.blur_prob > 0:
        x = random_gaussian_blur(
            k_blur,
            x,
            sigma_range=view.blur_sigma,
            kernel_size=view.kernel_size(image.shape[-3], image.shape[-2]),
            prob=view.blur_prob,
        )
    if view.solarize_prob > 0:
        x = random_solarize(k_solar, x, threshold=view.solarize_threshold, prob=view.solarize_prob)
    return x


def augment_views(
    key: jax.Array, images: jax.Array, views: Sequence[ViewAugment], gray: bool | None = None
) -> jax.Array:
    """Augments and normalises a batch of multi-view crops: uint8 [B, V, H, W, C] -> float32
    [B, V, H, W, 3].

    Gray images (C = 1, or C = 3 with equal channels) take a one-channel path whose result is
    replicated to three channels: the three-channel path's result to float32 rounding (hue is
    exactly the identity on gray pixels; XLA may round the blends' last bit differently), about
    3x less work and no HSV round trip. ``gray=None`` checks the batch on device (a ``lax.cond``),
    ``gray=True`` states that the channels are equal (only the fast path is compiled),
    ``gray=False`` always runs three channels.

    View v of example b uses `views[v]` and the key fold_in(fold_in(key, v), b), so randomness is
    independent per example and per view. Under jit pass `views` as a static tuple. When the
    global and local crops are augmented in two calls (their sizes differ), give the calls
    different keys (e.g. split the step key).

    >>> imgs = jnp.full((2, 2, 8, 8, 3), 128, jnp.uint8)
    >>> views = (ViewAugment(jitter_prob=0.0), ViewAugment(jitter_prob=0.0, solarize_prob=0.2))
    >>> fn = jax.jit(augment_views, static_argnums=2)
    >>> out = fn(jax.random.key(0), imgs, views)
    >>> out.shape, out.dtype
    ((2, 2, 8, 8, 3), dtype('float32'))
    """
    images = jnp.asarray(images)
    if images.ndim != 5 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"augment_views: images must be [B, V, H, W, 3] (or 1 for gray), got {images.shape}")
    if images.dtype != jnp.uint8:
        raise ValueError(f"augment_views: images must be uint8, got dtype {images.dtype}")
    views = tuple(views)
    batch, num_views = images.shape[0], images.shape[1]
    if len(views) != num_views:
        raise ValueError(
            f"augment_views: len(views) = {len(views)} must equal the number of views "
            f"images.shape[1] = {num_views}"
        )
    for v, view in enumerate(views):
        if not isinstance(view, ViewAugment):
            raise ValueError(f"augment_views: views[{v}] must be a ViewAugment, got {type(view)}")
        if len(view.mean) != 3:
            raise ValueError(f"augment_views: views[{v}].mean must have 3 entries, got {view.mean}")

    # keys[b, v] = fold_in(fold_in(key, v), b): independent of how views are grouped below.
    def keys_for_view(v: int) -> jax.Array:
        view_key = jax.random.fold_in(key, v)
        return jax.vmap(lambda b: jax.random.fold_in(view_key, b))(jnp.arange(batch))

    keys = [keys_for_view(v) for v in range(num_views)]

    def run(x: jax.Array) -> jax.Array:
        out: list[jax.Array | None] = [None] * num_views
        # Views with the same config (e.g. the 6-10 local crops) share one vmapped computation.
        for view in dict.fromkeys(views):
            idx = [v for v in range(num_views) if views[v] == view]
            fn = jax.vmap(jax.vmap(lambda k, im, view=view: augment_image(k, im, view)))
            group = fn(jnp.stack([keys[v] for v in idx], axis=1), x[:, jnp.array(idx)])
            # A gray group (C = 1) becomes three equal channels before the per-channel mean/std.
            group = jnp.broadcast_to(group, (*group.shape[:-1], 3))
            group = normalize(group, view.mean, view.std)
            for j, v in enumerate(idx):
                out[v] = group[:, j]
        return jnp.stack(out, axis=1).astype(jnp.float32)

    x = images.astype(jnp.float32) / 255.0
    if images.shape[-1] == 1 or gray is False:
        return run(x)
    if gray:
        return run(x[..., :1])
    # Gray data stored as RGB (Fashion-MNIST's crops): every op of the chain keeps equal channels
    # equal, so one channel is computed (about 3x less work, no HSV round trip) and replicated,
    # equal to the three-channel path to float32 rounding. A real branch (lax.cond outside the
    # vmaps), so a colour batch pays only the comparison.
    is_gray = jnp.all(images == images[..., :1])
    return jax.lax.cond(is_gray, lambda x: run(x[..., :1]), run, x)
