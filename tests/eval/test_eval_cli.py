"""``python -m jaxssl.eval`` end to end on a checkpoint from a tiny training run, checked against
a k-NN recomputed here from the raw IDX files and the trained (not restored) teacher."""

import gzip
import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.data.crops import eval_view
from jaxssl.data.subset import random_subset
from jaxssl.eval.cli import main
from jaxssl.eval.protocols import PROTOCOLS
from jaxssl.eval.restore import load_pretrained
from jaxssl.methods.registry import build_method
from jaxssl.train.loop import train
from jaxssl.train.recipes import tiny

FMNIST = "/usr/share/datasets/fashion-mnist"
TRAIN_LIMIT, TEST_LIMIT = 1000, 500


def read_idx(kind: str, split: str) -> np.ndarray:
    prefix = "train" if split == "train" else "t10k"
    name = f"{prefix}-images-idx3-ubyte.gz" if kind == "images" else (
        f"{prefix}-labels-idx1-ubyte.gz")
    with gzip.open(os.path.join(FMNIST, name)) as f:
        raw = np.frombuffer(f.read(), np.uint8)
    # IDX headers: 16 bytes (magic, count, rows, cols) for images, 8 for labels.
    return raw[16:].reshape(-1, 28, 28) if kind == "images" else raw[8:]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    config = tiny("excb")
    config.train.num_steps = 2
    workdir = str(tmp_path_factory.mktemp("eval_cli") / "run")
    summary = train(config, workdir)
    return config, workdir, jax.device_get(summary["state"])


def reference_knn_top1(config, state, seed: int) -> float:
    """DINO weighted k-NN (k=20, T=0.07) by explicit per-query loops over features embedded
    here: raw IDX images, the documented seeded subsets, the trained teacher."""
    method = build_method(config)
    mean, std = np.asarray(config.augment.mean), np.asarray(config.augment.std)
    size = config.data.global_crops.size
    embed = jax.jit(lambda x: method.embed(state.teacher_params, state.teacher_batch_stats, x))

    def features(split, limit, subset_seed):
        images, labels = read_idx("images", split), read_idx("labels", split)
        # --train/--test-limit: the seeded uniform subset of jaxssl.data.subset, sorted.
        idx = np.sort(random_subset(len(labels), limit, seed=subset_seed))
        views = np.stack([eval_view(images[i][..., None], size) for i in idx])
        x = (views.astype(np.float32) / 255.0 - mean) / std
        f = np.asarray(embed(jnp.asarray(x, jnp.float32)), np.float64)
        return f / np.linalg.norm(f, axis=1, keepdims=True), labels[idx].astype(int)

    bank, bank_y = features("train", TRAIN_LIMIT, seed)
    query, query_y = features("test", TEST_LIMIT, seed + 1)
    correct = 0
    for q, y in zip(query, query_y):
        sims = bank @ q
        nearest = np.argsort(-sims, kind="stable")[:20]
        votes = np.zeros(10)
        for j in nearest:
            votes[bank_y[j]] += np.exp(sims[j] / 0.07)
        correct += int(np.argmax(votes) == y)
    return correct / len(query_y)


