"""jaxssl's one IDX download (``jaxssl.data.sources.idx``), served from local mirrors (no internet).

The ``file://`` mirror holds the upstream Fashion-MNIST files rebuilt from Debian's
``dataset-fashion-mnist``: Debian keeps the upstream deflate streams but writes a gzip header
without the file name and with its own time stamp. Putting the upstream header back (FNAME set,
the name, the 2017 time stamps) must give exactly the official SHA-256 digests, which the
downloader checks independently.
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

from jaxssl.data.sources import idx
from jaxssl.data.sources.idx import ChecksumError, download_idx, file_sha256, load_idx_split

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FILES = idx.OFFICIAL_FILES["fashion_mnist"]
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
    for name in FILES:
        (root / name).write_bytes(_upstream_bytes(name))
    return root


@pytest.fixture
def no_system_copy(monkeypatch):
    """Hides Debian's copy and $JAXSSL_DATA_DIR, so load_idx_split must download."""
    monkeypatch.setitem(idx._SYSTEM_DIRS, "fashion_mnist", ())
    monkeypatch.delenv("JAXSSL_DATA_DIR", raising=False)


def _recording_opener(fetched: list[str]):
    def opener(url, timeout):
        fetched.append(url.rsplit("/", 1)[1])
        return urllib.request.urlopen(url, timeout=timeout)

    return opener


def _no_network(url, timeout):
    raise AssertionError(f"fetched {url} although the file is cached")


def _offline(url, timeout):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_rebuilt_upstream_files_have_the_official_digests(mirror):
    for name, (size, sha) in FILES.items():
        data = (mirror / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha), name
        # Same IDX contents as Debian's copy.
        assert gzip.decompress(data) == gzip.decompress((DEBIAN / name).read_bytes())


def test_download_idx_from_file_url_then_cached(mirror, tmp_path):
    target = download_idx("fashion_mnist", tmp_path, mirrors=[mirror.as_uri()])
    assert target == tmp_path / "fashion_mnist"
    assert sorted(p.name for p in target.iterdir()) == sorted(FILES)  # no temporary file left
    images, labels = load_idx_split("fashion_mnist", "test", data_dir=target, download=False)
    debian_images, debian_labels = load_idx_split("fashion_mnist", "test", data_dir=DEBIAN,
                                                  download=False)
    assert images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(images, debian_images)
    np.testing.assert_array_equal(labels, debian_labels)
    assert download_idx("fashion_mnist", tmp_path, mirrors=["http://x/"],
                        opener=_no_network) == target


def test_load_idx_split_downloads_the_split_then_reads_the_cache(mirror, tmp_path,
                                                                  no_system_copy):
    fetched = []
    images, labels = load_idx_split("fashion_mnist", "test", data_dir=tmp_path,
                                    mirrors=[mirror.as_uri()], opener=_recording_opener(fetched))
    assert fetched == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    with gzip.open(DEBIAN / "t10k-labels-idx1-ubyte.gz") as f:
        np.testing.assert_array_equal(labels, np.frombuffer(f.read()[8:], np.uint8))
    assert images.shape == (10000, 28, 28)
    again, _ = load_idx_split("fashion_mnist", "test", data_dir=tmp_path, opener=_no_network)
    np.testing.assert_array_equal(again, images)


def test_default_cache_is_searched_too(mirror, tmp_path, monkeypatch, no_system_copy):
    # No data_dir and no $JAXSSL_DATA_DIR: the download goes to ~/.cache/jaxssl/<dataset>, and
    # the next load (another process, say) must find it there rather than download again.
    monkeypatch.setenv("HOME", str(tmp_path))
    load_idx_split("fashion_mnist", "test", mirrors=[mirror.as_uri()])
    cache = tmp_path / ".cache" / "jaxssl" / "fashion_mnist"
    assert sorted(p.name for p in cache.iterdir()) == ["t10k-images-idx3-ubyte.gz",
                                                       "t10k-labels-idx1-ubyte.gz"]
    images, _ = load_idx_split("fashion_mnist", "test", opener=_no_network)
    assert images.shape == (10000, 28, 28)


def test_corrupted_mirror_fails_the_checksum_and_is_not_kept(mirror, tmp_path, no_system_copy):
    bad = tmp_path / "bad_mirror"
    bad.mkdir()
    for name in FILES:
        data = bytearray((mirror / name).read_bytes())
        if name == "train-labels-idx1-ubyte.gz":
            data[100] ^= 0xFF  # one flipped byte
        (bad / name).write_bytes(bytes(data))
    expected = (r"fashion_mnist: file://\S+/train-labels-idx1-ubyte\.gz has SHA-256 [0-9a-f]{64}, "
                r"the official train-labels-idx1-ubyte\.gz has a04f1713")
    with pytest.raises(ChecksumError, match=expected):
        download_idx("fashion_mnist", tmp_path / "a", mirrors=[bad.as_uri()])
    kept = sorted(p.name for p in (tmp_path / "a" / "fashion_mnist").iterdir())
    assert kept == ["train-images-idx3-ubyte.gz"]  # the file before it; no partial, no temp file

    # A second mirror with the official file is used after the corrupt one.
    download_idx("fashion_mnist", tmp_path / "a", mirrors=[bad.as_uri(), mirror.as_uri()])
    assert file_sha256(tmp_path / "a" / "fashion_mnist" / "train-labels-idx1-ubyte.gz") == FILES[
        "train-labels-idx1-ubyte.gz"][1]

    # The trainer's path stops on it too (not a "not found": the file is wrong, not missing).
    with pytest.raises(ChecksumError, match=expected):
        load_idx_split("fashion_mnist", "train", data_dir=tmp_path / "b", mirrors=[bad.as_uri()])
    assert [p.name for p in (tmp_path / "b" / "fashion_mnist").iterdir()] == [
        "train-images-idx3-ubyte.gz"]


