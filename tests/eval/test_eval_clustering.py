"""k-means clustering scores of frozen features, and the names ``jaxssl.eval`` exports."""

import jax
import numpy as np
import pytest

import jaxssl.eval as ev
from jaxssl.eval.clustering import kmeans_cluster_scores


def test_kmeans_cluster_scores_on_separated_directions():
    rng = np.random.default_rng(7)
    y = np.repeat(np.arange(4), 15)
    x = (np.eye(4, 8)[y] * 3.0 + 0.05 * rng.normal(size=(60, 8))).astype(np.float32)
    s = kmeans_cluster_scores(jax.random.key(0), x, y, num_iters=10)
    assert s == pytest.approx({"nmi": 1.0, "ari": 1.0, "purity": 1.0, "hungarian_accuracy": 1.0})
    with pytest.raises(ValueError, match=r"features \(60, 8\), labels \(59,\)"):
        kmeans_cluster_scores(jax.random.key(0), x, y[:-1])


def test_package_exports_resolve():
    for name in ev.__all__:
        assert callable(getattr(ev, name)) or name == "DEFAULT_THRESHOLDS"