def test_cli_end_to_end(run, capsys):
    config, workdir, state = run
    rc = main(["--workdir", workdir, "--train-limit", str(TRAIN_LIMIT),
               "--test-limit", str(TEST_LIMIT), "--linear-epochs", "30",
               "--batch-size", "256"])  # 256 divides the 8 test devices: sharded path
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "knn" in printed.out and "top1" in printed.out
    with open(os.path.join(workdir, "report_eval.json")) as f:
        report = json.load(f)
    assert report["step"] == 2 and report["which"] == "teacher" and report["method"] == "excb"
    assert (report["num_train"], report["num_test"]) == (TRAIN_LIMIT, TEST_LIMIT)
    # The recipes' "cls_avgpool": the CLS token next to the mean patch token, 2 x the width.
    assert config.eval.features == "cls_avgpool"
    assert report["feature_dim"] == 2 * config.model.backbone_kwargs.embed_dim
    for name in PROTOCOLS:
        assert name in report

    knn = report["knn"]
    assert 0.0 <= knn["top1"] <= knn["top5"] <= 1.0
    assert knn["top1"] > 0.25  # chance is 0.1 over 10 balanced classes
    # Same number as a loop-by-loop k-NN on independently embedded images (one query of slack
    # for a near-tie flipped by float32 vs float64 similarities).
    assert abs(knn["top1"] - reference_knn_top1(config, state, seed=0)) <= 1.0 / TEST_LIMIT

    assert 0.0 <= report["linear"]["top1"] <= report["linear"]["top5"] <= 1.0
    assert report["linear"]["top1"] > 0.2
    assert sorted(report["fewshot"]) == ["13shot", "1shot", "2shot", "5shot"]
    for r in report["fewshot"].values():
        assert 0.0 <= r["mean"] <= 1.0 and len(r["per_split"]) == 3

    km = report["cluster"]["kmeans"]
    assert km["num_clusters"] == 10
    for m in ("nmi", "ari", "purity", "hungarian_accuracy"):
        assert -1.0 <= km[m] <= 1.0
    assert km["purity"] >= km["hungarian_accuracy"] - 1e-9  # purity maps many-to-one
    views = report["cluster"]["two_view_agreement"]
    assert views["num_images"] == 256 and 0.0 <= views["agreement"] <= 1.0  # one batch of 256
    pa = report["cluster"]["prototype_assignments"]
    k = config.head.num_prototypes
    assert pa["num_prototypes"] == k and pa["num_points"] == TEST_LIMIT
    sizes = np.asarray(pa["relative_sizes"])
    # r_k = K n_k / N: the sizes average to 1, are sorted, and the zeros are the empty clusters.
    np.testing.assert_allclose(sizes.mean(), 1.0, rtol=1e-9)
    assert np.all(np.diff(sizes) <= 0) and int(np.sum(sizes == 0)) == pa["num_empty"]
    assert pa["num_used"] + pa["num_empty"] == k
    assert 0.0 <= pa["nmi"] <= 1.0 and 0.0 <= pa["purity"] <= 1.0

    protos = report["prototypes"]
    counts = [protos["unique"][t] for t in ("0.1", "0.01", "0.001", "0.0001")]
    # Smaller thresholds can only separate more prototypes, never more than K.
    assert 1 <= counts[0] and counts == sorted(counts) and counts[-1] <= k
    assert sum(protos["nn_distance_histogram"]["counts"]) == k

    assert len(report["plots"]) == 3
    for path in report["plots"]:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(path) > 1000


def test_load_pretrained_restores_trained_weights(run):
    config, workdir, state = run
    teacher = load_pretrained(workdir)
    chex.assert_trees_all_equal(jax.device_get(teacher.params), state.teacher_params)
    student = load_pretrained(workdir, which="student", step=2)
    chex.assert_trees_all_equal(jax.device_get(student.params), state.params)
    assert teacher.step == student.step == 2 and teacher.config.method == "excb"


def test_model_that_does_not_match_checkpoint_names_both_shapes(run):
    config, workdir, _ = run
    changed = tiny("excb")
    changed.head.bottleneck_dim = 24  # checkpoint prototypes are [64, 16]
    with pytest.raises(ValueError, match=r"checkpoint \(64, 16\) vs model \(64, 24\)"):
        load_pretrained(workdir, config=changed)


def test_missing_workdir_or_checkpoint_is_a_clear_error(tmp_path, capsys):
    missing = str(tmp_path / "no_such_run")
    assert main(["--workdir", missing]) == 2
    err = capsys.readouterr().err
    assert missing in err and "python -m jaxssl.train" in err
    assert not os.path.exists(missing)  # looking must not create it
    with pytest.raises(FileNotFoundError, match="checkpoints"):
        load_pretrained(tmp_path)


def test_unknown_protocol_lists_the_valid_ones(tmp_path, capsys):
    assert main(["--workdir", str(tmp_path), "--protocols", "knn,svm"]) == 2
    err = capsys.readouterr().err
    assert "'svm'" in err and all(name in err for name in PROTOCOLS)


def test_empty_dataset_is_a_clear_error(run, tmp_path, capsys):
    _, workdir, _ = run
    empty = tmp_path / "empty.npz"
    np.savez(empty, images=np.zeros((0, 8, 8), np.uint8), labels=np.zeros((0,), np.int64))
    rc = main(["--workdir", workdir, "--protocols", "knn", "--dataset", f"npz:{empty}",
               "--out", str(tmp_path / "r.json")])
    assert rc == 2
    assert "empty" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_module_help_runs():
    out = subprocess.run([sys.executable, "-m", "jaxssl.eval", "--help"], capture_output=True,
                         text=True, timeout=120, check=True)
    assert "--protocols" in out.stdout and "--workdir" in out.stdout


