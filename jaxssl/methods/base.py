"""What every method provides to the shared train step.

A method owns its Flax modules and its part of one optimiser step; the step owns everything else
(augmentation, micro-batching, gradients, optimiser, EMA teacher), so methods stay small. One step,
with the batch split into ``n = train.grad_accum_steps`` equal micro-batches, calls:

1. :meth:`Method.draw` once: the step's shared randomness (CARP's partition, MSN's patch-drop
   indices), so every micro-batch uses the same draw.
2. :meth:`Method.teacher` on every micro-batch (no gradient), then :meth:`Method.targets` once on
   the concatenated teacher outputs: targets, Sinkhorn, balancing and the statistics that feed
   the EMA state (centres, cluster sizes) are computed over the WHOLE batch.
3. :meth:`Method.loss` on every micro-batch, with the micro-batch's rows of the targets; the step
   averages the losses and gradients. Per-sample means are thereby exact. A term R(p_bar) of a
   batch mean p_bar (MSN's prior matching, CARP's uniformity) is not: the method returns its
   micro-batch mean p_bar_m in ``aux["batch_means"]``, and when n > 1 the step first runs the
   losses once without gradient to average them into the full-batch p_bar. The loss then uses
   ``p_bar_m + stop_gradient(p_bar - p_bar_m)``: R is evaluated at the full-batch p_bar, and its
   gradient dR/dp_bar there flows into the micro-batch's own mean. That is the exact
   linearisation: micro-batch m minimises ``<stop_gradient(dR/dp_bar), p_bar_m> / n`` plus a
   constant (the step averages the n losses), and since p_bar = (1/n) sum_m p_bar_m the summed
   gradients are dR/dp_bar . d p_bar, the full-batch gradient, while the averaged losses report
   R(p_bar), the full-batch value.
4. :meth:`Method.regularizer` once (terms of the parameters alone, e.g. KoLeo-proto) and
   :meth:`Method.update_state` once, from the full-batch statistics of step 2.

Around the step, the trainer calls the method's hooks instead of branching on its name:
:meth:`Method.validate` (its own config fields, before anything is built), the recipe hooks
:meth:`Method.recipe_defaults`, :meth:`Method.cpu_recipe` and :meth:`Method.paper_recipe`,
:meth:`Method.extra_hyperparams` (schedules of its own, e.g. ExCB's centroid decay),
:meth:`Method.post_init` (after a fresh initialisation, e.g. ExCB's k-means centroids) and
:meth:`Method.prepare_batch` (host-side inputs of one step, e.g. iBOT's masks).

BatchNorm is the exception: with n > 1 it normalises each micro-batch with that micro-batch's
statistics, so models with BatchNorm give a (slightly) different loss under accumulation than one
large batch.
"""

from __future__ import annotations

import abc
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxssl.losses.koleo import koleo_proto_loss
from jaxssl.models import get_prototypes

# config.eval.features: what Method.embed returns (jaxssl/train/defaults.py explains).
EVAL_FEATURES = ("cls", "cls_avgpool")

Views = dict[str, jax.Array]  # "global": f32 [B, G, H, W, C], optional "local", "mask", ...


def variables(params: Any, batch_stats: Any) -> dict:
    """Flax variables from params and (possibly empty) BatchNorm statistics."""
    return {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}


class Targets(NamedTuple):
    """What :meth:`Method.targets` derives from the whole batch's teacher outputs.

    Attributes:
      per_sample: a pytree of arrays whose leading axis is the batch (row i belongs to image i);
        each micro-batch's :meth:`Method.loss` receives its own rows of it.
      stats: full-batch statistics for :meth:`Method.update_state` (e.g. the mean teacher
        logits of DINO's centre, ExCB's assignment fractions).
      metrics: scalar diagnostics of the whole batch, logged as they are.
    """

    per_sample: Any
    stats: dict
    metrics: dict


