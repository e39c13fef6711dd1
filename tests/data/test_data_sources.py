"""Data sources: Fashion-MNIST IDX, npz and image-folder (with corrupt files)."""

import gzip
import pickle
import warnings

import numpy as np
import pytest
from PIL import Image

from jaxssl.data.sources.folder import CorruptImageError, ImageFolderSource
from jaxssl.data.sources.idx import IdxSource, load_idx_split, parse_idx
from jaxssl.data.sources.npz import NpzSource

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def fmnist_train():
    return IdxSource("fashion_mnist", "train", download=False)


def test_fashion_mnist_sizes_and_class_balance(fmnist_train):
    test = IdxSource("fashion_mnist", "test", download=False)
    assert (len(fmnist_train), len(test)) == (60_000, 10_000)
    np.testing.assert_array_equal(np.bincount(fmnist_train.labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(test.labels), [1000] * 10)
    item = fmnist_train[123]
    assert item["image"].dtype == np.uint8 and item["image"].shape == (28, 28, 1)
    assert isinstance(item["label"], int)


def test_fashion_mnist_matches_independent_parse(fmnist_train):
    # A second reading of the raw file: skip the 16-byte header (magic, N, rows, cols).
    with gzip.open(f"{FMNIST_DIR}/train-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 28, 28)
    with gzip.open(f"{FMNIST_DIR}/train-labels-idx1-ubyte.gz") as f:
        raw_labels = np.frombuffer(f.read()[8:], np.uint8)
    for i in (0, 1, 59_999):
        np.testing.assert_array_equal(fmnist_train[i]["image"][..., 0], raw[i])
        assert fmnist_train[i]["label"] == raw_labels[i]
    assert fmnist_train[0]["label"] == 9  # First training item is an ankle boot (class 9).


def test_idx_source_pickles(fmnist_train):
    clone = pickle.loads(pickle.dumps(fmnist_train))
    np.testing.assert_array_equal(clone[7]["image"], fmnist_train[7]["image"])


def test_parse_idx_errors_name_the_file():
    header = bytes([0, 0, 8, 1]) + (4).to_bytes(4, "big")
    with pytest.raises(ValueError, match="lbl.idx: IDX payload has 10 bytes.*needs 12"):
        parse_idx(header + b"\x01\x02", name="lbl.idx", expected_ndim=1)
    with pytest.raises(ValueError, match="img.idx: not an IDX file"):
        parse_idx(b"\x1f\x8b\x08\x00" + bytes(8), name="img.idx", expected_ndim=1)
    with pytest.raises(ValueError, match="has 1 dimensions, expected 3"):
        parse_idx(header + bytes(4), name="x", expected_ndim=3)


def test_truncated_idx_file_in_data_dir(tmp_path):
    src = f"{FMNIST_DIR}/t10k-images-idx3-ubyte.gz"
    with gzip.open(src) as f:
        data = f.read()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(data[:5000])  # raw, truncated
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: IDX payload .*truncated"):
        load_idx_split("fashion_mnist", "test", data_dir=tmp_path, download=False)


def test_missing_mnist_names_paths_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSSL_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as err:
        load_idx_split("mnist", "train", download=False)
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "mnist") in message
    assert "/usr/share/datasets/mnist" in message
    assert "JAXSSL_DATA_DIR" in message


def test_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 6, 7, 3), dtype=np.uint8)
    labels = np.array([3, 0, 1, 1, 2])
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    src = NpzSource(tmp_path / "d.npz")
    assert len(src) == 5 and src.num_classes == 4
    for i in range(5):
        np.testing.assert_array_equal(src[i]["image"], images[i])
        assert src[i]["label"] == labels[i]


U8, INT = np.uint8, np.int64


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"imgs": np.zeros((2, 3, 3), U8), "labels": np.zeros(2, INT)}, "missing key.*images"),
        ({"images": np.zeros((2, 3, 3), np.float32), "labels": np.zeros(2, INT)}, "must be uint8"),
        ({"images": np.zeros((2, 3), U8), "labels": np.zeros(2, INT)}, "'images' must have shape"),
        ({"images": np.zeros((2, 3, 3), U8), "labels": np.zeros(3, INT)}, "'labels' has 3"),
        ({"images": np.zeros((2, 3, 3), U8), "labels": np.zeros(2)}, "'labels' must be an int"),
    ],
)
def test_npz_bad_keys_name_file_and_key(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match) as err:
        NpzSource(path)
    assert str(path) in str(err.value)


def test_npz_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "x.npz")):
        NpzSource(tmp_path / "x.npz")


def _make_folder(root, corrupt=True):
    """Classes b (2 PNG) and a (1 JPEG, 1 grayscale PNG), plus a truncated JPEG in a/."""
    rng = np.random.default_rng(0)
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir(parents=True)
    colour = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(colour).save(root / "a" / "0.jpg", quality=95)
    Image.fromarray(colour[:, :, 0]).save(root / "a" / "2.png")
    Image.fromarray(colour).save(root / "b" / "0.png")
    Image.fromarray(colour[:10]).save(root / "b" / "1.png")
    if corrupt:
        Image.fromarray(colour).save(root / "a" / "1.jpg")
        data = (root / "a" / "1.jpg").read_bytes()
        (root / "a" / "1.jpg").write_bytes(data[: len(data) // 3])  # truncated JPEG
    return colour


def test_folder_labels_decoding_and_grayscale(tmp_path):
    colour = _make_folder(tmp_path, corrupt=False)
    src = ImageFolderSource(tmp_path)
    assert src.classes == ["a", "b"]
    assert [src[i]["label"] for i in range(len(src))] == [0, 0, 1, 1]
    np.testing.assert_array_equal(src[2]["image"], colour)  # PNG is lossless
    gray = src[1]["image"]
    assert gray.shape == (20, 30, 3)
    np.testing.assert_array_equal(gray[..., 0], colour[..., 0])
    np.testing.assert_array_equal(gray[..., 2], colour[..., 0])
    assert src[3]["image"].shape == (10, 30, 3)


def test_folder_corrupt_image_skipped_and_counted(tmp_path):
    colour = _make_folder(tmp_path)
    src = ImageFolderSource(tmp_path)
    names = [src.path(i).rsplit("/", 1)[-1] for i in range(len(src))]
    assert names == ["0.jpg", "1.jpg", "2.png", "0.png", "1.png"]
    with pytest.warns(UserWarning, match=r"1\.jpg"):
        item = src[1]
    # Fallback is the next readable index (2: the grayscale PNG of class a).
    np.testing.assert_array_equal(item["image"][..., 1], colour[..., 0])
    assert item["label"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # A corrupt file warns only once.
        src[1]
    assert src.num_corrupt == 1 and src.corrupt_indices == {1}
    # Every index still yields an image: an epoch never crashes.
    assert all(src[i]["image"].ndim == 3 for i in range(len(src)))
    clone = pickle.loads(pickle.dumps(src))
    assert clone.num_corrupt == 1


def test_folder_corrupt_image_fatal_with_switch(tmp_path):
    _make_folder(tmp_path)
    src = ImageFolderSource(tmp_path, skip_corrupt=False)
    src[0]
    with pytest.raises(CorruptImageError, match=r"1\.jpg"):
        src[1]


def test_folder_missing_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        ImageFolderSource(tmp_path / "nope")
    (tmp_path / "cls").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        ImageFolderSource(tmp_path)
