"""Auto-PGD (Croce & Hein, ICML 2020): APGD-CE, APGD-DLR and the targeted APGD-T (docs/FORMULAS.md §4, §7).

Conventions (signature, EoT, constants) are those of ``tgo_jax.attacks.core``. The step-size schedule,
momentum and restarts follow the paper and its reference implementation (AutoAttack).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import validation
from tgo_jax.attacks.core import (EPS, Array, LogitsFn, check_batch, check_options, dlr_loss, fooled, keep_worst,
                                  loss_and_grad, num_classes,
                                  per_example, prepare, project, score, targeted_dlr_loss, where, ce_loss)
from tgo_jax.attacks.core import takes_variables
from tgo_jax.attacks.gradient import check_num_targets, worst_over_targets

APGD_LOSSES = {"ce": ce_loss, "dlr": dlr_loss}


def apgd_checkpoints(steps: int) -> tuple[int, ...]:
    """APGD checkpoints ``w_j ≈ p_j·N`` (Croce & Hein 2020; docs/FORMULAS.md §4), as iteration counts.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``; in iterations (as the
    reference implementation): first period ``max(⌊0.22N⌋, 1)``, each next period shorter by
    ``max(⌊0.03N⌋, 1)`` down to ``max(⌊0.06N⌋, 1)``.
    """
    validation.count("steps", steps)
    period, decrease, minimum = (max(int(f * steps), 1) for f in (0.22, 0.03, 0.06))
    points, w = [], 0
    while w + period <= steps:
        w += period
        points.append(w)
        period = max(period - decrease, minimum)
    return tuple(points)


class _ApgdState(NamedTuple):
    x_adv: Array           # [B, ...] current iterate x^(k)
    x_prev: Array          # [B, ...] previous iterate x^(k-1)
    grad: Array            # [B, ...] gradient at x_adv
    eta: Array             # [B] step size η
    x_best: Array          # [B, ...] highest-loss point so far
    grad_best: Array       # [B, ...] gradient there
    loss_best: Array       # [B]
    x_fooled: Array        # [B, ...] last fooled point (valid where fooled)
    fooled: Array          # [B] bool, EoT-mean margin > 0 met (core.fooled)
    losses: Array          # [steps + 1, B] loss history, losses[0] at the start
    loss_best_check: Array  # [B] best loss at the last checkpoint
    reduced_check: Array   # [B] bool, η was cut at the last checkpoint


def _momentum_step(s: _ApgdState, x: Array, eps, i) -> Array:
    """``z = Π(x_k + η·sign(g))``, ``x_{k+1} = Π(x_k + a(z - x_k) + (1-a)(x_k - x_{k-1}))``, a = 0.75 (1 at k=0)."""
    z = project(s.x_adv + per_example(jnp.multiply, s.eta, jnp.sign(s.grad)), x, eps)
    a = jnp.where(i > 0, 0.75, 1.0).astype(x.dtype)
    return project(s.x_adv + a * (z - s.x_adv) + (1 - a) * (s.x_adv - s.x_prev), x, eps)


def _checkpoint(s: _ApgdState, i, period, *, rho: float) -> _ApgdState:
    """At the checkpoint closing step i (a period of ``period`` steps): halve η and restart from x_best
    where (1) fewer than ρ·period of the period's steps raised the loss, or (2) η was not cut at the last
    checkpoint and the best loss did not improve since."""
    step_idx = jnp.arange(s.losses.shape[0] - 1)
    in_period = (step_idx <= i) & (step_idx > i - period)
    raised = jnp.sum((s.losses[1:] > s.losses[:-1]) & in_period[:, None], axis=0)
    oscillating = raised < rho * period
    stalled = ~s.reduced_check & (s.loss_best_check >= s.loss_best)
    cut = oscillating | stalled
    return s._replace(
        eta=jnp.where(cut, s.eta / 2, s.eta),
        x_adv=where(cut, s.x_best, s.x_adv),
        grad=where(cut, s.grad_best, s.grad),
        reduced_check=cut,
        loss_best_check=s.loss_best)


def checkpoint_schedule(steps: int) -> tuple[Array, Array]:
    """Per step i: whether a checkpoint closes after it ([steps] bool) and that period's length ([steps] int)."""
    points = apgd_checkpoints(steps)
    periods = [b - a for a, b in zip((0,) + points[:-1], points)]
    idx = jnp.asarray(points, jnp.int32) - 1
    is_check = jnp.zeros((steps,), bool).at[idx].set(True)
    period = jnp.zeros((steps,), jnp.int32).at[idx].set(jnp.asarray(periods, jnp.int32))
    return is_check, period


