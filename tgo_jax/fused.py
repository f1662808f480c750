"""A whole LIF / Noisy-LIF layer as one ``jax.custom_vjp`` with a hand-written BPTT backward.

The forward is the time loop of ``lif.step`` (docs/FORMULAS.md §1, paper eq. 15), as in ``neurons.run``'s
plain path; the backward runs the loop in reverse by hand from ``lif``'s derivative pieces. Autodiff of the
plain scan stores several tensors per time step (H, S, H−θ, the reset terms); this path stores only the
pre-spike potential H, which the layer returns anyway, and the layer's noise key, and recomputes S, the
noise ξ (a pure function of the key and t, ``tgo_jax.noise``) and the surrogate g(u) in the backward pass.
Gradients equal the plain path's (``tests/test_fused.py``).

Backward of one step, with cotangents S̄[t], H̄[t] from the outputs and V̄[t] from step t+1
(V̄[T-1] = 0), u[t] = H[t] + ξ[t] − θ and g = dS/du (``NeuronConfig.fire_grad``):

    S̄  = S̄[t] + V̄[t]·∂V/∂S         ∂V/∂S = −H (hard reset), −θ (soft), 0 (detach_reset)
    H̄  = H̄[t] + V̄[t]·∂V/∂H + S̄·g(u)   ∂V/∂H = 1 − S (hard), 1 (soft)
    Ī[t] = H̄,   V̄[t-1] = τ·H̄
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import lif

Array = jax.Array


def _forward(config: lif.NeuronConfig, currents_tb: Array, xi_tb: Array | None):
    def step(v, inputs):
        current, xi = inputs
        return lif.step(v, current, xi, spike=config.fire, **config.step_kwargs())

    v0 = jnp.zeros(currents_tb.shape[1:], currents_tb.dtype)
    _, (spikes_tb, h_tb) = lax.scan(step, v0, (currents_tb, xi_tb), unroll=config.unroll)
    return spikes_tb, h_tb


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def run(config: lif.NeuronConfig, currents_tb: Array, noise_key: Array):
    """``(spikes_tb, h_tb)`` of a spiking layer over [T, B, ...] currents.

    ``noise_key`` is the layer's noise key (``noise.layer_key``; ``lif.NO_NOISE`` for a noiseless layer).
    """
    return _forward(config, currents_tb, lif.draw_noise_tb(config, noise_key, currents_tb))


def _run_fwd(config, currents_tb, noise_key):
    spikes_tb, h_tb = _forward(config, currents_tb, lif.draw_noise_tb(config, noise_key, currents_tb))
    return (spikes_tb, h_tb), (h_tb, noise_key)


def _run_bwd(config, residuals, cotangents):
    h_tb, noise_key = residuals
    ds_tb, dh_tb = cotangents

    def step(dv, inputs):
        h, xi, ds_out, dh_out = inputs
        u = lif.centre(h, config.threshold, xi)
        s = config.fire(u)
        dh_reset, ds_reset = lif.reset_vjp(h, s, dv, threshold=config.threshold, reset=config.reset,
                                           detach_reset=config.detach_reset)
        dh = (dh_out + dh_reset + (ds_out + ds_reset) * config.fire_grad(u)).astype(h.dtype)
        return lif.charge_vjp(dh, config.decay), dh

    dv0 = jnp.zeros(h_tb.shape[1:], h_tb.dtype)
    xi_tb = lif.draw_noise_tb(config, noise_key, h_tb)  # the forward's ξ, drawn again from the key
    _, d_currents = lax.scan(step, dv0, (h_tb, xi_tb, ds_tb, dh_tb), reverse=True, unroll=config.unroll)
    return d_currents, None


run.defvjp(_run_fwd, _run_bwd)
