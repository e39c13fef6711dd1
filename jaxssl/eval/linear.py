"""Linear probe: softmax regression on frozen features, hyper-parameters chosen on train only.

Protocol: standardise with train statistics; train a bias-ful linear classifier with AdamW
(cosine-decayed learning rate, weight decay on the weights only) for a fixed number of epochs;
pick (learning rate, weight decay) on a held-out slice of the TRAIN set; refit on all train
data with the winner and report test accuracy. The test set never influences a choice.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxssl.eval.knn import topk_accuracy

Params = dict[str, jax.Array]


@functools.partial(jax.jit, static_argnames=("num_classes", "epochs", "batch_size"))
def _fit(x, y, row_weight, key, learning_rate, weight_decay, *, num_classes, epochs,
         batch_size):
    n, d = x.shape
    num_batches = -(-n // batch_size)
    pad = num_batches * batch_size - n
    params = {"w": jnp.zeros((d, num_classes), jnp.float32),
              "b": jnp.zeros((num_classes,), jnp.float32)}
    schedule = optax.cosine_decay_schedule(learning_rate, epochs * num_batches)
    # Weight decay on the weight matrix only: shrinking the bias is not regularisation.
    opt = optax.adamw(schedule, weight_decay=weight_decay,
                      mask={"w": True, "b": False})

    def loss_fn(p, xb, yb, mb):
        logits = xb @ p["w"] + p["b"]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        return jnp.sum(ce * mb) / jnp.maximum(jnp.sum(mb), 1.0)

    def step(carry, batch):
        p, s = carry
        idx, mb = batch
        grads = jax.grad(loss_fn)(p, x[idx], y[idx], mb * row_weight[idx])
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), None

    def epoch(carry, ekey):
        # A fresh shuffle per epoch; the padded tail of the last batch has weight 0.
        perm = jnp.concatenate([jax.random.permutation(ekey, n), jnp.zeros((pad,), jnp.int32)])
        mask = jnp.concatenate([jnp.ones((n,)), jnp.zeros((pad,))])
        batches = (perm.reshape(num_batches, batch_size), mask.reshape(num_batches, batch_size))
        return jax.lax.scan(step, carry, batches)[0], None

    carry = (params, opt.init(params))
    carry, _ = jax.lax.scan(epoch, carry, jax.random.split(key, epochs))
    return carry[0]


def fit_softmax_regression(
    x: np.ndarray,
    y: np.ndarray,
    *,
    num_classes: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    epochs: int = 100,
    batch_size: int | None = None,
    key: jax.Array | None = None,
) -> Params:
    """Trains logistic regression W [D, C], b [C] on (x, y) with AdamW; returns the params.

    ``batch_size=None`` is full-batch training (then ``key`` does not matter, since the
    parameters start at zero); otherwise each epoch shuffles with a key split from ``key``.

    >>> x = np.array([[-1.0], [-2.0], [1.0], [2.0]], np.float32)
    >>> p = fit_softmax_regression(x, np.array([0, 0, 1, 1]), num_classes=2, learning_rate=0.1)
    >>> predict_logits(p, x).argmax(axis=1).tolist()
    [0, 0, 1, 1]
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int32)
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(
            f"x must be a non-empty [N, D] array with labels y [N]; got x {x.shape}, y {y.shape}"
        )
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"labels must lie in [0, num_classes={num_classes}); got [{y.min()}, {y.max()}]"
        )
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; got {epochs}")
    n = x.shape[0]
    row_weight = np.ones(n, np.float32)
    if batch_size is None:
        # Full batch: pad rows (weight 0) to at least 64 and to a multiple of 1/8 of the
        # enclosing power of two (<= 12.5 % waste), so the sweep, the refit and the few-shot
        # sizes reuse a handful of compiled shapes instead of compiling one per size.
        step = max(1, 1 << max(0, (n - 1).bit_length() - 3))
        padded = max(64, -(-n // step) * step)
        x = np.pad(x, ((0, padded - n), (0, 0)))
        y = np.pad(y, (0, padded - n))
        row_weight = np.pad(row_weight, (0, padded - n))
        batch_size = padded
    else:
        batch_size = min(int(batch_size), n)
    key = jax.random.key(0) if key is None else key
    return _fit(jnp.asarray(x), jnp.asarray(y), jnp.asarray(row_weight), key,
                jnp.float32(learning_rate),
                jnp.float32(weight_decay), num_classes=num_classes, epochs=int(epochs),
                batch_size=batch_size)


def predict_logits(params: Params, x: np.ndarray) -> np.ndarray:
    """Logits x @ W + b as a host float32 array [N, C].

    >>> p = {"w": np.eye(2, dtype=np.float32), "b": np.zeros(2, np.float32)}
    >>> predict_logits(p, np.array([[0.0, 3.0]], np.float32)).tolist()
    [[0.0, 3.0]]
    """
    return np.asarray(jnp.asarray(x, jnp.float32) @ params["w"] + params["b"], np.float32)


def standardise(
    train_x: np.ndarray, *others: np.ndarray
) -> tuple[np.ndarray, ...]:
    """(x - mean) / std with the TRAIN mean and std, applied to train_x and every other array.

    Constant features (std 0) are only centred, not divided.

    >>> a, b = standardise(np.array([[0.0], [2.0]]), np.array([[4.0]]))
    >>> a.ravel().tolist(), b.ravel().tolist()
    ([-1.0, 1.0], [3.0])
    """
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return tuple(((x - mean) / std).astype(np.float32) for x in (train_x, *others))


def as_feature_splits(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                      test_y: np.ndarray) -> tuple[np.ndarray, ...]:
    """(train_x, train_y, test_x, test_y) as float32 features [N, D] and int32 labels, after
    checking both feature sets are 2-D with the same D (for the probes of this package).

    >>> as_feature_splits(np.zeros((2, 3)), [0, 1], np.zeros((1, 4)), [0])
    Traceback (most recent call last):
    ...
    ValueError: feature dimension mismatch: train_x (2, 3) vs test_x (1, 4)
    """
    train_x = np.asarray(train_x, np.float32)
    test_x = np.asarray(test_x, np.float32)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"feature dimension mismatch: train_x {train_x.shape} vs test_x {test_x.shape}"
        )
    return train_x, np.asarray(train_y, np.int32), test_x, np.asarray(test_y, np.int32)


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    num_classes: int,
    lrs: Sequence[float] = (1e-3, 1e-2, 1e-1),
    weight_decays: Sequence[float] = (0.0, 1e-4, 1e-2),
    epochs: int = 100,
    batch_size: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """Linear-probe test accuracy with (lr, weight decay) selected on a train hold-out.

    The hold-out is a ``val_fraction`` slice of a seeded permutation of the train set; the
    sweep trains on the rest (standardised with its own statistics) and scores on the slice.
    The best pair (first in sweep order on ties) is refitted on all train data.

    Returns a dict with "top1" and "top5" (test fractions), "best_lr", "best_weight_decay",
    "val_top1" (best hold-out accuracy) and "sweep" (one dict per pair).

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(80, 2)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> r = linear_probe(x[:60], y[:60], x[60:], y[60:], num_classes=2, lrs=(0.1,),
    ...                  weight_decays=(0.0,), epochs=50)
    >>> r["top1"] >= 0.95, r["best_lr"]
    (True, 0.1)
    """
    train_x, train_y, test_x, test_y = as_feature_splits(train_x, train_y, test_x, test_y)
    if test_y.shape != (test_x.shape[0],):
        raise ValueError(f"test_y must be [{test_x.shape[0]}]; got {test_y.shape}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")
    n = train_x.shape[0]
    n_val = int(round(val_fraction * n))
    if n_val < 1 or n_val >= n:
        raise ValueError(
            f"train_x {train_x.shape} too small for a hold-out of fraction {val_fraction}"
        )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    val_idx, fit_idx = perm[:n_val], perm[n_val:]
    fit_x, val_x = standardise(train_x[fit_idx], train_x[val_idx])
    key = jax.random.key(seed)

    sweep = []
    for lr in lrs:
        for wd in weight_decays:
            params = fit_softmax_regression(
                fit_x, train_y[fit_idx], num_classes=num_classes, learning_rate=lr,
                weight_decay=wd, epochs=epochs, batch_size=batch_size, key=key)
            acc = topk_accuracy(predict_logits(params, val_x), train_y[val_idx], 1)
            sweep.append({"lr": float(lr), "weight_decay": float(wd), "val_top1": acc})
    best = max(sweep, key=lambda r: r["val_top1"])  # max keeps the first of equal scores

    all_x, test_std = standardise(train_x, test_x)
    params = fit_softmax_regression(
        all_x, train_y, num_classes=num_classes, learning_rate=best["lr"],
        weight_decay=best["weight_decay"], epochs=epochs, batch_size=batch_size, key=key)
    logits = predict_logits(params, test_std)
    return {
        "top1": topk_accuracy(logits, test_y, 1),
        "top5": topk_accuracy(logits, test_y, 5),
        "best_lr": best["lr"],
        "best_weight_decay": best["weight_decay"],
        "val_top1": best["val_top1"],
        "sweep": sweep,
    }
