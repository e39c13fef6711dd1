"""The cluster prior of MSN / PMSN from the config: by name, or from a user's ``.npy`` file.

``config.loss.prior`` is ``"uniform"`` (MSN), ``"power_law"`` (PMSN, exponent
``config.loss.prior_exponent``) or a path to a ``.npy`` file holding K = ``head.num_prototypes``
non-negative weights, e.g. a class-frequency histogram, so PMSN can match any prior without
Python. The file is read when the method is built (once per run, in every process: put it on
storage all hosts see), checked, and normalised to sum to 1; ``validate_config`` runs the same
checks before anything is compiled.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl.losses.msn import power_law_prior, uniform_prior

PRIOR_NAMES = ("uniform", "power_law")
FIELD = "config.loss.prior"


def is_prior_file(prior: str) -> bool:
    """Whether ``loss.prior`` names a file rather than a built-in prior.

    >>> is_prior_file("power_law"), is_prior_file("/data/inat_class_freq.npy")
    (False, True)
    """
    return str(prior).endswith(".npy")


def _fail(path: str, problem: str) -> None:
    raise ValueError(f"{FIELD}: prior file {path!r} {problem}")


def load_prior_file(path: str, num_prototypes: int) -> np.ndarray:
    """Reads a ``.npy`` prior of ``num_prototypes`` weights and returns it normalised (float64).

    Raises ``ValueError`` naming ``config.loss.prior`` and the file when it is missing or
    unreadable, not 1-D, not of length K, not real numbers, not finite, negative anywhere, or sums
    to 0. Zero weights are allowed (the prior-matching loss treats 0 log 0 as 0).

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "freq.npy")
    >>> np.save(path, np.array([6.0, 3.0, 1.0]))
    >>> load_prior_file(path, 3).tolist()
    [0.6, 0.3, 0.1]
    >>> load_prior_file(path, 4)
    Traceback (most recent call last):
    ...
    ValueError: config.loss.prior: prior file '...freq.npy' has 3 weights; config.head...is 4.
    """
    if not os.path.isfile(path):
        _fail(path, "does not exist (a path ending in .npy names a file of K prior weights).")
    try:
        weights = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        _fail(path, f"cannot be read as a .npy array: {e}")
    if weights.ndim != 1:
        _fail(path, f"must hold a 1-D array of K weights, got shape {weights.shape}.")
    if weights.shape[0] != num_prototypes:
        _fail(path, f"has {weights.shape[0]} weights; config.head.num_prototypes is "
              f"{num_prototypes}.")
    if not (np.issubdtype(weights.dtype, np.integer) or np.issubdtype(weights.dtype, np.floating)):
        _fail(path, f"must hold real numbers, got dtype {weights.dtype}.")
    weights = weights.astype(np.float64)
    if not np.all(np.isfinite(weights)):
        _fail(path, f"has {int(np.sum(~np.isfinite(weights)))} non-finite weight(s) (NaN/Inf), "
              f"first at index {int(np.argmin(np.isfinite(weights)))}.")
    if np.any(weights < 0):
        _fail(path, f"has negative weights (minimum {float(weights.min()):g} at index "
              f"{int(np.argmin(weights))}); weights must be >= 0.")
    total = weights.sum()
    if not total > 0:
        _fail(path, "sums to 0; at least one weight must be positive.")
    return weights / total


def make_prior(config: ml_collections.ConfigDict) -> jax.Array:
    """The ``[K]`` float32 prior named by ``config.loss.prior``, summing to 1.

    >>> from jaxssl.train.recipes import tiny
    >>> c = tiny("msn"); c.head.num_prototypes = 4
    >>> make_prior(c).tolist()
    [0.25, 0.25, 0.25, 0.25]
    """
    k = int(config.head.num_prototypes)
    prior = config.loss.prior
    if prior == "uniform":
        return uniform_prior(k)
    if prior == "power_law":
        return power_law_prior(k, exponent=config.loss.prior_exponent)
    if is_prior_file(prior):
        return jnp.asarray(load_prior_file(prior, k), jnp.float32)
    raise ValueError(f"{FIELD}: must be one of {PRIOR_NAMES} or a path to a .npy file of K "
                     f"weights, got {prior!r}.")
