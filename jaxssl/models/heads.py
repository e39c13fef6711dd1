"""SSL projection heads: DINO/iBOT, CARP, ExCB (projector, predictor, centroids) and MSN.

Layout rules shared by every head:
- prototypes (or ExCB centroids) live at ``params["prototypes"]["kernel"]`` with shape [K, D]
  (see :mod:`jaxssl.models.prototypes`); :func:`jaxssl.models.get_prototypes` reads them;
- hidden linear layers are ``"mlp_0"``, ``"mlp_1"``, ... and their batch norms ``"bn_0"``, ...;
- ``dtype`` is the compute dtype of the linear layers, ``param_dtype`` the storage dtype; batch
  norms, L2 normalisation and every output that faces a softmax (logits, similarities, the MSN
  projection) are float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxssl.models.prototypes import (
    PROTOTYPES_NAME,
    PrototypeMatrix,
    WeightNormPrototypes,
    l2_normalize,
)

# DINO / iBOT / timm initialise head linear layers with a truncated normal of std 0.02, bias 0.
_TRUNC_NORMAL = nn.initializers.truncated_normal(stddev=0.02)


def _gelu(x: jax.Array) -> jax.Array:
    # Exact (erf) GELU, as torch.nn.GELU's default, not the tanh approximation.
    return nn.gelu(x, approximate=False)


class MLP(nn.Module):
    """Linear layers ``in -> hidden_dims... -> out_dim`` with optional BN and an activation.

    Each hidden layer is Dense -> [BatchNorm] -> activation; the last layer is a bare Dense. BN
    uses batch statistics when ``train`` (mutable ``batch_stats``) and the running averages
    otherwise; it normalises over every axis but the last, so [B, N, D] token inputs work.
    ``bn_axis_name`` (on every head with BN) names the mapped axis for cross-device statistics
    under ``shard_map``; under plain ``jit`` with a sharded batch they are global already.

    >>> import jax, jax.numpy as jnp
    >>> mlp = MLP(hidden_dims=(8,), out_dim=3, use_bn=False)
    >>> y, _ = jax.eval_shape(mlp.init_with_output, jax.random.key(0), jnp.ones((2, 5)))
    >>> y.shape
    (2, 3)
    """

    hidden_dims: tuple[int, ...]
    out_dim: int
    use_bn: bool = False
    activation: Callable[[jax.Array], jax.Array] = _gelu
    bn_before_first: bool = False
    kernel_init: nn.initializers.Initializer = _TRUNC_NORMAL
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _bn(self, name: str, train: bool) -> nn.BatchNorm:
        # torch BN momentum 0.1 == flax momentum 0.9; float32 statistics even in bf16 compute.
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            dtype=jnp.float32,
            param_dtype=self.param_dtype,
            axis_name=self.bn_axis_name,
            name=name,
        )

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if self.bn_before_first:
            x = self._bn("bn_in", train)(x)
        dims = (*self.hidden_dims, self.out_dim)
        for i, dim in enumerate(dims):
            x = nn.Dense(
                dim,
                kernel_init=self.kernel_init,
                bias_init=nn.initializers.zeros,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"mlp_{i}",
            )(x)
            if i < len(dims) - 1:
                if self.use_bn:
                    x = self._bn(f"bn_{i}", train)(x)
                x = self.activation(x)
        return x


class DINOHead(nn.Module):
    """DINO / iBOT head: MLP (GELU) -> L2-normalise -> weight-normalised prototypes (methods.md §1).

    ``in -> hidden -> hidden -> bottleneck`` for ``num_layers=3`` (``num_layers=1`` is a single
    linear layer). ``norm_last_layer=False`` learns a per-prototype gain (init 1) instead of fixing
    it at 1. Works on CLS features [B, D] and on patch tokens [B, N, D] (iBOT with a shared head).
    Returns float32 logits [..., K]. Prototypes: ``params["prototypes"]["kernel"]`` [K, bottleneck].

    >>> import jax, jax.numpy as jnp
    >>> head = DINOHead(num_prototypes=6, hidden_dim=16, bottleneck_dim=4)
    >>> logits, _ = jax.eval_shape(head.init_with_output, jax.random.key(0), jnp.ones((2, 3, 8)))
    >>> logits.shape, logits.dtype
    ((2, 3, 6), dtype('float32'))
    """

    num_prototypes: int
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    num_layers: int = 3
    use_bn: bool = False
    norm_last_layer: bool = True
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if self.num_layers < 1:
            raise ValueError(f"DINOHead: num_layers must be >= 1, got {self.num_layers}")
        z = MLP(
            hidden_dims=(self.hidden_dim,) * (self.num_layers - 1),
            out_dim=self.bottleneck_dim,
            use_bn=self.use_bn,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            bn_axis_name=self.bn_axis_name,
            name="mlp",
        )(x, train=train)
        z = l2_normalize(z)
        return WeightNormPrototypes(
            self.num_prototypes,
            learn_gain=not self.norm_last_layer,
            param_dtype=self.param_dtype,
            name=PROTOTYPES_NAME,
        )(z)


class CARPHead(nn.Module):
    """CARP head: MLP in -> 2048 -> 2048 -> 256 with BN + GELU, then weight-normalised prototypes.

    The 256-d vector is NOT L2-normalised and there is no temperature: |z| acts as the inverse
    temperature of the block softmax (methods.md §4). Returns float32 logits [..., K]; prototypes at
    ``params["prototypes"]["kernel"]`` [K, bottleneck_dim].

    >>> import jax, jax.numpy as jnp
    >>> head = CARPHead(num_prototypes=6, hidden_dim=16, bottleneck_dim=4)
    >>> logits, _ = jax.eval_shape(head.init_with_output, jax.random.key(0), jnp.ones((3, 8)))
    >>> logits.shape
    (3, 6)
    """

    num_prototypes: int
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    use_bn: bool = True  # the paper's head; False gives a BatchNorm-free head (tests)
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        z = MLP(
            hidden_dims=(self.hidden_dim, self.hidden_dim),
            out_dim=self.bottleneck_dim,
            use_bn=self.use_bn,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            bn_axis_name=self.bn_axis_name,
            name="mlp",
        )(x, train=train)
        return WeightNormPrototypes(
            self.num_prototypes, param_dtype=self.param_dtype, name=PROTOTYPES_NAME
        )(z)


class ExCBProjector(nn.Module):
    """ExCB projector h: 2-layer MLP ``in -> hidden -> out`` (ExCB paper, section 4).

    ``use_bn=True`` (ResNet): Dense -> BN -> ReLU -> Dense. ``use_bn=False`` (ViT): Dense -> GELU
    -> Dense. Returns the projection [..., out_dim] in float32 (it feeds the centroid layer).

    >>> import jax, jax.numpy as jnp
    >>> proj = ExCBProjector(hidden_dim=16, out_dim=4)
    >>> y, _ = jax.eval_shape(proj.init_with_output, jax.random.key(0), jnp.ones((3, 8)))
    >>> y.shape
    (3, 4)
    """

    hidden_dim: int = 2048
    out_dim: int = 256
    use_bn: bool = True
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        y = MLP(
            hidden_dims=(self.hidden_dim,),
            out_dim=self.out_dim,
            use_bn=self.use_bn,
            activation=nn.relu if self.use_bn else _gelu,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            bn_axis_name=self.bn_axis_name,
            name="mlp",
        )(x, train=train)
        return y.astype(jnp.float32)


class ExCBPredictor(nn.Module):
    """ExCB predictor g (student only): BN, then MLP ``dim -> hidden -> out`` (docs/methods.md §3).

    BN(in) -> Dense(hidden) -> BN -> ReLU -> Dense(out); with ``use_bn=False`` both BNs are dropped
    and the activation is GELU. Returns float32 [..., out_dim].

    >>> import jax, jax.numpy as jnp
    >>> pred = ExCBPredictor(hidden_dim=16, out_dim=4)
    >>> y, _ = jax.eval_shape(pred.init_with_output, jax.random.key(0), jnp.ones((3, 4)))
    >>> y.shape
    (3, 4)
    """

    hidden_dim: int = 2048
    out_dim: int = 256
    use_bn: bool = True
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        y = MLP(
            hidden_dims=(self.hidden_dim,),
            out_dim=self.out_dim,
            use_bn=self.use_bn,
            bn_before_first=self.use_bn,
            activation=nn.relu if self.use_bn else _gelu,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            bn_axis_name=self.bn_axis_name,
            name="mlp",
        )(x, train=train)
        return y.astype(jnp.float32)


class CentroidLayer(nn.Module):
    """ExCB centroid layer q: cosine similarities in [-1, 1] between inputs and K centroids.

    L2-normalises the input and the rows of the centroid matrix, stored at
    ``params["prototypes"]["kernel"]`` [K, D]; the trainer overwrites that entry with its spherical
    k-means centroids. ``stop_gradient_centroids=True`` treats the centroids as constants for that
    call (ExCB's q-bar for predictor outputs and local crops); the features keep their gradient.

    >>> import jax, jax.numpy as jnp
    >>> layer = CentroidLayer(num_prototypes=3)
    >>> centroids = jnp.array([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    >>> params = {"prototypes": {"kernel": centroids}}
    >>> sims = layer.apply({"params": params}, jnp.array([[3.0, 3.0]]))
    >>> [round(v, 4) for v in sims[0].tolist()]
    [0.7071, 0.7071, -1.0]
    """

    num_prototypes: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, stop_gradient_centroids: bool = False) -> jax.Array:
        z = l2_normalize(x)
        sims = WeightNormPrototypes(
            self.num_prototypes, param_dtype=self.param_dtype, name=PROTOTYPES_NAME
        )(z, stop_gradient_kernel=stop_gradient_centroids)
        # Rounding can push |cos| a hair above 1; the balancing operator assumes [-1, 1].
        return jnp.clip(sims, -1.0, 1.0)


class MSNHead(nn.Module):
    """MSN / PMSN head: projector in -> 2048 -> 2048 -> 256 (BN + GELU) and a free prototype matrix.

    ``__call__`` returns the projection z [B, out_dim] in float32 (the loss L2-normalises z and the
    prototypes). The prototypes [K, out_dim] live at ``params["prototypes"]["kernel"]`` and are read
    with :func:`jaxssl.models.get_prototypes`; they are created at init by calling the submodule.

    >>> import jax, jax.numpy as jnp
    >>> head = MSNHead(num_prototypes=7, hidden_dim=16, out_dim=4)
    >>> z, variables = jax.eval_shape(head.init_with_output, jax.random.key(0), jnp.ones((3, 8)))
    >>> z.shape, variables["params"]["prototypes"]["kernel"].shape
    ((3, 4), (7, 4))
    """

    num_prototypes: int = 1024
    hidden_dim: int = 2048
    out_dim: int = 256
    use_bn: bool = True  # the paper's head; False gives a BatchNorm-free head (tests)
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        z = MLP(
            hidden_dims=(self.hidden_dim, self.hidden_dim),
            out_dim=self.out_dim,
            use_bn=self.use_bn,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            bn_axis_name=self.bn_axis_name,
            name="mlp",
        )(x, train=train)
        # Touch the prototype submodule so that init creates its parameter.
        PrototypeMatrix(
            self.num_prototypes, self.out_dim, param_dtype=self.param_dtype, name=PROTOTYPES_NAME
        )()
        return z.astype(jnp.float32)
