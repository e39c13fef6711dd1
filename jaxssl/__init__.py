"""jaxssl: prototype / clustering self-supervised pretraining in JAX.

The public, stable surface is :mod:`jaxssl.losses`; models, data, methods, training and evaluation
live in their own sub-packages and are imported explicitly.
"""

__version__ = "0.1.0"
