"""Spike functions: exact Heaviside forward, surrogate-gradient backward (docs/FORMULAS.md §1).

Every spike function takes the threshold-centred potential ``u = H - θ`` and returns
``Θ(u) = 1[u >= 0]`` in the dtype of ``u``. The backward pass replaces the (zero almost
everywhere) true derivative by a surrogate ``dS/du = g(u)`` through ``jax.custom_vjp``.

Each factory takes its shape parameter and returns a new spike function::

    spike = surrogate.triangle(gamma=1.0)
    s = spike(h - threshold)
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
SpikeFn = Callable[[Array], Array]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def heaviside(u: Array) -> Array:
    """Θ(u) = 1 where u >= 0, else 0, in u's dtype (the exact forward of every spike function)."""
    return (u >= 0).astype(u.dtype)


def spike_with_grad(grad_fn: Callable[[Array], Array]) -> SpikeFn:
    """Builds a spike function whose forward is Θ(u) and whose backward is ``grad_fn(u)``."""

    @jax.custom_vjp
    def spike(u):
        return heaviside(u)

    def fwd(u):
        return heaviside(u), u

    def bwd(u, g):
        return ((g * grad_fn(u)).astype(u.dtype),)

    spike.defvjp(fwd, bwd)
    return spike


def _positive(surrogate: str, name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{surrogate} surrogate parameter {name} must be > 0, got {value!r}")
    return float(value)


def triangle_grad(u: Array, gamma: float = 1.0) -> Array:
    """Triangle surrogate, docs/FORMULAS.md §1: dS/dH = max(0, γ - |H-θ|) / γ²."""
    return jnp.maximum(0.0, gamma - jnp.abs(u)) / gamma**2


def rectangle_grad(u: Array, a: float = 1.0) -> Array:
    """Rectangle surrogate, docs/FORMULAS.md §1: dS/dH = 1[|H-θ| < a/2] / a."""
    return (jnp.abs(u) < a / 2).astype(u.dtype) / a


def sigmoid_grad(u: Array, k: float = 4.0) -> Array:
    """Sigmoid surrogate, docs/FORMULAS.md §1: k·σ(k(H-θ))·(1-σ(k(H-θ)))."""
    s = jax.nn.sigmoid(k * u)
    return k * s * (1.0 - s)


def atan_grad(u: Array, alpha: float = 2.0) -> Array:
    """Arctan surrogate, docs/FORMULAS.md §1: α / (2·(1 + (π/2·α·(H-θ))²))."""
    return alpha / (2.0 * (1.0 + (math.pi / 2 * alpha * u) ** 2))


def exponential_grad(u: Array, a: float = 0.5) -> Array:
    """Exponential surrogate, docs/FORMULAS.md §1: (1/2a)·exp(-|H-θ|/a)."""
    return jnp.exp(-jnp.abs(u) / a) / (2.0 * a)


def gaussian_grad(u: Array, sigma: float = 0.4) -> Array:
    """Gaussian surrogate, docs/FORMULAS.md §1 (NSNN): φ((H-θ)/σ)/σ, the derivative of Φ((H-θ)/σ)."""
    z = u / sigma
    return jnp.exp(-0.5 * z * z) / (_SQRT_2PI * sigma)


def triangle(gamma: float = 1.0) -> SpikeFn:
    """Spike function with the triangle surrogate (the default, γ = 1)."""
    gamma = _positive("triangle", "gamma", gamma)
    return spike_with_grad(lambda u: triangle_grad(u, gamma))


def rectangle(a: float = 1.0) -> SpikeFn:
    """Spike function with the rectangle surrogate of width a."""
    a = _positive("rectangle", "a", a)
    return spike_with_grad(lambda u: rectangle_grad(u, a))


def sigmoid(k: float = 4.0) -> SpikeFn:
    """Spike function with the sigmoid-derivative surrogate of slope k."""
    k = _positive("sigmoid", "k", k)
    return spike_with_grad(lambda u: sigmoid_grad(u, k))


def atan(alpha: float = 2.0) -> SpikeFn:
    """Spike function with the arctan surrogate of width α."""
    alpha = _positive("atan", "alpha", alpha)
    return spike_with_grad(lambda u: atan_grad(u, alpha))


def exponential(a: float = 0.5) -> SpikeFn:
    """Spike function with the exponential (Laplace) surrogate of scale a."""
    a = _positive("exponential", "a", a)
    return spike_with_grad(lambda u: exponential_grad(u, a))


def gaussian(sigma: float = 0.4) -> SpikeFn:
    """Spike function with the Gaussian surrogate of standard deviation σ."""
    sigma = _positive("gaussian", "sigma", sigma)
    return spike_with_grad(lambda u: gaussian_grad(u, sigma))


FACTORIES: dict[str, Callable[..., SpikeFn]] = {
    "triangle": triangle,
    "rectangle": rectangle,
    "sigmoid": sigmoid,
    "atan": atan,
    "exponential": exponential,
    "gaussian": gaussian,
}

GRADS: dict[str, Callable[..., Array]] = {
    "triangle": triangle_grad,
    "rectangle": rectangle_grad,
    "sigmoid": sigmoid_grad,
    "atan": atan_grad,
    "exponential": exponential_grad,
    "gaussian": gaussian_grad,
}


def get(name: str, param: float | None = None) -> SpikeFn:
    """Spike function by name; ``param`` is the factory's shape parameter (its default when None).

    Raises:
      ValueError: for an unknown name, listing the known ones.
    """
    if name not in FACTORIES:
        raise ValueError(f"unknown surrogate {name!r}; expected one of {sorted(FACTORIES)}")
    factory = FACTORIES[name]
    return factory() if param is None else factory(param)
