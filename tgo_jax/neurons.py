"""LIF and Noisy-LIF neurons: pure steps and a ``lax.scan`` time loop (docs/FORMULAS.md §1).

A step maps ``(v, current) -> (v_new, (spike, h))`` where ``h`` is the pre-spike membrane
potential H compared with the threshold θ:

    H[t] = τ·V[t-1] + I[t]                          (charge)
    S[t] = Θ(H[t] - θ)        or  Θ(H[t] + ξ[t] - θ), ξ ~ N(0, σ²)   (fire; Noisy-LIF, paper eq. 15)
    V[t] = H[t]·(1 - S[t])    (hard reset)   or  V[t] = H[t] - θ·S[t]   (soft reset)

The math itself lives once in ``tgo_jax.lif`` (with ``NeuronConfig``); this module is the public API:
the steps, the autodiff time loop and ``run``, which picks it or the fused layer (``tgo_jax.fused``).
Arrays are time-major: currents and outputs are ``[T, B, ...]``; the state ``v`` is ``[B, ...]``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import fused, lif, noise, surrogate
from tgo_jax.lif import (
    BACKWARDS,
    KINDS,
    RESETS,
    NeuronConfig,
    noise_std,
    reset_potential,
)

Array = jax.Array

__all__ = ["BACKWARDS", "KINDS", "RESETS", "NeuronConfig", "bptr_gate", "lif_step", "make_step", "noise_std",
           "noisy_lif_step", "reset_potential", "run"]


def lif_step(v: Array, current: Array, *, decay: float = 0.5, threshold: float = 1.0,
             spike_fn: surrogate.SpikeFn = surrogate.triangle(), reset: str = "hard",
             detach_reset: bool = False):
    """One LIF step (docs/FORMULAS.md §1): ``H = τ·V + I``, ``S = Θ(H - θ)``, then reset.

    Args:
      v: membrane potential after the previous reset, [B, ...].
      current: input current I[t], [B, ...].

    Returns:
      ``(v_new, (spike, h))``, each [B, ...].
    """
    return lif.step(v, current, None, spike=spike_fn, decay=decay, threshold=threshold, reset=reset,
                    detach_reset=detach_reset)


def noisy_lif_step(v: Array, current: Array, key: Array | None, *, decay: float = 0.5,
                   threshold: float = 1.0, sigma: float = 0.4, sigma_is_variance: bool = False,
                   expected: bool = False, spike_fn: surrogate.SpikeFn = surrogate.triangle(),
                   reset: str = "hard", detach_reset: bool = False, t=0):
    """One Noisy-LIF step (paper eq. 15): ``S = Θ(H + ξ - θ)``, ``ξ ~ N(0, σ²)`` fresh per neuron.

    The backward is ``spike_fn``'s surrogate at ``H + ξ - θ``. With ``expected=True`` the step is
    deterministic and emits the firing probability ``P(S=1|H) = Φ((H-θ)/σ)`` (eq. 16), whose exact
    gradient is the Gaussian surrogate; ``key`` is then unused and may be None.

    ``ξ`` is time step ``t`` of the layer noise of ``key`` (``lif.draw_noise``): a loop of these steps with
    one key and t = 0, 1, ... draws the same noise as ``run`` with that key.
    """
    std = noise_std(sigma, sigma_is_variance)
    common = dict(decay=decay, threshold=threshold, reset=reset, detach_reset=detach_reset)
    if expected:
        return lif.step(v, current, None, spike=lambda u: lif.firing_probability(u, std), **common)
    if key is None:
        raise ValueError("a Noisy-LIF step needs a PRNG key (or expected=True)")
    xi = lif.draw_noise(noise.layer_key(key), t, current.shape, current.dtype, std)
    return lif.step(v, current, xi, spike=spike_fn, **common)


def bptr_gate(spikes_tb: Array) -> Array:
    """BPTR backward rule (docs/FORMULAS.md §1): identity forward; the gradient reaches the layer only
    for neurons that fired at least once over T (axis 0)."""
    fired = lax.stop_gradient(jnp.any(spikes_tb > 0, axis=0, keepdims=True))
    return jnp.where(fired, spikes_tb, lax.stop_gradient(spikes_tb))


def make_step(config: NeuronConfig):
    """The per-time-step function ``step(v, (current, xi)) -> (v, (spike, h))`` for ``lax.scan``.

    ``xi`` is the step's noise ξ[t] (``lif.draw_noise_tb``) for a layer that draws noise, else None.
    """
    spike, kwargs = config.autodiff_spike(), config.step_kwargs()

    def step(v, inputs):
        current, xi = inputs
        return lif.step(v, current, xi, spike=spike, **kwargs)

    return jax.checkpoint(step) if config.remat else step


def run(config: NeuronConfig, currents_tb: Array, key: Array | None = None):
    """Runs a spiking layer over time with ``lax.scan``.

    With ``config.fused`` (default) the layer is ``fused.run``: the same forward, and a hand-written
    backward through time that stores only H; otherwise autodiff differentiates the scan of
    ``make_step`` (the reference; both give the same values and gradients).

    Args:
      config: the neuron hyper-parameters.
      currents_tb: input currents, time-major [T, B, ...].
      key: PRNG key, required when ``config.stochastic``: the layer's noise ξ[t] is a pure function of
        it and t (``tgo_jax.noise``), drawn for all T steps before the time loop (``lif.draw_noise_tb``).

    Returns:
      ``(spikes_tb, h_tb)``: spikes and pre-spike potentials H, both [T, B, ...].
    """
    if currents_tb.ndim < 2:
        raise ValueError(f"currents must be time-major [T, B, ...], got shape {currents_tb.shape}")
    if config.stochastic and key is None:
        raise ValueError("a Noisy-LIF layer needs a PRNG key: pass rngs={'noise': key}")
    noise_key = noise.layer_key(key) if config.stochastic else lif.NO_NOISE
    if config.fused:
        spikes_tb, h_tb = fused.run(config, currents_tb, noise_key)
    else:
        v0 = jnp.zeros(currents_tb.shape[1:], currents_tb.dtype)
        xi_tb = lif.draw_noise_tb(config, noise_key, currents_tb)
        _, (spikes_tb, h_tb) = lax.scan(make_step(config), v0, (currents_tb, xi_tb), unroll=config.unroll)
    if config.backward == "bptr":
        spikes_tb = bptr_gate(spikes_tb)
    return spikes_tb, h_tb
