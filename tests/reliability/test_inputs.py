"""Input data that used to be read wrongly or crash (issue 13, items 6 and 7): 16-bit and other
PIL image modes in the folder and TFDS decoders, and sparse label values in ``.npz`` datasets
(one label of 2e9 made ``num_classes = max + 1`` and aborted XLA in the final k-NN and the eval
CLI)."""

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from jaxssl.data.sources.folder import ImageFolderSource, decode_image
from jaxssl.data.sources.npz import NpzSource
from jaxssl.data.sources.tfds import decode_image_bytes
from jaxssl.data.spec import make_source

# A horizontal uint16 gradient spanning the whole range, 0 .. 65535.
GRADIENT = np.round(np.linspace(0, 65535, 40)).astype(np.uint16)[None, :].repeat(6, axis=0)


def scaled_16bit(values: np.ndarray) -> np.ndarray:
    """The expected 8-bit intensities: v * 255 / 65535, rounded to nearest."""
    return np.round(values.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)


def rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


# ------------------------------------------------------------------ 16-bit and other modes


def test_16bit_png_in_the_folder_source_is_scaled_not_binarised(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(GRADIENT).save(tmp_path / "a" / "g.png")
    assert Image.open(tmp_path / "a" / "g.png").mode == "I;16"  # a real 16-bit PNG
    image = ImageFolderSource(tmp_path)[0]["image"]
    assert image.dtype == np.uint8 and image.shape == (6, 40, 3)
    np.testing.assert_array_equal(image, rgb(scaled_16bit(GRADIENT)))
    assert len(np.unique(image)) == 40  # a gradient, not {0, 255}


def test_16bit_png_bytes_in_the_tfds_decoder_are_scaled():
    buffer = io.BytesIO()
    Image.fromarray(GRADIENT).save(buffer, format="PNG")
    np.testing.assert_array_equal(decode_image_bytes(buffer.getvalue(), name="x"),
                                  rgb(scaled_16bit(GRADIENT)))


def _mode_cases():
    """(mode name, writer, expected uint8 RGB) with expectations derived by hand."""
    gray8 = np.arange(0, 240, 8, dtype=np.uint8)[None, :].repeat(3, axis=0)  # 3 x 30
    bits = (np.arange(30)[None, :].repeat(3, axis=0) % 3 == 0)
    palette = np.array([[10, 20, 30], [200, 100, 0], [0, 255, 7]], np.uint8)
    index = (np.arange(30)[None, :].repeat(3, axis=0) % 3).astype(np.uint8)
    floats = np.linspace(0.0, 1.0, 30, dtype=np.float32)[None, :].repeat(3, axis=0)
    floats[0, 0], floats[0, 1] = -0.5, 1.5  # clipped to [0, 1]

    def p_image(path):
        img = Image.fromarray(index, mode="P")
        img.putpalette(palette.ravel().tolist())
        img.save(path)

    def cmyk_image(path):
        img = Image.new("CMYK", (2, 1))
        img.putpixel((0, 0), (255, 0, 0, 0))  # full cyan: R = 0
        img.putpixel((1, 0), (0, 0, 0, 128))  # half black: 255 - 128 = 127 everywhere
        img.save(path)

    float_expected = np.round(np.clip(floats.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    return [
        ("I;16", "png", lambda p: Image.fromarray(GRADIENT).save(p), rgb(scaled_16bit(GRADIENT))),
        ("I;16B", "tif",
         lambda p: Image.frombytes("I;16B", GRADIENT.shape[::-1],
                                   GRADIENT.astype(">u2").tobytes()).save(p),
         rgb(scaled_16bit(GRADIENT))),
        ("I", "tif", lambda p: Image.fromarray(GRADIENT.astype(np.int32)).save(p),
         rgb(scaled_16bit(GRADIENT))),
        ("F", "tif", lambda p: Image.fromarray(floats).save(p), rgb(float_expected)),
        ("L", "png", lambda p: Image.fromarray(gray8).save(p), rgb(gray8)),
        ("LA", "png", lambda p: Image.fromarray(np.stack([gray8, 255 - gray8], -1), "LA").save(p),
         rgb(gray8)),  # alpha dropped
        ("1", "png", lambda p: Image.fromarray(bits).save(p), rgb(bits.astype(np.uint8) * 255)),
        ("P", "png", p_image, palette[index]),
        ("CMYK", "tif", cmyk_image, np.array([[[0, 255, 255], [127, 127, 127]]], np.uint8)),
        ("RGBA", "png",
         lambda p: Image.fromarray(np.dstack([palette[index], gray8])).save(p), palette[index]),
    ]


@pytest.mark.parametrize("mode, ext, write, expected", _mode_cases(),
                         ids=[c[0] for c in _mode_cases()])
def test_every_pil_mode_decodes_to_the_expected_uint8_rgb(tmp_path, mode, ext, write, expected):
    path = str(tmp_path / f"x.{ext}")
    write(path)
    with Image.open(path) as img:
        assert img.mode == mode
    out = decode_image(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


# ------------------------------------------------------------------ sparse npz labels

SPARSE = np.array([7, 2_000_000_000, 7, 3, 2_000_000_000, 3], np.int64)


def test_sparse_npz_labels_are_remapped_to_contiguous_ids(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, images=np.zeros((6, 4, 4), np.uint8), labels=SPARSE)
    src = NpzSource(path)
    assert src.num_classes == 3
    np.testing.assert_array_equal(src.class_values, [3, 7, 2_000_000_000])
    np.testing.assert_array_equal(src.labels, [1, 2, 1, 0, 2, 0])
    assert [src[i]["label"] for i in range(6)] == [1, 2, 1, 0, 2, 0]
    np.testing.assert_array_equal(src.class_values[src.labels], SPARSE)  # the mapping is kept


def test_split_files_share_one_class_table(tmp_path):
    # train has values {3, 7, 2e9}, test only {7, 9}: ids must mean the same class in both.
    np.savez(tmp_path / "d_train.npz", images=np.zeros((6, 4, 4), np.uint8), labels=SPARSE)
    np.savez(tmp_path / "d_test.npz", images=np.zeros((3, 4, 4), np.uint8),
             labels=np.array([9, 7, 9]))
    spec = f"npz:{tmp_path}/d_{{split}}.npz"
    train, test = make_source(spec, "train"), make_source(spec, "test")
    values = [3, 7, 9, 2_000_000_000]
    for src in (train, test):
        np.testing.assert_array_equal(src.class_values, values)
        assert src.num_classes == 4
    np.testing.assert_array_equal(train.labels, [1, 3, 1, 0, 3, 0])
    np.testing.assert_array_equal(test.labels, [2, 1, 2])


def _separable_npz(path):
    """Three classes with sparse label values whose images are vertical stripes, horizontal
    stripes and a checkerboard with a little noise: a network's nearest neighbours are then of
    the same class."""
    rng = np.random.default_rng(0)
    values = np.array([5, 2_000_000_000, 11])
    labels = np.repeat(values, 24)
    i, j = np.mgrid[:20, :20]
    pattern = {5: (j // 4) % 2, 11: (i // 4) % 2, 2_000_000_000: ((i // 4) + (j // 4)) % 2}
    images = np.stack([np.clip(40 + 170 * pattern[int(y)] + rng.normal(0, 5, (20, 20)), 0, 255)
                       for y in labels]).astype(np.uint8)
    np.savez(path, images=images, labels=labels)


def _subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.getcwd(), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["XLA_FLAGS"] = ""  # one CPU device is enough
    return env


def test_sparse_labels_train_final_knn_and_eval_cli(tmp_path):
    # Two CLI subprocesses (a 2-step run with its final k-NN, then the eval CLI), about 20 s of
    # CPU: the fault was an XLA abort, which would kill an in-process pytest.
    data = tmp_path / "sparse.npz"
    _separable_npz(data)
    config_file = tmp_path / "cfg.py"
    config_file.write_text(textwrap.dedent(f"""
        from jaxssl.train.recipes import tiny

        def get_config():
            c = tiny("dino")
            c.data.dataset = "npz:{data}"
            c.train.num_steps = 2
            c.eval.update(final_knn=True, knn_train_size=0, plots=False, batch_size=72)
            return c
    """))
    workdir = tmp_path / "run"
    run = subprocess.run([sys.executable, "-m", "jaxssl.train", "--config", str(config_file),
                          "--workdir", str(workdir)], capture_output=True, text=True,
                         env=_subprocess_env(), timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((workdir / "report.json").read_text())
    assert report["knn_top1"] == 1.0  # separable classes, found despite the label 2e9

    out = tmp_path / "eval.json"
    run = subprocess.run([sys.executable, "-m", "jaxssl.eval", "--workdir", str(workdir),
                          "--protocols", "knn", "--out", str(out),
                          "--no-plots"], capture_output=True, text=True, env=_subprocess_env(),
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    evaluated = json.loads(out.read_text())
    assert evaluated["knn"]["top1"] == 1.0
    assert evaluated["num_train"] == 72
