"""White-box L∞ attacks on spiking networks, EoT, and robust-accuracy evaluation (docs/FORMULAS.md §4).

Every attack is a pure function ``attack(logits_fn, params, x, y, key, *, eps, ...) -> x_adv`` of

* a *logit function* ``logits_fn(params, x, key) -> [B, K]``: the prediction logits (mean over time
  of the per-step logits, docs/FORMULAS.md §2) of pixels ``x`` in [0, 1]; ``key`` is the noise key of the
  Noisy-LIF layers (ignored by deterministic models). ``model_logits_fn`` builds one from a flax model
  and picks the backward rule the attack differentiates through (surrogate, BPTR);
* the variables ``params``, a batch ``x`` [B, ...] in [0, 1] with integer labels ``y`` [B], and a PRNG key
  (split for random starts, and folded in per step so that every gradient sees fresh noise).

Gradients are BPTT through the surrogate spike functions. Each step moves the pixels by a sign step,
projects onto the L∞ ball ``||x_adv - x||∞ <= ε`` and clips to [0, 1]. With ``eot=n`` every input
gradient is the mean of n gradients under independent noise draws (EoT, Athalye et al. 2018).

Options (eps, steps, eot, ...) are static: jit with ``static_argnames`` or close over them
(``functools.partial``). Loops are ``lax.fori_loop``, so an attack compiles to one loop whatever the
number of steps, and ``pgd`` is cheap to call inside a jitted adversarial-training step. The returned
``x_adv`` is a constant with respect to ``params`` and ``x`` (the inputs pass through ``stop_gradient``):
sign steps have zero derivative, and this keeps ``jax.grad`` of a training loss from differentiating
through the attack loop.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from tgo_jax.models import mean_over_time

Array = jax.Array
LogitsFn = Callable[[Any, Array, Array], Array]
Objective = Callable[[Array, Array], Array]
AttackFn = Callable[..., Array]

# Paper defaults (docs/FORMULAS.md §4).
EPS = 8 / 255
ALPHA = 0.01


# --------------------------------------------------------------------------------------------------
# Logit functions
# --------------------------------------------------------------------------------------------------

def model_logits_fn(model, *, surrogate: str | None = None, surrogate_param: float | None = None,
                    backward: str | None = None) -> LogitsFn:
    """The logit function of a spiking model, optionally with another backward rule.

    The forward pass is the model's own (eval-mode BatchNorm, ``train=False``); only the gradient an
    attack follows changes: ``surrogate``/``surrogate_param`` swap the surrogate of every spiking layer
    (docs/FORMULAS.md §1), ``backward="bptr"`` gates it to neurons that fired (BPTR). Choosing a new
    ``surrogate`` without ``surrogate_param`` uses that surrogate's default shape parameter.

    Args:
      model: a ``tgo_jax.models`` module with a ``neuron: NeuronConfig`` field.
      surrogate: surrogate name (``tgo_jax.surrogate.FACTORIES``), None to keep the model's.
      surrogate_param: its shape parameter, None for the default (or the model's, if ``surrogate`` is None).
      backward: "surrogate" or "bptr", None to keep the model's.

    Returns:
      ``logits_fn(variables, x, key) -> [B, K]`` = ``mean_t model.apply(variables, x)[t]``, where
      ``variables`` is the full dict (``{'params': ..., 'batch_stats': ...}``) and ``key`` feeds the
      ``'noise'`` stream (may be None for a deterministic model).
    """
    if not hasattr(model, "neuron"):
        raise ValueError(f"model must have a 'neuron' NeuronConfig field, got {type(model).__name__}")
    changes = {}
    if surrogate is not None:
        changes.update(surrogate=surrogate, surrogate_param=surrogate_param)
    elif surrogate_param is not None:
        changes.update(surrogate_param=surrogate_param)
    if backward is not None:
        changes.update(backward=backward)
    attacked = model.clone(neuron=dataclasses.replace(model.neuron, **changes)) if changes else model

    def logits_fn(variables, x, key):
        rngs = None if key is None else {"noise": key}
        return mean_over_time(attacked.apply(variables, x, train=False, rngs=rngs))

    return logits_fn


# --------------------------------------------------------------------------------------------------
# Objectives (per-example losses the attacks maximise)
# --------------------------------------------------------------------------------------------------

def ce_loss(logits: Array, y: Array) -> Array:
    """Cross-entropy CE(z, y) per example, [B]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def margin_loss(logits: Array, y: Array) -> Array:
    """Untargeted margin ``max_{j≠y} z_j - z_y`` per example, [B]; > 0 exactly when misclassified."""
    true = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    others = jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return others.max(axis=-1) - true


def targeted_margin_loss(logits: Array, y: Array, target: Array) -> Array:
    """Targeted margin ``z_t - z_y`` per example, [B] (MTPGD, Gowal et al. 2019)."""
    z_t = jnp.take_along_axis(logits, target[:, None], axis=-1)[:, 0]
    z_y = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    return z_t - z_y


LOSSES: dict[str, Objective] = {"ce": ce_loss, "margin": margin_loss}


# --------------------------------------------------------------------------------------------------
# Validation at the edge
# --------------------------------------------------------------------------------------------------

def _is_concrete(value) -> bool:
    return not isinstance(value, jax.core.Tracer)


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _check_batch(x: Array, y: Array) -> None:
    """x: [B, ...] floats in [0, 1]; y: [B] integers. The range is checked only outside jit."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim < 2:
        raise ValueError(f"x must be a batch [B, ...], got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be floating-point pixels in [0, 1], got dtype {x.dtype}")
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"y must be integer class labels, got dtype {y.dtype}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be [B] with B = x.shape[0] = {x.shape[0]}, got shape {y.shape}")
    if _is_concrete(x):
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"x must be pixels in [0, 1], got values in [{lo}, {hi}]")


def _check_options(*, eps, alpha=None, steps=None, eot=1) -> None:
    if _is_concrete(eps) and not float(eps) >= 0.0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    if alpha is not None and _is_concrete(alpha) and not float(alpha) > 0.0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    if steps is not None:
        _check_positive_int("steps", steps)
    _check_positive_int("eot", eot)


# --------------------------------------------------------------------------------------------------
# Shared pieces: projection, EoT gradients, worst-case bookkeeping
# --------------------------------------------------------------------------------------------------

def project(x_adv: Array, x: Array, eps) -> Array:
    """Π_ε: the nearest point of the L∞ ball ``||x_adv - x||∞ <= ε`` that is a valid image, ``clip(·, 0, 1)``.

    Clipping to [0, 1] after the ball keeps the perturbation within ε because ``x`` itself is in [0, 1].
    """
    return jnp.clip(x + jnp.clip(x_adv - x, -eps, eps), 0.0, 1.0)


def _per_example(fn, a: Array, b: Array) -> Array:
    """Broadcasts a per-example [B] array ``a`` against a batch ``b`` [B, ...] and applies ``fn``."""
    return fn(a.reshape(a.shape + (1,) * (b.ndim - 1)), b)


def _where(mask: Array, a: Array, b: Array) -> Array:
    """Per-example select: ``a[i]`` where ``mask[i]``, else ``b[i]``."""
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)


def _clip_by_norm(g: Array, max_norm) -> Array:
    """Per-example gradient clipping: ``g·min(1, c/||g||_2)``."""
    norm = jnp.sqrt(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=-1))
    scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
    return _per_example(jnp.multiply, scale, g)


class LossGrad(NamedTuple):
    """What ``loss_and_grad`` returns."""

    loss: Array    # [B], mean over the EoT draws
    logits: Array  # [B, K], mean over the EoT draws
    grad: Array    # [B, ...], ∇_x loss, mean over the EoT draws


def _loss_grad_once(objective, logits_fn, params, x, y, key, grad_clip) -> LossGrad:
    def total(x_):
        logits = logits_fn(params, x_, key)
        loss = objective(logits, y)
        # Examples are independent (eval-mode BN, per-example noise), so ∇ of the sum is per example.
        return loss.sum(), (loss, logits)

    grad, (loss, logits) = jax.grad(total, has_aux=True)(x)
    if grad_clip is not None:
        grad = _clip_by_norm(grad, grad_clip)
    return LossGrad(loss, logits, grad)


def loss_and_grad(objective: Objective, logits_fn: LogitsFn, params, x: Array, y: Array, key: Array, *,
                  eot: int = 1, grad_clip: float | None = None) -> LossGrad:
    """Per-example loss, logits and input gradient, averaged over ``eot`` noise draws (EoT, docs/FORMULAS.md §4).

    ``∇̂ = (1/n) Σ_{i=1..n} ∇_x L(f(x; ξ_i), y)``, with the ξ_i drawn from ``n`` keys split from ``key``.
    With ``grad_clip`` each draw's per-example gradient is first clipped to L2 norm ``grad_clip``.
    The draws run in a ``fori_loop`` so memory does not grow with ``n``.
    """
    if eot == 1:
        return _loss_grad_once(objective, logits_fn, params, x, y, key, grad_clip)
    keys = jax.random.split(key, eot)
    once = functools.partial(_loss_grad_once, objective, logits_fn, params, x, y, grad_clip=grad_clip)
    total = lax.fori_loop(1, eot, lambda i, acc: jax.tree.map(jnp.add, acc, once(keys[i])), once(keys[0]))
    return jax.tree.map(lambda a: a / eot, total)


def _loss_logits(objective, logits_fn, params, x, y, key, eot) -> tuple[Array, Array]:
    """Per-example loss and logits (forward only), each averaged over ``eot`` noise draws."""
    def one(k):
        logits = logits_fn(params, x, k)
        return objective(logits, y), logits

    if eot == 1:
        return one(key)
    losses, logits = lax.map(one, jax.random.split(key, eot))
    return losses.mean(axis=0), logits.mean(axis=0)


def _misclassified(logits: Array, y: Array) -> Array:
    return jnp.argmax(logits, axis=-1) != y


class _Worst(NamedTuple):
    x: Array       # [B, ...] the worst point found so far
    fooled: Array  # [B] bool, misclassified there
    score: Array   # [B] loss there (higher is worse for the model)


def _keep_worst(best: _Worst, new: _Worst) -> _Worst:
    """Per example: prefer a misclassified point, then the higher score."""
    take = (new.fooled & ~best.fooled) | ((new.fooled == best.fooled) & (new.score > best.score))
    return _Worst(_where(take, new.x, best.x), jnp.where(take, new.fooled, best.fooled),
                  jnp.where(take, new.score, best.score))


def _uniform_start(key: Array, x: Array, eps) -> Array:
    """Uniform random start in the ε-ball, clipped to [0, 1]."""
    return project(x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps), x, eps)


def _prepare(params, x, y):
    """Inputs as constants (see the module docstring) and arrays."""
    return lax.stop_gradient(params), lax.stop_gradient(jnp.asarray(x)), jnp.asarray(y)


# --------------------------------------------------------------------------------------------------
# Attacks
# --------------------------------------------------------------------------------------------------

def no_attack(logits_fn: LogitsFn, params, x: Array, y: Array, key: Array) -> Array:
    """The identity attack, so that clean accuracy is a row of the robustness table like the others."""
    del logits_fn, params, y, key
    return x


def fgsm(logits_fn: LogitsFn, params, x: Array, y: Array, key: Array, *, eps=EPS, eot: int = 1) -> Array:
    """FGSM (Goodfellow et al. 2014; docs/FORMULAS.md §4): ``x' = clip(x + ε·sign(∇_x CE(f(x), y)), 0, 1)``.

    Args:
      logits_fn: ``logits_fn(params, x, key) -> [B, K]``.
      params: the model variables.
      x: images [B, ...] in [0, 1].
      y: integer labels [B].
      key: PRNG key for the model noise.
      eps: L∞ budget ε >= 0.
      eot: noise draws averaged per gradient (EoT).

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    _check_batch(x, y)
    _check_options(eps=eps, eot=eot)
    params, x, y = _prepare(params, x, y)
    grad = loss_and_grad(ce_loss, logits_fn, params, x, y, key, eot=eot).grad
    return project(x + eps * jnp.sign(grad), x, eps)


def rfgsm(logits_fn: LogitsFn, params, x: Array, y: Array, key: Array, *, eps=EPS, eot: int = 1) -> Array:
    """R-FGSM (docs/FORMULAS.md §4): a random sign step of ε/2, then an FGSM step of ε/2.

    ``x0 = clip(x + (ε/2)·sign(N(0, I)), 0, 1)``, ``x' = Π_ε(x0 + (ε/2)·sign(∇_x CE(f(x0), y)))``.
    Arguments as in ``fgsm``; ``key`` also draws the random step.
    """
    _check_batch(x, y)
    _check_options(eps=eps, eot=eot)
    params, x, y = _prepare(params, x, y)
    k_rand, k_grad = jax.random.split(key)
    x0 = project(x + (eps / 2) * jnp.sign(jax.random.normal(k_rand, x.shape, x.dtype)), x, eps)
    grad = loss_and_grad(ce_loss, logits_fn, params, x0, y, k_grad, eot=eot).grad
    return project(x0 + (eps / 2) * jnp.sign(grad), x, eps)


def _pgd_run(objective, logits_fn, params, x, y, key, *, eps, alpha, steps, random_start, eot,
             grad_clip=None) -> Array:
    """One PGD run: ``x ← Π_ε(x + α·sign(∇_x objective))`` for ``steps`` steps, fresh noise per step."""
    k_start, k_steps = jax.random.split(key)
    x_adv = _uniform_start(k_start, x, eps) if random_start else x

    def step(i, x_adv):
        grad = loss_and_grad(objective, logits_fn, params, x_adv, y, jax.random.fold_in(k_steps, i),
                             eot=eot, grad_clip=grad_clip).grad
        return project(x_adv + alpha * jnp.sign(grad), x, eps)

    return lax.fori_loop(0, steps, step, x_adv)


def _evaluate(objective, logits_fn, params, x_adv, y, key, eot) -> _Worst:
    loss, logits = _loss_logits(objective, logits_fn, params, x_adv, y, key, eot)
    return _Worst(x_adv, _misclassified(logits, y), loss)


def pgd(logits_fn: LogitsFn, params, x: Array, y: Array, key: Array, *, eps=EPS, alpha=ALPHA,
        steps: int = 10, restarts: int = 1, random_start: bool = True, eot: int = 1,
        loss: str = "ce") -> Array:
    """PGD-k (Madry et al. 2018; docs/FORMULAS.md §4) with optional restarts.

    From a uniform random start in the ε-ball, ``steps`` times ``x ← Π_ε(x + α·sign(∇_x L(f(x), y)))``.
    With ``restarts > 1`` the runs start from independent points and each example keeps its worst
    result: a misclassified one if any, else the one with the highest loss (restart r is the single run
    with key ``split(fold_in(key, r))[0]``, scored with fresh noise from ``split(fold_in(key, r))[1]``).

    Args:
      logits_fn, params, x, y, key, eps, eot: as in ``fgsm``.
      alpha: step size α > 0.
      steps: k >= 1.
      restarts: independent runs >= 1.
      random_start: start from a uniform point of the ε-ball (else from x).
      loss: "ce" (cross-entropy) or "margin" (``max_{j≠y} z_j - z_y``).

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    _check_batch(x, y)
    _check_options(eps=eps, alpha=alpha, steps=steps, eot=eot)
    _check_positive_int("restarts", restarts)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    params, x, y = _prepare(params, x, y)
    objective = LOSSES[loss]
    run = functools.partial(_pgd_run, objective, logits_fn, params, x, y, eps=eps, alpha=alpha, steps=steps,
                            random_start=random_start, eot=eot)
    if restarts == 1:
        return run(key)

    def run_and_score(r):
        k_run, k_eval = jax.random.split(jax.random.fold_in(key, r))
        return _evaluate(objective, logits_fn, params, run(k_run), y, k_eval, eot)

    best = lax.fori_loop(1, restarts, lambda r, best: _keep_worst(best, run_and_score(r)), run_and_score(0))
    return best.x


def apgd_checkpoints(steps: int) -> tuple[int, ...]:
    """APGD checkpoints ``w_j ≈ p_j·N`` (Croce & Hein 2020; docs/FORMULAS.md §4), as iteration counts.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``; in iterations (as the
    reference implementation): first period ``max(⌊0.22N⌋, 1)``, each next period shorter by
    ``max(⌊0.03N⌋, 1)`` down to ``max(⌊0.06N⌋, 1)``.
    """
    _check_positive_int("steps", steps)
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
    x_fooled: Array        # [B, ...] last misclassified point (valid where fooled)
    fooled: Array          # [B] bool
    losses: Array          # [steps + 1, B] loss history, losses[0] at the start
    loss_best_check: Array  # [B] best loss at the last checkpoint
    reduced_check: Array   # [B] bool, η was cut at the last checkpoint


def _apgd_momentum_step(s: _ApgdState, x: Array, eps, i) -> Array:
    """``z = Π(x_k + η·sign(g))``, ``x_{k+1} = Π(x_k + a(z - x_k) + (1-a)(x_k - x_{k-1}))``, a = 0.75 (1 at k=0)."""
    z = project(s.x_adv + _per_example(jnp.multiply, s.eta, jnp.sign(s.grad)), x, eps)
    a = jnp.where(i > 0, 0.75, 1.0).astype(x.dtype)
    return project(s.x_adv + a * (z - s.x_adv) + (1 - a) * (s.x_adv - s.x_prev), x, eps)


def _apgd_checkpoint(s: _ApgdState, i, period, *, rho: float) -> _ApgdState:
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
        x_adv=_where(cut, s.x_best, s.x_adv),
        grad=_where(cut, s.grad_best, s.grad),
        reduced_check=cut,
        loss_best_check=s.loss_best)


def _checkpoint_schedule(steps: int) -> tuple[Array, Array]:
    """Per step i: whether a checkpoint closes after it ([steps] bool) and that period's length ([steps] int)."""
    points = apgd_checkpoints(steps)
    periods = [b - a for a, b in zip((0,) + points[:-1], points)]
    idx = jnp.asarray(points, jnp.int32) - 1
    is_check = jnp.zeros((steps,), bool).at[idx].set(True)
    period = jnp.zeros((steps,), jnp.int32).at[idx].set(jnp.asarray(periods, jnp.int32))
    return is_check, period


def apgd(logits_fn: LogitsFn, params, x: Array, y: Array, key: Array, *, eps=EPS, steps: int = 100,
         eot: int = 1, rho: float = 0.75) -> Array:
    """APGD-CE, L∞ (Croce & Hein 2020; docs/FORMULAS.md §4).

    Start ``x_0 = Π(x + ε·u/||u||∞)``, u ~ U[-1, 1]; step ``η = 2ε``; momentum 0.75:
    ``z = Π(x_k + η·sign(∇CE))``, ``x_{k+1} = Π(x_k + 0.75(z - x_k) + 0.25(x_k - x_{k-1}))``.
    At the checkpoints of ``apgd_checkpoints(steps)`` η is halved and the iterate restarts from the best
    point, per example, when fewer than ``rho`` of the period's steps raised the loss, or when η was
    not cut at the previous checkpoint and the best loss has not improved since. Each example returns
    a misclassified point if one was met, else its highest-loss point.

    Args:
      logits_fn, params, x, y, key, eps, eot: as in ``fgsm``.
      steps: iterations N >= 1 (gradient evaluations: N + 1, each with ``eot`` draws).
      rho: the fraction ρ in (0, 1) of the oscillation test.

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    _check_batch(x, y)
    _check_options(eps=eps, steps=steps, eot=eot)
    if not 0.0 < rho < 1.0:
        raise ValueError(f"rho must be in (0, 1), got {rho!r}")
    params, x, y = _prepare(params, x, y)
    k_start, k_steps = jax.random.split(key)
    is_check, period = _checkpoint_schedule(steps)

    u = jax.random.uniform(k_start, x.shape, x.dtype, -1.0, 1.0)
    u_max = jnp.max(jnp.abs(u).reshape(x.shape[0], -1), axis=-1)
    x0 = project(x + eps * _per_example(jnp.divide, u_max, u), x, eps)

    def grad_at(x_adv, i):
        return loss_and_grad(ce_loss, logits_fn, params, x_adv, y, jax.random.fold_in(k_steps, i), eot=eot)

    g0 = grad_at(x0, 0)
    batch = x.shape[0]
    state = _ApgdState(
        x_adv=x0, x_prev=x0, grad=g0.grad, eta=jnp.full((batch,), 2.0 * eps, x.dtype),
        x_best=x0, grad_best=g0.grad, loss_best=g0.loss, x_fooled=x0, fooled=_misclassified(g0.logits, y),
        losses=jnp.zeros((steps + 1, batch), g0.loss.dtype).at[0].set(g0.loss), loss_best_check=g0.loss,
        reduced_check=jnp.ones((batch,), bool))

    def step(i, s: _ApgdState) -> _ApgdState:
        x_new = _apgd_momentum_step(s, x, eps, i)
        lg = grad_at(x_new, i + 1)
        wrong = _misclassified(lg.logits, y)
        better = lg.loss > s.loss_best
        s = s._replace(
            x_adv=x_new, x_prev=s.x_adv, grad=lg.grad,
            x_fooled=_where(wrong, x_new, s.x_fooled), fooled=s.fooled | wrong,
            x_best=_where(better, x_new, s.x_best), grad_best=_where(better, lg.grad, s.grad_best),
            loss_best=jnp.where(better, lg.loss, s.loss_best),
            losses=s.losses.at[i + 1].set(lg.loss))
        check = functools.partial(_apgd_checkpoint, i=i, period=period[i], rho=rho)
        return lax.cond(is_check[i], check, lambda s_: s_, s)

    final = lax.fori_loop(0, steps, step, state)
    return _where(final.fooled, final.x_fooled, final.x_best)


def mtpgd(logits_fn: LogitsFn, params, x: Array, y: Array, key: Array, *, eps=EPS, alpha=ALPHA,
          steps: int = 10, num_targets: int = 9, grad_clip: float | None = None, eot: int = 1) -> Array:
    """Multi-targeted PGD (Gowal et al. 2019; docs/FORMULAS.md §4).

    For each of the ``num_targets`` highest-scoring wrong classes t (ranked on the clean logits), a PGD
    run with random start maximises the targeted margin ``z_t - z_y``. Each example returns the worst
    point over the targets: a misclassified one if any run fooled the model (so the example counts as
    robust only if every run failed), else the one with the highest margin ``max_{j≠y} z_j - z_y``.

    Args:
      logits_fn, params, x, y, key, eps, alpha, steps, eot: as in ``pgd``.
      num_targets: k, 1 <= k <= K - 1.
      grad_clip: if set, each draw's per-example input gradient is clipped to this L2 norm before the
        EoT mean, so that no single noise draw dominates the averaged direction (a sign step is
        invariant to scale, so with ``eot=1`` this changes nothing).

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    _check_batch(x, y)
    _check_options(eps=eps, alpha=alpha, steps=steps, eot=eot)
    _check_positive_int("num_targets", num_targets)
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip!r}")
    params, x, y = _prepare(params, x, y)
    k_rank, k_runs = jax.random.split(key)
    num_classes = jax.eval_shape(logits_fn, params, x, k_rank).shape[-1]
    if num_targets > num_classes - 1:
        raise ValueError(f"num_targets must be <= K - 1 = {num_classes - 1}, got {num_targets}")
    _, clean_logits = _loss_logits(margin_loss, logits_fn, params, x, y, k_rank, eot)
    ranked = jnp.where(jax.nn.one_hot(y, num_classes, dtype=bool), -jnp.inf, clean_logits)
    _, targets = lax.top_k(ranked, num_targets)  # [B, k], best wrong class first

    def run_and_score(j):
        k_run, k_eval = jax.random.split(jax.random.fold_in(k_runs, j))
        objective = functools.partial(targeted_margin_loss, target=targets[:, j])
        x_adv = _pgd_run(objective, logits_fn, params, x, y, k_run, eps=eps, alpha=alpha, steps=steps,
                         random_start=True, eot=eot, grad_clip=grad_clip)
        return _evaluate(margin_loss, logits_fn, params, x_adv, y, k_eval, eot)

    best = lax.fori_loop(1, num_targets, lambda j, best: _keep_worst(best, run_and_score(j)), run_and_score(0))
    return best.x


