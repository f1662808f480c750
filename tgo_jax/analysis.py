"""Analysis quantities of the TGO paper (docs/FORMULAS.md §1 and §5).

Closed forms for Noisy-LIF neurons (Theorem 1, eq. 16-17) with a Monte-Carlo counterpart, and the
measurements the paper reports on trained networks: the threshold-neighbour share of membrane
potentials (Fig. 4), input-gradient sparsity and heatmaps (App. F), the input-Jacobian spectral
norm (eq. 10, App. B), the number of activation regions met in an ε-ball (Theorem 2) and the loss
landscape around the trained parameters (App. F).

Everything here is pure and jittable (the caller jits; functions that take a model or a callable
expect them as static arguments). Function-valued arguments follow ``tgo_jax.attacks``:
``logits_fn(params, x, key) -> [B, K]`` gives the mean-over-time logits of a batch of pixels
``x`` [B, H, W, C] in [0, 1]; for a model, ``params`` is its full variables dict.

Potentials come time-major: ``hs`` is a sequence of per-layer pre-spike potentials H [T, B, ...].
``threshold_neighbour_share`` (docs/FORMULAS.md §5) lives in ``tgo_jax.losses`` and is re-exported here.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
import optax
from jax import lax

from tgo_jax import lif, neurons, surrogate, validation
# One implementation of the threshold-neighbour share, shared with the training metrics.
from tgo_jax.metrics import NeighbourShare, threshold_neighbour_share  # noqa: F401 (re-exported)
from tgo_jax.models import layers

Array = jax.Array
PyTree = Any
LogitsFn = Callable[[PyTree, Array, Optional[Array]], Array]
PatternFn = Callable[[PyTree, Array, Optional[Array]], Array]

DIRECTION_NORMS = ("filter", "unit")


# --------------------------------------------------------------------------------------------
# Input checks (tgo_jax.validation; values are checked when concrete, traced ones pass through)
# --------------------------------------------------------------------------------------------

def _check_potentials(hs: Sequence[Array]) -> None:
    if isinstance(hs, jax.Array) or len(hs) == 0:
        raise ValueError("hs must be a non-empty sequence of per-layer potentials H [T, B, ...], "
                         f"got {type(hs).__name__}")
    for i, h in enumerate(hs):
        validation.rank_at_least(f"hs[{i}] (time-major [T, B, ...])", h, 2)


# --------------------------------------------------------------------------------------------
# Noisy-LIF closed forms (Theorem 1, eq. 16-17, docs/FORMULAS.md §1)
# --------------------------------------------------------------------------------------------

def _centred(h: Array, threshold: float) -> Array:
    """u = H - θ, the argument of the neurons' spike, firing-probability and surrogate functions."""
    return jnp.asarray(h) - threshold


def flip_probability(h: Array, threshold: float = 1.0, sigma: float = 0.4) -> Array:
    """State-flip probability under Gaussian noise (Theorem 1, docs/FORMULAS.md §1).

        P_flip(H) = Φ(-|H - θ| / σ)

    The chance that ``Θ(H + ξ - θ)``, ξ ~ N(0, σ²), differs from the noise-free spike ``Θ(H - θ)``.

    Args:
      h: pre-spike membrane potentials H, any shape.
      threshold: θ.
      sigma: noise standard deviation σ (> 0).

    Returns:
      P_flip, the shape of ``h``.
    """
    validation.all_positive("sigma", sigma)
    return lif.firing_probability(-jnp.abs(_centred(h, threshold)), sigma)


def firing_probability(h: Array, threshold: float = 1.0, sigma: float = 0.4) -> Array:
    """Noisy-LIF firing probability (paper eq. 16, docs/FORMULAS.md §1): ``P(H) = Φ((H - θ) / σ)``.

    The neurons' own ``lif.firing_probability`` of ``u = H - θ``, with σ checked (finite, > 0).
    """
    validation.all_positive("sigma", sigma)
    return lif.firing_probability(_centred(h, threshold), sigma)


