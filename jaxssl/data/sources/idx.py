"""MNIST and Fashion-MNIST from the official IDX files, parsed with numpy.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a big-endian header -- two
zero bytes, a type code (0x08 = uint8) and the number of dimensions -- followed by one uint32 size
per dimension and the raw data. Images use magic 0x00000803 ([N, 28, 28]), labels 0x00000801 ([N]).
The whole split is read into memory once: 60,000 x 28 x 28 bytes is 47 MB.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from jaxssl.data.sources.in_memory import InMemorySource

_DATASETS = ("fashion_mnist", "mnist")
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

# Published MD5s of the upstream .gz files (Fashion-MNIST README; torchvision's MNIST table).
# Only downloads are checked against them: Debian re-compresses its copies, so the bytes of
# /usr/share/datasets/fashion-mnist differ although the decompressed contents are identical.
_MD5 = {
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
}
_MIRRORS = {
    "fashion_mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",),
}
_SYSTEM_DIRS = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "mnist": ("/usr/share/datasets/mnist",),
}
_DEBIAN_PACKAGE = {"fashion_mnist": "dataset-fashion-mnist", "mnist": "(none; download it)"}


def parse_idx(data: bytes, *, name: str, expected_ndim: int) -> np.ndarray:
    """Parses one uncompressed IDX buffer into a uint8 array.

    Args:
      data: the file contents (already decompressed).
      name: the file name, used in error messages.
      expected_ndim: 3 for image files, 1 for label files.

    Returns:
      uint8 array with the shape stored in the header.

    Raises:
      ValueError: bad magic number, wrong rank or a short/long payload, naming ``name``.

    >>> header = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big")
    >>> parse_idx(header + bytes([7, 8, 9]), name="x", expected_ndim=1)
    array([7, 8, 9], dtype=uint8)
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name}: not an IDX file (bad magic number {data[:4]!r}).")
    if data[2] != 0x08:
        raise ValueError(f"{name}: IDX type code {data[2]:#04x} is not 0x08 (uint8).")
    ndim = data[3]
    if ndim != expected_ndim:
        raise ValueError(f"{name}: IDX file has {ndim} dimensions, expected {expected_ndim}.")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(f"{name}: truncated IDX header ({len(data)} bytes).")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) + header_len
    if len(data) != expected:
        raise ValueError(
            f"{name}: IDX payload has {len(data)} bytes, the header {shape} needs {expected} "
            "(file truncated or corrupt; delete it and fetch it again)."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


def _candidate_dirs(dataset: str, data_dir: str | os.PathLike | None) -> list[Path]:
    roots = []
    if data_dir is not None:
        roots.append(Path(data_dir))
    env = os.environ.get("JAXSSL_DATA_DIR")
    if env:
        roots.append(Path(env))
    dirs = []
    for root in roots:
        dirs += [root, root / dataset, root / dataset.replace("_", "-")]
    dirs += [Path(d) for d in _SYSTEM_DIRS[dataset]]
    return dirs


def _find_file(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for candidate in (d / f"{stem}.gz", d / stem):
            if candidate.is_file():
                return candidate
    return None


def _download_dir(dataset: str, data_dir: str | os.PathLike | None) -> Path:
    root = data_dir or os.environ.get("JAXSSL_DATA_DIR") or Path.home() / ".cache" / "jaxssl"
    return Path(root) / dataset


def _download(dataset: str, filename: str, target_dir: Path, timeout: float) -> Path:
    """Fetches one file from the official mirrors and checks the published MD5."""
    target_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in _MIRRORS[dataset]:
        url = mirror + filename
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
        except OSError as err:  # URLError, timeouts and DNS failures are all OSErrors.
            errors.append(f"{url}: {err}")
            continue
        digest = hashlib.md5(payload).hexdigest()
        if digest != _MD5[dataset][filename]:
            errors.append(f"{url}: MD5 {digest} != published {_MD5[dataset][filename]}")
            continue
        # Write-then-rename so an interrupted download never leaves a short file behind.
        with tempfile.NamedTemporaryFile(dir=target_dir, delete=False) as tmp:
            tmp.write(payload)
        target = target_dir / filename
        shutil.move(tmp.name, target)
        return target
    raise OSError("; ".join(errors))


def _read(path: Path) -> bytes:
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (OSError, EOFError) as err:
            raise ValueError(f"{path}: cannot decompress ({err}); the file is corrupt.") from err
    return path.read_bytes()


@functools.lru_cache(maxsize=8)
def _parse_file(path: str, ndim: int, mtime_ns: int, size: int) -> np.ndarray:
    """Parses a file once per process (keyed by path, mtime and size); the array is read-only."""
    del mtime_ns, size  # Only part of the cache key: a replaced file is parsed again.
    return parse_idx(_read(Path(path)), name=path, expected_ndim=ndim)


def load_idx_split(
    dataset: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    timeout: float = 30.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(images uint8 [N, 28, 28], labels uint8 [N])`` for one split.

    Search order: ``data_dir``, ``$JAXSSL_DATA_DIR`` (each also with a ``<dataset>/`` subdirectory),
    then the Debian location ``/usr/share/datasets/<fashion-mnist|mnist>``. Missing files are
    downloaded (when ``download``) into ``data_dir``, ``$JAXSSL_DATA_DIR`` or ``~/.cache/jaxssl``.

    >>> images, labels = load_idx_split("fashion_mnist", "test", download=False)
    >>> images.shape, images.dtype, labels.shape
    ((10000, 28, 28), dtype('uint8'), (10000,))
    """
    if dataset not in _DATASETS:
        raise ValueError(f"dataset must be one of {_DATASETS}, got {dataset!r}.")
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be one of {tuple(_SPLIT_PREFIX)}, got {split!r}.")
    dirs = _candidate_dirs(dataset, data_dir)
    arrays = []
    for kind, ndim in (("images-idx3", 3), ("labels-idx1", 1)):
        stem = f"{_SPLIT_PREFIX[split]}-{kind}-ubyte"
        path = _find_file(dirs, stem)
        if path is None:
            download_error = "download disabled"
            if download:
                try:
                    path = _download(
                        dataset, stem + ".gz", _download_dir(dataset, data_dir), timeout
                    )
                except OSError as err:
                    download_error = f"download failed: {err}"
            if path is None:
                searched = ", ".join(str(d) for d in dirs)
                raise FileNotFoundError(
                    f"{dataset} {split}: {stem}[.gz] not found in {searched} ({download_error}). "
                    f"Fix: `apt-get install {_DEBIAN_PACKAGE[dataset]}`, or put the official IDX "
                    "files in a directory and set JAXSSL_DATA_DIR (or data_dir) to it."
                )
        stat = path.stat()
        arrays.append(_parse_file(str(path), ndim, stat.st_mtime_ns, stat.st_size))
    images, labels = arrays
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{dataset} {split}: {images.shape[0]} images but {labels.shape[0]} labels."
        )
    return images, labels


class IdxSource(InMemorySource):
    """Random-access source over an in-memory IDX split: ``{"image": [28, 28, 1], "label"}``.

    A grain ``RandomAccessDataSource`` (``__len__`` / ``__getitem__``, picklable).

    >>> src = IdxSource("fashion_mnist", "test", download=False)
    >>> len(src), src[0]["image"].shape, src[0]["label"], src.num_classes
    (10000, (28, 28, 1), 9, 10)
    """

    def __init__(
        self,
        dataset: str,
        split: str,
        *,
        data_dir: str | os.PathLike | None = None,
        download: bool = True,
    ):
        self.dataset, self.split = dataset, split
        images, labels = load_idx_split(dataset, split, data_dir=data_dir, download=download)
        self._images = images[..., None]  # [N, 28, 28, 1]: sources yield HWC.
        self.labels = labels.astype(np.int64)
        self.num_classes = int(self.labels.max()) + 1

    def __repr__(self) -> str:
        return f"IdxSource({self.dataset!r}, {self.split!r}, n={len(self)})"