ATTACKS: dict[str, AttackFn] = {
    "clean": no_attack,
    "fgsm": fgsm,
    "rfgsm": rfgsm,
    "pgd": pgd,
    "apgd": apgd,
    "mtpgd": mtpgd,
}


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------

def correct(logits_fn: LogitsFn, params, x: Array, y: Array, key: Array, *, draws: int = 1) -> Array:
    """Per-example share of ``draws`` fresh noise draws under which the prediction is right, [B] in [0, 1]."""
    _check_positive_int("draws", draws)
    keys = jax.random.split(key, draws)
    hits = lax.map(lambda k: jnp.argmax(logits_fn(params, x, k), axis=-1) == y, keys)
    return hits.astype(jnp.float32).mean(axis=0)


def accuracy(logits_fn: LogitsFn, params, x: Array, y: Array, key: Array, *, draws: int = 1) -> Array:
    """Accuracy, averaged over ``draws`` fresh noise draws for a stochastic model (docs/FORMULAS.md §4)."""
    return correct(logits_fn, params, x, y, key, draws=draws).mean()


def robust_correct(attack_fn: AttackFn, logits_fn: LogitsFn, params, x: Array, y: Array, key: Array, *,
                   draws: int = 1, eval_logits_fn: LogitsFn | None = None) -> Array:
    """Per-example correctness [B] at ``x_adv = attack_fn(logits_fn, params, x, y, key_attack)``.

    The evaluation uses noise independent of the attack's, and ``eval_logits_fn`` (default
    ``logits_fn``; only the forward pass matters here).
    """
    k_attack, k_eval = jax.random.split(key)
    x_adv = attack_fn(logits_fn, params, x, y, k_attack)
    return correct(eval_logits_fn or logits_fn, params, x_adv, y, k_eval, draws=draws)


