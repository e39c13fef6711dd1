"""What every method provides to the shared train step.

A method owns its Flax modules and turns a batch of augmented views into ``(loss, aux)``. The train
step owns everything else (augmentation, gradients, optimiser, EMA teacher), so methods stay small.

Batch statistics that feed EMA state (centres, cluster sizes) are returned as per-batch means in
``aux["stats"]`` rather than folded in by the loss: the step averages them over micro-batches and
calls :meth:`Method.update_state` once per optimiser step (METHODS.md section 0, gradient
accumulation).
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

Views = dict[str, jax.Array]  # "global": f32 [B, G, H, W, C], optional "local", "mask", ...


def variables(params: Any, batch_stats: Any) -> dict:
    """Flax variables from params and (possibly empty) BatchNorm statistics."""
    return {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}


class Method(abc.ABC):
    """Interface of a pretraining method (DINO/iBOT, CARP, ExCB, MSN/PMSN).

    Subclasses set ``self.model``: a Flax module with a ``features`` method (the backbone), whose
    parameter subtree ``prototype_module`` holds the prototype matrix.
    """

    name: str = ""
    prototype_module: str = "head"
    model: Any = None

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    def init(self, key: jax.Array, views: Views) -> tuple[Any, Any, dict]:
        """Returns (params, batch_stats, method_state) initialised from example views.

        Two examples of the global views are enough: parameter shapes do not depend on B.
        """
        x = flatten_views(views["global"])[:2]
        variables = self.model.init({"params": key, "dropout": key}, x, train=False,
                                    deterministic=True)
        return variables["params"], variables.get("batch_stats", {}), self.initial_state()

    def initial_state(self) -> dict:
        """The method's EMA state before the first step (default: none)."""
        return {}

    @abc.abstractmethod
    def loss(
        self,
        params: Any,
        batch_stats: Any,
        teacher_params: Any,
        teacher_batch_stats: Any,
        method_state: dict,
        views: Views,
        hyper: dict[str, jax.Array],
        key: jax.Array,
    ) -> tuple[jax.Array, dict]:
        """Returns (loss, aux) with aux keys "metrics", "stats", "batch_stats",
        "teacher_batch_stats"."""

    def update_state(self, method_state: dict, stats: dict, hyper: dict) -> dict:
        """Folds the step's averaged batch statistics into the EMA state (default: none)."""
        del stats, hyper
        return method_state

    def embed(self, params: Any, batch_stats: Any, images: jax.Array) -> jax.Array:
        """Backbone features [B, D] of normalised float images [B, H, W, C] (eval mode)."""
        return self.model.apply(variables(params, batch_stats), images, train=False,
                                deterministic=True, method="features")

    def prototypes(self, params: Any) -> jax.Array | None:
        """The prototype / centroid matrix [K, D] (raw rows) of ``params[prototype_module]``."""
        from jaxssl.models import get_prototypes

        return get_prototypes(params[self.prototype_module])

    def assign(self, params: Any, batch_stats: Any, images: jax.Array) -> jax.Array | None:
        """Arg-max prototype of each image (eval mode), for cluster diagnostics: by default the
        arg-max of the model's output logits."""
        return jnp.argmax(self.model.apply(variables(params, batch_stats), images, train=False,
                                           deterministic=True), axis=-1)


def flatten_views(x: jax.Array) -> jax.Array:
    """[B, V, ...] -> [B * V, ...] so one backbone call handles all views of one resolution."""
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def views_first(y: jax.Array, batch: int) -> jax.Array:
    """[B * V, ...] (from :func:`flatten_views`) -> [V, B, ...], the losses' view-first layout.

    >>> views_first(jnp.arange(6), 3).tolist()
    [[0, 2, 4], [1, 3, 5]]
    """
    y = y.reshape((batch, y.shape[0] // batch) + y.shape[1:])
    return jnp.swapaxes(y, 0, 1)


def apply_with_stats(module, params, batch_stats, x, *, train: bool, deterministic: bool,
                     rng=None, **kwargs):
    """Applies a Flax module, threading BatchNorm statistics when training.

    ``train``: BatchNorm normalises with batch statistics (and its running averages advance).
    ``deterministic``: stochastic depth / dropout off. The two are separate because the EMA
    teacher uses batch statistics inside the train step but no stochastic depth (DINO), while
    the student uses both; a stochastic call needs ``rng`` (the ``"dropout"`` stream).
    Returns ``(output, new_batch_stats)``; modules without BatchNorm pass ``{}`` through.
    """
    if not deterministic and rng is None:
        raise ValueError("apply_with_stats: deterministic=False needs rng (the 'dropout' key).")
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    rngs = None if deterministic else {"dropout": rng}
    kwargs.update(train=train, deterministic=deterministic, rngs=rngs)
    if train and batch_stats:
        out, updates = module.apply(variables, x, mutable=["batch_stats"], **kwargs)
        return out, updates["batch_stats"]
    return module.apply(variables, x, **kwargs), batch_stats


def koleo_term(method: Method, params: Any, cfg: ml_collections.ConfigDict):
    """KoLeo-proto regulariser on the method's prototype matrix (METHODS.md section 2), or 0."""
    from jaxssl.losses.koleo import koleo_proto_loss

    weight = float(cfg.loss.koleo_weight)
    protos = method.prototypes(params)
    if weight == 0.0 or protos is None:
        return jnp.zeros((), jnp.float32), weight
    chunk = int(cfg.loss.koleo_chunk_size) or None
    if chunk is not None and chunk >= protos.shape[0]:
        chunk = None
    return koleo_proto_loss(protos, chunk_size=chunk), weight
