"""MNIST and Fashion-MNIST from the official IDX files, parsed with numpy, and their download.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a big-endian header -- two
zero bytes, a type code (0x08 = uint8) and the number of dimensions -- followed by one uint32 size
per dimension and the raw data. Images use magic 0x00000803 ([N, 28, 28]), labels 0x00000801 ([N]).
The whole split is read into memory once: 60,000 x 28 x 28 bytes is 47 MB.

Download (the only one in jaxssl; the trainer and the Colab notebook both use it): each official
``.gz`` file is streamed into a temporary file beside its target while its SHA-256 is computed,
and renamed onto the target (``os.replace``) only when the digest is the official one, so the
cache never holds a partial or altered file. Errors are kept apart on purpose: ``OSError`` (no
network, DNS, HTTP errors, timeouts) means "offline" and lets a caller fall back to other data,
while :class:`ChecksumError` (a file arrived but is not the official one) always stops.

Only downloads and the download cache are checked against the digests: Debian's
``dataset-fashion-mnist`` re-writes the gzip headers (no file name, another time stamp), so its
files' bytes differ although their decompressed contents are identical.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from jaxssl.data.sources.in_memory import InMemorySource
from jaxssl.output_paths import atomic_write

_DATASETS = ("fashion_mnist", "mnist")
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

# Dataset -> file name -> (size in bytes, SHA-256) of the official upstream .gz files: Zalando's
# Fashion-MNIST release (Xiao et al., 2017) and LeCun's MNIST (the files TFDS and torchvision's
# mirrors serve, whose published MD5s are f68b3c2d..., d53e105e..., 9fb629c4..., ec29112d...).
OFFICIAL_FILES = {
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": (
            26_421_880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        "train-labels-idx1-ubyte.gz": (
            29_515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        "t10k-images-idx3-ubyte.gz": (
            4_422_102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        "t10k-labels-idx1-ubyte.gz": (
            5_148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            9_912_422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels-idx1-ubyte.gz": (
            28_881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "t10k-images-idx3-ubyte.gz": (
            1_648_877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz": (
            4_542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
}
# Base URLs tried in order: the canonical location, then a copy (the digests make any copy safe).
MIRRORS = {
    "fashion_mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
}
_SYSTEM_DIRS = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "mnist": ("/usr/share/datasets/mnist",),
}
_DEBIAN_PACKAGE = {"fashion_mnist": "dataset-fashion-mnist", "mnist": "(none; download it)"}
_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A downloaded file is not the official one (its SHA-256 differs); nothing was written."""


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


def _download_dir(dataset: str, data_dir: str | os.PathLike | None) -> Path:
    """``<data_dir | $JAXSSL_DATA_DIR | ~/.cache/jaxssl>/<dataset>``: where downloads go."""
    root = data_dir or os.environ.get("JAXSSL_DATA_DIR") or Path.home() / ".cache" / "jaxssl"
    return Path(root) / dataset


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
    # The download directory last, so that an earlier download is found again.
    download_dir = _download_dir(dataset, data_dir)
    return dirs + ([download_dir] if download_dir not in dirs else [])