class LossInputs(NamedTuple):
    """Everything :meth:`Method.loss` sees of one micro-batch besides the student parameters.

    Attributes:
      views: the micro-batch's augmented views (``Views``, batch-first).
      targets: the micro-batch's rows of :attr:`Targets.per_sample`.
      batch_stats: the student's BatchNorm statistics before the step (``{}`` without BN).
      method_state: the method's EMA state before the step.
      hyper: this step's scheduled hyper-parameters (:func:`jaxssl.train.hyper.hyperparams`).
      draws: this optimiser step's :meth:`Method.draw`, shared by every micro-batch.
      key: this micro-batch's key (stochastic depth).
      full_means: None, or the whole batch's value of every entry the loss reports in
        ``aux["batch_means"]`` (read with :meth:`full_mean`).
    """

    views: Views
    targets: Any
    batch_stats: Any
    method_state: dict
    hyper: dict
    draws: dict
    key: jax.Array
    full_means: dict | None = None

    def full_mean(self, name: str) -> jax.Array | None:
        """The whole batch's value of the batch mean ``name`` (None without accumulation)."""
        return None if self.full_means is None else self.full_means[name]


class LossOutput(NamedTuple):
    """What :meth:`Method.loss` returns for one micro-batch.

    Attributes:
      loss: the micro-batch's loss, a float32 scalar mean over its samples.
      metrics: scalar diagnostics of the micro-batch (logged as their mean over micro-batches).
      batch_stats: the student's updated BatchNorm statistics (``{}`` without BN).
      batch_means: this micro-batch's value of every batch-mean term of the loss (MSN's p_bar,
        CARP's block p_bar); the whole batch's come back through :meth:`LossInputs.full_mean`.
        ``{}`` for a loss that is a plain per-sample mean.
    """

    loss: jax.Array
    metrics: dict
    batch_stats: Any
    batch_means: dict = {}


class PaperScale(NamedTuple):
    """What a paper recipe (:meth:`Method.paper_recipe`) depends on besides the config.

    Attributes:
      vit: whether the backbone is a ViT (else a ResNet).
      steps_per_epoch: optimiser steps in one pass over the training set.
      batch_size: the global batch size.
    """

    vit: bool
    steps_per_epoch: int
    batch_size: int


