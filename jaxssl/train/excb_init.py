"""ExCB centroid initialisation: spherical k-means on teacher projections of a data sample."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl.train.state import TrainState


def sample_images(config: ml_collections.ConfigDict, n: int) -> np.ndarray:
    """The first ``n`` training images at the global-crop size (un-augmented, deterministic)."""
    from jaxssl.data.pipeline import make_eval_iterator

    it = make_eval_iterator(config.data.dataset, "train", image_size=config.data.global_crops.size,
                            batch_size=min(n, 512), data_dir=config.data.data_dir)
    out, have = [], 0
    for batch in it:
        imgs = np.asarray(batch["image"])[np.asarray(batch["valid"], bool)]
        out.append(imgs)
        have += len(imgs)
        if have >= n:
            break
    return np.concatenate(out)[:n]


def kmeans_init_centroids(method, state: TrainState, config: ml_collections.ConfigDict,
                          key: jax.Array, *, max_restarts: int = 10) -> TrainState:
    """Replaces student and teacher centroids by spherical k-means centroids of teacher
    projections, restarting with a new key until no cluster is empty (METHODS.md section 3)."""
    from jaxssl.data.augment import normalize_images
    from jaxssl.eval.kmeans import spherical_kmeans

    k = config.head.num_prototypes
    n = max(int(config.loss.kmeans_samples), k)
    images = sample_images(config, n)
    # The teacher runs with batch statistics inside the train step, so the k-means sees the
    # projections the same way: at initialisation BN's running statistics are still (0, 1), and
    # eval-mode projections sit in a much narrower cone (mean pairwise cosine 0.74 vs 0.42 for
    # the Fashion-MNIST quick start), which put the centroids where no training projection lies.
    project = jax.jit(lambda p, bs, x: method.project(
        p, bs, normalize_images(x, tuple(config.augment.mean), tuple(config.augment.std)),
        train=True))
    feats = np.concatenate([
        np.asarray(project(state.teacher_params, state.teacher_batch_stats, images[i:i + 512]))
        for i in range(0, len(images), 512)])
    # Restarts with fresh keys until no cluster is empty; raises ValueError if none succeeds.
    centroids, _ = spherical_kmeans(key, jnp.asarray(feats), k,
                                    num_iters=int(config.loss.kmeans_iters),
                                    max_restarts=max_restarts)

    def put(params):
        params = jax.tree.map(lambda x: x, params)  # shallow structural copy
        old = params["centroids"]["prototypes"]["kernel"]
        # A fresh buffer per tree: student and teacher must not alias (the step donates both).
        params["centroids"]["prototypes"]["kernel"] = jnp.array(np.asarray(centroids), old.dtype)
        return params

    return state.replace(params=put(state.params), teacher_params=put(state.teacher_params))