def firing_sensitivity(h: Array, threshold: float = 1.0, sigma: float = 0.4) -> Array:
    """Sensitivity of the firing probability to the potential (paper eq. 17, docs/FORMULAS.md §1).

        dP/dH = φ(z) / σ,   z = (H - θ) / σ

    so a small change ΔH moves the firing probability by ``ΔP ≈ φ(z)·ΔH/σ``: the Gaussian surrogate
    ``surrogate.gaussian_grad`` of ``u = H - θ``, with σ checked (finite, > 0).
    """
    validation.all_positive("sigma", sigma)
    return surrogate.gaussian_grad(_centred(h, threshold), sigma)


def sensitivity_dsigma(h: Array, threshold: float = 1.0, sigma: float = 0.4) -> Array:
    """Derivative of the sensitivity with respect to the noise level (docs/FORMULAS.md §1).

        ∂/∂σ [φ(z)/σ] = φ(z)·(z² - 1) / σ²,   z = (H - θ) / σ

    Negative for |H - θ| < σ: there, more noise means less sensitivity to a small ΔH.
    """
    sensitivity = firing_sensitivity(h, threshold, sigma)  # checks σ
    z = _centred(h, threshold) / sigma
    return sensitivity * (z * z - 1.0) / sigma


def simulate_flip_rate(key: Array, h: Array, sigma: float = 0.4, n: int = 1000, *,
                       threshold: float = 1.0) -> Array:
    """Monte-Carlo counterpart of ``flip_probability`` through ``neurons.noisy_lif_step``.

    Runs ``n`` independent single Noisy-LIF steps from ``V = 0`` with input current ``h`` (so the
    pre-spike potential is H = h) and counts how often the noisy spike ``Θ(H + ξ - θ)`` differs from
    the noise-free ``Θ(H - θ)``. The estimate has binomial standard error ``sqrt(p(1-p)/n)``.

    Args:
      key: PRNG key.
      h: potentials H, any shape.
      sigma: noise standard deviation σ (a Python float, > 0).
      n: number of noise draws (static).
      threshold: θ.

    Returns:
      The observed flip rate, the shape of ``h`` (float32).
    """
    validation.count("n", n)
    h = jnp.asarray(h, jnp.float32)
    v0 = jnp.zeros_like(h)
    clean = surrogate.heaviside(_centred(h, threshold))  # the exact forward of every spike function

    def noisy_spike(k):
        _, (spike, _) = neurons.noisy_lif_step(v0, h, k, threshold=threshold, sigma=sigma)
        return spike

    spikes = jax.vmap(noisy_spike)(jax.random.split(key, n))  # [n, ...]
    return jnp.mean((spikes != clean).astype(jnp.float32), axis=0)


# --------------------------------------------------------------------------------------------
# Membrane potentials of a model (docs/FORMULAS.md §5)
# --------------------------------------------------------------------------------------------

def _noise_rngs(model: Any, key: Optional[Array]) -> dict:
    neuron = getattr(model, "neuron", None)
    if neuron is not None and neuron.stochastic and key is None:
        raise ValueError("key is None but the model's Noisy-LIF neurons draw noise: pass a PRNG key")
    return {} if key is None else {"noise": key}


def forward_potentials(model: Any, variables: PyTree, x: Array,
                       key: Optional[Array] = None) -> Tuple[Array, Tuple[Array, ...]]:
    """Eval-mode forward pass that also returns every LIF layer's pre-spike potential H.

    Args:
      model: a ``tgo_jax.models`` network.
      variables: its variables ({'params', 'batch_stats'}).
      x: pixels [B, H, W, C] in [0, 1].
      key: noise key, required when ``model.neuron.stochastic``.

    Returns:
      ``(logits_tb, hs)``: per-step logits [T, B, K] and a tuple of H [T, B, ...], one per layer.
    """
    return model.apply(variables, x, train=False, return_h=True, rngs=_noise_rngs(model, key))


