"""jaxssl's Fashion-MNIST download, served from a local ``file://`` mirror (no internet here).

The mirror holds the upstream files rebuilt from Debian's ``dataset-fashion-mnist``: Debian keeps
the upstream deflate streams but writes a gzip header without the file name and with its own time
stamp. Putting the upstream header back (FNAME set, the name, the 2017 time stamps) must give
exactly the official SHA-256 digests, which the downloader checks independently.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from jaxssl.data.sources import fashion_mnist_download as fm
from jaxssl.data.sources.idx import load_idx_split

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
# Modification times in the upstream gzip headers (seconds since the epoch, 2017-08-31 UTC).
UPSTREAM_MTIME = {"train-images-idx3-ubyte.gz": 1504176606,
                  "train-labels-idx1-ubyte.gz": 1504176606,
                  "t10k-images-idx3-ubyte.gz": 1504176627,
                  "t10k-labels-idx1-ubyte.gz": 1504176627}


def _upstream_bytes(name: str) -> bytes:
    debian = (DEBIAN / name).read_bytes()
    assert debian[:4] == b"\x1f\x8b\x08\x00", "Debian's header has no optional fields"
    name_field = name.removesuffix(".gz").encode() + b"\x00"
    header = b"\x1f\x8b\x08\x08" + struct.pack("<I", UPSTREAM_MTIME[name]) + b"\x00\x03"
    return header + name_field + debian[10:]  # 10-byte header, then the deflate stream


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    if not DEBIAN.is_dir():
        pytest.skip("needs Debian's dataset-fashion-mnist package")
    root = tmp_path_factory.mktemp("mirror")
    for name in fm.OFFICIAL_FILES:
        (root / name).write_bytes(_upstream_bytes(name))
    return root


def test_rebuilt_upstream_files_have_the_official_digests(mirror):
    for name, (size, sha) in fm.OFFICIAL_FILES.items():
        data = (mirror / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha), name
        # Same IDX contents as Debian's copy.
        assert gzip.decompress(data) == gzip.decompress((DEBIAN / name).read_bytes())


def test_download_from_file_url_then_cached(mirror, tmp_path):
    cache = fm.download_fashion_mnist(tmp_path / "cache", mirrors=[mirror.as_uri()])
    assert sorted(p.name for p in cache.iterdir()) == sorted(fm.OFFICIAL_FILES)
    images, labels = load_idx_split("fashion_mnist", "test", data_dir=cache, download=False)
    debian_images, debian_labels = load_idx_split("fashion_mnist", "test", data_dir=DEBIAN,
                                                  download=False)
    assert images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(images, debian_images)
    np.testing.assert_array_equal(labels, debian_labels)

    def no_network(url, timeout):
        raise AssertionError(f"fetched {url} although the cache is complete")

    assert fm.download_fashion_mnist(cache, mirrors=["http://x/"], opener=no_network) == cache


def test_corrupted_file_fails_the_checksum_and_is_not_kept(mirror, tmp_path):
    bad = tmp_path / "bad_mirror"
    bad.mkdir()
    for name in fm.OFFICIAL_FILES:
        data = bytearray((mirror / name).read_bytes())
        if name == "train-labels-idx1-ubyte.gz":
            data[100] ^= 0xFF  # one flipped byte
        (bad / name).write_bytes(bytes(data))
    cache = tmp_path / "cache"
    expected = (r"train-labels-idx1-ubyte\.gz has SHA-256 [0-9a-f]{64}, "
                r"the official train-labels-idx1-ubyte\.gz has a04f1713")
    with pytest.raises(fm.ChecksumError, match=expected):
        fm.download_fashion_mnist(cache, mirrors=[bad.as_uri()])
    kept = sorted(p.name for p in cache.iterdir())
    assert kept == ["train-images-idx3-ubyte.gz"]  # the file before it; no partial, no temp file

    # A second mirror with the official file is used after the corrupt one.
    fm.download_fashion_mnist(cache, mirrors=[bad.as_uri(), mirror.as_uri()])
    assert fm.file_sha256(cache / "train-labels-idx1-ubyte.gz") == fm.OFFICIAL_FILES[
        "train-labels-idx1-ubyte.gz"][1]


def test_corrupted_cached_file_is_fetched_again(mirror, tmp_path):
    cache = fm.download_fashion_mnist(tmp_path, mirrors=[mirror.as_uri()])
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(b"truncated")
    fetched = []

    def opener(url, timeout):
        fetched.append(url.rsplit("/", 1)[1])
        return urllib.request.urlopen(url, timeout=timeout)

    fm.download_fashion_mnist(cache, mirrors=[mirror.as_uri()], opener=opener)
    assert fetched == ["t10k-labels-idx1-ubyte.gz"]
    assert fm.file_sha256(cache / "t10k-labels-idx1-ubyte.gz") == fm.OFFICIAL_FILES[
        "t10k-labels-idx1-ubyte.gz"][1]


def test_offline_is_an_oserror_naming_the_url(tmp_path):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(OSError, match=r"offline\?\): http://mirror\.invalid/train-images") as err:
        fm.download_fashion_mnist(tmp_path, mirrors=["http://mirror.invalid/"], opener=offline)
    assert not isinstance(err.value, fm.ChecksumError)
    assert list(tmp_path.iterdir()) == []