def robust_accuracy(attack_fn: AttackFn, logits_fn: LogitsFn, params, x: Array, y: Array, key: Array, *,
                    draws: int = 1) -> Array:
    """Accuracy under ``attack_fn`` (a partial of an attack with its options set), with fresh noise."""
    return robust_correct(attack_fn, logits_fn, params, x, y, key, draws=draws).mean()


Rule = tuple[str, float | None]
DEFAULT_RULES: tuple[Rule, ...] = (("triangle", None), ("sigmoid", None), ("atan", None), ("bptr", None))


def rule_name(rule: Rule) -> str:
    """"triangle", "sigmoid(2.0)", "bptr", ... for reports."""
    name, param = rule
    return name if param is None else f"{name}({param})"


def rule_logits_fn(model, rule: Rule) -> LogitsFn:
    """The logit function that differentiates through ``rule``: ("bptr", None) is the model's surrogate
    under the BPTR gate; any other (name, param) is that surrogate with the plain surrogate backward."""
    name, param = rule
    if name == "bptr":
        return model_logits_fn(model, surrogate_param=param, backward="bptr")
    return model_logits_fn(model, surrogate=name, surrogate_param=param, backward="surrogate")


DEFAULT_ENSEMBLE_ATTACK = functools.partial(pgd, eps=EPS, alpha=ALPHA, steps=10)


