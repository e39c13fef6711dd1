"""The loss and gradients of one optimiser step, over one batch or n equal micro-batches.

With ``train.grad_accum_steps = n > 1`` the batch is split into n micro-batches (rows i, i + n,
... form micro-batch i, so each device keeps its own rows) and the gradients equal the full
batch's (the order of the calls is in :mod:`jaxssl.methods.base`):

1. the teacher runs on every micro-batch without gradient; the method's targets (DINO/iBOT
   centring, MSN's Sinkhorn, ExCB's balancing and cluster-size fractions) are computed once over
   the concatenated outputs of the whole batch;
2. for a method whose loss has terms of batch means (MSN/PMSN's p_bar, CARP's block p_bar), the
   student runs on every micro-batch without gradient to average them into the whole batch's;
3. the student's loss and gradient on each micro-batch, against its rows of the targets and with
   the whole batch's means (exact linearisation), accumulated in a ``lax.scan`` so only one
   micro-batch's activations are alive; their mean is the full batch's loss and gradient;
4. terms of the parameters alone (KoLeo-proto) once.

With n = 1 the same calls run on the whole batch with no extra pass. BatchNorm normalises each
micro-batch with its own statistics (the documented exception), so models with BatchNorm are
exact only at n = 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.methods.base import LossInputs, LossOutput, Method, Views
from jaxssl.train.state import TrainState


class StepGrads(NamedTuple):
    """The outcome of :func:`make_grad_fn`'s function for one optimiser step.

    Attributes:
      loss: the full batch's loss (float32 scalar).
      grads: its gradient with respect to ``state.params``.
      metrics: scalar diagnostics (means over the whole batch).
      stats: the whole batch's statistics for :meth:`Method.update_state`.
      batch_stats / teacher_batch_stats: updated BatchNorm statistics (the mean over
        micro-batches), ``{}`` without BatchNorm.
    """

    loss: jax.Array
    grads: Any
    metrics: dict
    stats: dict
    batch_stats: Any
    teacher_batch_stats: Any


def split_micro(tree: Any, n: int) -> Any:
    """[B, ...] leaves -> [n, B / n, ...]: micro-batch i holds rows i, i + n, i + 2n, ...

    Strided rather than contiguous, so that with the batch sharded over devices each device's
    micro-batch rows are rows it already holds.

    >>> split_micro(jnp.arange(6), 2).tolist()
    [[0, 2, 4], [1, 3, 5]]
    """
    def split(x):
        return jnp.swapaxes(x.reshape((x.shape[0] // n, n) + x.shape[1:]), 0, 1)
    return jax.tree.map(split, tree)


def join_micro(tree: Any) -> Any:
    """The inverse of :func:`split_micro`: [n, B / n, ...] -> [B, ...] in batch order.

    >>> join_micro(split_micro(jnp.arange(6), 3)).tolist()
    [0, 1, 2, 3, 4, 5]
    """
    def join(x):
        y = jnp.swapaxes(x, 0, 1)
        return y.reshape((y.shape[0] * y.shape[1],) + y.shape[2:])
    return jax.tree.map(join, tree)


def _mean0(tree: Any) -> Any:
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), tree)


def make_grad_fn(
    method: Method, config: ml_collections.ConfigDict
) -> Callable[[TrainState, Views, dict, jax.Array], StepGrads]:
    """Builds ``grad_fn(state, views, hyper, key) -> StepGrads`` for augmented views of one
    step's batch (not jitted: the train step jits it; tests may call it under ``jax.jit``).

    ``key`` gives the step's shared draws (:meth:`Method.draw`) and, folded with the
    micro-batch's index, each micro-batch's key.

    >>> from jaxssl.train.recipes import tiny
    >>> from jaxssl.methods.registry import build_method
    >>> grad_fn = make_grad_fn(build_method(tiny("dino")), tiny("dino"))
    >>> callable(grad_fn)
    True
    """
    n = int(config.train.grad_accum_steps)

    def grad_fn(state: TrainState, views: Views, hyper: dict, key: jax.Array) -> StepGrads:
        k_draw, k_micro = jax.random.split(key)
        draws = method.draw(k_draw, views)

        def inputs(v, t, i, full_means=None) -> LossInputs:
            return LossInputs(views=v, targets=t, batch_stats=state.batch_stats,
                              method_state=state.method_state, hyper=hyper, draws=draws,
                              key=jax.random.fold_in(k_micro, i), full_means=full_means)

        def teacher(v):
            return method.teacher(state.teacher_params, state.teacher_batch_stats, v, draws)

        # 1. Teacher pass, then the targets of the whole batch.
        if n == 1:
            t_out, tbs = teacher(views)
        else:
            t_out, tbs = jax.lax.map(teacher, split_micro(views, n))
            t_out, tbs = join_micro(t_out), _mean0(tbs)
        t_out = jax.lax.stop_gradient(t_out)
        targets = method.targets(state.params, t_out, state.method_state, hyper, draws)
        per_sample = jax.lax.stop_gradient(targets.per_sample)
        if n == 1:
            loss, grads, metrics, reg_metrics, batch_stats = _whole_batch(
                method, state.params, inputs(views, per_sample, 0))
        else:
            loss, grads, metrics, reg_metrics, batch_stats = _accumulated(
                method, state.params, inputs, (split_micro(views, n), split_micro(per_sample, n),
                                               jnp.arange(n)), n)
        return StepGrads(loss=loss, grads=grads,
                         metrics={**metrics, **targets.metrics, **reg_metrics},
                         stats=targets.stats, batch_stats=batch_stats, teacher_batch_stats=tbs)

    return grad_fn


def _loss_and_aux(method: Method, params: Any, inputs: LossInputs
                  ) -> tuple[jax.Array, LossOutput]:
    """``method.loss`` in the ``(value, aux)`` form ``jax.value_and_grad(has_aux=True)`` takes."""
    out = method.loss(params, inputs)
    return out.loss, out


def _whole_batch(method: Method, params: Any, inputs: LossInputs):
    """Loss, gradient, the loss's and the regulariser's metrics and the BatchNorm statistics of
    one pass over the whole batch, with the terms of the parameters alone (KoLeo-proto)."""
    def total(p):
        loss, out = _loss_and_aux(method, p, inputs)
        reg, reg_metrics = method.regularizer(p)
        return loss + reg, (out, reg_metrics)

    (loss, (out, reg_metrics)), grads = jax.value_and_grad(total, has_aux=True)(params)
    return loss, grads, out.metrics, reg_metrics, out.batch_stats


def _accumulated(method: Method, params: Any, inputs: Callable[..., LossInputs], micro: tuple,
                 n: int):
    """The same over ``n`` micro-batches ``micro = (views, targets, index)``: the whole batch's
    batch means first (if the loss has any), then the summed loss and gradient in a scan."""
    # 2. The whole batch's means of the loss's batch-mean terms, if it has any.
    def micro_means(xs):
        v, t, i = xs
        return method.loss(params, inputs(v, t, i)).batch_means

    first = jax.tree.map(lambda x: x[0], micro)
    full_means = None
    if jax.tree.leaves(jax.eval_shape(micro_means, first)):
        full_means = _mean0(jax.lax.map(micro_means, micro))

    # 3. Loss and gradient of each micro-batch, summed in the scan's carry.
    def body(carry, xs):
        v, t, i = xs
        micro_inputs = inputs(v, t, i, full_means)
        (loss, out), g = jax.value_and_grad(
            lambda p: _loss_and_aux(method, p, micro_inputs), has_aux=True)(params)
        loss_sum, grad_sum = carry
        return ((loss_sum + loss, jax.tree.map(jnp.add, grad_sum, g)),
                (out.metrics, out.batch_stats))

    zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
    (loss_sum, grad_sum), (metrics, batch_stats) = jax.lax.scan(body, zeros, micro)
    # 4. Terms of the parameters alone, once.
    (reg, reg_metrics), reg_grads = jax.value_and_grad(method.regularizer, has_aux=True)(params)
    loss = loss_sum / n + reg
    grads = jax.tree.map(lambda g, r: g / n + r, grad_sum, reg_grads)
    return loss, grads, _mean0(metrics), reg_metrics, _mean0(batch_stats)
