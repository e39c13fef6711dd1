"""Dataset spec parsing, make_source and the long-tailed view."""

import numpy as np
import pytest
from PIL import Image

from jaxssl.data.long_tail import LongTailSource, long_tail_indices
from jaxssl.data.sources.idx import IdxSource
from jaxssl.data.spec import DatasetSpec, make_source, parse_spec

# floor(6000 * 100 ** (-c / 9)) worked out by hand: 100 ** (-1/9) = 10 ** (-2/9) = 0.599484...,
# so 6000 * 0.599484 = 3596.9 -> 3596, 6000 * 0.359381 = 2156.3 -> 2156, ..., 6000 / 100 = 60.
FMNIST_LT100 = [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("fashion_mnist", DatasetSpec("idx", "fashion_mnist")),
        ("mnist:lt10", DatasetSpec("idx", "mnist", 10.0)),
        ("tfds:imagenet2012", DatasetSpec("tfds", "imagenet2012")),
        ("tfds:cifar10:3.0.2:lt50", DatasetSpec("tfds", "cifar10:3.0.2", 50.0)),
        ("folder:/data/in1k", DatasetSpec("folder", "/data/in1k")),
        ("npz:/d/x_{split}.npz:lt2.5", DatasetSpec("npz", "/d/x_{split}.npz", 2.5)),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected
    assert DatasetSpec.parse(expected) is expected  # a parsed spec passes through
    # The string form parses back to the same spec, and the balanced one drops only the suffix.
    assert DatasetSpec.parse(str(expected)) == expected
    assert str(expected.balanced()) == spec.rsplit(":lt", 1)[0]
    assert expected.image_side == (28 if expected.kind == "idx" else None)


def test_make_source_takes_a_parsed_spec():
    spec = DatasetSpec("idx", "fashion_mnist", 100.0)
    np.testing.assert_array_equal(make_source(spec, "train", seed=3).labels,
                                  make_source(str(spec), "train", seed=3).labels)


@pytest.mark.parametrize("spec", ["cifar10", "imagenet:/x", "folder:", "", "fashion_mnist:lt"])
def test_unknown_spec_lists_valid_forms(spec):
    with pytest.raises(ValueError) as err:
        parse_spec(spec)
    message = str(err.value)
    for form in ("fashion_mnist", "mnist", "tfds:NAME", "folder:", "npz:", ":ltRHO"):
        assert form in message


def test_long_tail_fashion_mnist_counts():
    src = make_source("fashion_mnist:lt100", "train", seed=3)
    assert isinstance(src, LongTailSource)
    np.testing.assert_array_equal(np.bincount(src.labels, minlength=10), FMNIST_LT100)
    assert len(src) == sum(FMNIST_LT100)
    # Items really come from the base source, with consistent labels.
    base = IdxSource("fashion_mnist", "train", download=False)
    for i in (0, 5000, len(src) - 1):
        j = int(src.base_indices[i])
        np.testing.assert_array_equal(src[i]["image"], base[j]["image"])
        assert src[i]["label"] == base[j]["label"] == src.labels[i]
    # Evaluation stays balanced.
    test = make_source("fashion_mnist:lt100", "test")
    np.testing.assert_array_equal(np.bincount(test.labels), [1000] * 10)


def test_long_tail_subset_is_seeded():
    labels = np.repeat(np.arange(4), 50)
    a = long_tail_indices(labels, 10.0, seed=0)
    b = long_tail_indices(labels, 10.0, seed=0)
    c = long_tail_indices(labels, 10.0, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # rho = 10, C = 4: 50 * 10 ** (-c / 3) = 50, 23.2, 10.77, 5 -> floors 50, 23, 10, 5.
    np.testing.assert_array_equal(np.bincount(labels[a]), [50, 23, 10, 5])
    assert len(np.unique(a)) == len(a)
    shuffled = long_tail_indices(labels, 10.0, seed=0, shuffle_classes=True)
    assert sorted(np.bincount(labels[shuffled]).tolist()) == [5, 10, 23, 50]


def _png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(path)


def test_folder_split_directories(tmp_path):
    _png(tmp_path / "train" / "a" / "0.png", 1)
    _png(tmp_path / "train" / "b" / "0.png", 2)
    _png(tmp_path / "val" / "a" / "0.png", 3)
    _png(tmp_path / "val" / "b" / "0.png", 4)
    _png(tmp_path / "val" / "b" / "1.png", 5)
    train = make_source(f"folder:{tmp_path}", "train")
    test = make_source(f"folder:{tmp_path}", "test")
    assert (len(train), len(test)) == (2, 3)
    assert [int(test[i]["image"][0, 0, 0]) for i in range(3)] == [3, 4, 5]


def test_folder_without_split_dirs_serves_both(tmp_path):
    _png(tmp_path / "a" / "0.png", 1)
    assert len(make_source(f"folder:{tmp_path}", "train")) == 1
    assert len(make_source(f"folder:{tmp_path}", "test")) == 1


def test_npz_split_placeholder(tmp_path):
    for split, n in (("train", 4), ("test", 2)):
        np.savez(tmp_path / f"d_{split}.npz", images=np.zeros((n, 2, 2), np.uint8),
                 labels=np.arange(n))
    spec = f"npz:{tmp_path}/d_{{split}}.npz"
    assert (len(make_source(spec, "train")), len(make_source(spec, "test"))) == (4, 2)


def test_missing_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none")):
        make_source(f"folder:{tmp_path / 'none'}", "train")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "x.npz")):
        make_source(f"npz:{tmp_path / 'x.npz'}", "train")