class Method(abc.ABC):
    """Interface of a pretraining method (DINO/iBOT, CARP, ExCB, MSN/PMSN).

    Subclasses set ``self.model``: a Flax module with a ``features`` method (the backbone), whose
    parameter subtree ``prototype_module`` holds the prototype matrix, and implement
    :meth:`teacher` and :meth:`loss` (see the module docstring for the order of the calls).
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

    def draw(self, key: jax.Array, views: Views) -> dict:
        """Randomness shared by every micro-batch of one optimiser step (default: none).

        ``views`` is the whole batch (only its shapes should matter)."""
        del key, views
        return {}

    @abc.abstractmethod
    def teacher(self, teacher_params: Any, teacher_batch_stats: Any, views: Views,
                draws: dict) -> tuple[Any, Any]:
        """The EMA teacher's forward pass on one micro-batch (no gradient is taken).

        Returns ``(outputs, teacher_batch_stats)``: outputs a pytree of batch-first arrays (the
        step concatenates the micro-batches' outputs in batch order), and the teacher's updated
        BatchNorm statistics (``teacher_batch_stats`` itself without BN).
        """

    def targets(self, params: Any, teacher_outputs: Any, method_state: dict,
                hyper: dict[str, jax.Array], draws: dict) -> Targets:
        """Targets and EMA statistics from the WHOLE batch's teacher outputs (called once per
        optimiser step, without gradient). Default: the outputs are the targets, no statistics."""
        del params, method_state, hyper, draws
        return Targets(teacher_outputs, {}, {})

    @abc.abstractmethod
    def loss(self, params: Any, inputs: LossInputs) -> LossOutput:
        """The student's loss on one micro-batch: a mean over its samples, so that the average
        over equal micro-batches is the full-batch loss (:class:`LossOutput`)."""

    def regularizer(self, params: Any) -> tuple[jax.Array, dict]:
        """Loss terms of the parameters alone, added once per optimiser step (not once per
        micro-batch): the weighted KoLeo-proto term by default. Returns ``(value, metrics)``."""
        koleo, weight = koleo_term(self, params, self.config)
        return weight * koleo, {"koleo_proto": koleo}

    def update_state(self, method_state: dict, stats: dict, hyper: dict) -> dict:
        """Folds the step's full-batch statistics (:attr:`Targets.stats`) into the EMA state
        (default: none)."""
        del stats, hyper
        return method_state

    def embed(self, params: Any, batch_stats: Any, images: jax.Array) -> jax.Array:
        """Backbone features of normalised float images [B, H, W, C] (eval mode): [B, D] for
        ``eval.features="cls"``, [B, 2D] (CLS, mean patch token) for ``"cls_avgpool"``."""
        apply = functools.partial(self.model.apply, variables(params, batch_stats), images,
                                  train=False, deterministic=True, method="features")
        if self.config.eval.features == "cls":
            return apply()
        # DINO's ViT evaluation feature: the CLS token next to the average of the patch tokens
        # (both after the final LayerNorm).
        cls, tokens = apply(return_patch_tokens=True)
        return jnp.concatenate([cls, jnp.mean(tokens, axis=1)], axis=-1)

    def prototypes(self, params: Any) -> jax.Array | None:
        """The prototype / centroid matrix [K, D] (raw rows) of ``params[prototype_module]``."""
        return get_prototypes(params[self.prototype_module])

    def assign(self, params: Any, batch_stats: Any, images: jax.Array) -> jax.Array | None:
        """Arg-max prototype of each image (eval mode), for cluster diagnostics: by default the
        arg-max of the model's output logits."""
        return jnp.argmax(self.model.apply(variables(params, batch_stats), images, train=False,
                                           deterministic=True), axis=-1)

    # Hooks around the step. The trainer calls them for every method, so that it never branches
    # on the method's name; the defaults do nothing.

    paper_clip_mode: str = "global"
    """The gradient-clipping mode of the method's released code (the papers do not state it):
    ``"per_parameter"`` rescales each parameter's gradient on its own (DINO's
    ``utils.clip_gradients``), ``"global"`` clips the global norm."""

    @classmethod
    def validate(cls, config: ml_collections.ConfigDict) -> None:
        """Checks the method's own config fields before anything is built or compiled; raises
        ``ValueError`` naming the field. Default: the views it compares (2 global views, or a
        global and at least one local view)."""
        if config.data.global_crops.num < 2 and config.data.local_crops.num < 1:
            raise config_error("data.global_crops.num", f"{config.method} compares views: needs "
                               "2 global views or at least one local view.")

    @classmethod
    def recipe_defaults(cls, config: ml_collections.ConfigDict) -> None:
        """Sets, in place, the method's heads, temperatures and optimiser shared by every recipe
        (CPU and paper); ``config.method`` is already set."""
        del config

    @classmethod
    def cpu_recipe(cls, config: ml_collections.ConfigDict) -> None:
        """Adjusts, in place, the Fashion-MNIST CPU recipe (``recipes.fashion_mnist_cpu``)."""
        del config

    @classmethod
    def paper_recipe(cls, config: ml_collections.ConfigDict, scale: PaperScale) -> None:
        """Sets, in place, the method's part of its paper recipe (``recipes.imagenet``)."""
        del config, scale

    @classmethod
    def extra_hyperparams(cls, config: ml_collections.ConfigDict, step: int, total_steps: int,
                          hyper: dict) -> dict:
        """Scheduled scalars of the method's own, computed on the host each step from the shared
        ones in ``hyper``; they replace or join those entries. Default: none."""
        del config, step, total_steps, hyper
        return {}

    def post_init(self, state: Any, key: jax.Array, mesh: jax.sharding.Mesh) -> Any:
        """The train state after a fresh initialisation (not after a restore); ``state`` is the
        replicated train state (``params``, ``teacher_params``, ... and ``replace``). Default: it
        unchanged."""
        del key, mesh
        return state

    def prepare_batch(self, batch: dict[str, np.ndarray], step: int) -> dict[str, np.ndarray]:
        """Host-side inputs of optimiser step ``step`` added to this process's batch (numpy,
        before it is sharded over the devices). Default: the batch unchanged."""
        del step
        return batch


