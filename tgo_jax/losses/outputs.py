"""What a loss term reads: the forward pass's ``Outputs``, and the checks on it (docs/FORMULAS.md §3)."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from tgo_jax import validation

Array = jax.Array
PyTree = Any
Batch = dict


class Outputs(NamedTuple):
    """What one forward pass gives the loss terms.

    ``model.apply(..., return_h=True)`` gives the first two fields; the spike rates are the values the
    LIF layers sow into the ``'intermediates'`` collection (``models.sown_spike_rates``).
    """

    logits_tb: Array  # [T, B, K], float32 per-step logits
    hs: tuple = ()  # per LIF layer, pre-spike potential H [T, B, ...]
    spike_rates: tuple = ()  # per LIF layer, per-example firing rate [B] (mean over T and neurons)


# term(outputs, batch, params, step, **extra) -> per-example values [B], or a scalar [] for a term that
# does not depend on the examples (a weight penalty). Extra keyword inputs (``key``, ...) are passed
# to the terms that name them, as optax passes extra arguments.
Term = Callable[..., Array]


def check_logits(outputs: Outputs, batch: Batch) -> tuple[Array, Array]:
    """The per-step logits [T, B, K] and the labels [B], with shapes checked (static under jit)."""
    logits_tb, labels = outputs.logits_tb, batch["label"]
    if logits_tb.ndim != 3:
        raise ValueError(f"outputs.logits_tb must be [T, B, K], got shape {logits_tb.shape}")
    if labels.shape != logits_tb.shape[1:2]:
        raise ValueError(f"batch['label'] must be [B] = {logits_tb.shape[1:2]}, got shape {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"batch['label'] must hold integer classes, got dtype {labels.dtype}")
    return logits_tb, labels


def check_hs(hs: Sequence[Array]) -> tuple:
    """The per-layer potentials H [T, B, ...]."""
    return validation.per_layer("outputs.hs", hs, 2, "apply the model with return_h=True")


def per_example_mean(x: Array) -> Array:
    """[T, B, ...] -> [B]: the mean over every axis but the batch axis 1."""
    return jnp.mean(x, axis=(0,) + tuple(range(2, x.ndim)))


def named(fn: Term, name: str) -> Term:
    """Gives a term the name its metrics go under in ``compose``."""
    fn.__name__ = name
    fn.__qualname__ = name
    return fn
