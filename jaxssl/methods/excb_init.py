"""ExCB centroid initialisation: spherical k-means on teacher projections of a random data sample.

The released ExCB recipe: 500,000 teacher projections of randomly drawn training images,
k-means initialised from random data points, 50 iterations, restarted until no cluster is empty.
Here (``kmeans_init_centroids``):

1. ``kmeans_sample_size``: n = min(``loss.kmeans_samples``, training images), rounded down to a
   multiple of the device count; fewer than K = ``head.num_prototypes`` is an error, raised
   before any image is read or anything compiled.
2. ``sample_projections``: a seeded uniform sample of the training split (``config.seed``; no
   labels: the initialisation is unsupervised) streamed through the grain eval pipeline
   (un-augmented centre crops at the global-crop size) and projected batch by batch by the
   teacher (BatchNorm on batch statistics, no stochastic depth, as in the train step); each
   process reads the images of its own devices, and only the projections [n, D] are kept
   (0.5 GB at n = 500,000, D = 256), as a global array sharded over the mesh's data axis. The
   result does not depend on the number of processes.
3. ``jaxssl.ops.kmeans.spherical_kmeans`` on that array, every device computing its part:
   random-from-data init for large K, ``loss.kmeans_iters`` iterations, up to ``MAX_RESTARTS``
   restarts until no cluster is empty.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxssl.data.augment import normalize_images
from jaxssl.data.config import DataConfig
from jaxssl.data.delivery import to_global_batch
from jaxssl.data.pipeline import make_eval_iterator
from jaxssl.data.subset import SubsetSource, random_subset
from jaxssl.ops.kmeans import spherical_kmeans

MAX_RESTARTS = 10


def _data_axis(mesh: jax.sharding.Mesh) -> str:
    """The name of the trainer's 1-D data mesh's only axis (the batch is sharded over it)."""
    if len(mesh.axis_names) != 1:
        raise ValueError(f"the ExCB k-means expects a 1-D data mesh, got axes {mesh.axis_names}")
    return mesh.axis_names[0]


def kmeans_sample_size(requested: int, k: int, dataset_size: int, num_devices: int, *,
                       dataset: str = "the dataset") -> int:
    """Samples the k-means uses: ``min(requested, dataset_size)`` rounded down to a multiple
    of ``num_devices`` (each device holds an equal share); raises if that is below ``k``.

    >>> kmeans_sample_size(500_000, 65536, 1_281_167, 8), kmeans_sample_size(500_000, 65536,
    ...                                                                      1_281_167, 64)
    (500000, 499968)
    >>> kmeans_sample_size(1000, 16, 203, 8)
    200
    >>> kmeans_sample_size(1000, 512, 300, 8, dataset="folder:/d")
    Traceback (most recent call last):
    ...
    ValueError: config.loss.kmeans_samples=1000: k-means needs at least one sample per cluster, \
K = config.head.num_prototypes = 512, but the training split of 'folder:/d' has only 300 images \
(296 usable on 8 devices); use a larger dataset or fewer prototypes.
    """
    n = min(int(requested), int(dataset_size))
    n -= n % num_devices
    if n < k:
        where = (f"the training split of {dataset!r} has only {dataset_size} images "
                 f"({n} usable on {num_devices} devices)" if dataset_size < requested else
                 f"{n} samples are usable on {num_devices} devices")
        fix = ("use a larger dataset or fewer prototypes" if dataset_size < k else
               f"raise loss.kmeans_samples to at least {k}")
        raise ValueError(
            f"config.loss.kmeans_samples={requested}: k-means needs at least one sample per "
            f"cluster, K = config.head.num_prototypes = {k}, but {where}; {fix}.")
    return n


def _process_rows(x: jax.Array) -> np.ndarray:
    """This process's rows of a global array sharded over its leading axis, in row order."""
    if x.is_fully_addressable:
        return np.asarray(x)
    shards = {s.index[0].start or 0: s for s in x.addressable_shards}  # dedupe replicas
    return np.concatenate([np.asarray(shards[start].data) for start in sorted(shards)])


