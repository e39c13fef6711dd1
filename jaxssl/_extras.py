"""The ``[train]`` extra: one clear line when a layer above the losses is imported without it.

``pip install jaxssl`` installs only what :mod:`jaxssl.losses` needs (jax, numpy, scipy). The
models, data, methods, train, eval and export layers need the ``[train]`` extra; each of their
``__init__`` calls :func:`require_train_extra` first, so a missing package gives one line,
``jaxssl.train needs the [train] extra (missing: flax, optax): pip install "jaxssl[train]"``,
instead of a ``ModuleNotFoundError`` from deep inside a sub-module. Only
``importlib.util.find_spec`` is used: nothing is imported here.
"""

from __future__ import annotations

import importlib.util

# Import name -> distribution name of every requirement of the [train] extra in pyproject.toml
# (tests/test_packaging.py checks that the two lists agree).
TRAIN_MODULES = {
    "absl": "absl-py",
    "array_record": "array-record",
    "chex": "chex",
    "flax": "flax",
    "grain": "grain",
    "matplotlib": "matplotlib",
    "ml_collections": "ml-collections",
    "optax": "optax",
    "orbax": "orbax-checkpoint",
    "PIL": "pillow",
    "tensorboardX": "tensorboardX",
    "tensorflow_datasets": "tensorflow-datasets",
    "tqdm": "tqdm",
}

INSTALL_HINT = 'pip install "jaxssl[train]"'


def missing_train_modules() -> list[str]:
    """Import names of the [train] extra that cannot be found, sorted.

    >>> isinstance(missing_train_modules(), list)
    True
    """
    return sorted(name for name in TRAIN_MODULES if importlib.util.find_spec(name) is None)


def require_train_extra(layer: str) -> None:
    """Raises a one-line ImportError naming ``layer``, the missing packages and the install line.

    Args:
      layer: the importing package, e.g. ``"jaxssl.train"``.

    >>> require_train_extra("jaxssl.train")  # the [train] extra is installed here: no error
    """
    missing = missing_train_modules()
    if missing:
        raise ImportError(f"{layer} needs the [train] extra (missing: {', '.join(missing)}): "
                          f"{INSTALL_HINT}")
