"""Spike functions: exact Heaviside forward, surrogate-gradient backward (docs/FORMULAS.md §1).

Every spike function takes the threshold-centred potential ``u = H - θ`` and returns
``Θ(u) = 1[u >= 0]`` in the dtype of ``u``. The backward pass replaces the (zero almost
everywhere) true derivative by a surrogate ``dS/du = g(u)`` through ``jax.custom_vjp``.

``REGISTRY`` is the one table of surrogates: name → ``Surrogate`` (the gradient ``g(u, param)``, the
name of its shape parameter and its default). Spike functions and gradients are built from it::

    spike = surrogate.get("triangle", 1.0)
    s = spike(h - threshold)
    g = surrogate.grad_fn("triangle")(h - threshold)
"""
from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from tgo_jax import validation

Array = jax.Array
SpikeFn = Callable[[Array], Array]
GradFn = Callable[[Array], Array]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def heaviside(u: Array) -> Array:
    """Θ(u) = 1 where u >= 0, else 0, in u's dtype (the exact forward of every spike function)."""
    return (u >= 0).astype(u.dtype)


def spike_with_grad(grad_fn: GradFn) -> SpikeFn:
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


# Gradients dS/du of docs/FORMULAS.md §1; their shape parameters' defaults live in REGISTRY only.
def triangle_grad(u: Array, gamma: float) -> Array:
    """Triangle surrogate, docs/FORMULAS.md §1: dS/dH = max(0, γ - |H-θ|) / γ²."""
    return jnp.maximum(0.0, gamma - jnp.abs(u)) / gamma**2


def rectangle_grad(u: Array, a: float) -> Array:
    """Rectangle surrogate, docs/FORMULAS.md §1: dS/dH = 1[|H-θ| < a/2] / a."""
    return (jnp.abs(u) < a / 2).astype(u.dtype) / a


def sigmoid_grad(u: Array, k: float) -> Array:
    """Sigmoid surrogate, docs/FORMULAS.md §1: k·σ(k(H-θ))·(1-σ(k(H-θ)))."""
    s = jax.nn.sigmoid(k * u)
    return k * s * (1.0 - s)


def atan_grad(u: Array, alpha: float) -> Array:
    """Arctan surrogate, docs/FORMULAS.md §1: α / (2·(1 + (π/2·α·(H-θ))²))."""
    return alpha / (2.0 * (1.0 + (math.pi / 2 * alpha * u) ** 2))


def exponential_grad(u: Array, a: float) -> Array:
    """Exponential surrogate, docs/FORMULAS.md §1: (1/2a)·exp(-|H-θ|/a)."""
    return jnp.exp(-jnp.abs(u) / a) / (2.0 * a)


def gaussian_grad(u: Array, sigma: float) -> Array:
    """Gaussian surrogate, docs/FORMULAS.md §1 (NSNN): φ((H-θ)/σ)/σ, the derivative of Φ((H-θ)/σ)."""
    z = u / sigma
    return jnp.exp(-0.5 * z * z) / (_SQRT_2PI * sigma)


@dataclasses.dataclass(frozen=True)
class Surrogate:
    """One registry entry: the gradient ``grad(u, param)``, its shape parameter's name and default."""

    name: str
    grad: Callable[[Array, float], Array]
    param_name: str
    default: float

    def param(self, value: float | None, field: str = "") -> float:
        """The shape parameter: ``value`` checked (finite, > 0), or the default when None.

        ``field`` names the caller's field holding the value (e.g. "surrogate_param") in the error.
        """
        if value is None:
            return self.default
        label = f"{self.name} surrogate parameter {self.param_name}"
        return float(validation.positive(f"{field} ({label})" if field else label, value))

    def grad_fn(self, value: float | None = None) -> GradFn:
        """``u -> g(u)`` with the shape parameter fixed (checked here, not inside a traced pass)."""
        param = self.param(value)
        return lambda u: self.grad(u, param)

    def spike(self, value: float | None = None) -> SpikeFn:
        """The forward factory: a spike function Θ(u) whose backward is this surrogate."""
        return spike_with_grad(self.grad_fn(value))


REGISTRY: Mapping[str, Surrogate] = types.MappingProxyType({entry.name: entry for entry in (
    Surrogate("triangle", triangle_grad, "gamma", 1.0),
    Surrogate("rectangle", rectangle_grad, "a", 1.0),
    Surrogate("sigmoid", sigmoid_grad, "k", 4.0),
    Surrogate("atan", atan_grad, "alpha", 2.0),
    Surrogate("exponential", exponential_grad, "a", 0.5),
    Surrogate("gaussian", gaussian_grad, "sigma", 0.4),
)})
NAMES = tuple(REGISTRY)


def lookup(name: str) -> Surrogate:
    """The registry entry of surrogate ``name``; a ValueError listing the known names otherwise."""
    return REGISTRY[validation.choice("surrogate", name, NAMES)]


def get(name: str, param: float | None = None) -> SpikeFn:
    """Spike function by name; ``param`` is its shape parameter (the registry's default when None).

    Raises:
      ValueError: for an unknown name (listing the known ones) or a parameter that is not finite and > 0.
    """
    return lookup(name).spike(param)


def grad_fn(name: str, param: float | None = None) -> GradFn:
    """The surrogate gradient ``u -> g(u)`` by name (what ``get(name, param)``'s backward multiplies by)."""
    return lookup(name).grad_fn(param)


def triangle(gamma: float | None = None) -> SpikeFn:
    """Spike function with the triangle surrogate (the default spike function of ``tgo_jax.neurons``, γ = 1)."""
    return get("triangle", gamma)
