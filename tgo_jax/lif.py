"""LIF / Noisy-LIF math, written once (docs/FORMULAS.md §1, paper eq. 1-3 and 15-16).

The neuron configuration and the pieces of one time step, with their hand-written derivatives:

    H[t] = τ·V[t-1] + I[t]                                        charge
    u[t] = H[t] + ξ[t] − θ,   ξ ~ N(0, σ²) (Noisy-LIF), else 0      centre
    S[t] = Θ(u[t]),  or Φ(u[t]/σ) in expected mode (eq. 16)        fire
    V[t] = H[t]·(1 − S[t]) (hard reset)  or  H[t] − θ·S[t] (soft)   reset

``tgo_jax.neurons`` (the public API and the autodiff path) and ``tgo_jax.fused`` (the ``custom_vjp`` layer)
both build their time loops from ``step`` and, for the backward, ``NeuronConfig.fire_grad``, ``reset_vjp`` and
``charge_vjp``; neither repeats a formula. This module imports only noise, surrogates and validation.
"""
from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import ndtr

from tgo_jax import noise, surrogate, validation

Array = jax.Array

RESETS = ("hard", "soft")
KINDS = ("lif", "noisy")
BACKWARDS = ("surrogate", "bptr")


def noise_std(sigma: float, sigma_is_variance: bool) -> float:
    """The noise standard deviation: σ itself, or √σ when σ is given as a variance (the paper's wording)."""
    validation.positive("sigma", sigma)
    return float(sigma) ** 0.5 if sigma_is_variance else float(sigma)


@dataclasses.dataclass(frozen=True)
class NeuronConfig:
    """Hyper-parameters of a spiking layer (hashable, so it can be a static jit argument).

    Attributes:
      kind: "lif" or "noisy" (Noisy-LIF).
      decay: τ in H = τ·V + I (0.5), in [0, 1].
      threshold: θ (1.0), finite and > 0.
      surrogate: surrogate name, see ``surrogate.REGISTRY`` ("triangle").
      surrogate_param: the surrogate's shape parameter (None: its default).
      reset: "hard" (default) or "soft".
      detach_reset: stop the gradient through the spike in the reset path.
      sigma: Noisy-LIF noise std (0.4), or its variance when ``sigma_is_variance``; finite and > 0.
      sigma_is_variance: read ``sigma`` as a variance (the paper's "variance 0.4").
      expected: Noisy-LIF deterministic expected-firing mode Φ((H-θ)/σ).
      backward: "surrogate" or "bptr" (gradient only through neurons that fired at least once over T).
      fused: run the layer as one ``custom_vjp`` with a hand-written BPTT backward (``tgo_jax.fused``)
        that stores only H; False differentiates the scan of steps with autodiff (the reference).
      remat: rematerialise the step in the backward pass (``jax.checkpoint``) to save memory
        (plain path only, so it needs ``fused=False``: the fused layer already stores only H).
      unroll: unroll the time loop (``lax.scan(unroll=True)``): faster steps and attacks at small T (measured
        in BENCHMARKS.md), at the price of compile time growing with T; set False for long T.

    ``FIELD_CHECKS`` holds each field's own rule, ``check(name, value)``; the run config's check
    (``tgo_train/config_check.py``) reads it too. The rules across fields (the surrogate's parameter, which
    its surrogate decides; ``remat`` with ``fused``) are checked when a configuration is built.

    Raises:
      ValueError: for a value of the wrong type or out of range, its message starting with the field's name.
    """

    FIELD_CHECKS: ClassVar[Mapping[str, Callable[[str, Any], Any]]] = types.MappingProxyType({
        "kind": functools.partial(validation.choice, choices=KINDS),
        "decay": functools.partial(validation.in_range, lo=0.0, hi=1.0),
        "threshold": validation.positive,
        "surrogate": functools.partial(validation.choice, choices=surrogate.NAMES),
        "reset": functools.partial(validation.choice, choices=RESETS),
        "detach_reset": validation.boolean,
        # σ > 0: a Noisy-LIF neuron draws ξ ~ N(0, σ²) (paper eq. 15); a noise-free neuron is kind "lif".
        "sigma": validation.positive,
        "sigma_is_variance": validation.boolean,
        "expected": validation.boolean,
        "backward": functools.partial(validation.choice, choices=BACKWARDS),
        "fused": validation.boolean,
        "remat": validation.boolean,
        "unroll": validation.boolean,
    })

    kind: str = "lif"
    decay: float = 0.5
    threshold: float = 1.0
    surrogate: str = "triangle"
    surrogate_param: float | None = None
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
        for name, check in self.FIELD_CHECKS.items():
            check(name, getattr(self, name))
        surrogate.lookup(self.surrogate).param(self.surrogate_param, field="surrogate_param")
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

    @property
    def expected_mode(self) -> bool:
        """Whether S is the firing probability Φ(u/σ) rather than a spike."""
        return self.kind == "noisy" and self.expected

    def spike_fn(self) -> surrogate.SpikeFn:
        """The spike function Θ(u) with the configured surrogate backward."""
        return surrogate.get(self.surrogate, self.surrogate_param)

    def autodiff_spike(self) -> Callable[[Array], Array]:
        """S from u for the autodiff path: the surrogate spike, or Φ(u/σ) (exact gradient) in expected mode."""
        if self.expected_mode:
            std = self.std
            return lambda u: firing_probability(u, std)
        return self.spike_fn()

    def fire(self, u: Array) -> Array:
        """The value of S from u (no gradient rule): Θ(u), or Φ(u/σ) in expected mode."""
        return firing_probability(u, self.std) if self.expected_mode else surrogate.heaviside(u)

    def fire_grad(self, u: Array) -> Array:
        """dS/du: the configured surrogate, or the exact Gaussian density in expected mode."""
        if self.expected_mode:
            return surrogate.gaussian_grad(u, self.std)
        return surrogate.grad_fn(self.surrogate, self.surrogate_param)(u)

    def step_kwargs(self) -> dict:
        """The keyword arguments of ``step`` that this configuration fixes (all but the spike)."""
        return dict(decay=self.decay, threshold=self.threshold, reset=self.reset, detach_reset=self.detach_reset)


