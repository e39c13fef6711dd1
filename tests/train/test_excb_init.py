"""ExCB centroid initialisation: spherical k-means on teacher projections of a seeded random
sample of the training split, streamed through the data pipeline."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxssl.data.augment import normalize_images
from jaxssl.data.crops import eval_view
from jaxssl.data.spec import make_source
from jaxssl.data.subset import random_subset
from jaxssl.methods import excb_init
from jaxssl.methods.base import variables
from jaxssl.methods.excb_init import kmeans_init_centroids, sample_projections
from jaxssl.methods.registry import build_method
from jaxssl.train.init_state import create_train_state
from jaxssl.train.mesh import make_data_mesh
from jaxssl.train.recipes import tiny


def _state_and_config(dataset="fashion_mnist", k=16, samples=512):
    c = tiny("excb")
    c.data.dataset = dataset
    c.head.use_bn = True  # the case where eval-mode and batch-statistics projections differ
    c.head.num_prototypes = k
    c.loss.kmeans_samples = samples
    method = build_method(c)
    state = create_train_state(method, c, optax.sgd(0.0), jax.random.key(0), total_steps=1)
    return c, method, state


def _class_sorted_npz(tmp_path, n, classes=10):
    """``n`` images stored class by class; class ``y`` images are noise around grey level
    20 * y, so samples of different classes differ."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(classes), -(-n // classes))[:n]
    images = np.clip(20.0 * labels[:, None, None] + rng.normal(0, 20, (n, 16, 16)), 0, 255)
    path = tmp_path / "sorted.npz"
    np.savez(path, images=images.astype(np.uint8), labels=labels)
    return f"npz:{path}", labels


def _images(c, indices):
    """The training images ``indices`` as the eval pipeline crops them (read independently)."""
    source = make_source(c.data.dataset, "train")
    return np.stack([eval_view(source[int(i)]["image"], c.data.global_crops.size)
                     for i in indices])


def _train_mode_projections(c, method, state, images, devices=8):
    """Projections with BatchNorm on batch statistics and no stochastic depth (written out here
    independently of ExCB.project), L2-normalised. As documented in sample_projections, batch
    ``s`` takes images ``s * m ... (s + 1) * m`` of each of the ``devices`` equal slots of the
    sample, m = train.batch_size x global_crops.num / devices."""
    slots = images.reshape(devices, -1, *images.shape[1:])
    m = c.train.batch_size * c.data.global_crops.num // devices
    out = np.zeros((devices, slots.shape[1], c.head.bottleneck_dim), np.float32)
    for s in range(0, slots.shape[1], m):
        batch = slots[:, s:s + m]
        x = normalize_images(jnp.asarray(batch.reshape(-1, *images.shape[1:])),
                             tuple(c.augment.mean), tuple(c.augment.std))
        y, _ = method.model.apply(variables(state.teacher_params, state.teacher_batch_stats), x,
                                  train=True, deterministic=True, method="project",
                                  mutable=["batch_stats"])
        out[:, s:s + m] = np.asarray(y, np.float32).reshape(devices, batch.shape[1], -1)
    out = out.reshape(len(images), -1)
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def test_kmeans_init_uses_batch_statistics_projections_and_leaves_no_cluster_empty():
    c, method, state = _state_and_config()
    new = kmeans_init_centroids(method, state, c, jax.random.key(1), mesh=make_data_mesh())
    centroids = np.asarray(new.params["centroids"]["prototypes"]["kernel"])
    chex.assert_trees_all_close(centroids,
                                np.asarray(new.teacher_params["centroids"]["prototypes"]["kernel"]))
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)

    # The sample: 512 of the 60,000 training images, drawn with config.seed.
    indices = random_subset(60_000, 512, seed=c.seed)
    proj = _train_mode_projections(c, method, state, _images(c, indices))
    assign = np.argmax(proj @ centroids.T, axis=1)
    # The k-means guarantee (no empty cluster) holds for the projections training will see.
    assert np.bincount(assign, minlength=16).min() >= 1
    # Spherical k-means fixed point: each centroid is close to the normalised mean of its members.
    for k in range(16):
        mean = proj[assign == k].mean(axis=0)
        assert float(mean @ centroids[k]) / np.linalg.norm(mean) > 0.99


