"""Square Attack, L∞ (Andriushchenko et al., ECCV 2020; docs/FORMULAS.md §7): score-based, no gradients.

A random search over square-shaped updates of size ±ε at the corners of the L∞ ball: it needs only the
logits, so it is immune to gradient masking (vanishing or misleading surrogate gradients) and is the
black-box check of AutoAttack and of the gradient-masking audit.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import validation
from tgo_jax.attacks.core import (EPS, Array, LogitsFn, check_batch, check_options, loss_logits, margin_loss,
                                  prepare, project, where)
from tgo_jax.attacks.core import takes_variables

P_INIT = 0.8  # AutoAttack's setting for L∞
# p_selection: p = p_init / 2^j after iteration thresholds (the reference schedule, in iterations).
_THRESHOLDS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(i, p_init: float = P_INIT) -> Array:
    """The share p of pixels the square covers at iteration i (Andriushchenko et al. 2020, reference
    schedule): p_init, halved after iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000."""
    halvings = jnp.sum(jnp.asarray(_THRESHOLDS) < i)
    return p_init / 2.0 ** halvings


class _State(NamedTuple):
    x_best: Array   # [B, H, W, C] current point
    margin: Array   # [B] z_y - max_{j≠y} z_j there (< 0: fooled); the loss minimised


def _objective(logits_fn, variables, x, y, key, eot):
    """Margin ``z_y - max_{j≠y} z_j`` (the reference's 'margin' loss), minimised, mean over ``eot`` draws."""
    return -loss_logits(margin_loss, logits_fn, variables, x, y, key, eot).margin


@takes_variables
def square_attack(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *, eps=EPS, queries: int = 5000,
                  p_init: float = P_INIT, eot: int = 1) -> Array:
    """Square Attack, L∞ (Andriushchenko et al., ECCV 2020; docs/FORMULAS.md §7).

    Start at vertical stripes ``x + ε·s``, s = ±1 per (column, channel). Each of the ``queries`` iterations
    draws a square of side ``s_i = round(√(p_i·H·W))`` (clipped to [1, H-1]) at a random place and a
    random sign per channel, sets the perturbation there to ±ε (projected to the ball and [0, 1]), and
    keeps the new point where it lowers the margin ``z_y - max_{j≠y} z_j``. Examples already fooled
    (margin < 0) are frozen. One model query per iteration (``eot`` forward passes for a noisy model;
    the margin is then the mean over these draws, docs/FORMULAS.md §4).

    Args:
      logits_fn, variables, x, y, key, eps, eot: as in ``fgsm``; x must be images [B, H, W, C].
      queries: iterations (model queries after the first) >= 1; 5000 in AutoAttack.
      p_init: initial share of pixels changed per query, in (0, 1].

    Returns:
      x_adv [B, H, W, C] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    check_batch(x, y, logits_fn, variables)
    check_options(eps=eps, eot=eot)
    validation.count("queries", queries)
    validation.in_range("p_init", p_init, 1e-6, 1.0)
    if jnp.ndim(x) != 4:
        raise ValueError(f"square_attack needs images [B, H, W, C], got shape {jnp.shape(x)}")
    variables, x, y = prepare(variables, x, y)
    batch, h, w, c = x.shape
    k_init, k_loop = jax.random.split(key)
    k_stripe, k_eval = jax.random.split(k_init)
    stripes = jax.random.rademacher(k_stripe, (batch, 1, w, c), x.dtype)
    x0 = project(x + eps * stripes, x, eps)
    state = _State(x0, _objective(logits_fn, variables, x0, y, k_eval, eot))
    rows, cols = jnp.arange(h)[None, :, None, None], jnp.arange(w)[None, None, :, None]

    def step(i, s: _State) -> _State:
        k_pos, k_sign, k_model = jax.random.split(jax.random.fold_in(k_loop, i), 3)
        p = square_fraction(i, p_init)
        side = jnp.clip(jnp.round(jnp.sqrt(p * h * w)).astype(jnp.int32), 1, min(h, w) - 1)
        k_h, k_w = jax.random.split(k_pos)
        top = jax.random.randint(k_h, (batch, 1, 1, 1), 0, h - side + 1)
        left = jax.random.randint(k_w, (batch, 1, 1, 1), 0, w - side + 1)
        inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        signs = jax.random.rademacher(k_sign, (batch, 1, 1, c), x.dtype)
        x_new = project(jnp.where(inside, x + eps * signs, s.x_best), x, eps)
        margin = _objective(logits_fn, variables, x_new, y, k_model, eot)
        take = (margin < s.margin) & (s.margin >= 0)  # fooled examples (mean margin > 0) are frozen
        return _State(where(take, x_new, s.x_best), jnp.where(take, margin, s.margin))

    return lax.fori_loop(0, queries, step, state).x_best
