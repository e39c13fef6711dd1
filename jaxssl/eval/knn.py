"""Weighted k-nearest-neighbour classification on frozen features (the DINO protocol).

Each query votes with its k most cosine-similar training features; neighbour j adds
exp(sim_j / T) to the score of its label (Wu et al. 2018, as used by DINO: k = 20, T = 0.07).
The work is blockwise over query rows so only a [block, N_train] similarity slab is alive at a
time (4 * block * N_train bytes: ImageNet's 1.28M bank at block 256 is 1.3 GB); with a mesh the
training bank is split over the mesh's "data" axis, each device keeps its own top-k of its
[block, N_train / devices] slab, and a global top-k runs over the gathered candidates.
Similarities use float32 HIGHEST precision so that neighbour ranks do not depend on TF32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

_NEG = -3.0  # below any cosine similarity: marks padded bank rows so they never win top-k


def l2_normalise_rows(x: np.ndarray) -> np.ndarray:
    """Host-side ``x / max(|x|, 1e-12)`` per row, in ``x``'s dtype (float64 stays float64).

    The evaluation's one numpy L2 normalisation (k-NN, few-shot, prototype distances); the
    traced, float32 one is ``jaxssl.ops.normalize.l2_normalize``. A zero row stays zero
    (similarity 0 to everything) instead of becoming NaN.

    >>> l2_normalise_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _top_k_votes(sims, sim_labels, *, k, num_classes, temperature):
    """Weighted votes [b, C] from the k largest entries of each row of ``sims`` [b, n].

    ``sim_labels`` holds the label of each entry: [n] shared by all rows, or [b, n] per row.
    """
    vals, idx = jax.lax.top_k(sims, k)
    if sim_labels.ndim == 1:
        labels = jnp.take(sim_labels, idx)
    else:
        labels = jnp.take_along_axis(sim_labels, idx, axis=1)
    weights = jnp.exp(vals / temperature)  # DINO's kNN weight exp(sim / T)
    weights = jnp.where(vals > _NEG, weights, 0.0)
    one_hot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    return jnp.einsum("bk,bkc->bc", weights, one_hot)


@functools.partial(jax.jit, static_argnames=("k", "num_classes", "temperature"))
def _block_votes(query, bank, bank_labels, bank_valid, *, k, num_classes, temperature):
    sims = jnp.matmul(query, bank.T, precision=jax.lax.Precision.HIGHEST)
    sims = jnp.where(bank_valid[None, :], sims, _NEG)
    return _top_k_votes(sims, bank_labels, k=k, num_classes=num_classes, temperature=temperature)


@functools.lru_cache(maxsize=16)
def _sharded_block_votes(mesh: Mesh, k: int, num_classes: int, temperature: float):
    """Block function with the bank split over "data": local top-k, gather, global top-k."""

    def local(query, bank, bank_labels, bank_valid):
        sims = jnp.matmul(query, bank.T, precision=jax.lax.Precision.HIGHEST)
        sims = jnp.where(bank_valid[None, :], sims, _NEG)
        k_local = min(k, bank.shape[0])
        vals, idx = jax.lax.top_k(sims, k_local)
        labels = jnp.take(bank_labels, idx)
        # The global k nearest are among the union of every shard's k nearest.
        vals = jax.lax.all_gather(vals, "data", axis=1, tiled=True)
        labels = jax.lax.all_gather(labels, "data", axis=1, tiled=True)
        return _top_k_votes(vals, labels, k=k, num_classes=num_classes, temperature=temperature)

    fn = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec("data"), PartitionSpec("data"),
                  PartitionSpec("data")),
        out_specs=PartitionSpec(),
        check_vma=False,
    )
    return jax.jit(fn)


def _check_inputs(train_features, train_labels, query_features, k, num_classes):
    if train_features.ndim != 2 or query_features.ndim != 2:
        raise ValueError(
            f"features must be 2-D [N, D]; got train_features {train_features.shape}, "
            f"test_features {query_features.shape}"
        )
    if train_features.shape[1] != query_features.shape[1]:
        raise ValueError(
            f"feature dimension mismatch: train_features {train_features.shape} vs "
            f"test_features {query_features.shape}"
        )
    if train_labels.shape != (train_features.shape[0],):
        raise ValueError(
            f"train_labels must have shape [{train_features.shape[0]}] to match train_features "
            f"{train_features.shape}; got {train_labels.shape}"
        )
    if train_features.shape[0] == 0 or query_features.shape[0] == 0:
        raise ValueError(
            f"k-NN needs non-empty banks; got train_features {train_features.shape}, "
            f"test_features {query_features.shape}"
        )
    if not 1 <= k <= train_features.shape[0]:
        raise ValueError(f"k must be in [1, {train_features.shape[0]}] (train size); got {k}")
    if train_labels.min() < 0 or train_labels.max() >= num_classes:
        raise ValueError(
            f"train_labels must lie in [0, num_classes={num_classes}); got range "
            f"[{train_labels.min()}, {train_labels.max()}]"
        )


