"""Sign-gradient attacks: FGSM, R-FGSM, PGD-k with restarts, multi-targeted PGD (docs/FORMULAS.md §4).

Conventions (signature, EoT, constants) are those of ``tgo_jax.attacks.core``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import validation
from tgo_jax.attacks.core import (ALPHA, EPS, LOSSES, Array, LogitsFn, ce_loss, check_batch, check_options,
                                  keep_worst, loss_and_grad, loss_logits, margin_loss, num_classes, prepare,
                                  project, score, targeted_margin_loss, uniform_start)
from tgo_jax.attacks.core import takes_variables


@takes_variables
def no_attack(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array) -> Array:
    """The identity attack, so that clean accuracy is a row of the robustness table like the others."""
    del logits_fn, variables, y, key
    return x


@takes_variables
def fgsm(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *, eps=EPS, eot: int = 1) -> Array:
    """FGSM (Goodfellow et al. 2014; docs/FORMULAS.md §4): ``x' = clip(x + ε·sign(∇_x CE(f(x), y)), 0, 1)``.

    Args:
      logits_fn: ``logits_fn(variables, x, key) -> [B, K]``.
      variables: the model's variables (the whole Flax dict, ``{'params': ..., 'batch_stats': ...}``).
      x: images [B, ...] in [0, 1].
      y: integer labels [B].
      key: PRNG key for the model noise.
      eps: L∞ budget ε >= 0.
      eot: noise draws averaged per gradient (EoT).

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    check_batch(x, y, logits_fn, variables)
    check_options(eps=eps, eot=eot)
    variables, x, y = prepare(variables, x, y)
    grad = loss_and_grad(ce_loss, logits_fn, variables, x, y, key, eot=eot).grad
    return project(x + eps * jnp.sign(grad), x, eps)


@takes_variables
def rfgsm(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *, eps=EPS, eot: int = 1) -> Array:
    """R-FGSM (docs/FORMULAS.md §4): a random sign step of ε/2, then an FGSM step of ε/2.

    ``x0 = clip(x + (ε/2)·sign(N(0, I)), 0, 1)``, ``x' = Π_ε(x0 + (ε/2)·sign(∇_x CE(f(x0), y)))``.
    Arguments as in ``fgsm``; ``key`` also draws the random step.
    """
    check_batch(x, y, logits_fn, variables)
    check_options(eps=eps, eot=eot)
    variables, x, y = prepare(variables, x, y)
    k_rand, k_grad = jax.random.split(key)
    x0 = project(x + (eps / 2) * jnp.sign(jax.random.normal(k_rand, x.shape, x.dtype)), x, eps)
    grad = loss_and_grad(ce_loss, logits_fn, variables, x0, y, k_grad, eot=eot).grad
    return project(x0 + (eps / 2) * jnp.sign(grad), x, eps)


def pgd_run(objective, logits_fn, variables, x, y, key, *, eps, alpha, steps, random_start, eot,
            grad_clip=None) -> Array:
    """One PGD run: ``x ← Π_ε(x + α·sign(∇_x objective))`` for ``steps`` steps, fresh noise per step."""
    k_start, k_steps = jax.random.split(key)
    x_adv = uniform_start(k_start, x, eps) if random_start else x

    def step(i, x_adv):
        grad = loss_and_grad(objective, logits_fn, variables, x_adv, y, jax.random.fold_in(k_steps, i),
                             eot=eot, grad_clip=grad_clip).grad
        return project(x_adv + alpha * jnp.sign(grad), x, eps)

    return lax.fori_loop(0, steps, step, x_adv)


