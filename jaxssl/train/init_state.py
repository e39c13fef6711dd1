"""Creating the initial train state for a method and config."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxssl.methods.base import Method
from jaxssl.train.state import TrainState


def example_views(config: ml_collections.ConfigDict, batch: int = 2) -> dict:
    """Zero views with the configured crop sizes, for initialisation and shape inference."""
    d = config.data
    g, s = d.global_crops.num, d.global_crops.size
    views = {"global": jnp.zeros((batch, g, s, s, 3), jnp.float32)}
    if d.local_crops.num:
        ls = d.local_crops.size
        views["local"] = jnp.zeros((batch, d.local_crops.num, ls, ls, 3), jnp.float32)
    return views


def create_train_state(
    method: Method, config: ml_collections.ConfigDict, tx: optax.GradientTransformation,
    key: jax.Array, total_steps: int,
) -> TrainState:
    """Initialises student parameters; the teacher starts as an exact copy (docs/methods.md §0)."""
    params, batch_stats, method_state = method.init(key, example_views(config))
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        total_steps=jnp.asarray(total_steps, jnp.int32),
        params=params,
        batch_stats=batch_stats,
        teacher_params=jax.tree.map(jnp.copy, params),
        teacher_batch_stats=jax.tree.map(jnp.copy, batch_stats),
        opt_state=tx.init(params),
        method_state=method_state,
    )
