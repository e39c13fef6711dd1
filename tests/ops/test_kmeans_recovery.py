"""k-means: recovery of separated clusters, Lloyd fixed point, empty-cluster handling."""

import jax
import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from jaxssl.ops.kmeans import count_empty, kmeans, spherical_kmeans


def _blobs(seed, k=5, per=40, dim=6):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 10.0
    y = np.repeat(np.arange(k), per)
    return (centres[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_recovers_separated_clusters_and_is_a_lloyd_fixed_point(init):
    x, y = _blobs(0)
    c, a = kmeans(jax.random.key(1), x, 5, num_iters=20, init=init, chunk_size=64)
    a = np.asarray(a)
    assert normalized_mutual_info_score(y, a) == pytest.approx(1.0)
    # At convergence each centroid is the mean of its points and each point's nearest centroid.
    for j in range(5):
        np.testing.assert_allclose(np.asarray(c)[j], x[a == j].mean(axis=0), atol=1e-4)
    d = ((x[:, None, :] - np.asarray(c)[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(a, d.argmin(axis=1))


def test_same_key_same_result():
    x, _ = _blobs(2)
    c1, a1 = kmeans(jax.random.key(3), x, 4, num_iters=3)
    c2, a2 = kmeans(jax.random.key(3), x, 4, num_iters=3)
    np.testing.assert_array_equal(np.asarray(c1), np.asarray(c2))
    np.testing.assert_array_equal(np.asarray(a1), np.asarray(a2))
    # Chunking the nearest-centroid search (7 rows at a time) changes nothing.
    c3, a3 = kmeans(jax.random.key(3), x, 4, num_iters=3, chunk_size=7)
    np.testing.assert_allclose(np.asarray(c3), np.asarray(c1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(a3), np.asarray(a1))


def test_empty_clusters_are_reseeded():
    # Ten copies of one point plus two outliers: a random init almost surely picks two copies
    # of the same point, leaving an empty cluster; re-seeding moves it onto an outlier.
    x = np.array([[0.0, 0.0]] * 10 + [[5.0, 0.0], [0.0, 5.0]], np.float32)
    empty_at_init = 0
    for seed in range(4):
        _, a0 = kmeans(jax.random.key(seed), x, 3, num_iters=0, init="random")
        empty_at_init += count_empty(a0, 3) > 0
        _, a = kmeans(jax.random.key(seed), x, 3, num_iters=3, init="random")
        assert count_empty(a, 3) == 0
        assert len({int(a[10]), int(a[11]), int(a[0])}) == 3
    assert empty_at_init >= 2  # the initialisations really did leave clusters empty


def test_spherical_unit_centroids_no_empty_cluster_cosine_assignment():
    rng = np.random.default_rng(4)
    directions = np.linalg.qr(rng.normal(size=(8, 8)))[0][:6]  # 6 orthonormal directions
    y = np.repeat(np.arange(6), 20)
    scale = rng.uniform(0.5, 5.0, size=(120, 1))  # norms must not matter
    x = (scale * (directions[y] + 0.05 * rng.normal(size=(120, 8)))).astype(np.float32)
    c, a = spherical_kmeans(jax.random.key(0), x, 6, num_iters=10, max_restarts=5)
    c, a = np.asarray(c), np.asarray(a)
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)
    assert count_empty(a, 6) == 0
    assert normalized_mutual_info_score(y, a) == pytest.approx(1.0)
    np.testing.assert_array_equal(a, (x @ c.T).argmax(axis=1))


def test_spherical_restarts_raise_when_clusters_must_stay_empty():
    # Only two distinct directions cannot fill three clusters.
    x = np.array([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5, np.float32)
    with pytest.raises(ValueError, match="still empty after 2 restarts"):
        spherical_kmeans(jax.random.key(0), x, 3, num_iters=3, max_restarts=2)
    _, a = spherical_kmeans(jax.random.key(0), x, 3, num_iters=3)  # no restarts: returned
    assert count_empty(a, 3) == 1


def test_errors():
    with pytest.raises(ValueError, match=r"k must be in \[1, N=3\].*\(3, 2\)"):
        kmeans(jax.random.key(0), np.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match="init"):
        kmeans(jax.random.key(0), np.zeros((3, 2)), 2, init="forgy")
