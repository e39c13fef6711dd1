"""An ImageNet-style folder ``root/<class>/<image>``, decoded with PIL (no TensorFlow).

Corrupt images. grain's random access must return *something* for every index, so a file PIL cannot
decode is replaced by a deterministic fallback: the next readable index (``i+1, i+2, ...`` modulo
``len``). The replacement keeps batch shapes fixed and makes the output a pure function of the
index, which keeps resumed runs identical. Each distinct corrupt file warns once and is recorded in
``corrupt_indices`` (so ``num_corrupt`` counts files, not accesses). The record lives in the source
object of the reading process: with grain's thread prefetch (what jaxssl uses) that is the object
you hold; with multiprocess prefetch each worker would keep its own. With ``skip_corrupt=False`` a
corrupt file raises instead.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


class CorruptImageError(ValueError):
    """Raised for an undecodable image when ``skip_corrupt=False``."""


def scan_image_folder(root: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """Lists ``root/<class>/*`` images: returns ``(classes, paths, labels)``.

    Classes are the sub-directory names sorted alphabetically; label ``i`` is ``classes[i]``.
    Files inside a class directory are sorted by name (nested sub-directories are walked).

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ["b/1.png", "a/2.jpg", "a/1.JPEG", "a/notes.txt"]:
    ...     (root / name).parent.mkdir(exist_ok=True); (root / name).touch()
    >>> classes, paths, labels = scan_image_folder(root)
    >>> classes, [p.split("/")[-1] for p in paths], labels.tolist()
    (['a', 'b'], ['1.JPEG', '2.jpg', '1.png'], [0, 0, 1])
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {root} does not exist. Fix: pass a directory laid out as "
            "root/<class>/<image files> (optionally with train/ and val/ split directories)."
        )
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"image folder {root} has no class sub-directories.")
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = []
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames.sort()
            files += [
                os.path.join(dirpath, f)
                for f in filenames
                if f.lower().endswith(IMAGE_EXTENSIONS)
            ]
        files.sort()
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise FileNotFoundError(
            f"image folder {root} has class directories {classes[:5]} but no image files with "
            f"extensions {IMAGE_EXTENSIONS}."
        )
    return classes, paths, np.asarray(labels, dtype=np.int64)


class SkipsCorrupt:
    """Base of the sources that decode files: the corrupt-item bookkeeping they share.

    A random-access source must return something for every index, so ``read_skipping`` replaces
    a corrupt item by the next readable one, recording it once in ``corrupt_indices`` (under a
    lock: grain reads from threads) with a warning, or re-raises when ``skip_corrupt`` is false.
    The lock is dropped when pickled (grain pickles sources for worker processes) and re-made.
    """

    def _track_corrupt(self, skip_corrupt: bool) -> None:
        self.skip_corrupt = skip_corrupt
        self.corrupt_indices: set[int] = set()
        self._lock = threading.Lock()

    @property
    def num_corrupt(self) -> int:
        """Number of distinct corrupt files met so far (in this process)."""
        return len(self.corrupt_indices)

    def read_skipping(self, index: int, n: int, read: Callable[[int], dict],
                      exhausted: str) -> dict:
        """``read(i)`` for the first readable i in index, index + 1, ... (mod n); ``exhausted``
        is the error message when every item is corrupt."""
        for offset in range(n):
            i = (index + offset) % n
            try:
                return read(i)
            except CorruptImageError as err:
                if not self.skip_corrupt:
                    raise
                with self._lock:
                    first_time = i not in self.corrupt_indices
                    self.corrupt_indices.add(i)
                if first_time:
                    warnings.warn(f"{err}; skipped (using the next readable index).",
                                  stacklevel=3)
        raise CorruptImageError(exhausted)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """A PIL image of any mode as uint8 RGB ``[H, W, 3]``, each mode's range mapped to 0..255.

    ``img.convert("RGB")`` is right for the 8-bit modes (``L``, ``LA``, ``P``, ``PA``, ``RGBA``,
    ``CMYK``, ``YCbCr``, ``1``; alpha is dropped, palettes are looked up) but clips wider ones at
    255, which binarises a 16-bit image. Those are scaled instead, rounding to nearest:

    - ``I;16`` / ``I;16B`` / ``I;16L`` / ``I;16N`` (16-bit grayscale, e.g. 16-bit PNG or TIFF):
      ``v * 255 / 65535``.
    - ``I`` (32-bit integer; Pillow's mode for 16-bit PNGs in older releases and for integer
      TIFFs): taken as 16-bit the same way, values clipped to [0, 65535].
    - ``F`` (32-bit float): taken as intensities in [0, 1], ``v * 255`` clipped to [0, 255];
      NaN becomes 0.

    >>> import numpy as np
    >>> img = Image.fromarray(np.array([[0, 257, 32768, 65535]], np.uint16))  # mode I;16
    >>> to_rgb_uint8(img)[0, :, 0].tolist()
    [0, 1, 128, 255]
    >>> to_rgb_uint8(Image.fromarray(np.array([[0.0, 0.5, 2.0]], np.float32)))[0, :, 0].tolist()
    [0, 128, 255]
    """
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
        gray = (values * 255 + 32767) // 65535  # round(v * 255 / 65535) in exact integers
    elif mode == "F":
        values = np.nan_to_num(np.asarray(img, np.float64), nan=0.0)
        gray = np.round(np.clip(values, 0.0, 1.0) * 255.0)
    else:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=-1)


def decode_image(path: str) -> np.ndarray:
    """Decodes a file to uint8 RGB [H, W, 3] (see ``to_rgb_uint8`` for 16-bit and float modes);
    raises ``CorruptImageError`` naming the file."""
    try:
        with Image.open(path) as img:
            return to_rgb_uint8(img)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        # PIL reports truncated data as OSError, unknown formats as UnidentifiedImageError.
        raise CorruptImageError(f"cannot decode image {path}: {err}") from err


class ImageFolderSource(SkipsCorrupt):
    """Random-access source over ``root/<class>/<image>``: ``{"image": uint8 [H,W,3], "label"}``.

    Args:
      root: directory whose sub-directories are the classes.
      skip_corrupt: replace an undecodable image by the next readable index (warn + count);
        when False, raise ``CorruptImageError``.

    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "cat").mkdir(); (root / "dog").mkdir()
    >>> Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "cat" / "0.png")
    >>> Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "dog" / "0.png")
    >>> src = ImageFolderSource(root)
    >>> len(src), src[0]["image"].shape, src[1]["image"].shape, src[1]["label"]
    (2, (6, 8, 3), (5, 5, 3), 1)
    """

    def __init__(self, root: str | os.PathLike, *, skip_corrupt: bool = True):
        self.root = str(root)
        self._track_corrupt(skip_corrupt)
        self.classes, self._paths, self.labels = scan_image_folder(root)
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, index: int) -> str:
        return self._paths[index]

    def __getitem__(self, index: int) -> dict:
        n = len(self._paths)
        # The label is that of the image actually returned, so pairs stay consistent.
        return self.read_skipping(
            index, n,
            lambda i: {"image": decode_image(self._paths[i]), "label": int(self.labels[i])},
            f"no readable image in {self.root} ({n} files, all corrupt).")

    def __repr__(self) -> str:
        return f"ImageFolderSource({self.root!r}, n={len(self)}, classes={self.num_classes})"
