"""TFDS ArrayRecord source, on a tiny dataset prepared here without TensorFlow.

tfds can prepare an ArrayRecord dataset without TensorFlow when the image feature is given
already-encoded bytes (only its numpy-array encoding path calls TF), so the files read here are
the real on-disk format: dataset_info.json, features.json and serialized tf.train.Examples.
"""

import io
import pickle

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from jaxssl.data.sources.folder import CorruptImageError  # noqa: E402
from jaxssl.data.sources.tfds import TfdsSource  # noqa: E402
from jaxssl.data.spec import make_source  # noqa: E402

CORRUPT_ID = 4


def _png(value: int, height: int) -> io.BytesIO:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, 5, 3), value, np.uint8)).save(buf, format="PNG")
    buf.seek(0)
    return buf


class JaxsslToyImages(tfds.core.GeneratorBasedBuilder):
    """Example i: a (4 + i) x 5 image of value 10 * i, label i % 3; example 4 is not an image."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.ClassLabel(num_classes=3),
            }),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(6), "test": self._generate_examples(3)}

    def _generate_examples(self, n):
        for i in range(n):
            image = io.BytesIO(b"not an image") if i == CORRUPT_ID else _png(10 * i, 4 + i)
            yield i, {"image": image, "label": i % 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    JaxsslToyImages(data_dir=str(root), file_format="array_record").download_and_prepare()
    return str(root)


def _by_value(source):
    """Map image value // 10 -> (image, label); record order in the files is tfds' own."""
    out = {}
    for i in range(len(source)):
        item = source[i]
        out[int(item["image"][0, 0, 0]) // 10] = item
    return out


def test_reads_decoded_uint8_images_and_labels(data_dir):
    test = TfdsSource("jaxssl_toy_images", "test", data_dir=data_dir)
    assert len(test) == 3 and test.num_classes == 3
    items = _by_value(test)
    assert sorted(items) == [0, 1, 2]
    for i, item in items.items():
        assert item["image"].dtype == np.uint8 and item["image"].shape == (4 + i, 5, 3)
        assert item["label"] == i % 3
    np.testing.assert_array_equal(np.sort(test.labels), [0, 1, 2])
    clone = pickle.loads(pickle.dumps(test))  # re-opens the ArrayRecord readers lazily
    np.testing.assert_array_equal(clone[1]["image"], test[1]["image"])


def test_corrupt_record_skipped_counted_or_fatal(data_dir):
    train = make_source("tfds:jaxssl_toy_images", "train", data_dir=data_dir)
    with pytest.warns(UserWarning, match="cannot decode image"):
        values = [int(train[i]["image"][0, 0, 0]) // 10 for i in range(len(train))]
    assert train.num_corrupt == 1
    assert CORRUPT_ID not in values and set(values) == {0, 1, 2, 3, 5}
    strict = TfdsSource("jaxssl_toy_images", "train", data_dir=data_dir, skip_corrupt=False)
    bad = [i for i in range(len(strict)) if strict.labels[i] == CORRUPT_ID % 3]
    with pytest.raises(CorruptImageError):
        for i in bad:
            strict[i]


def test_missing_dataset_names_data_dir(data_dir):
    with pytest.raises(FileNotFoundError, match=f"data_dir='{data_dir}'.*Fix: prepare"):
        TfdsSource("jaxssl_no_such_set", "train", data_dir=data_dir)
    # Registered in tfds but never prepared here.
    with pytest.raises(FileNotFoundError, match="'mnist' is not prepared in data_dir=.*Fix"):
        TfdsSource("mnist", "train", data_dir=data_dir)
    with pytest.raises(ValueError, match="has splits"):
        TfdsSource("jaxssl_toy_images", "unlabelled", data_dir=data_dir)
