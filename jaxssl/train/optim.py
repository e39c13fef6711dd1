"""Optimisers of the paper recipes, with hyper-parameters fed per step.

The learning rate and weight decay live in the optimiser state (``optax.inject_hyperparams``), so
the host-side schedules of :mod:`jaxssl.train.schedules` set them each step without recompiling.
Weight decay skips biases and normalisation parameters (every parameter of rank < 2), as in DINO.
ExCB's centroids get an extra decay term whose scale follows its own schedule (METHODS.md 3).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

OPTIMIZERS = ("adamw", "sgd", "lars")


def _path_has(path, name: str) -> bool:
    return any(getattr(k, "key", getattr(k, "name", None)) == name for k in path)


def decay_mask(params) -> dict:
    """True for parameters that get weight decay: matrices and kernels, not biases or norm scales.

    >>> decay_mask({"w": jnp.ones((2, 3)), "b": jnp.ones(3)})
    {'b': False, 'w': True}
    """
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def centroid_mask(params) -> dict:
    """True for ExCB centroid (or any prototype) matrices: leaves under a ``prototypes`` module.

    >>> centroid_mask({"prototypes": {"kernel": jnp.ones((4, 2))}, "w": jnp.ones((2, 2))})
    {'prototypes': {'kernel': True}, 'w': False}
    """
    return jax.tree_util.tree_map_with_path(lambda p, _: _path_has(p, "prototypes"), params)


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Builds the optimiser named by ``cfg.name`` with injectable ``learning_rate``,
    ``weight_decay`` and ``prototype_decay`` (extra decay on prototype/centroid matrices).

    >>> import ml_collections
    >>> tx = make_optimizer(ml_collections.ConfigDict(dict(name="sgd", momentum=0.9, grad_clip=0.)))
    >>> state = tx.init({"w": jnp.ones((2, 2))})
    >>> sorted(state.hyperparams)
    ['learning_rate', 'prototype_decay', 'weight_decay']
    """
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"config.optim.name must be one of {OPTIMIZERS}, got {cfg.name!r}.")
    clip = float(cfg.get("grad_clip", 0.0) or 0.0)
    momentum = float(cfg.get("momentum", 0.9))

    def build(learning_rate, weight_decay, prototype_decay) -> optax.GradientTransformation:
        parts: list[optax.GradientTransformation] = []
        if clip > 0:
            parts.append(optax.clip_by_global_norm(clip))
        extra_decay = optax.add_decayed_weights(prototype_decay, mask=centroid_mask)
        if cfg.name == "adamw":
            # Decoupled decay (Loshchilov & Hutter): added after the Adam scaling.
            parts += [
                optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
                optax.add_decayed_weights(weight_decay, mask=decay_mask),
                extra_decay,
                optax.scale_by_learning_rate(learning_rate),
            ]
        elif cfg.name == "sgd":
            # Coupled L2 decay before momentum, as torch.optim.SGD(weight_decay=...) does.
            parts += [
                optax.add_decayed_weights(weight_decay, mask=decay_mask),
                extra_decay,
                optax.trace(decay=momentum, nesterov=False),
                optax.scale_by_learning_rate(learning_rate),
            ]
        else:
            # LARS (You et al. 2017) as CARP uses it: no decay or trust ratio on biases / norms.
            parts += [
                optax.add_decayed_weights(weight_decay, mask=decay_mask),
                extra_decay,
                optax.masked(optax.scale_by_trust_ratio(), decay_mask),
                optax.trace(decay=momentum, nesterov=False),
                optax.scale_by_learning_rate(learning_rate),
            ]
        return optax.chain(*parts)

    return optax.inject_hyperparams(build)(
        learning_rate=0.0, weight_decay=0.0, prototype_decay=0.0
    )


def set_hyperparams(opt_state, **values: jax.Array):
    """Returns ``opt_state`` with injected hyper-parameters replaced (inside the jitted step)."""
    hp = dict(opt_state.hyperparams)
    for name, value in values.items():
        hp[name] = jnp.asarray(value, dtype=jnp.asarray(hp[name]).dtype)
    return opt_state._replace(hyperparams=hp)


def zero_prototype_grads(grads, freeze: jax.Array) -> dict:
    """Zeroes gradients of ``prototypes`` leaves while ``freeze`` is true.

    DINO freezes the last (prototype) layer during the first epoch: early, noisy prototype updates
    otherwise destabilise training.

    >>> g = {"prototypes": {"kernel": jnp.ones((2, 2))}, "w": jnp.ones(2)}
    >>> zero_prototype_grads(g, jnp.array(True))["prototypes"]["kernel"].sum().item()
    0.0
    """
    scale = jnp.where(freeze, 0.0, 1.0)
    fn: Callable = lambda p, g: g * scale.astype(g.dtype) if _path_has(p, "prototypes") else g
    return jax.tree_util.tree_map_with_path(fn, grads)
