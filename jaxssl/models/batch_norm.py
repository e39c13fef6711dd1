"""The BatchNorm every jaxssl model uses: torch's defaults, statistics in float32."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def torch_batch_norm(module: nn.Module, train: bool, name: str,
                     zero_scale: bool = False) -> nn.BatchNorm:
    """``nn.BatchNorm`` as torch's ``BatchNorm`` (momentum 0.1 == flax 0.9, eps 1e-5), made inside
    ``module``'s compact call with its ``param_dtype`` and ``bn_axis_name``.

    Batch statistics when ``train`` (mutable ``batch_stats``), running averages otherwise;
    normalisation in float32 even under bfloat16 compute. ``zero_scale`` initialises the scale
    at 0 (ResNet's zero-init residual).

    >>> import jax, jax.numpy as jnp
    >>> class Net(nn.Module):
    ...     param_dtype = jnp.float32
    ...     bn_axis_name = None
    ...     @nn.compact
    ...     def __call__(self, x):
    ...         return torch_batch_norm(self, False, "bn")(x)
    >>> v = Net().init(jax.random.key(0), jnp.ones((2, 3)))
    >>> sorted(v), v["params"]["bn"]["scale"].tolist()
    (['batch_stats', 'params'], [1.0, 1.0, 1.0])
    """
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        dtype=jnp.float32,
        param_dtype=module.param_dtype,
        scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones,
        axis_name=module.bn_axis_name,
        name=name,
    )
