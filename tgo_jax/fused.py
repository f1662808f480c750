"""A whole LIF / Noisy-LIF layer as one ``jax.custom_vjp`` with a hand-written BPTT backward.

The forward is the same ``lax.scan`` as ``neurons.run``'s plain path (docs/FORMULAS.md §1, paper eq. 15);
the backward runs the time loop in reverse by hand. Autodiff of the plain scan stores several
tensors per time step (H, S, H−θ, the reset terms); this path stores only the pre-spike potential
H, which the layer returns anyway, and the per-step PRNG keys, and recomputes S, the noise ξ and the
surrogate g(u) in the backward pass. Gradients equal the plain path's (``tests/test_fused.py``).

Backward of one step, with cotangents S̄[t], H̄[t] from the outputs and V̄[t] from step t+1
(V̄[T-1] = 0), u[t] = H[t] + ξ[t] − θ and g the surrogate dS/du:

    S̄  = S̄[t] + V̄[t]·∂V/∂S         ∂V/∂S = −H (hard reset), −θ (soft), 0 (detach_reset)
    H̄  = H̄[t] + V̄[t]·∂V/∂H + S̄·g(u)   ∂V/∂H = 1 − S (hard), 1 (soft)
    Ī[t] = H̄,   V̄[t-1] = τ·H̄
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import ndtr

from tgo_jax import surrogate

Array = jax.Array


def _noise(config, key: Array, shape, dtype) -> Array:
    """ξ ~ N(0, σ²) for one step, drawn exactly as ``neurons.noisy_lif_step`` draws it."""
    return config.std * jax.random.normal(key, shape, dtype=dtype)


def _centred(config, h: Array, key: Array) -> Array:
    """u = H + ξ − θ (Noisy-LIF) or H − θ, rounded in the plain path's order (bit-equal spikes)."""
    if config.stochastic:
        h = h + _noise(config, key, h.shape, h.dtype)
    return h - config.threshold


def _spike(config, u: Array) -> Array:
    """S from u: Θ(u), or the firing probability Φ(u/σ) in expected mode (eq. 16)."""
    if config.kind == "noisy" and config.expected:
        return ndtr(u / config.std).astype(u.dtype)
    return surrogate.heaviside(u)


def _surrogate_grad(config, u: Array) -> Array:
    """dS/du: the configured surrogate, or the exact Gaussian density in expected mode."""
    if config.kind == "noisy" and config.expected:
        return surrogate.gaussian_grad(u, config.std)
    grad = surrogate.GRADS[config.surrogate]
    return grad(u) if config.surrogate_param is None else grad(u, config.surrogate_param)


def _reset(config, h: Array, s: Array) -> Array:
    return h * (1.0 - s) if config.reset == "hard" else h - config.threshold * s


def _forward(config, currents_tb: Array, keys: Array):
    def step(v, inputs):
        current, key = inputs
        h = config.decay * v + current
        s = _spike(config, _centred(config, h, key))
        return _reset(config, h, s), (s, h)

    v0 = jnp.zeros(currents_tb.shape[1:], currents_tb.dtype)
    _, (spikes_tb, h_tb) = lax.scan(step, v0, (currents_tb, keys), unroll=True if config.unroll else 1)
    return spikes_tb, h_tb


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def run(config, currents_tb: Array, keys: Array):
    """``(spikes_tb, h_tb)`` of a spiking layer over [T, B, ...] currents; ``keys`` [T, ...] per step."""
    return _forward(config, currents_tb, keys)


def _run_fwd(config, currents_tb, keys):
    spikes_tb, h_tb = _forward(config, currents_tb, keys)
    return (spikes_tb, h_tb), (h_tb, keys)


def _run_bwd(config, residuals, cotangents):
    h_tb, keys = residuals
    ds_tb, dh_tb = cotangents
    hard = config.reset == "hard"

    def step(dv, inputs):
        h, key, ds_out, dh_out = inputs
        u = _centred(config, h, key)
        s = _spike(config, u)
        ds = ds_out
        if not config.detach_reset:
            ds = ds + dv * (-h if hard else -config.threshold)
        dh = dh_out + (dv * (1.0 - s) if hard else dv) + ds * _surrogate_grad(config, u)
        dh = dh.astype(h.dtype)
        return config.decay * dh, dh

    dv0 = jnp.zeros(h_tb.shape[1:], h_tb.dtype)
    _, d_currents = lax.scan(step, dv0, (h_tb, keys, ds_tb, dh_tb), reverse=True,
                             unroll=True if config.unroll else 1)
    return d_currents, None


run.defvjp(_run_fwd, _run_bwd)


def step_keys(config, key: Optional[Array], num_steps: int) -> Array:
    """One key per time step (split as the plain path splits), or placeholders for a noiseless layer."""
    if config.stochastic:
        return jax.random.split(key, num_steps)
    return jnp.zeros((num_steps,), jnp.uint32)
