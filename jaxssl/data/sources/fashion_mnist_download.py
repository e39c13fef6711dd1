"""Downloads the four official Fashion-MNIST IDX files, checked against their SHA-256 digests.

Fashion-MNIST (Xiao et al., 2017) is published as four gzip files on Zalando's mirror. Each file
is streamed into a temporary file beside its target while its SHA-256 is computed, and renamed
onto the target only when the digest is the official one, so the cache never holds a partial or
altered file. Files already in the cache with the right digest are not fetched again.

Errors are kept apart on purpose, because the Colab notebook treats them differently:
``OSError`` (no network, DNS, HTTP errors, timeouts) means "offline" and lets a caller fall back
to synthetic data, while :class:`ChecksumError` (a file arrived but is not the official one)
always stops.

The digests are those of the upstream ``.gz`` files (26,421,880 / 29,515 / 4,422,102 / 5,148
bytes). Debian's ``dataset-fashion-mnist`` package holds the same compressed data under a gzip
header without the file name and with another time stamp; its decompressed contents are
identical, which tests/data/test_fashion_mnist_download.py checks by rebuilding the upstream
files from it.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from jaxssl.output_paths import atomic_write

# File name -> (size in bytes, SHA-256) of the official files.
OFFICIAL_FILES = {
    "train-images-idx3-ubyte.gz": (
        26_421_880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    "train-labels-idx1-ubyte.gz": (
        29_515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    "t10k-images-idx3-ubyte.gz": (
        4_422_102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    "t10k-labels-idx1-ubyte.gz": (
        5_148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
}
# The canonical location (the Fashion-MNIST README's links), then the repository's own copy.
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A downloaded file is not the official one (its SHA-256 differs); nothing was written."""


def default_cache_dir() -> Path:
    """``$JAXSSL_DATA_DIR/fashion_mnist``, else ``~/.cache/jaxssl/fashion_mnist``.

    >>> default_cache_dir().name
    'fashion_mnist'
    """
    root = os.environ.get("JAXSSL_DATA_DIR") or Path.home() / ".cache" / "jaxssl"
    return Path(root) / "fashion_mnist"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks.

    >>> import tempfile
    >>> p = tempfile.mkstemp()[1]
    >>> file_sha256(p)[:16]  # the digest of no bytes
    'e3b0c44298fc1c14'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
                f"fashion-mnist: {url} has SHA-256 {digest.hexdigest()}, the official "
                f"{target.name} has {expected} (corrupt or altered download; nothing was kept).")

    atomic_write(target, write)


def download_fashion_mnist(
    cache_dir: str | os.PathLike | None = None,
    *,
    mirrors: Sequence[str] = MIRRORS,
    timeout: float = 30.0,
    opener: Callable = urllib.request.urlopen,
) -> Path:
    """Makes sure the four official Fashion-MNIST ``.gz`` files are in ``cache_dir``.

    Each missing file, or cached file whose SHA-256 is not the official one, is fetched from
    the first mirror that answers with the official bytes.

    Args:
      cache_dir: where the files go (created if needed); None: :func:`default_cache_dir`.
      mirrors: base URLs tried in order (any scheme ``opener`` handles, e.g. ``file://``).
      timeout: seconds per request.
      opener: ``urllib.request.urlopen`` or a stand-in with its signature (tests).

    Returns:
      ``cache_dir`` as a Path, holding ``train-images-idx3-ubyte.gz`` and the other three,
      readable by ``jaxssl.data.sources.idx`` (pass it as ``data_dir``).

    Raises:
      ChecksumError: a mirror served a file with another SHA-256 (and no mirror the right one).
      OSError: no mirror could be reached (offline), naming each URL and its error.

    >>> import tempfile
    >>> download_fashion_mnist(tempfile.mkdtemp(), mirrors=())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    OSError: fashion-mnist: could not download train-images-idx3-ubyte.gz (offline?): no mirror ...
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for name, (_, expected) in OFFICIAL_FILES.items():
        target = cache / name
        if target.is_file() and file_sha256(target) == expected:
            continue
        network_errors, bad_files = [], []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                _fetch(url, target, expected, timeout, opener)
                break
            except ChecksumError as err:
                bad_files.append(str(err))
            except OSError as err:  # URLError, HTTPError, timeouts and DNS failures
                network_errors.append(f"{url}: {err}")
        else:
            if bad_files:
                raise ChecksumError("; ".join(bad_files))
            raise OSError(f"fashion-mnist: could not download {name} (offline?): "
                          + ("; ".join(network_errors) or "no mirror given"))
    return cache
