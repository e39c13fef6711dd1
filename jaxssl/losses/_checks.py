"""Trace-time argument checks shared by the loss functions.

Shapes are static under ``jax.jit``, so every check here runs once while tracing and raises a
``ValueError`` that names the argument and what was received, instead of letting a broadcast or a
reshape fail deep inside XLA with an anonymous message.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def require_rank(name: str, x, rank: int, layout: str) -> None:
    """Raises unless ``x`` has ``rank`` dimensions; ``layout`` spells them, e.g. ``"[V, B, K]"``."""
    shape = jnp.shape(x)
    if len(shape) != rank:
        raise ValueError(
            f"{name} must have rank {rank} with layout {layout}, got shape {tuple(shape)}."
        )


def require_same_dims(
    names: Sequence[str], arrays: Sequence, axes: Sequence[int], what: str
) -> None:
    """Raises unless ``arrays[i].shape[axes[i]]`` agree; ``what`` names the dimension."""
    sizes = [jnp.shape(a)[ax] for a, ax in zip(arrays, axes)]
    if len(set(sizes)) > 1:
        got = ", ".join(
            f"{n}.shape={tuple(jnp.shape(a))}" for n, a in zip(names, arrays)
        )
        raise ValueError(f"{what} must agree between {', '.join(names)}; got {got}.")


def require_shape(name: str, x, shape: Sequence[int], meaning: str) -> None:
    """Raises unless ``x.shape == shape``; ``meaning`` says where the expected shape comes from."""
    if tuple(jnp.shape(x)) != tuple(shape):
        raise ValueError(
            f"{name} must have shape {tuple(shape)} ({meaning}), got {tuple(jnp.shape(x))}."
        )


def require_positive(name: str, value: float) -> None:
    """Raises unless the Python scalar ``value`` is > 0 (temperatures, sizes, iteration counts)."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}.")


def require_in_range(name: str, value: float, low: float, high: float) -> None:
    """Raises unless ``low <= value <= high`` for a Python scalar (momenta, probabilities)."""
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value!r}.")


def require_min_views(name: str, x, minimum: int) -> None:
    """Raises unless the leading (view) axis of ``x`` holds at least ``minimum`` views."""
    if jnp.shape(x)[0] < minimum:
        raise ValueError(
            f"{name} needs at least {minimum} views on axis 0, got shape {tuple(jnp.shape(x))}."
        )


def is_traced(value) -> bool:
    """True for a value traced under ``jax.jit`` (e.g. a scheduled temperature or momentum)."""
    return isinstance(value, jax.core.Tracer)


def require_positive_unless_traced(name: str, value) -> None:
    """:func:`require_positive`, skipped for a traced scalar (a schedule inside ``jit``)."""
    if not is_traced(value):
        require_positive(name, float(value))


def require_in_range_unless_traced(name: str, value, low: float, high: float) -> None:
    """:func:`require_in_range`, skipped for a traced scalar (a schedule inside ``jit``)."""
    if not is_traced(value):
        require_in_range(name, float(value), low, high)
