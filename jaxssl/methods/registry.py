"""Method names used by configs, and their classes."""

from __future__ import annotations

import ml_collections

from jaxssl.methods.base import Method

METHOD_NAMES = ("dino", "ibot", "carp", "excb", "msn")


def build_method(config: ml_collections.ConfigDict) -> Method:
    """The method named by ``config.method`` (``msn`` covers PMSN through ``loss.prior``)."""
    name = config.method
    if name in ("dino", "ibot"):
        from jaxssl.methods.dino import DINO as cls
    elif name == "carp":
        from jaxssl.methods.carp import CARP as cls
    elif name == "excb":
        from jaxssl.methods.excb import ExCB as cls
    elif name == "msn":
        from jaxssl.methods.msn import MSN as cls
    else:
        raise ValueError(f"config.method must be one of {METHOD_NAMES}, got {name!r}.")
    return cls(config)
