"""Method names used by configs, and their classes."""

from __future__ import annotations

import ml_collections

from jaxssl.methods.base import Method
from jaxssl.methods.carp import CARP
from jaxssl.methods.dino import DINO
from jaxssl.methods.excb import ExCB
from jaxssl.methods.msn import MSN

# "ibot" is DINO with iBOT's masked patch loss; "msn" covers PMSN through loss.prior.
METHODS: dict[str, type[Method]] = {"dino": DINO, "ibot": DINO, "carp": CARP, "excb": ExCB,
                                    "msn": MSN}
METHOD_NAMES = tuple(METHODS)


def method_class(name: str) -> type[Method]:
    """The class of the method ``name`` (its class-level hooks need no built model).

    >>> method_class("ibot").__name__
    'DINO'
    """
    if name not in METHODS:
        raise ValueError(f"config.method must be one of {METHOD_NAMES}, got {name!r}.")
    return METHODS[name]


def build_method(config: ml_collections.ConfigDict) -> Method:
    """The method named by ``config.method``, built from ``config``."""
    return method_class(config.method)(config)