class EnsembleResult(NamedTuple):
    accuracy: Array            # [] share of examples robust under every rule
    per_rule: dict[str, Array]  # rule name -> robust accuracy under that rule alone


def ensemble_robust_accuracy(model, params, x: Array, y: Array, key: Array, *,
                             attack: AttackFn = DEFAULT_ENSEMBLE_ATTACK,
                             rules: Sequence[Rule] = DEFAULT_RULES, draws: int = 1) -> EnsembleResult:
    """Surrogate-ensemble robust accuracy (SR, Ding et al. 2024; docs/FORMULAS.md §4).

    The attack runs once per backward rule; an example counts as robust only if it survives all of
    them: ``acc = mean_b min_r c_r(b)`` with ``c_r(b)`` the share of evaluation draws under which the
    prediction at rule r's adversarial example is right (0 or 1 for a deterministic model). Hence
    ``acc <= min_r acc_r``. Every evaluation uses the model's own forward pass with fresh noise.

    Args:
      model: a ``tgo_jax.models`` module.
      params: its variables.
      x, y, key: as in the attacks.
      attack: ``attack(logits_fn, params, x, y, key) -> x_adv``, e.g. ``functools.partial(pgd, steps=10)``.
      rules: (surrogate name or "bptr", shape parameter or None) pairs.
      draws: evaluation noise draws per example.
    """
    if not rules:
        raise ValueError("rules must list at least one backward rule, got an empty sequence")
    eval_fn = model_logits_fn(model)
    keys = jax.random.split(key, len(rules))
    per_example = {rule_name(rule): robust_correct(attack, rule_logits_fn(model, rule), params, x, y, k,
                                                   draws=draws, eval_logits_fn=eval_fn)
                   for rule, k in zip(rules, keys)}
    robust = jnp.min(jnp.stack(list(per_example.values())), axis=0)
    return EnsembleResult(robust.mean(), {name: c.mean() for name, c in per_example.items()})