def knn_votes(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    query_features: np.ndarray,
    *,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    block_size: int = 256,
    mesh: Mesh | None = None,
) -> np.ndarray:
    """Class scores [M, num_classes] of each query: sum over its k nearest of exp(sim / T).

    Features are L2-normalised first, so sim is the cosine similarity. With ``mesh`` the train
    bank is sharded over its "data" axis (padded to a multiple of that axis).

    >>> bank = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    >>> v = knn_votes(bank, np.array([0, 1]), np.array([[1.0, 0.0]], np.float32),
    ...               num_classes=2, k=2, temperature=1.0)
    >>> print(np.round(v, 4))  # e^1 for class 0 (sim 1), e^0 for class 1 (sim 0)
    [[2.7183 1.    ]]
    """
    train_features = np.asarray(train_features, np.float32)
    query_features = np.asarray(query_features, np.float32)
    train_labels = np.asarray(train_labels, np.int32)
    _check_inputs(train_features, train_labels, query_features, k, num_classes)
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}")

    bank = l2_normalise_rows(train_features)
    query = l2_normalise_rows(query_features)
    n = bank.shape[0]
    valid = np.ones(n, bool)
    if mesh is None:
        bank_dev, labels_dev, valid_dev = jnp.asarray(bank), jnp.asarray(train_labels), valid
        block_fn = functools.partial(
            _block_votes, k=k, num_classes=num_classes, temperature=float(temperature)
        )
    else:
        if "data" not in mesh.axis_names:
            raise ValueError(f"mesh must have a 'data' axis; got axis names {mesh.axis_names}")
        pad = (-n) % mesh.shape["data"]
        bank = np.pad(bank, ((0, pad), (0, 0)))
        train_labels = np.pad(train_labels, (0, pad))
        valid = np.pad(valid, (0, pad))
        rows = NamedSharding(mesh, PartitionSpec("data"))
        bank_dev = jax.device_put(bank, NamedSharding(mesh, PartitionSpec("data", None)))
        labels_dev = jax.device_put(train_labels, rows)
        valid_dev = jax.device_put(valid, rows)
        block_fn = _sharded_block_votes(mesh, k, num_classes, float(temperature))
    valid_dev = jnp.asarray(valid_dev)

    m = query.shape[0]
    block = min(block_size, m)
    out = []
    for start in range(0, m, block):
        q = query[start:start + block]
        rows_here = q.shape[0]
        if rows_here < block:  # Pad the last block so every call has one compiled shape.
            q = np.pad(q, ((0, block - rows_here), (0, 0)))
        votes = block_fn(jnp.asarray(q), bank_dev, labels_dev, valid_dev)
        out.append(np.asarray(jax.device_get(votes))[:rows_here])
    return np.concatenate(out)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores (ties: lower class first).

    >>> print(topk_accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1]), 1))
    0.5
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(
            f"scores must be [M, C] and labels [M]; got scores {scores.shape}, "
            f"labels {labels.shape}"
        )
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(order == labels[:, None], axis=1)))


def knn_classify(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    block_size: int = 256,
    mesh: Mesh | None = None,
) -> dict[str, float]:
    """Weighted k-NN top-1 / top-5 accuracy (fractions in [0, 1]) of test on the train bank.

    >>> rng = np.random.default_rng(0)
    >>> centres = 10.0 * np.eye(3, dtype=np.float32)
    >>> y = np.repeat(np.arange(3), 10)
    >>> x = centres[y] + rng.normal(size=(30, 3)).astype(np.float32)
    >>> r = knn_classify(x[::2], y[::2], x[1::2], y[1::2], num_classes=3, k=5)
    >>> print(r["top1"], r["top5"])
    1.0 1.0
    """
    test_labels = np.asarray(test_labels)
    test_features = np.asarray(test_features)
    if test_features.ndim != 2 or test_labels.shape != (test_features.shape[0],):
        raise ValueError(
            f"test_labels must have shape [M] matching test_features [M, D]; got "
            f"test_features {test_features.shape}, test_labels {test_labels.shape}"
        )
    votes = knn_votes(
        train_features, train_labels, test_features, num_classes=num_classes, k=k,
        temperature=temperature, block_size=block_size, mesh=mesh,
    )
    return {"top1": topk_accuracy(votes, test_labels, 1),
            "top5": topk_accuracy(votes, test_labels, 5)}
