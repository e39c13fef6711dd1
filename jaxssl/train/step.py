"""The one jitted, sharded train step shared by every method.

In order: on-device photometric augmentation from the step key; the loss and gradients of the
whole batch (:mod:`jaxssl.train.grads`: teacher pass, targets, the student's loss, summed over
micro-batches with ``train.grad_accum_steps > 1``); the optax update; the EMA teacher; the
method-state update. Batch arrays are global ``jax.Array``s sharded over the mesh's ``data``
axis and the state is replicated, so GSPMD makes every batch statistic global.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxssl.data.augment import augment_views
from jaxssl.data.view_augments import view_augments
from jaxssl.methods.base import Method
from jaxssl.train import optim
from jaxssl.train.grads import make_grad_fn
from jaxssl.train.state import TrainState, ema_update


def augment_batch(key: jax.Array, batch: dict, augments: tuple[tuple, tuple]) -> dict:
    """uint8 crops -> normalised float32 views, photometric augmentation on device."""
    k_g, k_l = jax.random.split(key)
    views = {"global": augment_views(k_g, batch["global"], augments[0])}
    if augments[1]:
        views["local"] = augment_views(k_l, batch["local"], augments[1])
    if "mask" in batch:
        views["mask"] = batch["mask"]
    return views


def make_train_step(
    method: Method, config: ml_collections.ConfigDict, tx: optax.GradientTransformation
) -> Callable[[TrainState, dict, dict, jax.Array], tuple[TrainState, dict]]:
    """Builds ``train_step(state, batch, hyper, key) -> (state, metrics)``, jitted with the state
    donated. ``hyper`` is :func:`jaxssl.train.hyper.hyperparams` of the current step.

    With ``train.grad_accum_steps = n`` the batch is split into n micro-batches whose gradients
    sum to the full batch's (:mod:`jaxssl.train.grads`; BatchNorm, which normalises each
    micro-batch on its own, is the exception); centres, cluster sizes and BatchNorm statistics
    advance once, and the EMA teacher once.
    """
    augments = view_augments(config)
    grad_fn = make_grad_fn(method, config)

    def train_step(state: TrainState, batch: dict, hyper: dict, key: jax.Array):
        key = jax.random.fold_in(key, state.step)
        k_aug, k_loss = jax.random.split(key)
        views = augment_batch(k_aug, batch, augments)
        out = grad_fn(state, views, hyper, k_loss)
        loss, grads = out.loss, out.grads

        # While hyper["freeze_prototypes"] holds, the optimiser skips the prototype layer
        # entirely: no update and an untouched optimiser state (jaxssl.train.optim).
        opt_state = optim.set_hyperparams(
            state.opt_state, learning_rate=hyper["learning_rate"],
            weight_decay=hyper["weight_decay"], prototype_decay=hyper["prototype_decay"],
            freeze_prototypes=hyper["freeze_prototypes"])
        updates, opt_state = tx.update(grads, opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        teacher = ema_update(state.teacher_params, params, hyper["ema_momentum"])
        method_state = method.update_state(state.method_state, out.stats, hyper)

        metrics = {
            "loss": loss,
            "grad_norm": optax.tree_utils.tree_norm(grads),
            **{k: jnp.asarray(v, jnp.float32) for k, v in out.metrics.items()},
            **{k: jnp.asarray(v, jnp.float32) for k, v in hyper.items()},
        }
        new_state = state.replace(
            step=state.step + 1, params=params, batch_stats=out.batch_stats,
            teacher_params=teacher, teacher_batch_stats=out.teacher_batch_stats,
            opt_state=opt_state, method_state=method_state)
        return new_state, metrics

    return jax.jit(train_step, donate_argnums=(0,))