def test_saved_features_rerun_protocols_and_are_checked(run, tmp_path, capsys):
    _, workdir, _ = run
    feats = str(tmp_path / "feats.npz")
    common = ["--workdir", workdir, "--protocols", "knn,cluster", "--no-plots"]
    assert main(common + ["--train-limit", "200", "--test-limit", "100",
                          "--save-features", feats, "--out", str(tmp_path / "a.json")]) == 0
    assert main(common + ["--features-from", feats, "--out", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert b["num_train"] == 200 and b["num_test"] == 100
    assert a["knn"] == b["knn"]
    assert a["cluster"]["prototype_assignments"] == b["cluster"]["prototype_assignments"]

    with np.load(feats) as data:
        arrays = dict(data)
    # 64 (CLS ++ mean patch token of the 32-wide tiny ViT) -> 8 wide
    arrays["train_features"] = arrays["train_features"][:, :8]
    np.savez(feats, **arrays)
    capsys.readouterr()
    assert main(common + ["--features-from", feats]) == 2
    err = capsys.readouterr().err
    assert "(200, 8)" in err and "[N, 64]" in err


class _BrightnessMethod:
    """Assigns an image to one of two 'prototypes' by its mean normalised intensity: invariant
    to crops of the whole image and to flips, not to brightness/contrast jitter."""

    def __init__(self, method, threshold):
        self.method, self.threshold = method, threshold

    def prototypes(self, params):
        return self.method.prototypes(params)

    def assign(self, params, batch_stats, images):
        return (jnp.mean(images, axis=(1, 2, 3)) > self.threshold).astype(jnp.int32)


def test_two_view_agreement_sees_independently_augmented_views(run):
    import dataclasses

    from jaxssl.data.augment import ViewAugment
    from jaxssl.eval.protocols import two_view_agreement
    from jaxssl.eval.restore import load_pretrained

    config, workdir, _ = run
    pre = load_pretrained(workdir)
    cfg = pre.config
    # Whole-image crops (scale 1, aspect 1): the two views differ only by flips and photometrics.
    cfg.data.global_crops.scale, cfg.data.ratio = (1.0, 1.0), (1.0, 1.0)
    off = dict(jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0, solarize_prob=0.0)
    jitter = dict(off, jitter_prob=1.0, brightness=0.8, contrast=0.8)
    fake = dataclasses.replace(pre, method=_BrightnessMethod(pre.method, threshold=-0.1))

    def agreement(view_settings):
        for name in ("global1", "global2"):
            for field, value in view_settings.items():
                cfg.augment[name][field] = value
        ViewAugment(**{k: v for k, v in view_settings.items()})  # a valid setting
        out = two_view_agreement(fake, cfg.data.dataset, "test", num_images=500,
                                 batch_size=100, seed=0)
        assert out["num_images"] == 500 and out["split"] == "test"
        return out["agreement"]

    # No photometric change: both views have the same mean, so the same "prototype".
    assert agreement(off) == 1.0
    # Independent strong brightness/contrast jitter per view moves images across the threshold.
    assert agreement(jitter) < 0.95

    # The real model: a fraction in [0, 1] for the default training augmentation.
    real = two_view_agreement(pre, config.data.dataset, "test", num_images=200, batch_size=100)
    assert 0.0 <= real["agreement"] <= 1.0 and real["num_images"] == 200


def test_features_flag_embeds_cls_next_to_mean_patch_token(run, tmp_path):
    """--features cls_avgpool on a ViT run: [N, 2D] features whose first half is the default
    "cls" features of the same images (the mean-patch half is checked in
    tests/methods/test_embed_features.py)."""
    _, workdir, _ = run
    paths = {f: str(tmp_path / f"{f}.npz") for f in ("cls", "cls_avgpool")}
    for feature, path in paths.items():
        assert main(["--workdir", workdir, "--protocols", "knn", "--no-plots", "--features",
                     feature, "--train-limit", "64", "--test-limit", "32", "--save-features",
                     path, "--out", str(tmp_path / f"{feature}.json")]) == 0
    with np.load(paths["cls"]) as a, np.load(paths["cls_avgpool"]) as b:
        cls, both = a["test_features"], b["test_features"]
    assert both.shape == (32, 2 * cls.shape[1])
    np.testing.assert_allclose(both[:, :cls.shape[1]], cls, rtol=1e-5, atol=1e-6)
