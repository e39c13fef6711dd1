"""Any TFDS dataset prepared as ArrayRecord, read through ``tfds.data_source`` without TensorFlow.

``tfds.data_source`` hands us each record's raw bytes (``DeserializeMethod.RAW_BYTES``; its other
modes call ``tf.train.Example`` or OpenCV). We parse the ``tf.train.Example`` with the protobuf
copy tfds ships (``tensorflow_datasets.proto.tf_example_pb2``) and decode the encoded image bytes
with PIL. That avoids TensorFlow and OpenCV, always yields uint8 RGB [H, W, 3], and lets a corrupt
image take the same skip-and-count path as the folder source (the next readable index is used
instead; see ``jaxssl.data.sources.folder``). The dataset must already be prepared in ``data_dir``
with ``file_format=array_record`` (``tfds build`` needs TensorFlow for most datasets; a builder that
yields already-encoded image bytes can prepare without it, as tests/data/test_tfds_source.py does).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxssl.data.sources.folder import CorruptImageError, SkipsCorrupt, to_rgb_uint8


def decode_image_bytes(data, *, name: str) -> np.ndarray:
    """PNG/JPEG bytes (or an already-decoded array) -> uint8 RGB [H, W, 3] (16-bit and float
    images are scaled, see ``jaxssl.data.sources.folder.to_rgb_uint8``)."""
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim in (2, 3):
        array = data if data.ndim == 3 else data[..., None]
        return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array
    try:
        with Image.open(io.BytesIO(bytes(data))) as img:
            return to_rgb_uint8(img)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise CorruptImageError(f"cannot decode image {name}: {err}") from err


def _open(name: str, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds  # Imported lazily: tfds is slow to import.

    return tfds.data_source(
        name,
        split=split,
        data_dir=data_dir,
        download=False,
        deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES,
    )


def parse_example(record: bytes, keys: tuple[str, ...]) -> dict:
    """Reads ``keys`` from a serialized ``tf.train.Example`` (bytes or int64 lists), without TF.

    A one-element list becomes a scalar (``bytes`` or ``int``); others stay lists.

    >>> from tensorflow_datasets.proto import tf_example_pb2 as pb
    >>> ex = pb.Example()
    >>> ex.features.feature["label"].int64_list.value.append(7)
    >>> parse_example(ex.SerializeToString(), ("label",))
    {'label': 7}
    """
    # Lazy on purpose: tensorflow_datasets takes seconds to import and only TFDS specs need it.
    from tensorflow_datasets.proto import tf_example_pb2

    example = tf_example_pb2.Example.FromString(record)
    out = {}
    for key in keys:
        if key not in example.features.feature:
            raise KeyError(f"record has no feature {key!r}; it has "
                           f"{sorted(example.features.feature.keys())}.")
        feature = example.features.feature[key]
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        out[key] = values[0] if len(values) == 1 else values
    return out


class TfdsSource(SkipsCorrupt):
    """Random-access source over a prepared TFDS dataset: ``{"image": uint8 [H,W,3], "label"}``.

    Args:
      name: TFDS name, e.g. ``"imagenet2012"`` or ``"cifar10:3.0.2"``.
      split: TFDS split; ``"test"`` falls back to ``"validation"`` when the dataset has no test
        split (ImageNet's test split is unlabelled, so its validation split is the evaluation set).
      data_dir: TFDS data directory (default: tfds' own default, ``$TFDS_DATA_DIR``).
      image_key / label_key: feature names.
      skip_corrupt: replace an undecodable image by the next readable index (warn + count).
    """

    def __init__(
        self,
        name: str,
        split: str,
        *,
        data_dir: str | None = None,
        image_key: str = "image",
        label_key: str = "label",
        skip_corrupt: bool = True,
    ):
        self.name, self.data_dir = name, data_dir
        self.image_key, self.label_key = image_key, label_key
        self._track_corrupt(skip_corrupt)
        fix = (
            "Fix: prepare it as ArrayRecord (`tfds build NAME --file_format=array_record`, which "
            "needs TensorFlow, on any machine) and point data_dir or TFDS_DATA_DIR at it."
        )
        try:
            import tensorflow_datasets as tfds  # lazy on purpose: slow, needed by TFDS specs only

            builder = tfds.builder(name, data_dir=data_dir)
            splits = set(builder.info.splits.keys())
        except Exception as err:  # tfds raises several types (DatasetNotFoundError, Assertion).
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            raise FileNotFoundError(
                f"TFDS dataset {name!r} is not available in data_dir={data_dir!r} "
                f"({first_line}). {fix}"
            ) from err
        if not splits:  # A registered builder (e.g. imagenet2012) whose data was never prepared.
            raise FileNotFoundError(
                f"TFDS dataset {name!r} is not prepared in data_dir={data_dir!r} (looked in "
                f"{builder.data_dir}). {fix}"
            )
        if split == "test" and "test" not in splits and "validation" in splits:
            split = "validation"
        if split not in splits:
            raise ValueError(f"TFDS dataset {name!r} has splits {sorted(splits)}, not {split!r}.")
        self.split = split
        features = builder.info.features
        for key in (image_key, label_key):
            if key not in features:
                raise ValueError(
                    f"TFDS dataset {name!r} has features {list(features.keys())}; no {key!r}."
                )
        label_feature = features[label_key]
        self.num_classes = int(getattr(label_feature, "num_classes", 0) or 0)
        try:
            self._source = _open(name, split, data_dir)
        except Exception as err:  # e.g. prepared as tfrecord, not array_record.
            raise FileNotFoundError(
                f"cannot open TFDS {name!r} split {split!r} in {builder.data_dir} as ArrayRecord "
                f"({err}). {fix}"
            ) from err
        self._length = len(self._source)
        self._labels: np.ndarray | None = None

    def __len__(self) -> int:
        return self._length

    @property
    def labels(self) -> np.ndarray:
        """All labels (read once on first use; parses every record, so it is slow for ImageNet)."""
        if self._labels is None:
            self._labels = np.array(
                [int(self._record(i)[self.label_key]) for i in range(self._length)], np.int64
            )
        return self._labels

    def _record(self, index: int) -> dict:
        if self._source is None:  # Re-opened lazily after unpickling.
            self._source = _open(self.name, self.split, self.data_dir)
        return parse_example(self._source[index], (self.image_key, self.label_key))

    def __getitem__(self, index: int) -> dict:
        def read(i: int) -> dict:
            record = self._record(i)
            image = decode_image_bytes(record[self.image_key], name=f"{self.name}[{i}]")
            return {"image": image, "label": int(record[self.label_key])}

        return self.read_skipping(index, self._length, read,
                                  f"no readable image in TFDS {self.name}/{self.split}.")

    # The ArrayRecord readers do not pickle; they are re-opened on demand.
    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_source": None}

    def __repr__(self) -> str:
        return f"TfdsSource({self.name!r}, {self.split!r}, n={len(self)})"
