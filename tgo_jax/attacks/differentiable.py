"""Differentiable attacks: ``jax.grad`` flows through the whole attack loop (docs/FORMULAS.md §9).

The attacks of the other modules return constants (inputs behind ``stop_gradient``, sign steps). Here
``x_adv(variables, x)`` is a differentiable function, so a robust loss ``L(f(x_adv(θ, x); θ), y)`` can be
differentiated through the unrolled attack (meta-gradients, attack-aware training, sensitivity studies).

The step replaces ``sign`` by a differentiable surrogate:

* ``step="smooth"``: ``tanh(g/τ)`` (τ > 0; → sign as τ → 0), exact derivative;
* ``step="ste"``: ``sign(g)`` forward, straight-through backward (derivative of the identity ``g/τ``);

and the projection ``clip(x + clip(x_adv - x, -ε, ε), 0, 1)`` passes the derivative where a coordinate is
inside its bounds and 0 where it is clipped (the derivative of ``jnp.clip``).

Memory: reverse mode through k unrolled steps stores each step's residuals, i.e. about k times the memory
of one input-gradient evaluation (one forward and one backward of the model at batch B: second-order
autodiff through the surrogate backward). ``remat=True`` wraps each step in ``jax.checkpoint``: only the
iterate ``x_k`` [B, ...] is stored per step and each step is recomputed in the backward pass (about one
extra attack's compute for k-fold less memory).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import validation
from tgo_jax.attacks.core import (ALPHA, EPS, LOSSES, Array, LogitsFn, check_batch, check_options, project,
                                  uniform_start)
from tgo_jax.attacks.core import takes_variables

STEPS = ("smooth", "ste")


def soft_sign(g: Array, *, step: str = "smooth", temperature: float = 1e-3) -> Array:
    """The differentiable stand-in for ``sign(g)`` (see the module docstring)."""
    if step == "smooth":
        return jnp.tanh(g / temperature)
    scaled = g / temperature
    return jnp.sign(g) + (scaled - lax.stop_gradient(scaled))  # forward exactly sign(g)


@takes_variables
def pgd(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *, eps=EPS, alpha=ALPHA, steps: int = 10,
        random_start: bool = True, eot: int = 1, loss: str = "ce", step: str = "smooth",
        temperature: float = 1e-3, remat: bool = False) -> Array:
    """PGD whose result is differentiable in ``variables`` and ``x`` (docs/FORMULAS.md §9).

    ``x_{k+1} = Π_ε(x_k + α·s(∇_x L(f(x_k), y)))`` with s = ``soft_sign(·, step, temperature)``; the input
    gradient is itself differentiated (second order through the surrogate spike functions).

    Args:
      logits_fn, variables, x, y, key, eps, alpha, steps, random_start, eot, loss: as in ``attacks.pgd``.
      step: "smooth" (tanh(g/τ)) or "ste" (sign forward, straight-through backward).
      temperature: τ > 0. The input gradient's scale varies with the model; pick τ well below its typical
        magnitude for a step close to the sign step.
      remat: recompute each step in the backward pass instead of storing it (``jax.checkpoint``).

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε``, pixels in [0, 1], differentiable in variables and x.
    """
    check_batch(x, y, logits_fn, variables)
    check_options(eps=eps, alpha=alpha, steps=steps, eot=eot)
    validation.choice("step", step, STEPS)
    validation.positive("temperature", temperature)
    validation.choice("loss", loss, tuple(LOSSES))
    objective = LOSSES[loss]
    k_start, k_steps = jax.random.split(key)
    x_adv = uniform_start(k_start, lax.stop_gradient(x), eps) - lax.stop_gradient(x) + x if random_start else x

    def input_grad(x_adv, k):
        keys = jax.random.split(k, eot)
        total = lambda x_, kk: objective(logits_fn(variables, x_, kk), y).sum()
        return sum(jax.grad(total)(x_adv, kk) for kk in keys) / eot

    def one_step(i, x_adv):
        g = input_grad(x_adv, jax.random.fold_in(k_steps, i))
        return project(x_adv + alpha * soft_sign(g, step=step, temperature=temperature), x, eps)

    body = jax.checkpoint(one_step) if remat else one_step
    return lax.fori_loop(0, steps, body, x_adv)
