"""Few-shot linear evaluation: n labelled images per class, logistic regression, seeded splits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxssl.eval.knn import l2_normalise_rows, topk_accuracy
from jaxssl.eval.linear import as_feature_splits, fit_softmax_regression, predict_logits


def few_shot_indices(
    labels: np.ndarray, shots: int, *, seed: int, split: int = 0
) -> np.ndarray:
    """Indices of exactly ``shots`` distinct examples of every class present in ``labels``.

    Deterministic in (seed, split, shots); grouped by class, in draw order within a class.

    >>> idx = few_shot_indices(np.array([0, 1, 0, 1, 0, 1]), 2, seed=0)
    >>> sorted(np.array([0, 1, 0, 1, 0, 1])[idx].tolist())
    [0, 0, 1, 1]
    """
    labels = np.asarray(labels)
    if shots < 1:
        raise ValueError(f"shots must be >= 1; got {shots}")
    classes, counts = np.unique(labels, return_counts=True)
    too_few = classes[counts < shots]
    if too_few.size:
        raise ValueError(
            f"{shots}-shot split impossible: classes {too_few.tolist()} have only "
            f"{counts[counts < shots].tolist()} examples"
        )
    rng = np.random.default_rng([seed, split, shots])
    picks = [rng.choice(np.flatnonzero(labels == c), size=shots, replace=False)
             for c in classes]
    return np.concatenate(picks)


def few_shot(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    shots: Sequence[int] = (1, 2, 5, 13),
    num_splits: int = 5,
    seed: int = 0,
    num_classes: int | None = None,
    learning_rate: float = 0.1,
    weight_decay: float = 1e-4,
    epochs: int = 300,
) -> dict[str, dict[str, Any]]:
    """Few-shot top-1 accuracy: mean and std over ``num_splits`` seeded splits per shot count.

    Features are L2-normalised; each split trains full-batch logistic regression (AdamW, fixed
    hyper-parameters: with one image per class there is nothing to hold out) on ``shots``
    random train images per class and scores the whole test set. Split s of an n-shot run
    draws its images with ``few_shot_indices(train_y, n, seed=seed, split=s)``.

    Returns {"<n>shot": {"mean": ..., "std": ..., "per_split": [...]}} with accuracies in [0, 1].

    >>> x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    >>> y = np.array([0, 0, 1, 1])
    >>> r = few_shot(x, y, x, y, shots=(1,), num_splits=2, epochs=20)
    >>> r["1shot"]["mean"], r["1shot"]["std"]
    (1.0, 0.0)
    """
    train_x, train_y, test_x, test_y = as_feature_splits(train_x, train_y, test_x, test_y)
    if num_splits < 1:
        raise ValueError(f"num_splits must be >= 1; got {num_splits}")
    if num_classes is None:
        num_classes = int(max(train_y.max(), test_y.max())) + 1
    train_x = l2_normalise_rows(train_x).astype(np.float32)
    test_x = l2_normalise_rows(test_x).astype(np.float32)
    out: dict[str, dict[str, Any]] = {}
    for n in shots:
        accs = []
        for s in range(num_splits):
            idx = few_shot_indices(train_y, n, seed=seed, split=s)
            params = fit_softmax_regression(
                train_x[idx], train_y[idx], num_classes=num_classes,
                learning_rate=learning_rate, weight_decay=weight_decay, epochs=epochs,
                key=jax.random.fold_in(jax.random.key(seed), s))
            accs.append(topk_accuracy(predict_logits(params, test_x), test_y, 1))
        out[f"{n}shot"] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)),
                           "per_split": accs}
    return out