def _find_file(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for candidate in (d / f"{stem}.gz", d / stem):
            if candidate.is_file():
                return candidate
    return None


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks.

    >>> import tempfile
    >>> file_sha256(tempfile.mkstemp()[1])[:16]  # the digest of no bytes
    'e3b0c44298fc1c14'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_official(path: Path, size: int, sha256: str) -> bool:
    # The size first: a truncated file is rejected without hashing it.
    return path.is_file() and path.stat().st_size == size and file_sha256(path) == sha256


def _fetch(url: str, target: Path, expected: str, timeout: float, opener: Callable) -> None:
    """Streams ``url`` to ``target`` through a temporary file; renames it only if it verifies."""

    def write(tmp: str) -> None:
        digest = hashlib.sha256()
        with opener(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected:
            raise ChecksumError(
                f"{url} has SHA-256 {digest.hexdigest()}, the official {target.name} has "
                f"{expected} (corrupt or altered download; nothing was kept).")

    atomic_write(target, write)  # a temporary file beside target, then os.replace


def _download(
    dataset: str,
    filename: str,
    target_dir: Path,
    *,
    mirrors: Sequence[str] | None,
    timeout: float,
    opener: Callable | None,
) -> Path:
    """Fetches one official file from the first mirror that serves the official bytes.

    Raises ChecksumError when a mirror answered with other bytes and none with the official ones,
    and OSError naming each URL and its error when no mirror could be reached.
    """
    _, expected = OFFICIAL_FILES[dataset][filename]
    # Looked up at call time (not bound as a default) so a patched urlopen is honoured.
    opener = opener or urllib.request.urlopen
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / filename
    network_errors, bad_files = [], []
    for mirror in MIRRORS[dataset] if mirrors is None else mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            _fetch(url, target, expected, timeout, opener)
            return target
        except ChecksumError as err:
            bad_files.append(f"{dataset}: {err}")
        except OSError as err:  # URLError, HTTPError, timeouts and DNS failures are OSErrors.
            network_errors.append(f"{url}: {err}")
    if bad_files:
        raise ChecksumError("; ".join(bad_files))
    raise OSError(f"{dataset}: could not download {filename} (offline?): "
                  + ("; ".join(network_errors) or "no mirror given"))


def download_idx(
    dataset: str,
    data_dir: str | os.PathLike | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30.0,
    opener: Callable | None = None,
) -> Path:
    """Makes sure the four official ``.gz`` files of ``dataset`` are in its download directory.

    Each missing file, or file there whose size or SHA-256 is not the official one, is fetched
    from the first mirror that serves the official bytes (see the module docstring).

    Args:
      dataset: ``"fashion_mnist"`` or ``"mnist"``.
      data_dir: root of the download directory ``<root>/<dataset>``; None: ``$JAXSSL_DATA_DIR``,
        else ``~/.cache/jaxssl`` (the directory :func:`load_idx_split` downloads into and reads).
      mirrors: base URLs tried in order (any scheme ``opener`` handles, e.g. ``file://``);
        None: the official ones (``MIRRORS[dataset]``).
      timeout: seconds per request.
      opener: ``urllib.request.urlopen`` (None) or a stand-in with its signature (tests).

    Returns:
      The download directory, holding ``train-images-idx3-ubyte.gz`` and the other three.

    Raises:
      ChecksumError: a mirror served a file with another SHA-256 (and no mirror the right one).
      OSError: no mirror could be reached (offline), naming each URL and its error.

    >>> import tempfile
    >>> download_idx("mnist", tempfile.mkdtemp(), mirrors=())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    OSError: mnist: could not download train-images-idx3-ubyte.gz (offline?): no mirror given
    """
    if dataset not in _DATASETS:
        raise ValueError(f"dataset must be one of {_DATASETS}, got {dataset!r}.")
    target_dir = _download_dir(dataset, data_dir)
    for filename, (size, sha256) in OFFICIAL_FILES[dataset].items():
        if not _is_official(target_dir / filename, size, sha256):
            _download(dataset, filename, target_dir, mirrors=mirrors, timeout=timeout,
                      opener=opener)
    return target_dir


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


def _locate(dataset: str, split: str, stem: str, dirs: list[Path], fetch: Callable | None) -> Path:
    """The file for ``stem`` found in ``dirs``, else downloaded by ``fetch`` (None: disabled)."""
    path = _find_file(dirs, stem)
    if path is not None:
        return path
    download_error = "download disabled"
    if fetch is not None:
        try:
            return fetch(stem + ".gz")
        except OSError as err:  # offline: reported with the places searched and the fix
            download_error = f"download failed: {err}"
    searched = ", ".join(str(d) for d in dirs)
    raise FileNotFoundError(
        f"{dataset} {split}: {stem}[.gz] not found in {searched} ({download_error}). "
        f"Fix: `apt-get install {_DEBIAN_PACKAGE[dataset]}`, or put the official IDX "
        "files in a directory and set JAXSSL_DATA_DIR (or data_dir) to it."
    )


def _parse_path(path: Path, ndim: int) -> np.ndarray:
    stat = path.stat()
    return _parse_file(str(path), ndim, stat.st_mtime_ns, stat.st_size)


def load_idx_split(
    dataset: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    timeout: float = 30.0,
    mirrors: Sequence[str] | None = None,
    opener: Callable | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(images uint8 [N, 28, 28], labels uint8 [N])`` for one split.

    Search order: ``data_dir``, ``$JAXSSL_DATA_DIR`` (each also with a ``<dataset>/`` subdirectory),
    the Debian location ``/usr/share/datasets/<fashion-mnist|mnist>``, then the download
    directory ``<data_dir | $JAXSSL_DATA_DIR | ~/.cache/jaxssl>/<dataset>``. Missing files are
    downloaded there (when ``download``) and kept only with the official SHA-256; a file in the
    download directory that no longer parses is fetched again. ``mirrors``, ``timeout`` and
    ``opener`` are passed to the download (see :func:`download_idx`).

    Raises:
      FileNotFoundError: a file is nowhere and could not be downloaded (offline, or
        ``download=False``), naming the directories searched, each URL tried and the fix.
      ChecksumError: a mirror served a file that is not the official one.
      ValueError: a file is not a valid IDX file (naming it).

    >>> images, labels = load_idx_split("fashion_mnist", "test", download=False)
    >>> images.shape, images.dtype, labels.shape
    ((10000, 28, 28), dtype('uint8'), (10000,))
    """
    if dataset not in _DATASETS:
        raise ValueError(f"dataset must be one of {_DATASETS}, got {dataset!r}.")
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be one of {tuple(_SPLIT_PREFIX)}, got {split!r}.")
    dirs = _candidate_dirs(dataset, data_dir)
    download_dir = _download_dir(dataset, data_dir)
    fetch = functools.partial(_download, dataset, target_dir=download_dir, mirrors=mirrors,
                              timeout=timeout, opener=opener) if download else None
    arrays = []
    for kind, ndim in (("images-idx3", 3), ("labels-idx1", 1)):
        path = _locate(dataset, split, f"{_SPLIT_PREFIX[split]}-{kind}-ubyte", dirs, fetch)
        try:
            arrays.append(_parse_path(path, ndim))
        except ValueError:
            # A broken earlier download (truncated, overwritten) is replaced by the official
            # file; any other file is the user's own and is only reported.
            if fetch is None or path.parent != download_dir or path.suffix != ".gz":
                raise
            arrays.append(_parse_path(fetch(path.name), ndim))
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