def test_corrupted_cached_file_is_fetched_again(mirror, tmp_path, no_system_copy):
    cache = download_idx("fashion_mnist", tmp_path, mirrors=[mirror.as_uri()])
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(b"truncated")
    fetched = []
    download_idx("fashion_mnist", tmp_path, mirrors=[mirror.as_uri()],
                 opener=_recording_opener(fetched))
    assert fetched == ["t10k-labels-idx1-ubyte.gz"]
    assert file_sha256(cache / "t10k-labels-idx1-ubyte.gz") == FILES[
        "t10k-labels-idx1-ubyte.gz"][1]

    # load_idx_split replaces a cached download that does not parse, and only that one.
    official = (cache / "t10k-images-idx3-ubyte.gz").read_bytes()
    (cache / "t10k-images-idx3-ubyte.gz").write_bytes(official[:1000])
    fetched.clear()
    images, _ = load_idx_split("fashion_mnist", "test", data_dir=tmp_path,
                               mirrors=[mirror.as_uri()], opener=_recording_opener(fetched))
    assert fetched == ["t10k-images-idx3-ubyte.gz"]
    assert (cache / "t10k-images-idx3-ubyte.gz").read_bytes() == official
    assert images.shape == (10000, 28, 28)


def test_offline_is_an_oserror_naming_each_url(tmp_path, no_system_copy):
    mirrors = ["http://mirror.invalid/", "https://second.invalid/data"]
    with pytest.raises(OSError, match=r"offline\?\): http://mirror\.invalid/train-images") as err:
        download_idx("fashion_mnist", tmp_path, mirrors=mirrors, opener=_offline)
    assert "https://second.invalid/data/train-images-idx3-ubyte.gz" in str(err.value)
    assert not isinstance(err.value, ChecksumError)
    assert [p.name for p in tmp_path.iterdir()] == ["fashion_mnist"]
    assert list((tmp_path / "fashion_mnist").iterdir()) == []

    # load_idx_split: a FileNotFoundError (an OSError, so "offline") naming the URLs and the fix.
    with pytest.raises(FileNotFoundError) as err:
        load_idx_split("fashion_mnist", "test", data_dir=tmp_path, mirrors=mirrors,
                       opener=_offline)
    message = str(err.value)
    for url in mirrors:
        assert url.rstrip("/") + "/t10k-images-idx3-ubyte.gz" in message
    assert "apt-get install dataset-fashion-mnist" in message


class _Response:
    """What urlopen returns: a context manager with read(size)."""

    def __init__(self, payload: bytes):
        self.payload = payload

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, size: int = -1) -> bytes:
        chunk, self.payload = self.payload[:size], self.payload[size:]
        return chunk


def _serve_debian_files(monkeypatch, calls):
    """Answers any URL with the Debian .gz of the same name, through the default urlopen."""

    def urlopen(url, timeout):
        calls.append(url)
        return _Response((DEBIAN / url.rsplit("/", 1)[-1]).read_bytes())

    monkeypatch.setattr(idx.urllib.request, "urlopen", urlopen)
    monkeypatch.delenv("JAXSSL_DATA_DIR", raising=False)


def test_mnist_uses_its_mirror_and_cache(tmp_path, monkeypatch):
    calls = []
    _serve_debian_files(monkeypatch, calls)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        data = (DEBIAN / name).read_bytes()  # stands in for MNIST's official file
        monkeypatch.setitem(idx.OFFICIAL_FILES["mnist"], name,
                            (len(data), hashlib.sha256(data).hexdigest()))
    images, labels = load_idx_split("mnist", "test", data_dir=tmp_path)
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    assert calls[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz"
    assert (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").is_file()
    load_idx_split("mnist", "test", data_dir=tmp_path)
    assert len(calls) == 2  # the second load reads the cached files


def test_mnist_wrong_file_is_rejected_naming_url_and_digest(tmp_path, monkeypatch):
    calls = []
    _serve_debian_files(monkeypatch, calls)  # Fashion-MNIST bytes are not MNIST's
    official = "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    with pytest.raises(ChecksumError, match=f"train-images-idx3-ubyte.gz has {official}"):
        load_idx_split("mnist", "train", data_dir=tmp_path)
    assert calls == [m + "train-images-idx3-ubyte.gz" for m in idx.MIRRORS["mnist"]]
    assert list((tmp_path / "mnist").iterdir()) == []
