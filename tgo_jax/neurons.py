"""LIF and Noisy-LIF neurons: pure steps and a ``lax.scan`` time loop (docs/FORMULAS.md §1).

A step maps ``(v, current) -> (v_new, (spike, h))`` where ``h`` is the pre-spike membrane
potential H compared with the threshold θ:

    H[t] = τ·V[t-1] + I[t]                          (charge)
    S[t] = Θ(H[t] - θ)        or  Θ(H[t] + ξ[t] - θ), ξ ~ N(0, σ²)   (fire; Noisy-LIF, paper eq. 15)
    V[t] = H[t]·(1 - S[t])    (hard reset)   or  V[t] = H[t] - θ·S[t]   (soft reset)

Arrays are time-major: currents and outputs are ``[T, B, ...]``; the state ``v`` is ``[B, ...]``.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import ndtr

from tgo_jax import fused, surrogate

Array = jax.Array

RESETS = ("hard", "soft")
KINDS = ("lif", "noisy")
BACKWARDS = ("surrogate", "bptr")


def reset_potential(h: Array, spike: Array, *, threshold: float, reset: str, detach_reset: bool) -> Array:
    """V[t] from H[t] and S[t]: hard reset ``H·(1-S)`` or soft reset ``H - θ·S`` (docs/FORMULAS.md §1)."""
    s = lax.stop_gradient(spike) if detach_reset else spike
    if reset == "hard":
        return h * (1.0 - s)
    if reset == "soft":
        return h - threshold * s
    raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")


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
    h = decay * v + current
    spike = spike_fn(h - threshold)
    return reset_potential(h, spike, threshold=threshold, reset=reset, detach_reset=detach_reset), (spike, h)


def noise_std(sigma: float, sigma_is_variance: bool) -> float:
    """The noise standard deviation: σ itself, or √σ when σ is given as a variance (the paper's wording)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    return float(sigma) ** 0.5 if sigma_is_variance else float(sigma)


def noisy_lif_step(v: Array, current: Array, key: Optional[Array], *, decay: float = 0.5,
                   threshold: float = 1.0, sigma: float = 0.4, sigma_is_variance: bool = False,
                   expected: bool = False, spike_fn: surrogate.SpikeFn = surrogate.triangle(),
                   reset: str = "hard", detach_reset: bool = False):
    """One Noisy-LIF step (paper eq. 15): ``S = Θ(H + ξ - θ)``, ``ξ ~ N(0, σ²)`` fresh per neuron.

    The backward is ``spike_fn``'s surrogate at ``H + ξ - θ``. With ``expected=True`` the step is
    deterministic and emits the firing probability ``P(S=1|H) = Φ((H-θ)/σ)`` (eq. 16), whose exact
    gradient is the Gaussian surrogate; ``key`` is then unused and may be None.
    """
    std = noise_std(sigma, sigma_is_variance)
    h = decay * v + current
    if expected:
        spike = ndtr((h - threshold) / std).astype(h.dtype)
    else:
        if key is None:
            raise ValueError("a Noisy-LIF step needs a PRNG key (or expected=True)")
        xi = std * jax.random.normal(key, h.shape, dtype=h.dtype)
        spike = spike_fn(h + xi - threshold)
    return reset_potential(h, spike, threshold=threshold, reset=reset, detach_reset=detach_reset), (spike, h)


@dataclasses.dataclass(frozen=True)
class NeuronConfig:
    """Hyper-parameters of a spiking layer (hashable, so it can be a static jit argument).

    Attributes:
      kind: "lif" or "noisy" (Noisy-LIF).
      decay: τ in H = τ·V + I (0.5).
      threshold: θ (1.0).
      surrogate: surrogate name, see ``surrogate.FACTORIES`` ("triangle").
      surrogate_param: the surrogate's shape parameter (None: its default).
      reset: "hard" (default) or "soft".
      detach_reset: stop the gradient through the spike in the reset path.
      sigma: Noisy-LIF noise std (0.4), or its variance when ``sigma_is_variance``.
      sigma_is_variance: read ``sigma`` as a variance (the paper's "variance 0.4").
      expected: Noisy-LIF deterministic expected-firing mode Φ((H-θ)/σ).
      backward: "surrogate" or "bptr" (gradient only through neurons that fired at least once over T).
      fused: run the layer as one ``custom_vjp`` with a hand-written BPTT backward (``tgo_jax.fused``)
        that stores only H; False differentiates the scan of steps below with autodiff (the reference).
      remat: rematerialise the step in the backward pass (``jax.checkpoint``) to save memory
        (plain path only, so it needs ``fused=False``: the fused layer already stores only H).
      unroll: unroll the time loop (``lax.scan(unroll=True)``): on CPU 2-3× faster steps and attacks at
        T = 4, at the price of compile time growing with T; set False for long T.
    """

    kind: str = "lif"
    decay: float = 0.5
    threshold: float = 1.0
    surrogate: str = "triangle"
    surrogate_param: Optional[float] = None
    reset: str = "hard"
    detach_reset: bool = False
    sigma: float = 0.4
    sigma_is_variance: bool = False
    expected: bool = False
    backward: str = "surrogate"
    fused: bool = True
    remat: bool = False
    unroll: bool = True

    def __post_init__(self):
        _check_choice("kind", self.kind, KINDS)
        _check_choice("reset", self.reset, RESETS)
        _check_choice("backward", self.backward, BACKWARDS)
        _check_choice("surrogate", self.surrogate, tuple(surrogate.FACTORIES))
        self.spike_fn()  # checks surrogate_param here rather than inside a traced forward pass
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {self.decay!r}")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold!r}")
        noise_std(self.sigma, self.sigma_is_variance)
        if self.remat and self.fused:
            raise ValueError("remat=True rematerialises the plain path's steps: set fused=False with it "
                             "(the fused layer already stores only H)")

    @property
    def stochastic(self) -> bool:
        """Whether a forward pass draws noise (and so needs a PRNG key)."""
        return self.kind == "noisy" and not self.expected

    @property
    def std(self) -> float:
        """Noise standard deviation."""
        return noise_std(self.sigma, self.sigma_is_variance)

    def spike_fn(self) -> surrogate.SpikeFn:
        return surrogate.get(self.surrogate, self.surrogate_param)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def bptr_gate(spikes_tb: Array) -> Array:
    """BPTR backward rule (docs/FORMULAS.md §1): identity forward; the gradient reaches the layer only
    for neurons that fired at least once over T (axis 0)."""
    fired = lax.stop_gradient(jnp.any(spikes_tb > 0, axis=0, keepdims=True))
    return jnp.where(fired, spikes_tb, lax.stop_gradient(spikes_tb))