def potential_histograms(hs: Sequence[Array], bins: int = 50,
                         range: Optional[Tuple[float, float]] = None  # noqa: A002 (numpy's name)
                         ) -> Tuple[Tuple[Array, Array], ...]:
    """Per-layer histograms of the potentials H (``jnp.histogram`` semantics).

    Args:
      hs: per-layer potentials H [T, B, ...].
      bins: number of equal-width bins.
      range: ``(low, high)`` shared by all layers (for comparing models; values outside are not
        counted), or None for each layer's own min-max range (every value is counted).

    Returns:
      One ``(counts [bins], edges [bins + 1])`` pair per layer.
    """
    _check_potentials(hs)
    validation.count("bins", bins)
    if range is not None and not range[0] < range[1]:
        raise ValueError(f"range must be (low, high) with low < high, got {range!r}")
    return tuple(jnp.histogram(h.ravel(), bins=bins, range=range) for h in hs)


# --------------------------------------------------------------------------------------------
# Input-gradient sparsity (App. F, docs/FORMULAS.md §5)
# --------------------------------------------------------------------------------------------

def input_gradients(logits_fn: LogitsFn, params: PyTree, x: Array, y: Array,
                    key: Optional[Array] = None) -> Array:
    """Per-example input gradients ``g = ∇_x CE(f(x), y)`` (App. F eq. 45, docs/FORMULAS.md §5).

    ``f(x) = logits_fn(params, x, key)`` are the mean-over-T logits; the summed (not averaged)
    batch loss is differentiated, so ``g[b]`` is example b's own gradient whatever the batch size
    (examples are independent in eval mode). Gradients are the surrogate (BPTT) ones.

    Args:
      logits_fn: ``logits_fn(params, x, key) -> [B, K]``.
      params: its parameters (a model's variables).
      x: inputs [B, H, W, C].
      y: integer labels [B].
      key: noise key passed to ``logits_fn``.

    Returns:
      g, the shape of ``x``.
    """
    validation.rank_at_least("x (batched)", x, 2)
    if y.shape != x.shape[:1]:
        raise ValueError(f"y must be integer labels of shape {x.shape[:1]}, got shape {y.shape}")

    def loss(x_):
        logits = logits_fn(params, x_, key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()

    return jax.grad(loss)(x)


def _flat(g: Array) -> Array:
    return g.reshape((g.shape[0], -1))


def gradient_sparsity(g: Array, tol: float = 1e-6) -> dict:
    """Norms and near-zero share of per-example input gradients (App. F, docs/FORMULAS.md §5).

    Args:
      g: gradients [B, ...].
      tol: entries with ``|g| <= tol`` count as zero (>= 0).

    Returns:
      A dict of float32 arrays: ``l1``, ``l2``, ``zero_share`` per example [B] (‖g_b‖₁, ‖g_b‖₂ and
      the share of entries of g_b with |g| <= tol), and their batch means ``mean_l1``, ``mean_l2``,
      ``mean_zero_share`` [].
    """
    validation.rank_at_least("g (batched)", g, 2)
    validation.non_negative("tol", tol)
    a = jnp.abs(_flat(g)).astype(jnp.float32)
    stats = {"l1": a.sum(axis=1),
             "l2": jnp.sqrt(jnp.sum(a * a, axis=1)),
             "zero_share": jnp.mean((a <= tol).astype(jnp.float32), axis=1)}
    stats.update({f"mean_{k}": v.mean() for k, v in list(stats.items())})
    return stats


def gradient_heatmap(g: Array) -> Array:
    """Heatmap of input-gradient magnitude: ``|g|`` summed over channels, [B, H, W, C] -> [B, H, W]."""
    if g.ndim != 4:
        raise ValueError(f"g must be [B, H, W, C] (rank 4), got shape {g.shape}")
    return jnp.abs(g).sum(axis=-1)


# --------------------------------------------------------------------------------------------
# Jacobian spectral norm (eq. 10, App. B)
# --------------------------------------------------------------------------------------------

def _example_norms(a: Array) -> Array:
    """‖a_b‖₂ per example, shaped to broadcast against ``a``."""
    return jnp.sqrt(jnp.sum(a * a, axis=tuple(range(1, a.ndim)), keepdims=True))


def _normalise_examples(a: Array) -> Array:
    n = _example_norms(a)
    return a / jnp.where(n > 0, n, 1.0)  # a zero vector stays zero (a zero Jacobian)


def jacobian_spectral_norm(logits_fn: LogitsFn, params: PyTree, x: Array, key: Array,
                           iters: int = 20) -> Array:
    """Per-example spectral norm ‖J_f(x_b)‖₂ of the input Jacobian, by power iteration (eq. 10, App. B).

    To first order an ε-bounded perturbation moves the output by at most ``ε·‖J_f(x)‖``. With
    ``f`` the mean-over-T logits, power iteration on ``JᵀJ`` gives the largest singular value:

        v ← Jᵀ(J v) / ‖Jᵀ(J v)‖,   ‖J_f(x)‖₂ ≈ ‖J v‖   (a lower bound that converges from below)

    ``Jᵀu`` is a vjp; ``J v`` is its linear transpose (forward mode is not available through the
    surrogate spikes, which are ``custom_vjp``), so J is the surrogate-gradient Jacobian. The batch
    is handled at once with a per-example normalisation, which requires ``logits_fn`` to treat
    examples independently (eval mode); the noise key is held fixed, so for a Noisy-LIF model this
    is the Jacobian of one noise realisation.

    Args:
      logits_fn: ``logits_fn(params, x, key) -> [B, K]``.
      params: its parameters.
      x: inputs [B, ...].
      key: PRNG key (required), passed unchanged to ``logits_fn``; the start vector is drawn from
        ``fold_in(key, 1)``.
      iters: power-iteration steps (static).

    Returns:
      Estimates of ‖J_f(x_b)‖₂, [B] float32.
    """
    validation.rank_at_least("x (batched)", x, 2)
    validation.count("iters", iters)
    if key is None:  # no silent fixed key: the start vector (and a noisy model's noise) come from it
        raise ValueError("key must be a PRNG key: it draws the power iteration's start vector")
    logits, vjp_fn = jax.vjp(lambda x_: logits_fn(params, x_, key), x)
    jvp_fn = jax.linear_transpose(vjp_fn, logits)

    def jv(v):  # J v, [B, K]
        return jvp_fn((v,))[0]

    def jtu(u):  # Jᵀ u, [B, ...]
        return vjp_fn(u)[0]

    init_key = jax.random.fold_in(key, 1)
    v = _normalise_examples(jax.random.normal(init_key, x.shape, x.dtype))
    v = lax.fori_loop(0, iters, lambda _, v: _normalise_examples(jtu(jv(v))), v)
    return _example_norms(jv(v)).reshape(x.shape[0])


# --------------------------------------------------------------------------------------------
# Activation regions (Theorem 2)
# --------------------------------------------------------------------------------------------

def sample_linf_ball(key: Array, x: Array, eps: float, num_samples: int) -> Array:
    """``num_samples`` points uniform in the L∞ ε-ball around one input ``x``, clipped to [0, 1].

    Args:
      key: PRNG key.
      x: one input (no batch axis), e.g. [H, W, C].
      eps: ball radius ε (>= 0).
      num_samples: number of points N (static).

    Returns:
      [N, *x.shape].
    """
    validation.non_negative("eps", eps)
    validation.count("num_samples", num_samples)
    delta = jax.random.uniform(key, (num_samples,) + x.shape, x.dtype, minval=-eps, maxval=eps)
    return jnp.clip(x[None] + delta, 0.0, 1.0)


def _pack_bits(patterns: Array) -> Array:
    """[N, P] binary patterns -> [N, ceil(P/32)] uint32 words (exact: equal words ⇔ equal patterns)."""
    n, p = patterns.shape
    bits = jnp.pad(patterns.astype(jnp.uint32), ((0, 0), (0, (-p) % 32)))
    bits = bits.reshape((n, -1, 32))
    return jnp.sum(bits << jnp.arange(32, dtype=jnp.uint32), axis=-1, dtype=jnp.uint32)


def count_distinct_rows(patterns: Array) -> Array:
    """Number of distinct rows of a binary [N, P] array, compared exactly (jittable).

    Rows are packed into 32-bit words, sorted lexicographically, and the row changes are counted.
    """
    if patterns.ndim != 2:
        raise ValueError(f"patterns must be [N, P] (rank 2), got shape {patterns.shape}")
    words = _pack_bits(patterns)
    order = jnp.lexsort(words.T[::-1])  # lexsort's last key is the primary one
    ranked = words[order]
    changes = jnp.any(ranked[1:] != ranked[:-1], axis=1)
    return 1 + jnp.sum(changes, dtype=jnp.int32)


def activation_region_count(spike_pattern_fn: PatternFn, params: PyTree, x: Array, key: Array,
                            eps: float, num_samples: int) -> Array:
    """Number of distinct spike patterns met in the L∞ ε-ball around each input (Theorem 2).

    Inside one activation region the network is a fixed affine map; Theorem 2 bounds the
    adversarial effect by the number of regions the ball ``B(x, ε)`` meets. This counts the distinct
    patterns among ``num_samples`` points drawn uniformly in the ball (clipped to [0, 1]) — a lower
    bound on that number. Patterns are compared exactly.

    Every sample of example b is evaluated with the same noise key, so for a Noisy-LIF model the
    count is that of one fixed noise realisation (ε = 0 gives one pattern).

    Args:
      spike_pattern_fn: ``spike_pattern_fn(params, x, key) -> [B, P]`` binary spike patterns (e.g.
        ``model_spike_pattern_fn(model)``); it must treat examples independently.
      params: its parameters.
      x: inputs [B, ...].
      key: PRNG key (split per example into a sampling key and a noise key).
      eps: ball radius ε (>= 0).
      num_samples: samples per example N (static).

    Returns:
      Counts [B], int32, each in [1, N].
    """
    validation.rank_at_least("x (batched)", x, 2)
    validation.non_negative("eps", eps)
    validation.count("num_samples", num_samples)

    def count_one(inputs):
        patterns, _ = _ball_patterns(spike_pattern_fn, params, *inputs, eps, num_samples)
        return count_distinct_rows(patterns)

    return lax.map(count_one, (x, jax.random.split(key, x.shape[0])))


def _ball_patterns(spike_pattern_fn: PatternFn, params: PyTree, x_b: Array, key_b: Array, eps: float,
                   num_samples: int) -> Tuple[Array, Array]:
    """Spike patterns [N, P] of N ball samples around one input, and the noise key they all used."""
    sample_key, noise_key = jax.random.split(key_b)
    points = sample_linf_ball(sample_key, x_b, eps, num_samples)
    # vmap with a shared key: one batch of N on the device, the same noise for every point.
    return jax.vmap(lambda p: spike_pattern_fn(params, p[None], noise_key)[0])(points), noise_key


def ball_statistics(spike_pattern_fn: PatternFn, params: PyTree, x: Array, key: Array, eps: float,
                    num_samples: int, layer_sizes: Sequence[int]) -> Tuple[Array, Array]:
    """Activation regions and spike flips in the L∞ ε-ball around each input (Theorem 2).

    The samples are those of ``activation_region_count`` (same keys, so the all-layer count equals
    its result). The pattern is split into layers by ``layer_sizes`` (spikes per example and layer,
    T·N_l, in the order of ``spike_pattern_fn``'s output).

    Args:
      spike_pattern_fn: ``spike_pattern_fn(params, x, key) -> [B, P]`` binary spike patterns.
      params: its parameters.
      x: inputs [B, ...].
      key: PRNG key (split per example into a sampling key and a noise key).
      eps: ball radius ε (>= 0).
      num_samples: samples per example N (static).
      layer_sizes: spikes per example of each layer; they must add up to P.

    Returns:
      ``(counts [B, 2] int32, flips [B, L])``: the distinct patterns among the samples over all layers
      and over the last layer alone, and per layer the share of spikes that differ from the clean
      input's pattern (same noise key), averaged over the samples.
    """
    validation.rank_at_least("x (batched)", x, 2)
    validation.non_negative("eps", eps)
    validation.count("num_samples", num_samples)
    bounds = [0]
    for i, size in enumerate(layer_sizes):
        validation.count(f"layer_sizes[{i}]", int(size))
        bounds.append(bounds[-1] + int(size))
    slices = list(zip(bounds[:-1], bounds[1:]))

    def one(inputs):
        x_b, key_b = inputs
        patterns, noise_key = _ball_patterns(spike_pattern_fn, params, x_b, key_b, eps, num_samples)
        if patterns.shape[1] != bounds[-1]:
            raise ValueError(f"layer_sizes add up to {bounds[-1]}, but the patterns have "
                             f"{patterns.shape[1]} spikes per example")
        clean = spike_pattern_fn(params, x_b[None], noise_key)[0]
        counts = [count_distinct_rows(patterns), count_distinct_rows(patterns[:, slices[-1][0]:])]
        flips = [jnp.mean(patterns[:, a:b] != clean[a:b]) for a, b in slices]
        return jnp.stack(counts), jnp.stack(flips)

    return lax.map(one, (x, jax.random.split(key, x.shape[0])))


def _is_spiking_call(module: Any, method_name: str) -> bool:
    return isinstance(module, layers.Spiking) and method_name == "__call__"


def model_spike_pattern_fn(model: Any) -> PatternFn:
    """``spike_pattern_fn(variables, x, key) -> [B, P]`` bool: all layers' spikes over T of a model.

    The spikes are the ones the forward pass emitted (captured from every ``layers.Spiking``
    layer in eval mode), so Noisy-LIF noise is included; for LIF they equal ``Θ(H - θ)``.
    Expected-firing outputs Φ((H-θ)/σ) are binarised at 1/2 (i.e. H >= θ).
    """
    num_steps = model.num_steps

    def spike_pattern_fn(variables: PyTree, x: Array, key: Optional[Array]) -> Array:
        _, state = model.apply(variables, x, train=False, rngs=_noise_rngs(model, key),
                               capture_intermediates=_is_spiking_call, mutable=["intermediates"])
        flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(state["intermediates"]))
        calls = [out for path, outs in flat.items() if path[-1] == "__call__" for out in outs]
        batch = x.shape[0]
        per_layer = []
        for spikes, _ in calls:  # Spiking returns (spikes flat [T·B, ...] time-major, H)
            s_tb = spikes.reshape((num_steps, batch, -1))
            per_layer.append(jnp.swapaxes(s_tb, 0, 1).reshape((batch, -1)))
        return jnp.concatenate(per_layer, axis=1) >= 0.5

    return spike_pattern_fn