@takes_variables
def pgd(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *, eps=EPS, alpha=ALPHA,
        steps: int = 10, restarts: int = 1, random_start: bool = True, eot: int = 1,
        loss: str = "ce") -> Array:
    """PGD-k (Madry et al. 2018; docs/FORMULAS.md §4) with optional restarts.

    From a uniform random start in the ε-ball, ``steps`` times ``x ← Π_ε(x + α·sign(∇_x L(f(x), y)))``.
    With ``restarts > 1`` the runs start from independent points and each example keeps its worst
    result: a fooled one if any, else the one with the highest loss (restart r is the single run with key
    ``split(fold_in(key, r))[0]``, scored with ``eot`` fresh draws from ``split(fold_in(key, r))[1]``: fooled
    means an EoT-mean margin > 0, the loss is the EoT mean; docs/FORMULAS.md §4).

    Args:
      logits_fn, variables, x, y, key, eps, eot: as in ``fgsm``.
      alpha: step size α > 0.
      steps: k >= 1.
      restarts: independent runs >= 1.
      random_start: start from a uniform point of the ε-ball (else from x).
      loss: "ce" (cross-entropy), "margin" (``max_{j≠y} z_j - z_y``) or "dlr" (docs/FORMULAS.md §7).

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    check_batch(x, y, logits_fn, variables)
    check_options(eps=eps, alpha=alpha, steps=steps, eot=eot)
    validation.count("restarts", restarts)
    validation.choice("loss", loss, tuple(LOSSES))
    variables, x, y = prepare(variables, x, y)
    objective = LOSSES[loss]
    run = functools.partial(pgd_run, objective, logits_fn, variables, x, y, eps=eps, alpha=alpha, steps=steps,
                            random_start=random_start, eot=eot)
    if restarts == 1:
        return run(key)

    def run_and_score(r):
        k_run, k_eval = jax.random.split(jax.random.fold_in(key, r))
        return score(objective, logits_fn, variables, run(k_run), y, k_eval, eot)

    best = lax.fori_loop(1, restarts, lambda r, best: keep_worst(best, run_and_score(r)), run_and_score(0))
    return best.x


def check_num_targets(num_targets, k: int) -> int:
    """1 <= targets <= K - 1 (a clear error naming K)."""
    validation.count("num_targets", num_targets)
    if num_targets > k - 1:
        raise ValueError(f"num_targets must be <= K - 1 = {k - 1}, got {num_targets}")
    return num_targets


def top_wrong_classes(logits: Array, y: Array, num_targets: int) -> Array:
    """[B, num_targets] the highest-scoring wrong classes, best first (the targets of MTPGD, APGD-T, FAB-T)."""
    ranked = jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return lax.top_k(ranked, num_targets)[1]


def worst_over_targets(run_fn, logits_fn, variables, x: Array, y: Array, key: Array, *, num_targets: int,
                       eot: int) -> Array:
    """One targeted run per top wrong class (ranked on the clean logits), each example's worst point kept.

    ``run_fn(target [B], key) -> x_adv`` is the targeted attack (PGD for MTPGD, APGD for APGD-T); a point
    is scored by the untargeted margin, and a fooled one always wins (``core.keep_worst``); both on the
    mean over ``eot`` fresh noise draws (docs/FORMULAS.md §4).
    """
    k_rank, k_runs = jax.random.split(key)
    clean_logits = loss_logits(margin_loss, logits_fn, variables, x, y, k_rank, eot).logits
    targets = top_wrong_classes(clean_logits, y, num_targets)

    def run_and_score(j):
        k_run, k_eval = jax.random.split(jax.random.fold_in(k_runs, j))
        return score(margin_loss, logits_fn, variables, run_fn(targets[:, j], k_run), y, k_eval, eot)

    return lax.fori_loop(1, num_targets, lambda j, best: keep_worst(best, run_and_score(j)), run_and_score(0)).x


@takes_variables
def mtpgd(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *, eps=EPS, alpha=ALPHA,
          steps: int = 10, num_targets: int = 9, grad_clip: float | None = None, eot: int = 1) -> Array:
    """Multi-targeted PGD (Gowal et al. 2019; docs/FORMULAS.md §4).

    For each of the ``num_targets`` highest-scoring wrong classes t (ranked on the clean logits), a PGD
    run with random start maximises the targeted margin ``z_t - z_y``. Each example returns the worst
    point over the targets: a fooled one if any run fooled the model (so the example counts as robust
    only if every run failed), else the one with the highest margin ``max_{j≠y} z_j - z_y`` (both on the
    margin's mean over ``eot`` fresh noise draws, docs/FORMULAS.md §4).

    Args:
      logits_fn, variables, x, y, key, eps, alpha, steps, eot: as in ``pgd``.
      num_targets: k, 1 <= k <= K - 1.
      grad_clip: if set, each draw's per-example input gradient is clipped to this L2 norm before the
        EoT mean, so that no single noise draw dominates the averaged direction (a sign step is
        invariant to scale, so with ``eot=1`` this changes nothing).

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    check_batch(x, y, logits_fn, variables)
    check_options(eps=eps, alpha=alpha, steps=steps, eot=eot)
    if grad_clip is not None:
        validation.positive("grad_clip", grad_clip)
    variables, x, y = prepare(variables, x, y)
    check_num_targets(num_targets, num_classes(logits_fn, variables, x))

    def run(target, k):
        objective = functools.partial(targeted_margin_loss, target=target)
        return pgd_run(objective, logits_fn, variables, x, y, k, eps=eps, alpha=alpha, steps=steps,
                       random_start=True, eot=eot, grad_clip=grad_clip)

    return worst_over_targets(run, logits_fn, variables, x, y, key, num_targets=num_targets, eot=eot)