def make_step(config: NeuronConfig):
    """The per-time-step function ``step(v, (current, key)) -> (v, (spike, h))`` for ``lax.scan``."""
    spike_fn = config.spike_fn()
    common = dict(decay=config.decay, threshold=config.threshold, spike_fn=spike_fn,
                  reset=config.reset, detach_reset=config.detach_reset)
    if config.kind == "lif":
        def step(v, inputs):
            current, _ = inputs
            return lif_step(v, current, **common)
    else:
        def step(v, inputs):
            current, key = inputs
            return noisy_lif_step(v, current, key, sigma=config.sigma,
                                  sigma_is_variance=config.sigma_is_variance,
                                  expected=config.expected, **common)
    return jax.checkpoint(step) if config.remat else step


def run(config: NeuronConfig, currents_tb: Array, key: Optional[Array] = None):
    """Runs a spiking layer over time with ``lax.scan``.

    With ``config.fused`` (default) the layer is ``fused.run``: the same forward, and a hand-written
    backward through time that stores only H; otherwise autodiff differentiates the scan of
    ``make_step`` (the reference; both give the same values and gradients).

    Args:
      config: the neuron hyper-parameters.
      currents_tb: input currents, time-major [T, B, ...].
      key: PRNG key, required when ``config.stochastic``; split into one key per time step.

    Returns:
      ``(spikes_tb, h_tb)``: spikes and pre-spike potentials H, both [T, B, ...].
    """
    if currents_tb.ndim < 2:
        raise ValueError(f"currents must be time-major [T, B, ...], got shape {currents_tb.shape}")
    if config.stochastic and key is None:
        raise ValueError("a Noisy-LIF layer needs a PRNG key: pass rngs={'noise': key}")
    keys = fused.step_keys(config, key, currents_tb.shape[0])
    if config.fused:
        spikes_tb, h_tb = fused.run(config, currents_tb, keys)
    else:
        v0 = jnp.zeros(currents_tb.shape[1:], currents_tb.dtype)
        _, (spikes_tb, h_tb) = lax.scan(make_step(config), v0, (currents_tb, keys),
                                        unroll=True if config.unroll else 1)
    if config.backward == "bptr":
        spikes_tb = bptr_gate(spikes_tb)
    return spikes_tb, h_tb
