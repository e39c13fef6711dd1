"""Optimisers of the paper recipes, with hyper-parameters fed per step.

The learning rate, weight decay and the prototype freeze flag live in the optimiser state
(``optax.inject_hyperparams``), so the host-side schedules of :mod:`jaxssl.ops.schedules` set
them each step without recompiling. Weight decay skips biases and normalisation parameters (every
parameter of rank < 2), as in DINO. ExCB's centroids get an extra decay term whose scale follows
its own schedule (docs/methods.md §3).

The update of one step, in order:

1. gradient clipping (``optim.grad_clip``, ``optim.grad_clip_mode``) over the whole gradient;
2. the optimiser's update rule, applied to two parameter groups with separate states
   (``optax.multi_transform``): the prototype layer (every leaf under a ``prototypes`` module)
   and everything else. While ``freeze_prototypes`` is true the prototype group is skipped
   entirely (``optax.transforms.conditionally_mask``): zero update, so neither weight decay nor
   momentum moves it, and its optimiser state (Adam moments and step count, SGD/LARS momentum)
   is left as it was. This is what DINO's ``cancel_gradients_last_layer`` does in PyTorch: a
   parameter whose ``grad`` is ``None`` is skipped by ``AdamW.step()``, so when the layer thaws its
   Adam bias correction starts from step 1.

With ``optim.flatten`` (off by default: slower on CPU, see jaxssl/train/defaults.py), within
each of the two groups AdamW and SGD run *flattened* (``optax.flatten``): the leaves are
split once more by whether they are weight-decayed, and each of the (at most) four groups is
concatenated into one vector, so the update is a handful of XLA fusions instead of several per
parameter leaf (the masks of the per-leaf chain become the group boundaries, so no mask is
needed inside a flat vector). Clipping stays leaf by leaf before the split: per-parameter
clipping needs each leaf's norm, and the global norm is one reduction either way. LARS is not
flattened: its trust ratio is a per-layer norm ratio. The opt_state therefore holds one Adam
moment (or momentum) vector per group, not one per leaf.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

OPTIMIZERS = ("adamw", "sgd", "lars")
CLIP_MODES = ("per_parameter", "global")
PROTOTYPES_LABEL, OTHERS_LABEL = "prototypes", "others"

# DINO's clip_gradients divides by (norm + 1e-6), so an all-zero gradient gives no 0/0.
_PER_PARAMETER_EPS = 1e-6


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


def prototype_labels(params) -> dict:
    """``"prototypes"`` for every leaf under a ``prototypes`` module (the kernel and, with a learned
    weight-norm gain, the gain: DINO's ``last_layer``), ``"others"`` for the rest.

    >>> prototype_labels({"prototypes": {"kernel": jnp.ones((4, 2))}, "w": jnp.ones(2)})
    {'prototypes': {'kernel': 'prototypes'}, 'w': 'others'}
    """
    return jax.tree_util.tree_map_with_path(
        lambda p, _: PROTOTYPES_LABEL if _path_has(p, "prototypes") else OTHERS_LABEL, params)


def clip_by_parameter_norm(max_norm: float) -> optax.GradientTransformation:
    """Clips each parameter's gradient to L2 norm ``max_norm`` on its own (DINO's
    ``clip_gradients``): ``g <- g * c`` with ``c = max_norm / (||g|| + 1e-6)`` where ``c < 1``.

    Unlike :func:`optax.clip_by_global_norm`, a large gradient in one layer does not shrink the
    updates of the others.

    >>> tx = clip_by_parameter_norm(1.0)
    >>> g, _ = tx.update({"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.3, 0.4])}, tx.init(None))
    >>> [round(float(v), 4) for v in g["a"]], [round(float(v), 4) for v in g["b"]]
    ([0.6, 0.8], [0.3, 0.4])
    """
    def clip(g: jax.Array, _) -> jax.Array:
        norm = jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32))))
        coef = max_norm / (norm + _PER_PARAMETER_EPS)
        return jnp.where(coef < 1.0, g * coef.astype(g.dtype), g)

    return optax.stateless_with_tree_map(clip)


def gradient_clipping(mode: str, max_norm: float) -> optax.GradientTransformation:
    """``"per_parameter"`` (:func:`clip_by_parameter_norm`) or ``"global"``
    (:func:`optax.clip_by_global_norm`: ``g <- g * min(1, max_norm / ||g||_global)``) clipping.

    >>> tx = gradient_clipping("global", 1.0)
    >>> g, _ = tx.update({"a": jnp.array([3.0]), "b": jnp.array([4.0])}, tx.init(None))
    >>> round(float(g["a"][0]), 4), round(float(g["b"][0]), 4)
    (0.6, 0.8)
    """
    if mode == "per_parameter":
        return clip_by_parameter_norm(max_norm)
    if mode == "global":
        return optax.clip_by_global_norm(max_norm)
    raise ValueError(f"config.optim.grad_clip_mode must be one of {CLIP_MODES}, got {mode!r}.")


DECAY_LABEL, NO_DECAY_LABEL = "decay", "no_decay"


def decay_labels(params) -> dict:
    """``"decay"`` for the leaves :func:`decay_mask` marks, ``"no_decay"`` for the rest.

    >>> decay_labels({"w": jnp.ones((2, 3)), "b": jnp.ones(3)})
    {'b': 'no_decay', 'w': 'decay'}
    """
    return jax.tree.map(lambda d: DECAY_LABEL if d else NO_DECAY_LABEL, decay_mask(params))


def flat_update(inner: optax.GradientTransformation) -> optax.GradientTransformation:
    """``optax.flatten(inner)``: ``inner`` runs once on the concatenation of all the leaves it is
    given (a handful of XLA fusions instead of a few per leaf), and an empty group (a parameter
    group this model does not have) keeps an empty state instead of concatenating nothing.

    >>> tx = flat_update(optax.scale(2.0))
    >>> u, _ = tx.update({"a": jnp.ones(2), "b": jnp.ones((1, 1))}, tx.init(None))
    >>> u["a"].tolist(), u["b"].tolist()
    ([2.0, 2.0], [[2.0]])
    >>> flat_update(optax.scale_by_adam()).init({})
    EmptyState()
    """
    flat = optax.flatten(inner)

    def init(params):
        return flat.init(params) if jax.tree.leaves(params) else optax.EmptyState()

    def update(updates, state, params=None):
        if not jax.tree.leaves(updates):
            return updates, state
        return flat.update(updates, state, params)

    return optax.GradientTransformation(init, update)


def _flat_rule(name: str, momentum: float, learning_rate, weight_decay, prototype_decay,
               prototypes: bool) -> optax.GradientTransformation:
    """AdamW / SGD for one parameter group, flattened: the masks of the per-leaf chain become
    the groups (prototypes or not x decayed or not), so each group's chain is mask-free.

    Same arithmetic, in the same order, as the masked per-leaf chain of :func:`_update_rule`.
    """
    def group(decayed: bool) -> optax.GradientTransformation:
        decay = [optax.add_decayed_weights(weight_decay)] if decayed else []
        if prototypes:  # the extra centroid decay reaches every prototype leaf (centroid_mask)
            decay.append(optax.add_decayed_weights(prototype_decay))
        if name == "adamw":
            # Decoupled decay (Loshchilov & Hutter): added after the Adam scaling.
            parts = [optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8), *decay]
        else:
            # Coupled L2 decay before momentum, as torch.optim.SGD(weight_decay=...) does.
            parts = [*decay, optax.trace(decay=momentum, nesterov=False)]
        return flat_update(optax.chain(*parts, optax.scale_by_learning_rate(learning_rate)))

    return optax.multi_transform(
        {DECAY_LABEL: group(True), NO_DECAY_LABEL: group(False)}, decay_labels)


def _update_rule(name: str, momentum: float, learning_rate, weight_decay, prototype_decay
                 ) -> optax.GradientTransformation:
    """The optimiser proper (no clipping), leaf by leaf, for any subset of the parameters.

    Used for LARS, whose trust ratio needs each layer's own norms; AdamW and SGD run flattened
    (:func:`_flat_rule`). Kept for all three as the reference the flattened rule is tested against.
    """
    extra_decay = optax.add_decayed_weights(prototype_decay, mask=centroid_mask)
    if name == "adamw":
        # Decoupled decay (Loshchilov & Hutter): added after the Adam scaling.
        return optax.chain(
            optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
            optax.add_decayed_weights(weight_decay, mask=decay_mask),
            extra_decay,
            optax.scale_by_learning_rate(learning_rate),
        )
    if name == "sgd":
        # Coupled L2 decay before momentum, as torch.optim.SGD(weight_decay=...) does.
        return optax.chain(
            optax.add_decayed_weights(weight_decay, mask=decay_mask),
            extra_decay,
            optax.trace(decay=momentum, nesterov=False),
            optax.scale_by_learning_rate(learning_rate),
        )
    # LARS (You et al. 2017) as CARP uses it: no decay or trust ratio on biases / norms.
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=decay_mask),
        extra_decay,
        optax.masked(optax.scale_by_trust_ratio(), decay_mask),
        optax.trace(decay=momentum, nesterov=False),
        optax.scale_by_learning_rate(learning_rate),
    )


def make_optimizer(cfg: ml_collections.ConfigDict, *, flat: bool | None = None
                   ) -> optax.GradientTransformation:
    """Builds the optimiser named by ``cfg.name`` with injectable ``learning_rate``,
    ``weight_decay``, ``prototype_decay`` (extra decay on prototype/centroid matrices) and
    ``freeze_prototypes`` (a boolean: skip the prototype layer this step).

    ``cfg.grad_clip > 0`` clips the gradient first, per parameter or globally
    (``cfg.grad_clip_mode``); the global norm includes the prototype gradients, frozen or not,
    because DINO also clips before it cancels the last layer's gradients.

    ``flat`` (default ``cfg.flatten``, off) runs AdamW and SGD on flattened parameter groups
    (:func:`flat_update`); otherwise the same update runs leaf by leaf. LARS is always leaf by
    leaf (per-layer trust ratios). Flattening changes the opt_state layout, so a run resumes
    only with the setting it started with.

    >>> import ml_collections
    >>> tx = make_optimizer(ml_collections.ConfigDict(dict(
    ...     name="sgd", momentum=0.9, grad_clip=0., grad_clip_mode="global", flatten=False)))
    >>> state = tx.init({"w": jnp.ones((2, 2))})
    >>> sorted(state.hyperparams)
    ['freeze_prototypes', 'learning_rate', 'prototype_decay', 'weight_decay']
    """
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"config.optim.name must be one of {OPTIMIZERS}, got {cfg.name!r}.")
    clip = float(cfg.grad_clip)
    clip_mode = str(cfg.grad_clip_mode)
    if clip_mode not in CLIP_MODES:
        raise ValueError(f"config.optim.grad_clip_mode must be one of {CLIP_MODES}, got "
                         f"{clip_mode!r}.")
    momentum = float(cfg.momentum)
    flat = bool(cfg.flatten) if flat is None else flat

    def build(learning_rate, weight_decay, prototype_decay, freeze_prototypes
              ) -> optax.GradientTransformation:
        def rule(prototypes: bool) -> optax.GradientTransformation:
            if cfg.name == "lars" or not flat:
                return _update_rule(cfg.name, momentum, learning_rate, weight_decay,
                                    prototype_decay)
            return _flat_rule(cfg.name, momentum, learning_rate, weight_decay, prototype_decay,
                              prototypes)

        # The flag is the step's traced boolean (hyper["freeze_prototypes"]), not the wrapper's
        # own call counter: the host schedule stays the one source of truth across resumes.
        frozen_aware = optax.transforms.conditionally_mask(
            rule(True), lambda _count: jnp.logical_not(freeze_prototypes))
        parts = [gradient_clipping(clip_mode, clip)] if clip > 0 else []
        parts.append(optax.multi_transform(
            {PROTOTYPES_LABEL: frozen_aware, OTHERS_LABEL: rule(False)}, prototype_labels))
        return optax.chain(*parts)

    return optax.inject_hyperparams(build)(
        learning_rate=0.0, weight_decay=0.0, prototype_decay=0.0,
        freeze_prototypes=jnp.zeros((), jnp.bool_))


def set_hyperparams(opt_state, **values: jax.Array):
    """Returns ``opt_state`` with injected hyper-parameters replaced (inside the jitted step)."""
    hp = dict(opt_state.hyperparams)
    for name, value in values.items():
        hp[name] = jnp.asarray(value, dtype=jnp.asarray(hp[name]).dtype)
    return opt_state._replace(hyperparams=hp)