def paper_suite(eps=EPS, alpha=ALPHA, eot: int = 1, extra: Sequence[str] = ("apgd", "mtpgd"), *,
                pgd_steps: Sequence[int] = (7, 10, 20, 40), apgd_steps: int = 100, mtpgd_steps: int = 10,
                num_targets: int = 9) -> list[tuple[str, AttackFn]]:
    """The rows of the paper's robustness tables as (name, attack) pairs, each attack a partial
    ``attack(logits_fn, params, x, y, key) -> x_adv``: Clean, FGSM, RFGSM, PGD7/10/20/40 at ε, step α,
    then the optional "apgd" (APGD-CE) and "mtpgd" rows (paper Tables 1-3).

    Example::

        for name, attack in paper_suite(eps=8/255):
            print(name, robust_accuracy(attack, logits_fn, params, x, y, key, draws=10))
    """
    _check_options(eps=eps, alpha=alpha, eot=eot)
    unknown = set(extra) - {"apgd", "mtpgd"}
    if unknown:
        raise ValueError(f"extra must list attacks among ['apgd', 'mtpgd'], got {sorted(unknown)}")
    rows = [("Clean", no_attack),
            ("FGSM", functools.partial(fgsm, eps=eps, eot=eot)),
            ("RFGSM", functools.partial(rfgsm, eps=eps, eot=eot))]
    rows += [(f"PGD{k}", functools.partial(pgd, eps=eps, alpha=alpha, steps=k, eot=eot)) for k in pgd_steps]
    if "apgd" in extra:
        rows.append(("APGD", functools.partial(apgd, eps=eps, steps=apgd_steps, eot=eot)))
    if "mtpgd" in extra:
        rows.append(("MTPGD", functools.partial(mtpgd, eps=eps, alpha=alpha, steps=mtpgd_steps,
                                                num_targets=num_targets, eot=eot)))
    return rows