def config_error(field: str, message: str) -> ValueError:
    """The one-line error of an invalid config field: ``config.<field>: <message>``.

    >>> str(config_error("loss.prior", "must be a name."))
    'config.loss.prior: must be a name.'
    """
    return ValueError(f"config.{field}: {message}")


def flatten_views(x: jax.Array) -> jax.Array:
    """[B, V, ...] -> [B * V, ...] so one backbone call handles all views of one resolution."""
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def per_image(y: jax.Array, batch: int) -> jax.Array:
    """[B * V, ...] (from :func:`flatten_views`) -> [B, V, ...], batch-first.

    >>> per_image(jnp.arange(6), 3).tolist()
    [[0, 1], [2, 3], [4, 5]]
    """
    return y.reshape((batch, y.shape[0] // batch) + y.shape[1:])


def to_views_first(x: jax.Array) -> jax.Array:
    """[B, V, ...] -> [V, B, ...], the losses' view-first layout."""
    return jnp.swapaxes(x, 0, 1)


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
    """KoLeo-proto regulariser on the method's prototype matrix (docs/methods.md), or 0."""
    weight = float(cfg.loss.koleo_weight)
    protos = method.prototypes(params)
    if weight == 0.0 or protos is None:
        return jnp.zeros((), jnp.float32), weight
    chunk = int(cfg.loss.koleo_chunk_size) or None
    if chunk is not None and chunk >= protos.shape[0]:
        chunk = None
    return koleo_proto_loss(protos, chunk_size=chunk), weight


def student_views(model, params: Any, batch_stats: Any, views: Views, key: jax.Array, *,
                  local_kwargs: dict | None = None, **global_kwargs) -> tuple[list, Any]:
    """The student's forward pass (batch statistics, stochastic depth) on the global views, then
    on the local views if any, one backbone call per resolution.

    Returns ``([global outputs, local outputs], batch_stats)``, each output pytree view-first
    ``[V, B, ...]``; ``global_kwargs`` / ``local_kwargs`` go to the model's call for each.
    """
    b = views["global"].shape[0]
    k_g, k_l = jax.random.split(key)
    out, bs = apply_with_stats(model, params, batch_stats, flatten_views(views["global"]),
                               train=True, deterministic=False, rng=k_g, **global_kwargs)
    outs = [jax.tree.map(lambda y: views_first(y, b), out)]
    if "local" in views:
        out, bs = apply_with_stats(model, params, bs, flatten_views(views["local"]), train=True,
                                   deterministic=False, rng=k_l, **(local_kwargs or {}))
        outs.append(jax.tree.map(lambda y: views_first(y, b), out))
    return outs, bs


def teacher_views(model, params: Any, batch_stats: Any, views: Views, **kwargs) -> tuple[Any, Any]:
    """The EMA teacher's forward pass on the global views: batch statistics as the student, but
    no stochastic depth (DINO). Returns ``(outputs, batch_stats)``, outputs batch-first
    ``[B, G, ...]`` (the layout the step concatenates micro-batches in)."""
    b = views["global"].shape[0]
    out, bs = apply_with_stats(model, params, batch_stats, flatten_views(views["global"]),
                               train=True, deterministic=True, **kwargs)
    return jax.tree.map(lambda y: per_image(y, b), out), bs
