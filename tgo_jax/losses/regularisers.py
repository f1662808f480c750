"""Regulariser terms: RAT's Lipschitz (Parseval) term on the weights and a firing-rate term on the spikes
(docs/FORMULAS.md §3)."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from tgo_jax import validation
from tgo_jax.losses.outputs import Term, named
from tgo_jax.projections import is_weight_kernel, kernel_matrix, precise_matmul

Array = jax.Array
PyTree = Any


def parseval_residual(w: Array) -> Array:
    """‖W Wᵀ − I‖²_F for W [m, n], computed through the smaller Gram matrix.

    With singular values s: ‖W Wᵀ − I_m‖² = Σ s⁴ − 2 Σ s² + m and ‖Wᵀ W − I_n‖² = Σ s⁴ − 2 Σ s² + n, so
    the [m, m] form equals the [r, r] one (r = min(m, n)) plus the constant m − r.
    """
    m, n = w.shape
    w = w.astype(jnp.float32)
    gram = precise_matmul(w, w.T) if m <= n else precise_matmul(w.T, w)
    eye = jnp.eye(gram.shape[0], dtype=jnp.float32)
    return jnp.sum((gram - eye) ** 2) + float(m - min(m, n))


def lipschitz_penalty(params: PyTree, beta: float = 2e-3) -> Array:
    """L_lip = (β/4)·Σ_W ‖W Wᵀ − I‖²_F over every conv (as [out, in·k·k]) and dense kernel (SNN-RAT, docs/FORMULAS.md §3).

    Its gradient is β·(W Wᵀ − I)·W, so one gradient step of size 1 is ``projections.apply_retraction``.
    """
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    terms = [parseval_residual(kernel_matrix(leaf)) for path, leaf in leaves if is_weight_kernel(path, leaf)]
    if not terms:
        return jnp.zeros((), jnp.float32)
    return (beta / 4.0) * sum(terms)


def lipschitz(beta: float = 2e-3) -> Term:
    """RAT's Lipschitz (Parseval) term ``(β/4)·Σ_W ‖W Wᵀ − I‖²_F`` on ``params``, a scalar (docs/FORMULAS.md §3).

    β is part of the term's value, so compose it with weight 1 (the default).
    """
    beta = validation.non_negative("beta", beta)

    def lipschitz_term(outputs, batch, params, step):
        return lipschitz_penalty(params, beta)

    return named(lipschitz_term, "lipschitz")


def firing_rate_cost(spike_rates, target: float = 0.0) -> Array:
    """``(1/L) Σ_l (r_l − ν)²`` per example, from the per-layer rates r_l [B] (docs/FORMULAS.md §3, firing rate)."""
    rates = validation.per_layer("outputs.spike_rates", spike_rates, 1,
                                 "the rates the LIF layers sow: models.sown_spike_rates(intermediates)")
    return sum((r.astype(jnp.float32) - target) ** 2 for r in rates) / len(rates)


def firing_rate(target: float = 0.0) -> Term:
    """Firing-rate regulariser on ``outputs.spike_rates``, per example (docs/FORMULAS.md §3, firing rate).

    With ν = ``target`` = 0 it penalises activity (fewer spikes); ν > 0 pulls each layer's rate to ν.
    """
    target = validation.in_range("target", target, 0.0, 1.0)

    def firing_rate_term(outputs, batch, params, step):
        return firing_rate_cost(outputs.spike_rates, target)

    return named(firing_rate_term, "firing_rate")
