"""FAB-T, targeted Fast Adaptive Boundary attack, L∞ (Croce & Hein, ICML 2020; docs/FORMULAS.md §7).

FAB looks for the adversarial example of *smallest* L∞ norm: it linearises the decision boundary between
the true class y and a target t at the current iterate, projects onto that hyperplane (within the [0, 1]
box), and mixes the step from the iterate with a step from the original point; once an adversarial point
is found it steps back towards x. AutoAttack keeps a FAB result only if its norm is at most ε.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax.attacks.core import (EPS, Array, LogitsFn, check_batch, check_options, fooled, loss_and_grad,
                                  loss_logits, margin_loss, num_classes, per_example, prepare, targeted_margin_loss,
                                  where)
from tgo_jax.attacks.core import takes_variables
from tgo_jax.attacks.gradient import check_num_targets, top_wrong_classes

ETA, BETA, ALPHA_MAX = 1.05, 0.9, 0.1  # the reference's over-shoot, back-step and bias toward x
_BISECTION_STEPS = 30


def project_hyperplane_linf(z: Array, w: Array, b: Array) -> Array:
    """The smallest-L∞ δ with ``w·(z + δ) = b`` and ``z + δ ∈ [0, 1]`` (docs/FORMULAS.md §7), per example.

    For L∞ the optimum is ``δ_i(t) = clip(t·s_i, -z_i, 1 - z_i)`` with ``s = sign(w)·sign(b - w·z)`` and the
    smallest t >= 0 that reaches the plane; ``w·δ(t)`` is monotone in t, so t is found by bisection on
    [0, 1] (the reference sorts the breakpoints; same point up to the bisection tolerance 2^-30). When
    even t = 1 cannot reach the plane inside the box, δ(1) (the box corner) is returned, as there.

    Args:
      z: points [B, ...]; w: normals [B, ...]; b: offsets [B].
    """
    flat = lambda a: a.reshape(a.shape[0], -1)
    zf, wf = flat(z), flat(w)
    gap = b - jnp.sum(wf * zf, axis=-1)                      # [B] what δ must add to w·z
    s = jnp.sign(wf) * jnp.sign(gap)[:, None]

    def delta(t):
        return jnp.clip(t[:, None] * s, -zf, 1.0 - zf)

    def bisect(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        reached = jnp.abs(jnp.sum(wf * delta(mid), axis=-1)) >= jnp.abs(gap)
        return jnp.where(reached, lo, mid), jnp.where(reached, mid, hi)

    ones = jnp.ones_like(gap)
    _, t = lax.fori_loop(0, _BISECTION_STEPS, bisect, (0.0 * ones, ones))
    return delta(t).reshape(z.shape)


def _linf(a: Array) -> Array:
    return jnp.max(jnp.abs(a.reshape(a.shape[0], -1)), axis=-1)


class _State(NamedTuple):
    x1: Array      # [B, ...] current iterate
    x_adv: Array   # [B, ...] smallest adversarial point so far (x where none)
    norm: Array    # [B] its L∞ distance to x (inf where none)


def fab_run(logits_fn, variables, x, y, target, key, *, steps, eot) -> tuple[Array, Array]:
    """One FAB-T run toward ``target`` [B]: (smallest adversarial point found, its L∞ norm or inf)."""
    objective = lambda logits, y_: -targeted_margin_loss(logits, y_, target)  # f = z_y - z_t

    def step(i, s: _State) -> _State:
        k_grad, k_check = jax.random.split(jax.random.fold_in(key, i))
        lg = loss_and_grad(objective, logits_fn, variables, s.x1, y, k_grad, eot=eot)
        flat = lambda a: a.reshape(a.shape[0], -1)
        # Hyperplane {z : f(x1) + g·(z - x1) = 0}, i.e. g·z = g·x1 - f(x1).
        b = jnp.sum(flat(lg.grad) * flat(s.x1), axis=-1) - lg.loss
        d1 = project_hyperplane_linf(s.x1, lg.grad, b)
        d2 = project_hyperplane_linf(x, lg.grad, b)
        a1, a2 = _linf(d1), _linf(d2)
        mix = jnp.clip(a1 / (a1 + a2 + 1e-12), 0.0, ALPHA_MAX)
        x1 = jnp.clip(per_example(jnp.multiply, 1 - mix, s.x1 + ETA * d1)
                      + per_example(jnp.multiply, mix, x + ETA * d2), 0.0, 1.0)
        check = loss_logits(margin_loss, logits_fn, variables, x1, y, k_check, eot)
        adversarial = fooled(check.margin, check.logits, y)
        norm = _linf(x1 - x)
        better = adversarial & (norm < s.norm)
        x_adv = where(better, x1, s.x_adv)
        x1 = where(adversarial, x + BETA * (x1 - x), x1)   # step back toward x once adversarial
        return _State(x1, x_adv, jnp.where(better, norm, s.norm))

    init = _State(x, x, jnp.full((x.shape[0],), jnp.inf, x.dtype))
    final = lax.fori_loop(0, steps, step, init)
    return final.x_adv, final.norm


@takes_variables
def fab_targeted(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *, eps=EPS, steps: int = 100,
                 num_targets: int = 9, eot: int = 1) -> Array:
    """FAB-T, L∞ (Croce & Hein 2020; docs/FORMULAS.md §7): FAB toward each of the ``num_targets``
    highest-scoring wrong classes (clean logits); per example the smallest adversarial point over the
    targets, kept only if its L∞ norm is at most ε (else x itself, as AutoAttack does).

    Each iteration: with ``f = z_y - z_t`` and ``g = ∇f`` at the iterate x1, project x1 and x onto the
    linearised boundary ``f(x1) + g·(z - x1) = 0`` inside [0, 1] (``project_hyperplane_linf``), giving δ1
    and δ2; ``a = min(||δ1||∞ / (||δ1||∞ + ||δ2||∞), 0.1)``; ``x1 ← clip((1-a)(x1 + 1.05·δ1) + a(x + 1.05·δ2))``;
    where x1 is adversarial, ``x1 ← x + 0.9·(x1 - x)``. No random start (AutoAttack's first restart).
    "Adversarial" is the EoT-mean margin over ``eot`` fresh draws > 0 (``core.fooled``, docs/FORMULAS.md §4).

    Args:
      logits_fn, variables, x, y, key, eps, eot: as in ``fgsm``.
      steps: iterations per target >= 1 (100 in AutoAttack).
      num_targets: 1 <= k <= K - 1 (9 in AutoAttack).

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    check_batch(x, y, logits_fn, variables)
    check_options(eps=eps, steps=steps, eot=eot)
    variables, x, y = prepare(variables, x, y)
    check_num_targets(num_targets, num_classes(logits_fn, variables, x))
    k_rank, k_runs = jax.random.split(key)
    clean_logits = loss_logits(margin_loss, logits_fn, variables, x, y, k_rank, eot).logits
    targets = top_wrong_classes(clean_logits, y, num_targets)

    def one_target(j, best):
        x_adv, norm = fab_run(logits_fn, variables, x, y, targets[:, j], jax.random.fold_in(k_runs, j),
                              steps=steps, eot=eot)
        better = norm < best[1]
        return where(better, x_adv, best[0]), jnp.where(better, norm, best[1])

    x_adv, norm = lax.fori_loop(0, num_targets, one_target, (x, jnp.full((x.shape[0],), jnp.inf, x.dtype)))
    return where(norm <= eps, x_adv, x)
