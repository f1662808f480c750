"""Event-level attack on event frames (Yao, Zhao & Gu, "Exploring vulnerabilities in spiking neural networks:
direct adversarial attacks on raw event data", ECCV 2024), adapted to integrated frames (docs/FORMULAS.md §10).

The attack edits *events*, not pixel intensities: in every frame cell (step t, row, column, polarity) it
may remove one event, keep the cell, or add one event. Because a frame is the count of the events in its
time bin and cell (``tgo_jax.data.dvs.events_to_counts``), adding or removing one event of that bin and
cell changes the cell by exactly one event unit (``unit``: 1/count_cap in 'counts' mode, 1 in 'binary'
mode), whatever the event's exact time and sub-cell position: the frame attack below is the raw-event
attack seen through the integration. As in Yao et al., each cell's choice is a categorical variable whose
logits α are optimised through straight-through Gumbel-softmax samples, maximising the attack loss minus κ
times the number of changed events; each step draws ``samples`` samples.

Simplifications against the paper, each a choice of this project:
  * candidate events are every cell of the frame grid (the paper also places added events on a candidate
    set of positions and times; on frames every cell is such a candidate);
  * one event per cell and step: choices {-1, 0, +1} event units, invalid ones (leaving [0, 1]) masked out;
  * Adam on α with α clipped to [-bound, bound] as in the paper, without its gradient-norm clipping and
    learning-rate schedule; the model's noise is averaged over ``eot`` draws per sample (EoT).
The returned frames are the successful hard sample with the fewest changed events, or the last hard
sample when none succeeded.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from tgo_jax import validation
from tgo_jax.attacks import core, evaluation

CHOICES = (-1.0, 0.0, 1.0)  # events removed / kept / added in a cell
KEEP = 1  # index of "keep" in CHOICES


class EventAttackResult(NamedTuple):
    """What ``event_attack_result`` returns, per example."""

    x_adv: jax.Array  # [B, T, H, W, C] frames
    success: jax.Array  # [B] bool: some hard sample was misclassified
    changes: jax.Array  # [B] events changed in x_adv (added + removed)


def _masked_logits(alpha: jax.Array, x: jax.Array, unit: float) -> jax.Array:
    """α with the choices that would leave [0, 1] (removing from an empty cell, adding to a full one) at -inf."""
    steps = jnp.asarray(CHOICES, x.dtype) * unit
    after = x[..., None] + steps
    valid = (after >= -1e-6) & (after <= 1.0 + 1e-6)
    return jnp.where(valid, alpha, -1e9)


def _sample(alpha, x, unit, tau, key):
    """One straight-through Gumbel-softmax sample: (frames x̃, changed events per example)."""
    logits = _masked_logits(alpha, x, unit)
    gumbel = jax.random.gumbel(key, logits.shape, logits.dtype)
    soft = jax.nn.softmax((logits + gumbel) / tau, axis=-1)
    hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), len(CHOICES), dtype=soft.dtype)
    onehot = hard + (soft - lax.stop_gradient(soft))  # forward: exactly the hard choice; backward: the soft one
    delta = onehot @ jnp.asarray(CHOICES, x.dtype)
    x_new = jnp.clip(x + unit * delta, 0.0, 1.0)
    changes = (1.0 - onehot[..., KEEP]).reshape(x.shape[0], -1).sum(axis=1)
    return x_new, changes


@core.takes_variables
def event_attack_result(logits_fn, variables, x: jax.Array, y: jax.Array, key: jax.Array, *, unit: float,
                        steps: int = 50, samples: int = 4, kappa: float = 1e-3, lr: float = 0.1,
                        tau: float = 0.5, init_keep: float = 3.0, bound: float = 10.0,
                        eot: int = 1) -> EventAttackResult:
    """Runs the event attack (module docstring; docs/FORMULAS.md §10) on frames ``x`` [B, T, H, W, C].

    Args:
      logits_fn: ``logits_fn(variables, x, key) -> [B, K]`` (``core.model_logits_fn``).
      variables: the model's variables (the whole Flax dict, ``{'params': ..., 'batch_stats': ...}``).
      x: event frames [B, T, H, W, C] in [0, 1]; y: labels [B]; key: PRNG key.
      unit: the frame value of one event (``tgo_jax.data.dvs.event_unit``).
      steps: optimisation steps; samples: Gumbel samples per step (their gradients are averaged).
      kappa: κ, the weight of the changed-event count in the objective (per example).
      lr: Adam learning rate on α; tau: Gumbel-softmax temperature τ.
      init_keep: initial logit of "keep" (the others start at 0), so that at first few cells change.
      bound: α is clipped to [-bound, bound] after each step.
      eot: model-noise draws per sample (for a Noisy-LIF model).
    """
    if x.ndim != 5:
        raise ValueError(f"x must be event frames [B, T, H, W, C] (rank 5), got shape {x.shape}")
    core.check_batch(x, y)
    validation.positive("unit", unit)
    for name, value in (("steps", steps), ("samples", samples), ("eot", eot)):
        validation.count(name, value, 1)
    for name, value in (("lr", lr), ("tau", tau), ("bound", bound)):
        validation.positive(name, value)
    validation.non_negative("kappa", kappa)
    x, y = lax.stop_gradient(x), lax.stop_gradient(y)
    alpha0 = jnp.zeros(x.shape + (len(CHOICES),), x.dtype).at[..., KEEP].set(init_keep)
    optimizer = optax.adam(lr)

    def sample_grad(alpha, k):
        """∇_α of (attack loss - κ·changes) for one Gumbel sample, with its frames, changes and logits."""
        k_gumbel, k_model = jax.random.split(k)
        (x_new, changes), vjp = jax.vjp(lambda a: _sample(a, x, unit, tau, k_gumbel), alpha)
        g = core.loss_and_grad(core.margin_loss, logits_fn, variables, x_new, y, k_model, eot=eot)
        (g_alpha,) = vjp((g.grad, jnp.full_like(changes, -kappa)))
        return g_alpha, (x_new, changes, g.logits)

    def step(i, state):
        alpha, opt_state, best_x, best_changes, success = state
        k = jax.random.fold_in(key, i)
        direction, (x_new, changes, logits) = sample_grad(alpha, jax.random.fold_in(k, 0))
        direction = lax.fori_loop(1, samples, lambda s, d: d + sample_grad(alpha, jax.random.fold_in(k, s))[0],
                                  direction) / samples
        fooled = jnp.argmax(logits, axis=-1) != y
        better = fooled & (changes < best_changes)
        shape = (-1,) + (1,) * (x.ndim - 1)
        # Keep the cheapest success; until one exists, the latest hard sample.
        best_x = jnp.where(better.reshape(shape), x_new, jnp.where(success.reshape(shape), best_x, x_new))
        best_changes = jnp.where(better, changes, best_changes)
        updates, opt_state = optimizer.update(-direction, opt_state, alpha)
        alpha = jnp.clip(optax.apply_updates(alpha, updates), -bound, bound)
        return alpha, opt_state, best_x, best_changes, success | fooled

    init = (alpha0, optimizer.init(alpha0), x, jnp.full(y.shape, jnp.inf, x.dtype), jnp.zeros(y.shape, bool))
    _, _, best_x, best_changes, success = lax.fori_loop(0, steps, step, init)
    changes = jnp.abs(best_x - x).reshape(x.shape[0], -1).sum(axis=1) / unit
    return EventAttackResult(lax.stop_gradient(best_x), success, jnp.round(changes))


@core.takes_variables
def event_attack(logits_fn, variables, x, y, key, **options) -> jax.Array:
    """The attack in the ``attacks`` convention ``attack(logits_fn, variables, x, y, key, **options) -> x_adv``."""
    return event_attack_result(logits_fn, variables, x, y, key, **options).x_adv


@core.takes_variables
def attack_success(logits_fn, variables, x, y, key, *, draws: int = 1,
                   **options) -> tuple[jax.Array, jax.Array]:
    """Per example: (correct on the clean frames, misclassified after the attack) as float [B] shares over
    ``draws`` fresh noise draws; ASR = Σ(clean correct · fooled) / Σ clean correct (docs/FORMULAS.md §10)."""
    k_clean, k_attack, k_eval = jax.random.split(key, 3)
    clean = evaluation.correct(logits_fn, variables, x, y, k_clean, draws=draws)
    x_adv = event_attack(logits_fn, variables, x, y, k_attack, **options)
    fooled = 1.0 - evaluation.correct(logits_fn, variables, x_adv, y, k_eval, draws=draws)
    return clean, fooled
