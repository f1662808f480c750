"""Shared pieces of every attack: logit functions, objectives, input checks, projection, EoT gradients.

Every attack is a pure function ``attack(logits_fn, variables, x, y, key, *, eps, ...) -> x_adv`` of

* a *logit function* ``logits_fn(variables, x, key) -> [B, K]``: the prediction logits (mean over time
  of the per-step logits, docs/FORMULAS.md §2) of pixels ``x`` in [0, 1]; ``key`` is the noise key of the
  Noisy-LIF layers (ignored by deterministic models). ``model_logits_fn`` builds one from a flax model
  and picks the backward rule the attack differentiates through (surrogate, BPTR);
* the model's variables ``variables`` (the whole Flax dict, ``{'params': ..., 'batch_stats': ...}``), a batch
  ``x`` [B, ...] in [0, 1] with integer labels ``y`` [B], and a PRNG key (split for random
  starts, and folded in per step so that every gradient sees fresh noise).

Gradients are BPTT through the surrogate spike functions. Each step moves the pixels and projects onto
the L∞ ball ``||x_adv - x||∞ <= ε`` intersected with [0, 1]. With ``eot=n`` every input gradient is the
mean of n gradients under independent noise draws (EoT, Athalye et al. 2018), and wherever an attack picks a
point (fooled or not, the best restart, target or iterate) it goes by the margin or loss averaged over the
same number of draws, never by one draw (``fooled``, docs/FORMULAS.md §4).

Options (eps, steps, eot, ...) are static: jit with ``static_argnames`` or close over them
(``functools.partial``). Loops are ``lax.fori_loop``, so an attack compiles to one loop whatever the
number of steps. The returned ``x_adv`` is a constant with respect to ``variables`` and ``x`` (the inputs
pass through ``stop_gradient``); ``tgo_jax.attacks.differentiable`` has the attacks that ``jax.grad``
differentiates through.

Input checks (``check_batch``): NaN/inf pixels, pixels outside [0, 1] and labels outside [0, K) are
errors on concrete arrays; under ``jax.jit`` the checks that need values are skipped, so closed-over
constants and traced arguments both work.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from tgo_jax import validation
from tgo_jax.models import mean_over_time

Array = jax.Array
LogitsFn = Callable[[Any, Array, Array], Array]
Objective = Callable[[Array, Array], Array]
AttackFn = Callable[..., Array]  # attack(logits_fn, variables, x, y, key, **options) -> x_adv



def takes_variables(fn: Callable | None = None, *, name: str | None = None):
    """Decorator of the public attacks: the keyword ``params=`` (the argument's old name) is one clear
    TypeError, "pgd() takes the model's variables as `variables` (renamed from `params`)". Nothing else
    changes: positional calls, ``functools.partial`` options and ``jax.jit`` (static argnames are read from
    the wrapped signature) work as on ``fn`` itself. ``name`` replaces ``fn.__name__`` in the message."""
    if fn is None:
        return functools.partial(takes_variables, name=name)
    label = name or fn.__name__

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "params" in kwargs:
            raise TypeError(f"{label}() takes the model's variables as `variables` (renamed from `params`)")
        return fn(*args, **kwargs)

    return wrapper


# Paper defaults (docs/FORMULAS.md §4).
EPS = 8 / 255
ALPHA = 0.01


# --------------------------------------------------------------------------------------------------
# Logit functions
# --------------------------------------------------------------------------------------------------

class ModelLogits:
    """``logits_fn(variables, x, key) -> [B, K]`` of a spiking model; keeps the model for the attacks that
    need it (surrogate sweep, ASSG, transfer checks). Made by ``model_logits_fn``."""

    def __init__(self, model, base_model=None):
        self.model = model            # the module whose backward the attack follows
        self.base_model = base_model or model  # the module as trained (its own surrogate)

    def __call__(self, variables, x, key):
        rngs = None if key is None else {"noise": key}
        return mean_over_time(self.model.apply(variables, x, train=False, rngs=rngs))

    @property
    def stochastic(self) -> bool:
        return bool(self.model.neuron.stochastic)


def model_logits_fn(model, *, surrogate: str | None = None, surrogate_param: float | None = None,
                    backward: str | None = None, **neuron_changes) -> ModelLogits:
    """The logit function of a spiking model, optionally with another backward rule or neuron setting.

    The forward pass is the model's own (eval-mode BatchNorm, ``train=False``); only the gradient an
    attack follows changes: ``surrogate``/``surrogate_param`` swap the surrogate of every spiking layer
    (docs/FORMULAS.md §1), ``backward="bptr"`` gates it to neurons that fired (BPTR). Choosing a new
    ``surrogate`` without ``surrogate_param`` uses that surrogate's default shape parameter. Other
    ``NeuronConfig`` fields (e.g. ``kind="lif"`` to turn Noisy-LIF noise off for a transfer source)
    pass through ``neuron_changes`` and do change the forward pass.

    Args:
      model: a ``tgo_jax.models`` module with a ``neuron: NeuronConfig`` field.
      surrogate: surrogate name (``tgo_jax.surrogate.NAMES``), None to keep the model's.
      surrogate_param: its shape parameter, None for the default (or the model's, if ``surrogate`` is None).
      backward: "surrogate" or "bptr", None to keep the model's.
      **neuron_changes: further ``NeuronConfig`` fields to replace.

    Returns:
      ``logits_fn(variables, x, key) -> [B, K]`` = ``mean_t model.apply(variables, x)[t]``, where
      ``variables`` is the full dict (``{'params': ..., 'batch_stats': ...}``) and ``key`` feeds the
      ``'noise'`` stream (may be None for a deterministic model).
    """
    if not hasattr(model, "neuron"):
        raise ValueError(f"model must have a 'neuron' NeuronConfig field, got {type(model).__name__}")
    changes = dict(neuron_changes)
    if surrogate is not None:
        changes.update(surrogate=surrogate, surrogate_param=surrogate_param)
    elif surrogate_param is not None:
        changes.update(surrogate_param=surrogate_param)
    if backward is not None:
        changes.update(backward=backward)
    attacked = model.clone(neuron=dataclasses.replace(model.neuron, **changes)) if changes else model
    return ModelLogits(attacked, model)


def model_of(logits_fn: LogitsFn, attack: str):
    """The model behind a ``model_logits_fn`` logit function; a clear error for a plain function."""
    if not isinstance(logits_fn, ModelLogits):
        raise ValueError(f"{attack} needs a logit function made by attacks.model_logits_fn(model) (it changes "
                         f"the model's backward rule), got {type(logits_fn).__name__}")
    return logits_fn.model


def num_classes(logits_fn: LogitsFn, variables, x: Array) -> int:
    """K, from the logits' shape (no computation: ``jax.eval_shape``)."""
    return int(jax.eval_shape(logits_fn, variables, x, jax.random.key(0)).shape[-1])


# --------------------------------------------------------------------------------------------------
# Objectives (per-example losses the attacks maximise), docs/FORMULAS.md §4 and §7
# --------------------------------------------------------------------------------------------------

def ce_loss(logits: Array, y: Array) -> Array:
    """Cross-entropy CE(z, y) per example, [B]."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def _true_logit(logits: Array, y: Array) -> Array:
    return jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]


def _best_other(logits: Array, y: Array) -> Array:
    return jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf, logits).max(axis=-1)


def margin_loss(logits: Array, y: Array) -> Array:
    """Untargeted margin ``max_{j≠y} z_j - z_y`` per example, [B]; > 0 exactly when misclassified."""
    return _best_other(logits, y) - _true_logit(logits, y)


def targeted_margin_loss(logits: Array, y: Array, target: Array) -> Array:
    """Targeted margin ``z_t - z_y`` per example, [B] (MTPGD, Gowal et al. 2019)."""
    return _true_logit(logits, target) - _true_logit(logits, y)


def dlr_loss(logits: Array, y: Array) -> Array:
    """Difference of logits ratio (Croce & Hein 2020; docs/FORMULAS.md §7), [B], needs K >= 3:
    ``DLR = -(z_y - max_{j≠y} z_j) / (z_π1 - z_π3 + 1e-12)``, z sorted so that z_π1 >= z_π2 >= ...

    Invariant to shifting and scaling the logits, so a model cannot hide behind their scale."""
    top = lax.top_k(logits, 3)[0]
    return -(_true_logit(logits, y) - _best_other(logits, y)) / (top[:, 0] - top[:, 2] + 1e-12)


def targeted_dlr_loss(logits: Array, y: Array, target: Array) -> Array:
    """Targeted DLR (APGD-T; docs/FORMULAS.md §7), [B], needs K >= 4:
    ``-(z_y - z_t) / (z_π1 - (z_π3 + z_π4)/2 + 1e-12)``."""
    top = lax.top_k(logits, 4)[0]
    return -(_true_logit(logits, y) - _true_logit(logits, target)) / (
        top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


LOSSES: dict[str, Objective] = {"ce": ce_loss, "margin": margin_loss, "dlr": dlr_loss}


# --------------------------------------------------------------------------------------------------
# Validation at the edge (tgo_jax.validation does the work)
# --------------------------------------------------------------------------------------------------

def check_batch(x: Array, y: Array, logits_fn: LogitsFn | None = None, variables=None) -> None:
    """x: [B, ...] finite floats in [0, 1]; y: [B] integers in [0, K). Values are checked only when
    concrete (outside jit, or closed-over constants); K comes from ``logits_fn`` when given."""
    validation.rank_at_least("x", x, 2)
    validation.non_empty_batch("x", x)
    validation.pixels("x", x)
    if np_ndim(y) != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be [B] with B = x.shape[0] = {x.shape[0]}, got shape {jnp.shape(y)}")
    k = None
    if logits_fn is not None and validation.is_concrete(y):
        k = num_classes(logits_fn, variables, x)
    validation.labels("y", y, k)


def np_ndim(a) -> int:
    return len(jnp.shape(a))


def check_options(*, eps, alpha=None, steps=None, eot=1) -> None:
    """ε >= 0, α > 0, steps >= 1, EoT >= 1 (numbers checked when concrete)."""
    validation.non_negative("eps", eps)
    if alpha is not None:
        validation.positive("alpha", alpha)
    if steps is not None:
        validation.count("steps", steps)
    validation.count("eot", eot)


# --------------------------------------------------------------------------------------------------
# Projection, EoT gradients, worst-case bookkeeping
# --------------------------------------------------------------------------------------------------

def project(x_adv: Array, x: Array, eps) -> Array:
    """Π_ε: the nearest point of the L∞ ball ``||x_adv - x||∞ <= ε`` that is a valid image, ``clip(·, 0, 1)``.

    Clipping to [0, 1] after the ball keeps the perturbation within ε because ``x`` itself is in [0, 1].
    """
    return jnp.clip(x + jnp.clip(x_adv - x, -eps, eps), 0.0, 1.0)


def per_example(fn, a: Array, b: Array) -> Array:
    """Broadcasts a per-example [B] array ``a`` against a batch ``b`` [B, ...] and applies ``fn``."""
    return fn(a.reshape(a.shape + (1,) * (b.ndim - 1)), b)


def where(mask: Array, a: Array, b: Array) -> Array:
    """Per-example select: ``a[i]`` where ``mask[i]``, else ``b[i]``."""
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)


def clip_by_norm(g: Array, max_norm) -> Array:
    """Per-example gradient clipping: ``g·min(1, c/||g||_2)``."""
    norm = jnp.sqrt(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=-1))
    scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
    return per_example(jnp.multiply, scale, g)


class LossGrad(NamedTuple):
    """What ``loss_and_grad`` returns."""

    loss: Array    # [B], mean over the EoT draws
    logits: Array  # [B, K], mean over the EoT draws
    grad: Array    # [B, ...], ∇_x loss, mean over the EoT draws
    margin: Array  # [B], the untargeted margin ``max_{j≠y} z_j - z_y``, mean over the EoT draws


def _loss_grad_once(objective, logits_fn, variables, x, y, key, grad_clip) -> LossGrad:
    def total(x_):
        logits = logits_fn(variables, x_, key)
        loss = objective(logits, y)
        # Examples are independent (eval-mode BN, per-example noise), so ∇ of the sum is per example.
        return loss.sum(), (loss, logits)

    grad, (loss, logits) = jax.grad(total, has_aux=True)(x)
    if grad_clip is not None:
        grad = clip_by_norm(grad, grad_clip)
    return LossGrad(loss, logits, grad, margin_loss(logits, y))


def loss_and_grad(objective: Objective, logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *,
                  eot: int = 1, grad_clip: float | None = None) -> LossGrad:
    """Per-example loss, logits and input gradient, averaged over ``eot`` noise draws (EoT, docs/FORMULAS.md §4).

    ``∇̂ = (1/n) Σ_{i=1..n} ∇_x L(f(x; ξ_i), y)``, with the ξ_i drawn from ``n`` keys split from ``key``.
    With ``grad_clip`` each draw's per-example gradient is first clipped to L2 norm ``grad_clip``.
    The mean margin decides "fooled" (``fooled``, §4).

    The draws run one after another in a ``fori_loop`` (memory does not grow with ``n``). Batching them
    (``jax.vmap`` over the keys: one pass on n times the batch, the same per-draw noise) was slower on
    2 CPU cores (PGD-10, EoT 4, 100 images, Noisy-LIF small net: 16.6 s and 38.3 s looped against 19.1 s
    and 44.7 s batched, two runs of ``bench/eot_cost.py`` on a shared machine).
    """
    once = functools.partial(_loss_grad_once, objective, logits_fn, variables, x, y, grad_clip=grad_clip)
    if eot == 1:
        return once(key)
    keys = jax.random.split(key, eot)
    total = lax.fori_loop(1, eot, lambda i, acc: jax.tree.map(jnp.add, acc, once(keys[i])), once(keys[0]))
    return jax.tree.map(lambda a: a / eot, total)


class Forward(NamedTuple):
    """What ``loss_logits`` returns: each a mean over the EoT draws."""

    loss: Array    # [B] the objective
    logits: Array  # [B, K]
    margin: Array  # [B] the untargeted margin ``max_{j≠y} z_j - z_y``


def loss_logits(objective, logits_fn, variables, x, y, key, eot) -> Forward:
    """Per-example loss, logits and margin (forward only), each averaged over ``eot`` noise draws."""
    def one(k):
        logits = logits_fn(variables, x, k)
        return Forward(objective(logits, y), logits, margin_loss(logits, y))

    if eot == 1:
        return one(key)
    return jax.tree.map(lambda a: a.mean(axis=0), lax.map(one, jax.random.split(key, eot)))


def misclassified(logits: Array, y: Array) -> Array:
    return jnp.argmax(logits, axis=-1) != y


def fooled(mean_margin: Array, mean_logits: Array, y: Array) -> Array:
    """[B] bool: the attack counts an example as fooled when its margin ``max_{j≠y} z_j - z_y``, averaged
    over the attack's EoT noise draws, is positive, a zero mean margin broken as ``argmax`` breaks ties, on
    the EoT-mean logits (docs/FORMULAS.md §4, "selection under noise"). One draw would let a lucky noise
    draw pass for a success. With one draw this is exactly ``misclassified(logits, y)``."""
    return (mean_margin > 0) | ((mean_margin == 0) & misclassified(mean_logits, y))


class Worst(NamedTuple):
    x: Array       # [B, ...] the worst point found so far
    fooled: Array  # [B] bool, fooled there (EoT-mean margin > 0, ``fooled``)
    score: Array   # [B] loss there (higher is worse for the model), mean over the draws


def keep_worst(best: Worst, new: Worst) -> Worst:
    """Per example: prefer a fooled point, then the higher score."""
    take = (new.fooled & ~best.fooled) | ((new.fooled == best.fooled) & (new.score > best.score))
    return Worst(where(take, new.x, best.x), jnp.where(take, new.fooled, best.fooled),
                 jnp.where(take, new.score, best.score))


def score(objective, logits_fn, variables, x_adv, y, key, eot) -> Worst:
    """``Worst`` record of ``x_adv``: fooled (EoT-mean margin > 0) and its EoT-mean loss."""
    f = loss_logits(objective, logits_fn, variables, x_adv, y, key, eot)
    return Worst(x_adv, fooled(f.margin, f.logits, y), f.loss)


def uniform_start(key: Array, x: Array, eps) -> Array:
    """Uniform random start in the ε-ball, clipped to [0, 1]."""
    return project(x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps), x, eps)


def prepare(variables, x, y):
    """Inputs as constants (see the module docstring) and arrays."""
    return lax.stop_gradient(variables), lax.stop_gradient(jnp.asarray(x)), jnp.asarray(y)
