"""ExCB centroid initialisation: spherical k-means on the projections the teacher produces."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxssl.data.augment import normalize_images
from jaxssl.methods.base import variables
from jaxssl.methods.registry import build_method
from jaxssl.train.excb_init import kmeans_init_centroids, sample_images
from jaxssl.train.init_state import create_train_state
from jaxssl.train.recipes import tiny


def _state_and_config():
    c = tiny("excb")
    c.head.use_bn = True  # the case where eval-mode and batch-statistics projections differ
    c.head.num_prototypes = 16
    c.loss.kmeans_samples = 512
    method = build_method(c)
    state = create_train_state(method, c, optax.sgd(0.0), jax.random.key(0), total_steps=1)
    return c, method, state


def _train_mode_projections(c, method, state, images):
    """Projections with BatchNorm on batch statistics, chunk by chunk, as the teacher in the
    train step computes them (written out here independently of ExCB.project)."""
    x = normalize_images(jnp.asarray(images), tuple(c.augment.mean), tuple(c.augment.std))
    out, _ = method.model.apply(variables(state.teacher_params, state.teacher_batch_stats), x,
                                train=True, method="project", mutable=["batch_stats"])
    return np.asarray(out / jnp.linalg.norm(out, axis=-1, keepdims=True))


def test_kmeans_init_uses_batch_statistics_projections_and_leaves_no_cluster_empty():
    c, method, state = _state_and_config()
    new = kmeans_init_centroids(method, state, c, jax.random.key(1))
    centroids = np.asarray(new.params["centroids"]["prototypes"]["kernel"])
    chex.assert_trees_all_close(centroids,
                                np.asarray(new.teacher_params["centroids"]["prototypes"]["kernel"]))
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)

    images = sample_images(c, 512)
    proj = _train_mode_projections(c, method, state, images)
    assign = np.argmax(proj @ centroids.T, axis=1)
    # The k-means guarantee (no empty cluster) holds for the projections training will see.
    assert np.bincount(assign, minlength=16).min() >= 1
    # Spherical k-means fixed point: each centroid is close to the normalised mean of its members.
    for k in range(16):
        mean = proj[assign == k].mean(axis=0)
        assert float(mean @ centroids[k]) / np.linalg.norm(mean) > 0.99


def test_eval_and_batch_statistics_projections_differ_at_init():
    """Why the initialisation must not use eval mode: BN running stats are still (0, 1) at init."""
    c, method, state = _state_and_config()
    images = sample_images(c, 512)
    x = normalize_images(jnp.asarray(images), tuple(c.augment.mean), tuple(c.augment.std))
    train_mode = _train_mode_projections(c, method, state, images)
    def unit(a):
        a = np.asarray(a)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    eval_mode = unit(method.project(state.teacher_params, state.teacher_batch_stats, x))
    assert np.abs(train_mode - eval_mode).max() > 0.1
    # ExCB.project(train=True) is the batch-statistics formulation written out above.
    np.testing.assert_allclose(
        unit(method.project(state.teacher_params, state.teacher_batch_stats, x, train=True)),
        train_mode, atol=1e-5)