def test_bad_split():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'.*'valid'"):
        make_source("fashion_mnist", "valid")


@pytest.mark.parametrize(
    "text, spec",
    [
        ("fashion_mnist:val10000", DatasetSpec("idx", "fashion_mnist", holdout=10000)),
        ("fashion_mnist:val10000:lt100", DatasetSpec("idx", "fashion_mnist", 100.0, 10000)),
        ("npz:/d/x.npz:val50", DatasetSpec("npz", "/d/x.npz", holdout=50)),
        ("tfds:cifar10:3.0.2:val5000", DatasetSpec("tfds", "cifar10:3.0.2", holdout=5000)),
    ],
)
def test_validation_suffix_parses_and_round_trips(text, spec):
    assert DatasetSpec.parse(text) == spec
    assert str(spec) == text
    # balanced() drops the long tail only; the hold-out stays (it defines both splits).
    assert spec.balanced().holdout == spec.holdout and spec.balanced().rho is None


def test_validation_suffix_rejects_zero_and_wrong_order():
    with pytest.raises(ValueError, match="val0"):
        DatasetSpec.parse("fashion_mnist:val0")
    with pytest.raises(ValueError, match="unknown dataset spec"):
        DatasetSpec.parse("fashion_mnist:lt100:val10000")  # ':valN' comes before ':ltRHO'


def _npz(tmp_path, n_per_class=30, classes=4):
    labels = np.repeat(np.arange(classes), n_per_class)
    # Each image carries its own index in pixel (0, 0), so examples can be told apart.
    images = np.zeros((len(labels), 4, 4, 1), np.uint8)
    images[:, 0, 0, 0] = np.arange(len(labels))
    path = tmp_path / "d.npz"
    np.savez(path, images=images, labels=labels)
    return path, labels


def test_validation_split_is_a_balanced_fixed_disjoint_part_of_train(tmp_path):
    path, labels = _npz(tmp_path)
    val = make_source(f"npz:{path}:val20", "test")
    rest = make_source(f"npz:{path}:val20", "train")
    ids = lambda src: [int(src[i]["image"][0, 0, 0]) for i in range(len(src))]  # noqa: E731
    assert len(val) == 20 and len(rest) == len(labels) - 20
    # Disjoint and together the whole train file; the held-out part is class-balanced.
    assert sorted(ids(val) + ids(rest)) == list(range(len(labels)))
    assert np.bincount(labels[ids(val)]).tolist() == [5, 5, 5, 5]
    # Fixed: another call (and any training seed) gives the same validation images.
    assert ids(make_source(f"npz:{path}:val20", "test", seed=7)) == ids(val)
    # A long tail after it subsamples the remaining train part only.
    lt = make_source(f"npz:{path}:val20:lt5", "train")
    assert set(ids(lt)) <= set(ids(rest))
    assert np.bincount(labels[ids(lt)]).tolist()[0] == 25 and len(lt) < len(rest)
    assert ids(make_source(f"npz:{path}:val20:lt5", "test")) == ids(val)


def test_validation_split_too_large_names_the_bound(tmp_path):
    path, labels = _npz(tmp_path)
    with pytest.raises(ValueError, match=f"0 < N < {len(labels)}"):
        make_source(f"npz:{path}:val{len(labels)}", "test")