def test_sample_is_seeded_random_streamed_and_sharded(tmp_path):
    spec, labels = _class_sorted_npz(tmp_path, 200)
    c, method, state = _state_and_config(spec, k=8, samples=40)
    mesh = make_data_mesh()
    indices = random_subset(200, 40, seed=c.seed)
    # 40 of 200 class-sorted images: a random sample covers most of the 10 classes (the first
    # 40 in source order would cover 4), and the same seed draws the same sample.
    assert len(np.unique(labels[indices])) >= 8
    np.testing.assert_array_equal(indices, random_subset(200, 40, seed=c.seed))
    assert not np.array_equal(indices, random_subset(200, 40, seed=c.seed + 1))

    feats = sample_projections(method, state, c, mesh, indices)
    assert feats.shape == (40, c.head.bottleneck_dim) and feats.dtype == jnp.float32
    assert tuple(feats.sharding.spec) == ("data", None)
    assert len({s.device for s in feats.addressable_shards}) == 8
    got = np.asarray(feats) / np.linalg.norm(np.asarray(feats), axis=1, keepdims=True)
    # Equal up to the summation order of the BatchNorm statistics over 8 devices (a different
    # batch partition would change them by ~1e-2).
    np.testing.assert_allclose(got, _train_mode_projections(c, method, state,
                                                            _images(c, indices)), atol=1e-4)


def test_one_device_mesh_projects_the_whole_sample(tmp_path):
    """The quick start and the notebook run on one device, whose mesh maps it to slice(None)."""
    spec, _ = _class_sorted_npz(tmp_path, 200)
    c, method, state = _state_and_config(spec, k=8, samples=40)
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices()[:1])
    indices = random_subset(200, 40, seed=c.seed)
    feats = np.asarray(sample_projections(method, state, c, mesh, indices))
    got = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    np.testing.assert_allclose(got, _train_mode_projections(c, method, state, _images(c, indices),
                                                            devices=1), atol=1e-4)


def test_fewer_images_than_requested_uses_them_all_and_says_so(tmp_path, capsys):
    spec, _ = _class_sorted_npz(tmp_path, 203)
    c, method, state = _state_and_config(spec, k=8, samples=4096)
    seen = {}
    real = excb_init.sample_projections

    def spy(method, state, config, mesh, indices):
        seen["indices"] = indices
        return real(method, state, config, mesh, indices)

    excb_init.sample_projections = spy
    try:
        new = kmeans_init_centroids(method, state, c, jax.random.key(0), mesh=make_data_mesh())
    finally:
        excb_init.sample_projections = real
    # 203 images, 8 devices: all 200 that divide evenly, each once.
    assert sorted(seen["indices"].tolist()) == sorted(random_subset(203, 200, seed=c.seed)
                                                       .tolist())
    assert len(set(seen["indices"].tolist())) == 200
    out = capsys.readouterr().out
    assert "has 203 training images, fewer than loss.kmeans_samples=4096; using 200" in out
    assert np.isfinite(np.asarray(new.params["centroids"]["prototypes"]["kernel"])).all()


def test_fewer_samples_than_clusters_fails_before_projecting(tmp_path, monkeypatch):
    spec, _ = _class_sorted_npz(tmp_path, 100)
    c, method, state = _state_and_config(spec, k=128, samples=4096)

    def never(*args, **kwargs):
        raise AssertionError("projected images before checking the sample size")

    monkeypatch.setattr(excb_init, "sample_projections", never)
    with pytest.raises(ValueError, match=r"config\.loss\.kmeans_samples=4096.*K = "
                       r"config\.head\.num_prototypes = 128.*has only 100 images"):
        kmeans_init_centroids(method, state, c, jax.random.key(0), mesh=make_data_mesh())


def test_validate_rejects_fewer_samples_than_prototypes():
    from jaxssl.train.validate import validate_config

    c = tiny("excb")
    c.loss.kmeans_samples = c.head.num_prototypes - 1
    with pytest.raises(ValueError, match=r"config\.loss\.kmeans_samples: 63 is below "
                       r"config\.head\.num_prototypes=64"):
        validate_config(c)
    c.loss.kmeans_init = False  # no k-means: no constraint
    validate_config(c)


def test_eval_and_batch_statistics_projections_differ_at_init():
    """Why the initialisation must not use eval mode: BN running stats are still (0, 1) at init."""
    c, method, state = _state_and_config()
    images = _images(c, np.arange(512))
    x = normalize_images(jnp.asarray(images), tuple(c.augment.mean), tuple(c.augment.std))
    train_mode = _train_mode_projections(c, method, state, images[:32], devices=1)

    def unit(a):
        a = np.asarray(a)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    eval_mode = unit(method.project(state.teacher_params, state.teacher_batch_stats, x[:32]))
    assert np.abs(train_mode - eval_mode).max() > 0.1
    # ExCB.project(train=True) is the batch-statistics formulation written out above.
    np.testing.assert_allclose(
        unit(method.project(state.teacher_params, state.teacher_batch_stats, x[:32],
                            train=True)),
        train_mode, atol=1e-5)
