"""Prototype matrices: the weight-normalised layer and the free matrix used by MSN.

Every head that owns prototypes keeps them in a submodule named ``"prototypes"`` whose ``[K, D]``
parameter is called ``"kernel"`` (rows are prototypes). The trainer relies on that fixed path to
freeze the last layer during the first epoch (an optax mask on the path name ``"prototypes"``),
to add the KoLeo-proto regulariser, and to overwrite the ExCB centroids with spherical k-means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxssl.ops.normalize import l2_normalize as ops_l2_normalize

# Squared-norm floor of a row before it is inverted: keeps all-zero rows (and their gradients)
# finite instead of 0/0. Rows with a norm below 1e-6 are scaled by 1e6 instead of normalised.
_NORM_EPS = 1e-12

PROTOTYPES_NAME = "prototypes"
KERNEL_NAME = "kernel"


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    """Divides ``x`` by its L2 norm along ``axis`` in float32; all-zero vectors stay zero.

    :func:`jaxssl.ops.normalize.l2_normalize` with the norm floor ``sqrt(_NORM_EPS)``.

    >>> import jax.numpy as jnp
    >>> l2_normalize(jnp.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.0, 0.0]]
    """
    return ops_l2_normalize(x, axis, eps=_NORM_EPS ** 0.5)


def torch_linear_init(fan_in_axis: int = -1) -> nn.initializers.Initializer:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the default init of a PyTorch ``nn.Linear`` weight.

    The prototype layers of DINO and CARP keep PyTorch's default initialisation of their last
    linear layer (it is wrapped in weight normalisation), so jaxssl reproduces it.
    """

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        bound = 1.0 / jnp.sqrt(shape[fan_in_axis])
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class WeightNormPrototypes(nn.Module):
    """Bias-free weight-normalised linear layer: logit_k = g_k <w_k / |w_k|, z>.

    With ``learn_gain=False`` the gain g is fixed at 1 (DINO's ``norm_last_layer=True``), so a logit
    is the cosine between ``z`` and prototype k times ``|z|``. With ``learn_gain=True`` a
    per-prototype gain parameter ``"gain"`` [K] (init 1) is learned, like
    ``torch.nn.utils.weight_norm``.
    Parameters: ``kernel`` [K, D] (rows = prototypes) and optionally ``gain`` [K].
    Logits are computed and returned in float32 because they feed a softmax.

    Attributes:
      num_prototypes: K.
      learn_gain: learn the per-prototype gain instead of fixing it at 1.
      stop_gradient_kernel: default for the call argument of the same meaning.
      param_dtype: dtype of the stored parameters.

    >>> import jax.numpy as jnp
    >>> layer = WeightNormPrototypes(num_prototypes=3)
    >>> kernel = jnp.array([[2.0, 0.0], [0.0, -0.5], [0.0, 0.0]])  # a zero row is allowed
    >>> layer.apply({"params": {"kernel": kernel}}, jnp.array([[3.0, 4.0]])).tolist()
    [[3.0, -4.0, 0.0]]
    """

    num_prototypes: int
    learn_gain: bool = False
    param_dtype: Any = jnp.float32
    kernel_init: nn.initializers.Initializer = torch_linear_init(fan_in_axis=1)

    @nn.compact
    def __call__(self, z: jax.Array, *, stop_gradient_kernel: bool = False) -> jax.Array:
        """Returns float32 logits [..., K] for features ``z`` [..., D].

        ``stop_gradient_kernel`` treats the prototype matrix (and gain) as constants for this call
        only; ``z`` still receives gradient.
        """
        dim = z.shape[-1]
        kernel = self.param(
            KERNEL_NAME, self.kernel_init, (self.num_prototypes, dim), self.param_dtype
        )
        w = l2_normalize(kernel, axis=-1)  # rows w_k / |w_k|, in float32
        if self.learn_gain:
            gain = self.param(
                "gain", nn.initializers.ones, (self.num_prototypes,), self.param_dtype
            )
            w = w * gain.astype(jnp.float32)[:, None]
        if stop_gradient_kernel:
            w = jax.lax.stop_gradient(w)
        return jnp.einsum(
            "...d,kd->...k", z.astype(jnp.float32), w, precision=jax.lax.Precision.HIGHEST
        )


class PrototypeMatrix(nn.Module):
    """A free [K, D] prototype matrix (MSN): calling it returns the raw parameter ``kernel``.

    MSN normalises the prototypes inside its loss, so no normalisation happens here. The
    initialisation is U(-1/sqrt(D), 1/sqrt(D)) as in the MSN reference set-up.

    >>> import jax
    >>> m = PrototypeMatrix(num_prototypes=4, features=2)
    >>> jax.eval_shape(m.init, jax.random.key(0))["params"]["kernel"].shape
    (4, 2)
    """

    num_prototypes: int
    features: int
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self) -> jax.Array:
        return self.param(
            KERNEL_NAME,
            torch_linear_init(fan_in_axis=1),
            (self.num_prototypes, self.features),
            self.param_dtype,
        )


def get_prototypes(head_params: Mapping[str, Any]) -> jax.Array:
    """Returns the raw prototype matrix [K, D] stored at ``prototypes/kernel`` of any jaxssl head.

    Accepts the head's parameter tree with or without the outer ``{"params": ...}`` collection
    level (the output of ``head.init`` or its ``["params"]`` entry).

    >>> import jax, jax.numpy as jnp
    >>> from jaxssl.models.heads import DINOHead
    >>> head = DINOHead(num_prototypes=5, hidden_dim=8, bottleneck_dim=4)
    >>> variables = jax.eval_shape(head.init, jax.random.key(0), jnp.ones((2, 6)))
    >>> get_prototypes(variables).shape
    (5, 4)
    """
    tree = head_params
    if "params" in tree and PROTOTYPES_NAME not in tree:
        tree = tree["params"]
    if PROTOTYPES_NAME not in tree or KERNEL_NAME not in tree[PROTOTYPES_NAME]:
        raise ValueError(
            "get_prototypes: head_params has no 'prototypes/kernel' entry; top-level keys are "
            f"{sorted(tree)}"
        )
    return tree[PROTOTYPES_NAME][KERNEL_NAME]