def apgd_run(objective, logits_fn, variables, x, y, key, *, eps, steps, eot, rho) -> Array:
    """One APGD run maximising ``objective``; per example a fooled point (EoT-mean margin > 0) if met, else
    the point of highest EoT-mean loss."""
    k_start, k_steps = jax.random.split(key)
    is_check, period = checkpoint_schedule(steps)
    u = jax.random.uniform(k_start, x.shape, x.dtype, -1.0, 1.0)
    u_max = jnp.max(jnp.abs(u).reshape(x.shape[0], -1), axis=-1)
    x0 = project(x + eps * per_example(jnp.divide, u_max, u), x, eps)

    def grad_at(x_adv, i):
        return loss_and_grad(objective, logits_fn, variables, x_adv, y, jax.random.fold_in(k_steps, i), eot=eot)

    g0 = grad_at(x0, 0)
    batch = x.shape[0]
    state = _ApgdState(
        x_adv=x0, x_prev=x0, grad=g0.grad, eta=jnp.full((batch,), 2.0 * eps, x.dtype),
        x_best=x0, grad_best=g0.grad, loss_best=g0.loss, x_fooled=x0, fooled=fooled(g0.margin, g0.logits, y),
        losses=jnp.zeros((steps + 1, batch), g0.loss.dtype).at[0].set(g0.loss), loss_best_check=g0.loss,
        reduced_check=jnp.ones((batch,), bool))

    def step(i, s: _ApgdState) -> _ApgdState:
        x_new = _momentum_step(s, x, eps, i)
        lg = grad_at(x_new, i + 1)
        wrong = fooled(lg.margin, lg.logits, y)
        better = lg.loss > s.loss_best
        s = s._replace(
            x_adv=x_new, x_prev=s.x_adv, grad=lg.grad,
            x_fooled=where(wrong, x_new, s.x_fooled), fooled=s.fooled | wrong,
            x_best=where(better, x_new, s.x_best), grad_best=where(better, lg.grad, s.grad_best),
            loss_best=jnp.where(better, lg.loss, s.loss_best),
            losses=s.losses.at[i + 1].set(lg.loss))
        check = functools.partial(_checkpoint, i=i, period=period[i], rho=rho)
        return lax.cond(is_check[i], check, lambda s_: s_, s)

    final = lax.fori_loop(0, steps, step, state)
    return where(final.fooled, final.x_fooled, final.x_best)


def _check_rho(rho):
    validation.finite("rho", rho)
    if not 0.0 < rho < 1.0:
        raise ValueError(f"rho must be in (0, 1), got {rho!r}")


@takes_variables
def apgd(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *, eps=EPS, steps: int = 100,
         eot: int = 1, rho: float = 0.75, loss: str = "ce", restarts: int = 1) -> Array:
    """APGD-CE / APGD-DLR, L∞ (Croce & Hein 2020; docs/FORMULAS.md §4, §7).

    Start ``x_0 = Π(x + ε·u/||u||∞)``, u ~ U[-1, 1]; step ``η = 2ε``; momentum 0.75:
    ``z = Π(x_k + η·sign(∇L))``, ``x_{k+1} = Π(x_k + 0.75(z - x_k) + 0.25(x_k - x_{k-1}))``.
    At the checkpoints of ``apgd_checkpoints(steps)`` η is halved and the iterate restarts from the best
    point, per example, when fewer than ``rho`` of the period's steps raised the loss, or when η was
    not cut at the previous checkpoint and the best loss has not improved since. Each example returns
    a fooled point if one was met, else its highest-loss point; with EoT both are judged on the mean over
    the step's ``eot`` draws (margin ``max_{j≠y} z_j - z_y`` > 0, resp. loss; docs/FORMULAS.md §4).

    Args:
      logits_fn, variables, x, y, key, eps, eot: as in ``fgsm``.
      steps: iterations N >= 1 (gradient evaluations: N + 1, each with ``eot`` draws).
      rho: the fraction ρ in (0, 1) of the oscillation test.
      loss: "ce" (APGD-CE) or "dlr" (APGD-DLR, needs K >= 3).
      restarts: independent runs, per example the worst kept.

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    check_batch(x, y, logits_fn, variables)
    check_options(eps=eps, steps=steps, eot=eot)
    _check_rho(rho)
    validation.choice("loss", loss, tuple(APGD_LOSSES))
    validation.count("restarts", restarts)
    variables, x, y = prepare(variables, x, y)
    if loss == "dlr" and num_classes(logits_fn, variables, x) < 3:
        raise ValueError("loss='dlr' needs K >= 3 classes")
    objective = APGD_LOSSES[loss]
    run = functools.partial(apgd_run, objective, logits_fn, variables, x, y, eps=eps, steps=steps, eot=eot, rho=rho)
    if restarts == 1:
        return run(key)

    def run_and_score(r):
        k_run, k_eval = jax.random.split(jax.random.fold_in(key, r))
        return score(objective, logits_fn, variables, run(k_run), y, k_eval, eot)

    return lax.fori_loop(1, restarts, lambda r, b: keep_worst(b, run_and_score(r)), run_and_score(0)).x


@takes_variables
def apgd_targeted(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *, eps=EPS, steps: int = 100,
                  num_targets: int = 9, eot: int = 1, rho: float = 0.75) -> Array:
    """APGD-T (Croce & Hein 2020; docs/FORMULAS.md §7): one APGD run per target class on the targeted DLR loss.

    The targets are the ``num_targets`` highest-scoring wrong classes on the clean logits (AutoAttack's
    standard version uses 9). Each example keeps a fooled point if any run found one, else the point
    with the highest untargeted margin (both on the mean over ``eot`` fresh draws, docs/FORMULAS.md §4).

    Args:
      logits_fn, variables, x, y, key, eps, steps, eot, rho: as in ``apgd``.
      num_targets: 1 <= k <= K - 1 (and K >= 4 for the targeted DLR loss).

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    check_batch(x, y, logits_fn, variables)
    check_options(eps=eps, steps=steps, eot=eot)
    _check_rho(rho)
    variables, x, y = prepare(variables, x, y)
    k = num_classes(logits_fn, variables, x)
    check_num_targets(num_targets, k)
    if k < 4:
        raise ValueError(f"APGD-T's targeted DLR loss needs K >= 4 classes, got K = {k}")

    def run(target, k):
        objective = functools.partial(targeted_dlr_loss, target=target)
        return apgd_run(objective, logits_fn, variables, x, y, k, eps=eps, steps=steps, eot=eot, rho=rho)

    return worst_over_targets(run, logits_fn, variables, x, y, key, num_targets=num_targets, eot=eot)