def firing_probability(u: Array, std: float) -> Array:
    """P(S = 1 | H) = Φ((H − θ)/σ) from u = H − θ (paper eq. 16), in u's dtype."""
    return ndtr(u / std).astype(u.dtype)


# The noise-key argument of a noiseless layer (never read).
NO_NOISE = np.zeros((2,), np.uint32)


def time_steps(num_steps: int) -> Array:
    """The step indices t = 0 .. T−1 that a time loop scans over with its inputs (they select ξ[t])."""
    return jnp.arange(num_steps, dtype=jnp.uint32)


def draw_noise(layer_key: Array, t, shape, dtype, std: float) -> Array:
    """ξ[t] ~ N(0, σ²) of ``shape`` for time step ``t`` of a layer (paper eq. 15; ``tgo_jax.noise``).

    A pure function of (layer key, t): the forward, the fused backward and the plain path draw equal ξ.
    """
    return noise.gaussian(layer_key, t, shape, dtype, std)


def draw_noise_tb(config: NeuronConfig, layer_key: Array, currents_tb: Array) -> Array | None:
    """ξ[t] = ``draw_noise(layer_key, t, ...)`` for every step, [T, B, ...] like the currents; None when the
    layer draws no noise (``config.stochastic`` is False).

    The draws run in a rolled loop over t, whose body is a fusion boundary: each ξ[t] is computed once and
    stored, and the time loop that reads it may be unrolled. (Drawn inside an unrolled time loop, or all
    at once outside it, XLA fuses the Philox bits, cheap elementwise ops it gladly duplicates, into every
    later step, which BENCHMARKS.md measures. An optimisation barrier does not help: XLA:CPU removes it
    before fusion.)
    """
    if not config.stochastic:
        return None
    shape, dtype, std = currents_tb.shape[1:], currents_tb.dtype, config.std
    _, xi_tb = lax.scan(lambda _, t: (None, draw_noise(layer_key, t, shape, dtype, std)), None,
                        time_steps(currents_tb.shape[0]))
    return xi_tb


def charge(v: Array, current: Array, decay: float) -> Array:
    """H = τ·V + I."""
    return decay * v + current


def charge_vjp(dh: Array, decay: float) -> Array:
    """The cotangent of the previous V from that of H: V̄[t-1] = τ·H̄ (and Ī[t] = H̄)."""
    return decay * dh


def centre(h: Array, threshold: float, xi: Array | None = None) -> Array:
    """u = H + ξ − θ (Noisy-LIF) or H − θ, rounded in this order in every path (bit-equal spikes)."""
    if xi is not None:
        h = h + xi
    return h - threshold


def reset_potential(h: Array, spike: Array, *, threshold: float, reset: str, detach_reset: bool = False) -> Array:
    """V from H and S: hard reset ``H·(1 − S)`` or soft reset ``H − θ·S``; ``detach_reset`` stops S's gradient."""
    s = lax.stop_gradient(spike) if detach_reset else spike
    if reset == "hard":
        return h * (1.0 - s)
    if reset == "soft":
        return h - threshold * s
    raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")


def reset_vjp(h: Array, spike: Array, dv: Array, *, threshold: float, reset: str, detach_reset: bool = False):
    """``(V̄·∂V/∂H, V̄·∂V/∂S)`` of ``reset_potential``: ∂V/∂H = 1 − S (hard) or 1 (soft);
    ∂V/∂S = −H (hard), −θ (soft), and no gradient through S with ``detach_reset``."""
    hard = reset == "hard"
    dh = dv * (1.0 - spike) if hard else dv
    ds = 0.0 if detach_reset else dv * (-h if hard else -threshold)
    return dh, ds


def step(v: Array, current: Array, xi: Array | None, *, spike: Callable[[Array], Array], decay: float,
         threshold: float, reset: str, detach_reset: bool):
    """One time step: charge, centre (with noise ξ or none), fire with ``spike``, reset.

    Returns:
      ``(v_new, (spike, h))``, each [B, ...].
    """
    h = charge(v, current, decay)
    s = spike(centre(h, threshold, xi))
    return reset_potential(h, s, threshold=threshold, reset=reset, detach_reset=detach_reset), (s, h)