def sample_projections(method, state: Any, config: ml_collections.ConfigDict,
                       mesh: jax.sharding.Mesh, indices: np.ndarray) -> jax.Array:
    """Teacher projections [n, D] (float32) of the training images ``indices``, row ``i`` the
    projection of image ``indices[i]``, sharded over ``mesh``'s data axis; the images are read,
    projected and dropped batch by batch.

    With S devices (n a multiple of S), device slot ``j`` of the result holds the rows
    ``j * n / S ...``; each process reads only the images of its own devices' slots. The global
    batches that the teacher's BatchNorm normalises together take ``c`` consecutive images
    from every slot (``c = train.batch_size * global_crops.num / S``, the number of images the
    train step's teacher normalises over; the last batch takes the rest), so they do not depend
    on the number of processes, and neither does the result.
    """
    axis = _data_axis(mesh)
    indices = np.asarray(indices)
    n, shards = len(indices), mesh.shape[axis]
    if n % shards:
        raise ValueError(f"{n} samples are not a multiple of the {shards} devices of the mesh")
    per_slot = n // shards
    per_step = max(1, config.train.batch_size * config.data.global_crops.num // shards)
    # The slots of this process's devices, in the row order make_array_from_process_local_data
    # and to_global_batch give them.
    # (A one-device mesh maps its device to slice(None): start None means row 0.)
    slots = sorted({(sl[0].start or 0) // per_slot for sl in NamedSharding(
        mesh, PartitionSpec(axis)).addressable_devices_indices_map((n,)).values()})
    steps = [(s, min(per_step, per_slot - s)) for s in range(0, per_slot, per_step)]
    reads = np.concatenate([indices[j * per_slot + s:j * per_slot + s + rows]
                            for s, rows in steps for j in slots])
    data = DataConfig.from_config(config.data)
    source = data.source("train")
    # Batches of len(slots) * per_step images: every step but the last is full, and the last
    # holds len(slots) * rows, so the iterator's batches are exactly the steps.
    it = make_eval_iterator(data.spec, "train",
                            image_size=config.data.global_crops.size,
                            batch_size=len(slots) * per_step,
                            num_threads=config.data.num_threads,
                            interpolation=data.interpolation,
                            source=SubsetSource(source, reads))
    mean, std = tuple(config.augment.mean), tuple(config.augment.std)

    # The teacher runs with batch statistics inside the train step, so the k-means sees the
    # projections the same way: at initialisation BN's running statistics are still (0, 1), and
    # eval-mode projections sit in a much narrower cone (mean pairwise cosine 0.74 vs 0.42 for
    # the Fashion-MNIST quick start), which put the centroids where no training projection lies.
    @jax.jit
    def project(params, batch_stats, images):
        out = method.project(params, batch_stats, normalize_images(images, mean, std),
                             train=True)
        return jax.lax.with_sharding_constraint(out.astype(jnp.float32),
                                                NamedSharding(mesh, PartitionSpec(axis)))

    out = None
    for (s, rows), b in zip(steps, it):
        # The iterator pads only the last batch; dropping the padding keeps BN statistics to
        # real images.
        images = np.asarray(b["image"])[np.asarray(b["valid"], bool)]
        proj = _process_rows(project(state.teacher_params, state.teacher_batch_stats,
                                     to_global_batch(images, mesh)))
        if out is None:
            out = np.empty((len(slots), per_slot, proj.shape[1]), np.float32)
        out[:, s:s + rows] = proj.reshape(len(slots), rows, -1)
    sharding = NamedSharding(mesh, PartitionSpec(axis, None))
    return jax.make_array_from_process_local_data(sharding, out.reshape(-1, out.shape[-1]))


def kmeans_init_centroids(method, state: Any, config: ml_collections.ConfigDict,
                          key: jax.Array, *, mesh: jax.sharding.Mesh,
                          max_restarts: int = MAX_RESTARTS) -> Any:
    """Replaces student and teacher centroids by spherical k-means centroids of teacher
    projections of a random training sample (see the module docstring), restarting with a new
    key until no cluster is empty; raises ValueError if ``max_restarts`` restarts do not.
    ``state`` is the train state (``params``, ``teacher_params``, ``teacher_batch_stats`` and
    ``replace``); ``mesh`` the trainer's 1-D data mesh.
    """
    k, requested = int(config.head.num_prototypes), int(config.loss.kmeans_samples)
    spec = config.data.dataset
    size = len(DataConfig.from_config(config.data).source("train"))
    devices = mesh.shape[_data_axis(mesh)]
    n = kmeans_sample_size(requested, k, size, devices, dataset=spec)
    if jax.process_index() == 0 and size < requested:
        print(f"ExCB k-means: {spec!r} has {size} training images, fewer than "
              f"loss.kmeans_samples={requested}; using {n} (all of them, to a multiple of the "
              f"{devices} devices).")
    t0 = time.perf_counter()
    feats = sample_projections(method, state, config, mesh,
                               random_subset(size, n, seed=int(config.seed)))
    t1 = time.perf_counter()
    centroids, _ = spherical_kmeans(key, feats, k, num_iters=int(config.loss.kmeans_iters),
                                    max_restarts=max_restarts, mesh=mesh)
    if jax.process_index() == 0:
        print(f"ExCB k-means: K = {k} centroids from {n} teacher projections, "
              f"{config.loss.kmeans_iters} iterations; projecting {t1 - t0:.1f} s, k-means "
              f"{time.perf_counter() - t1:.1f} s.")

    def put(params):
        params = jax.tree.map(lambda x: x, params)  # shallow structural copy
        old = params["centroids"]["prototypes"]["kernel"]
        # A fresh buffer per tree: student and teacher must not alias (the step donates both).
        params["centroids"]["prototypes"]["kernel"] = jax.device_put(
            centroids.astype(old.dtype), old.sharding, may_alias=False)
        return params

    return state.replace(params=put(state.params), teacher_params=put(state.teacher_params))