# --------------------------------------------------------------------------------------------
# Loss landscape (App. F, Li et al. 2018)
# --------------------------------------------------------------------------------------------

def _filter_norms(a: Array) -> Array:
    """Norm of each output filter (last axis) of a weight, keepdims: [..., out] -> [1, ..., out]."""
    return jnp.sqrt(jnp.sum(a * a, axis=tuple(range(a.ndim - 1)), keepdims=True))


def _safe_div(a: Array, b: Array) -> Array:
    return a / jnp.where(b > 0, b, 1.0) * (b > 0)


def _filter_directions(p: Array, g: Array, r: Array) -> Tuple[Array, Array]:
    """d1, d2 for one weight: per output filter, d1 ∥ g and d2 = r with its d1 part removed, both
    rescaled to the parameter's filter norm; weights with ndim <= 1 (biases, BN) get zero."""
    if p.ndim <= 1:
        return jnp.zeros_like(p), jnp.zeros_like(p)
    p_norm = _filter_norms(p)
    d1 = g * _safe_div(p_norm, _filter_norms(g))
    dot = jnp.sum(r * d1, axis=tuple(range(p.ndim - 1)), keepdims=True)
    r = r - d1 * _safe_div(dot, _filter_norms(d1) ** 2)
    return d1, r * _safe_div(p_norm, _filter_norms(r))


