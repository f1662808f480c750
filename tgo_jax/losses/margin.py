"""The TGO membrane-margin penalty (paper eq. 12-13, docs/FORMULAS.md §3)."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from tgo_jax import validation
from tgo_jax.losses.outputs import Term, check_hs, named, per_example_mean

Array = jax.Array


def layer_margin_cost(h_tb: Array, *, delta: float = 0.5, p: int = 2, threshold: float = 1.0) -> Array:
    """One layer's margin cost per example, [T, B, ...] -> [B] (paper eq. 12, docs/FORMULAS.md §3)::

        C_l = (1/(T·N_l)) Σ_t Σ_i max(0, δ − |H_i^l[t] − θ|)^p.
    """
    validation.choice("p", p, (1, 2))
    gap = jnp.maximum(0.0, delta - jnp.abs(h_tb.astype(jnp.float32) - threshold))
    return per_example_mean(gap if p == 1 else gap * gap)


def layer_margin_penalty(h_tb: Array, *, delta: float = 0.5, p: int = 2, threshold: float = 1.0) -> Array:
    """``layer_margin_cost`` averaged over the batch: the mean over all T·B·N_l entries."""
    return jnp.mean(layer_margin_cost(h_tb, delta=delta, p=p, threshold=threshold))


def margin_cost(hs: Sequence[Array], *, delta: float = 0.5, p: int = 2, threshold: float = 1.0) -> Array:
    """L_MC = Σ_l C_l over every LIF layer, per example [B] (paper eq. 12-13, docs/FORMULAS.md §3)."""
    hs = check_hs(hs)
    return sum(layer_margin_cost(h, delta=delta, p=p, threshold=threshold) for h in hs)


def margin_penalty(hs: Sequence[Array], *, delta: float = 0.5, p: int = 2, threshold: float = 1.0) -> Array:
    """``margin_cost`` averaged over the batch (a scalar)."""
    return jnp.mean(margin_cost(hs, delta=delta, p=p, threshold=threshold))


def margin(delta: float = 0.5, p: int = 2, threshold: float = 1.0) -> Term:
    """The TGO membrane margin penalty term ``L_MC = Σ_l C_l``, per example (paper eq. 12, docs/FORMULAS.md §3).

    Potentials within δ of the threshold θ pay ``(δ − |H − θ|)^p``; p = 2 (quadratic, default) or 1.
    Pair it with a dynamic weight, e.g. ``(margin(0.5), cosine_ramp(0.6, E))`` (eq. 13-14).
    """
    delta = validation.positive("delta", delta)
    p = validation.choice("p", p, (1, 2))
    threshold = validation.positive("threshold", threshold)

    def margin_term(outputs, batch, params, step):
        return margin_cost(outputs.hs, delta=delta, p=p, threshold=threshold)

    return named(margin_term, "margin")
