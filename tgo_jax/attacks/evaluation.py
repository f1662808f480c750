"""Accuracy and robust accuracy, with fresh noise draws for stochastic models (docs/FORMULAS.md §4)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import validation
from tgo_jax.attacks.core import Array, AttackFn, LogitsFn, takes_variables


@takes_variables
def correct(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *, draws: int = 1) -> Array:
    """Per-example share of ``draws`` fresh noise draws under which the prediction is right, [B] in [0, 1]."""
    validation.count("draws", draws)
    keys = jax.random.split(key, draws)
    hits = lax.map(lambda k: jnp.argmax(logits_fn(variables, x, k), axis=-1) == y, keys)
    return hits.astype(jnp.float32).mean(axis=0)


@takes_variables
def accuracy(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *, draws: int = 1) -> Array:
    """Accuracy, averaged over ``draws`` fresh noise draws for a stochastic model (docs/FORMULAS.md §4)."""
    return correct(logits_fn, variables, x, y, key, draws=draws).mean()


@takes_variables
def robust_correct(attack_fn: AttackFn, logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *,
                   draws: int = 1, eval_logits_fn: LogitsFn | None = None) -> Array:
    """Per-example correctness [B] at ``x_adv = attack_fn(logits_fn, variables, x, y, key_attack)``.

    The evaluation uses noise independent of the attack's, and ``eval_logits_fn`` (default
    ``logits_fn``; only the forward pass matters here).
    """
    k_attack, k_eval = jax.random.split(key)
    x_adv = attack_fn(logits_fn, variables, x, y, k_attack)
    return correct(eval_logits_fn or logits_fn, variables, x_adv, y, k_eval, draws=draws)


@takes_variables
def robust_accuracy(attack_fn: AttackFn, logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *,
                    draws: int = 1) -> Array:
    """Accuracy under ``attack_fn`` (a partial of an attack with its options set), with fresh noise."""
    return robust_correct(attack_fn, logits_fn, variables, x, y, key, draws=draws).mean()