def _tree_vdot(a: PyTree, b: PyTree) -> Array:
    return sum(jnp.vdot(u, v) for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def _unit_directions(g: PyTree, r: PyTree) -> Tuple[PyTree, PyTree]:
    d1 = jax.tree_util.tree_map(lambda u: u / jnp.sqrt(_tree_vdot(g, g)), g)
    dot = _tree_vdot(r, d1)
    d2 = jax.tree_util.tree_map(lambda u, w: u - dot * w, r, d1)
    d2_norm = jnp.sqrt(_tree_vdot(d2, d2))
    return d1, jax.tree_util.tree_map(lambda u: u / d2_norm, d2)


def landscape_directions(params: PyTree, grad: PyTree, key: Array,
                         norm: str = "filter") -> Tuple[PyTree, PyTree]:
    """Two orthogonal directions in parameter space for ``loss_landscape`` (App. F eq. 48-49).

    d1 is the gradient direction and d2 a Gaussian random direction orthogonalised to d1:

    * ``norm="filter"`` (Li et al. 2018, default): per output filter (last axis of each kernel),
      ``d1_f = g_f·‖θ_f‖/‖g_f‖`` and ``d2_f = (r_f - (r_f·d1_f/‖d1_f‖²) d1_f)·‖θ_f‖/‖…‖``, so both
      have the parameter's filter norms and are orthogonal filter by filter (hence overall);
      parameters with ndim <= 1 (biases, BatchNorm scales, mixing weights) get zero directions.
    * ``norm="unit"``: ``d1 = g/‖g‖``, d2 Gram-Schmidt against d1 and scaled to norm 1 (all leaves).

    Args:
      params: the parameter pytree θ (e.g. ``variables['params']``).
      grad: the loss gradient at θ, same structure.
      key: PRNG key for d2.
      norm: "filter" or "unit".

    Returns:
      ``(d1, d2)``, pytrees shaped like ``params``.
    """
    if norm not in DIRECTION_NORMS:
        raise ValueError(f"norm must be one of {list(DIRECTION_NORMS)}, got {norm!r}")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    grad_leaves = treedef.flatten_up_to(grad)
    keys = jax.random.split(key, len(leaves))
    rand = [jax.random.normal(k, p.shape, p.dtype) for k, p in zip(keys, leaves)]
    if norm == "unit":
        return _unit_directions(jax.tree_util.tree_unflatten(treedef, grad_leaves),
                                jax.tree_util.tree_unflatten(treedef, rand))
    pairs = [_filter_directions(p, g, r) for p, g, r in zip(leaves, grad_leaves, rand)]
    return (jax.tree_util.tree_unflatten(treedef, [d1 for d1, _ in pairs]),
            jax.tree_util.tree_unflatten(treedef, [d2 for _, d2 in pairs]))


def loss_landscape(loss_fn: Callable[[PyTree], Array], params: PyTree,
                   directions: Tuple[PyTree, PyTree], alphas: Array, betas: Array) -> Array:
    """Loss on a 2-D slice of parameter space (App. F eq. 50-52).

        L[i, j] = loss_fn(θ + α_i·d1 + β_j·d2)

    ``loss_fn(params) -> []`` closes over the data (clean x, or attacked x_adv) and any fixed state
    (BatchNorm statistics). Grid points are evaluated one at a time (``lax.map``) to bound memory.

    Args:
      loss_fn: scalar loss of the parameters.
      params: θ.
      directions: ``(d1, d2)``, e.g. from ``landscape_directions``.
      alphas: [Na] offsets along d1.
      betas: [Nb] offsets along d2.

    Returns:
      [Na, Nb] losses.
    """
    d1, d2 = directions
    alphas, betas = jnp.asarray(alphas), jnp.asarray(betas)
    if alphas.ndim != 1 or betas.ndim != 1:
        raise ValueError(f"alphas and betas must be 1-D, got shapes {alphas.shape} and {betas.shape}")
    grid_a, grid_b = jnp.meshgrid(alphas, betas, indexing="ij")

    def point(ab):
        a, b = ab
        moved = jax.tree_util.tree_map(lambda t, u, v: t + (a * u + b * v).astype(t.dtype),
                                       params, d1, d2)
        return loss_fn(moved)

    return lax.map(point, (grid_a.ravel(), grid_b.ravel())).reshape(grid_a.shape)
