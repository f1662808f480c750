"""Task terms: cross-entropy and TET, per example (docs/FORMULAS.md §3)."""
from __future__ import annotations

import jax.numpy as jnp
import optax

from tgo_jax import validation
from tgo_jax.losses.outputs import Term, check_logits, named, per_example_mean
from tgo_jax.models.layers import mean_over_time


def _per_step_ce(logits_tb, labels):
    """CE(o[t], y) for every step and example: [T, B]."""
    labels_tb = jnp.broadcast_to(labels, logits_tb.shape[:2])
    return optax.softmax_cross_entropy_with_integer_labels(logits_tb, labels_tb)


def ce(per_step: bool = True) -> Term:
    """Cross-entropy (docs/FORMULAS.md §3), per example: ``mean_t CE(o[t], y)`` (per_step) or ``CE(mean_t o[t], y)``."""
    per_step = bool(per_step)

    def ce_term(outputs, batch, params, step):
        logits_tb, labels = check_logits(outputs, batch)
        if per_step:
            return _per_step_ce(logits_tb, labels).mean(axis=0)
        return optax.softmax_cross_entropy_with_integer_labels(mean_over_time(logits_tb), labels)

    return named(ce_term, "ce")


def tet(lam: float = 1e-3, phi: float = 1.0) -> Term:
    """Temporal efficient training loss (Deng et al. 2022; docs/FORMULAS.md §3, the paper's "vanilla")::

        L_TET = (1 − λ_T)·(1/T) Σ_t CE(o[t], y) + λ_T·(1/T) Σ_t MSE(o[t], φ)

    per example (MSE averages the K logits). λ_T = 1e-3, φ = θ = 1.
    """
    lam = validation.in_range("lam", lam, 0.0, 1.0)
    phi = validation.finite("phi", phi)

    def tet_term(outputs, batch, params, step):
        logits_tb, labels = check_logits(outputs, batch)
        mse = per_example_mean((logits_tb - phi) ** 2)
        return (1.0 - lam) * _per_step_ce(logits_tb, labels).mean(axis=0) + lam * mse

    return named(tet_term, "tet")
