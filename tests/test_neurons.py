"""LIF and Noisy-LIF neurons (docs/FORMULAS.md §1, paper eq. 15-17 and Theorem 1)."""
import dataclasses
import functools
import math

import chex
import ml_collections
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax import lax
from jax.test_util import check_grads

from tgo_jax import neurons, surrogate
from tgo_train import config_check
from tests.conftest import tiny_config

T, B, N = 6, 3, 5


def _currents(seed=0, shape=(T, B, N), low=-0.5, high=1.5, dtype=jnp.float32):
    return jax.random.uniform(jax.random.key(seed), shape, dtype, low, high)


def _reference_run(config, currents_tb, key=None):
    """A Python loop over the step functions: step t draws time step t of the layer noise of ``key``."""
    spike_fn = config.spike_fn()
    common = dict(decay=config.decay, threshold=config.threshold, spike_fn=spike_fn, reset=config.reset,
                  detach_reset=config.detach_reset)
    v = jnp.zeros(currents_tb.shape[1:], currents_tb.dtype)
    spikes, hs = [], []
    for t in range(currents_tb.shape[0]):
        if config.kind == "lif":
            v, (s, h) = neurons.lif_step(v, currents_tb[t], **common)
        else:
            v, (s, h) = neurons.noisy_lif_step(v, currents_tb[t], key, sigma=config.sigma,
                                               sigma_is_variance=config.sigma_is_variance,
                                               expected=config.expected, t=t, **common)
        spikes.append(s)
        hs.append(h)
    return jnp.stack(spikes), jnp.stack(hs)


def _weighted_spike_sum(run_fn, weights):
    return lambda currents: jnp.sum(weights * run_fn(currents)[0])


CONFIGS = [
    ("lif_hard", neurons.NeuronConfig()),
    ("lif_soft_atan", neurons.NeuronConfig(reset="soft", surrogate="atan")),
    ("lif_detach", neurons.NeuronConfig(detach_reset=True, decay=0.8)),
    ("noisy", neurons.NeuronConfig(kind="noisy")),
    ("noisy_variance_soft", neurons.NeuronConfig(kind="noisy", sigma_is_variance=True, reset="soft")),
    ("noisy_expected", neurons.NeuronConfig(kind="noisy", expected=True)),
]


class RunMatchesReferenceTest(chex.TestCase):
    """`run` (lax.scan) equals a Python loop of the step function."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CONFIGS)
    def test_run_equals_step_loop(self, config):
        currents = _currents(1)
        key = jax.random.key(7) if config.stochastic else None
        spikes, hs = self.variant(functools.partial(neurons.run, config))(currents, key)
        ref_spikes, ref_hs = _reference_run(config, currents, key)
        chex.assert_shape([spikes, hs], (T, B, N))
        np.testing.assert_allclose(np.asarray(hs), np.asarray(ref_hs), rtol=1e-6, atol=1e-6)
        if config.expected:
            np.testing.assert_allclose(np.asarray(spikes), np.asarray(ref_spikes), rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(np.asarray(spikes), np.asarray(ref_spikes))
            assert 0 < float(spikes.mean()) < 1  # the layer both fires and stays silent somewhere


@pytest.mark.parametrize("name", ["lif_soft_atan", "lif_detach", "noisy_variance_soft"])
def test_run_gradient_equals_step_loop(name):
    config = dict(CONFIGS)[name]
    currents = _currents(1)
    key = jax.random.key(7) if config.stochastic else None
    weights = jax.random.normal(jax.random.key(3), currents.shape)
    got = jax.jit(jax.grad(_weighted_spike_sum(lambda c: neurons.run(config, c, key), weights)))(currents)
    want = jax.jit(jax.grad(_weighted_spike_sum(lambda c: _reference_run(config, c, key), weights)))(currents)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(want).sum()) > 0


# Constant current 0.6, τ = 0.5, θ = 1, V[0] = 0; H = τ·V + I, S = 1[H >= 1].
# Hard reset V = H·(1-S): 0.6 -> 0.9 -> 1.05 (fires, V = 0) and the cycle repeats.
HARD_H = [0.6, 0.9, 1.05, 0.6, 0.9, 1.05, 0.6, 0.9, 1.05]
HARD_S = [0, 0, 1, 0, 0, 1, 0, 0, 1]
HARD_V = [0.6, 0.9, 0.0, 0.6, 0.9, 0.0, 0.6, 0.9, 0.0]
# Soft reset V = H - θ·S keeps the 0.05 excess: 1.05 -> V = 0.05 -> H = 0.025 + 0.6 = 0.625, ...
SOFT_H = [0.6, 0.9, 1.05, 0.625, 0.9125, 1.05625, 0.628125, 0.9140625, 1.05703125]
SOFT_S = [0, 0, 1, 0, 0, 1, 0, 0, 1]
SOFT_V = [0.6, 0.9, 0.05, 0.625, 0.9125, 0.05625, 0.628125, 0.9140625, 0.05703125]
# With θ = 0.8 the soft reset subtracts θ, not 1: 0.9 fires, V = 0.1 -> H = 0.05 + 0.6 = 0.65 -> 0.925, ...
SOFT08_H = [0.6, 0.9, 0.65, 0.925, 0.6625, 0.93125]
SOFT08_S = [0, 1, 0, 1, 0, 1]
SOFT08_V = [0.6, 0.1, 0.65, 0.125, 0.6625, 0.13125]
HARD08_H, HARD08_S, HARD08_V = [0.6, 0.9] * 3, [0, 1] * 3, [0.6, 0.0] * 3


@pytest.mark.parametrize("reset, theta, want_h, want_s, want_v", [
    ("hard", 1.0, HARD_H, HARD_S, HARD_V),
    ("soft", 1.0, SOFT_H, SOFT_S, SOFT_V),
    ("hard", 0.8, HARD08_H, HARD08_S, HARD08_V),
    ("soft", 0.8, SOFT08_H, SOFT08_S, SOFT08_V),
])
def test_reset_on_a_hand_computed_sequence(reset, theta, want_h, want_s, want_v):
    """Constant current 0.6, τ = 0.5, V[0] = 0 (values above worked out by hand)."""
    currents = jnp.full((len(want_h), 1), 0.6, jnp.float32)
    v, got_v = jnp.zeros((1,), jnp.float32), []
    for t in range(len(want_h)):
        v, _ = neurons.lif_step(v, currents[t], decay=0.5, threshold=theta, reset=reset)
        got_v.append(float(v[0]))
    np.testing.assert_allclose(got_v, want_v, atol=1e-6)
    spikes, hs = neurons.run(neurons.NeuronConfig(decay=0.5, threshold=theta, reset=reset), currents)
    np.testing.assert_allclose(np.asarray(hs[:, 0]), want_h, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(spikes[:, 0]), want_s)


def test_detach_reset_changes_gradient_not_forward():
    """Two steps, hard reset: H2 = τ·H1·(1 - S1) + I2, so
    dH2/dI1 = τ·(1 - S1 - H1·g(H1-θ)) with the spike's gradient, τ·(1 - S1) with it detached."""
    tau, theta, i1 = 0.5, 1.0, 1.2
    currents = jnp.array([[i1], [0.3]], jnp.float32)

    def h2(config):
        return lambda c: neurons.run(config, c)[1][1, 0]

    attached = neurons.NeuronConfig(decay=tau, threshold=theta)
    detached = dataclasses.replace(attached, detach_reset=True)
    for out_a, out_d in zip(neurons.run(attached, currents), neurons.run(detached, currents)):
        np.testing.assert_array_equal(np.asarray(out_a), np.asarray(out_d))
    s1 = 1.0 if i1 >= theta else 0.0
    g1 = max(0.0, 1.0 - abs(i1 - theta))  # triangle surrogate, γ = 1
    np.testing.assert_allclose(float(jax.grad(h2(attached))(currents)[0, 0]), tau * (1 - s1 - i1 * g1), rtol=1e-6)
    np.testing.assert_allclose(float(jax.grad(h2(detached))(currents)[0, 0]), tau * (1 - s1), atol=1e-7)
    # The same on random inputs: forward identical, gradient different.
    currents = _currents(4)
    weights = jax.random.normal(jax.random.key(5), currents.shape)
    grads = [jax.grad(_weighted_spike_sum(lambda c, cfg=cfg: neurons.run(cfg, c), weights))(currents)
             for cfg in (attached, detached)]
    assert float(jnp.abs(grads[0] - grads[1]).max()) > 1e-3


def _sigmoid_layer(step, keys=None):
    """Scans ``step`` (its spike swapped for a sigmoid) over time and returns Σ w·S + 0.1·Σ H²."""
    def layer(currents_tb, weights):
        def body(v, inputs):
            current, key = inputs
            return step(v, current, key)
        _, (spikes, hs) = lax.scan(body, jnp.zeros_like(currents_tb[0]), (currents_tb, keys))
        return jnp.sum(weights * spikes) + 0.1 * jnp.sum(hs**2)
    return layer


def _smooth(u):
    return jax.nn.sigmoid(4.0 * u)


@pytest.mark.parametrize("reset, noisy", [("hard", False), ("soft", True)])
def test_check_grads_with_sigmoid_spike(reset, noisy):
    with jax.enable_x64(True):
        currents = _currents(6, (4, 2, 3), dtype=jnp.float64)
        weights = jax.random.normal(jax.random.key(8), currents.shape, jnp.float64)
        keys = jax.random.split(jax.random.key(9), currents.shape[0])
        if noisy:
            def step(v, current, key):
                return neurons.noisy_lif_step(v, current, key, spike_fn=_smooth, reset=reset)
        else:
            def step(v, current, key):
                del key
                return neurons.lif_step(v, current, spike_fn=_smooth, reset=reset)
        check_grads(jax.jit(_sigmoid_layer(step, keys)), (currents, weights), order=2, modes=["rev"])


def test_check_grads_through_run(monkeypatch):
    """`run`'s plain path (make_step, scan, remat) with the spike swapped for a sigmoid; the fused
    path is checked against this one in test_fused.py."""
    monkeypatch.setattr(neurons.NeuronConfig, "spike_fn", lambda self: _smooth)
    config = neurons.NeuronConfig(kind="noisy", remat=True, reset="soft", fused=False)
    with jax.enable_x64(True):
        currents = _currents(10, (3, 2, 2), dtype=jnp.float64)
        key = jax.random.key(11)
        check_grads(jax.jit(lambda c: jnp.sum(jnp.sin(neurons.run(config, c, key)[0]))), (currents,), order=2,
                    modes=["rev"])


@pytest.mark.parametrize("kind", ["lif", "noisy"])
def test_remat_gives_identical_values_and_gradients(kind):
    plain = neurons.NeuronConfig(kind=kind, fused=False)
    remat = dataclasses.replace(plain, remat=True)
    currents, key = _currents(12), jax.random.key(13)
    weights = jax.random.normal(jax.random.key(14), currents.shape)

    def outputs_and_grad(config):
        def loss(c):
            spikes, hs = neurons.run(config, c, key)
            return jnp.sum(weights * spikes) + jnp.sum(hs**2), (spikes, hs)
        return jax.jit(jax.grad(loss, has_aux=True))(currents)

    (grad_a, out_a), (grad_b, out_b) = outputs_and_grad(plain), outputs_and_grad(remat)
    chex.assert_trees_all_equal(out_a, out_b)
    np.testing.assert_allclose(np.asarray(grad_a), np.asarray(grad_b), rtol=1e-6, atol=1e-7)
    assert float(jnp.abs(grad_a).sum()) > 0


@pytest.mark.parametrize("kind", ["lif", "noisy"])
def test_bptr_zeroes_gradient_of_silent_neurons_only(kind):
    surrogate_cfg = neurons.NeuronConfig(kind=kind)
    bptr_cfg = dataclasses.replace(surrogate_cfg, backward="bptr")
    currents, key = _currents(15, (4, 8, 16), low=0.0, high=1.1), jax.random.key(16)
    weights = jax.random.normal(jax.random.key(17), currents.shape)

    def forward_and_grad(config):
        run = functools.partial(neurons.run, config, key=key)
        return jax.jit(lambda c: (run(c), jax.grad(_weighted_spike_sum(run, weights))(c)))(currents)

    (spikes, hs), grad_sur = forward_and_grad(surrogate_cfg)
    bptr_out, grad_bptr = forward_and_grad(bptr_cfg)
    for a, b in zip((spikes, hs), bptr_out):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # forward unchanged
    fired = np.asarray(jnp.any(spikes > 0, axis=0))  # [B, N]
    assert fired.any() and (~fired).any()
    grad_sur, grad_bptr = np.asarray(grad_sur), np.asarray(grad_bptr)
    silent = np.broadcast_to(~fired, grad_sur.shape)
    assert np.abs(grad_sur[silent]).max() > 0  # the surrogate alone would pass gradient there
    np.testing.assert_array_equal(grad_bptr[silent], 0.0)
    # Two separately compiled programs: equal up to float32 rounding (at XLA's lowest CPU optimisation level
    # the two backward passes have differed by one ulp on some elements).
    np.testing.assert_allclose(grad_bptr[~silent], grad_sur[~silent], rtol=1e-6, atol=1e-6)


def _normal_cdf(z):
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(z, np.float64) / math.sqrt(2.0)))


@pytest.mark.parametrize("sigma, sigma_is_variance", [(0.4, False), (0.3, True)])
def test_expected_mode_is_normal_cdf_with_gaussian_gradient(sigma, sigma_is_variance):
    std = math.sqrt(sigma) if sigma_is_variance else sigma
    theta = 1.0
    h_np = np.linspace(-0.5, 2.5, 61)
    with jax.enable_x64(True):
        h = jnp.asarray(h_np, jnp.float64)
        step = functools.partial(neurons.noisy_lif_step, jnp.zeros_like(h), key=None, sigma=sigma,
                                 sigma_is_variance=sigma_is_variance, expected=True, threshold=theta)
        (_, (p, h_out)), pullback = jax.vjp(lambda c: step(c), h)
        np.testing.assert_allclose(np.asarray(h_out), h_np)
        np.testing.assert_allclose(np.asarray(p), _normal_cdf((h_np - theta) / std), rtol=1e-12, atol=1e-14)
        zero_v = jnp.zeros_like(h)
        grad = pullback((zero_v, (jnp.ones_like(h), zero_v)))[0]
        gauss = np.exp(-0.5 * ((h_np - theta) / std) ** 2) / (std * math.sqrt(2 * math.pi))
        np.testing.assert_allclose(np.asarray(grad), gauss, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(grad), np.asarray(surrogate.gaussian_grad(h - theta, std)),
                                   rtol=1e-12, atol=1e-14)
    # Through `run`: the spike output is Φ((H-θ)/σ) of its own H, no key needed.
    config = neurons.NeuronConfig(kind="noisy", expected=True, sigma=sigma, sigma_is_variance=sigma_is_variance)
    assert not config.stochastic
    spikes, hs = neurons.run(config, _currents(18))
    np.testing.assert_allclose(np.asarray(spikes), _normal_cdf((np.asarray(hs) - theta) / std), atol=1e-6)


def _firing_draws(h_values, n, key, **kw):
    """n Noisy-LIF spikes at each fixed H (v = 0, so H = current): [len(h), n]."""
    currents = jnp.broadcast_to(jnp.asarray(h_values, jnp.float32)[:, None], (len(h_values), n))
    _, (spikes, _) = neurons.noisy_lif_step(jnp.zeros_like(currents), currents, key, threshold=1.0, **kw)
    return np.asarray(spikes, np.float64)


def _within_binomial_error(rates, p, n, num_se=5.0):
    """|rate - p| <= num_se·√(p(1-p)/n), the Monte-Carlo tolerance of a rate over n Bernoulli draws."""
    se = np.sqrt(p * (1 - p) / n)
    return np.abs(rates - p) <= num_se * se


H_VALUES = np.array([0.4, 0.7, 0.9, 1.0, 1.1, 1.3, 1.6])
DRAWS = 200_000


@pytest.mark.parametrize("sigma, sigma_is_variance", [(0.4, False), (0.4, True)])
def test_firing_and_flip_rates_match_theory(sigma, sigma_is_variance):
    """Firing rate P(H) = Φ((H-θ)/σ) (eq. 16); flip rate vs Θ(H-θ) is Φ(-|H-θ|/σ) (Theorem 1)."""
    std = math.sqrt(sigma) if sigma_is_variance else sigma
    spikes = _firing_draws(H_VALUES, DRAWS, jax.random.key(19), sigma=sigma, sigma_is_variance=sigma_is_variance)
    rates = spikes.mean(axis=1)
    p_fire = _normal_cdf((H_VALUES - 1.0) / std)
    assert _within_binomial_error(rates, p_fire, DRAWS).all(), (rates, p_fire)

    noiseless = (H_VALUES >= 1.0).astype(np.float64)[:, None]
    flips = (spikes != noiseless).mean(axis=1)
    p_flip = _normal_cdf(-np.abs(H_VALUES - 1.0) / std)
    assert _within_binomial_error(flips, p_flip, DRAWS).all(), (flips, p_flip)
    if sigma_is_variance:  # the test can tell σ = √0.4 from σ = 0.4
        assert not _within_binomial_error(rates, _normal_cdf((H_VALUES - 1.0) / sigma), DRAWS).all()


@pytest.mark.parametrize("sigma_is_variance", [False, True])
def test_noisy_spike_and_backward_use_the_noisy_potential(sigma_is_variance):
    """S = Θ(H + ξ - θ) and dS/dH = g(H + ξ - θ) (docs/FORMULAS.md §1). An identity "spike" exposes
    u = H + ξ - θ for the same key, so ξ itself can be checked: mean 0, std σ (or √σ)."""
    sigma, n = 0.4, DRAWS
    std = math.sqrt(sigma) if sigma_is_variance else sigma
    h = jnp.asarray(np.random.default_rng(26).uniform(0.0, 2.0, n), jnp.float32)
    key = jax.random.key(27)
    kw = dict(threshold=1.0, sigma=sigma, sigma_is_variance=sigma_is_variance)

    def spike(current, spike_fn=surrogate.triangle()):
        return neurons.noisy_lif_step(jnp.zeros_like(current), current, key, spike_fn=spike_fn, **kw)[1][0]

    u = spike(h, spike_fn=lambda x: x)
    s, pullback = jax.vjp(spike, h)
    np.testing.assert_array_equal(np.asarray(s), np.asarray(u >= 0, np.float32))
    np.testing.assert_allclose(np.asarray(pullback(jnp.ones_like(h))[0]),
                               np.maximum(0.0, 1.0 - np.abs(np.asarray(u, np.float64))), atol=1e-6)
    xi = np.asarray(u, np.float64) - (np.asarray(h, np.float64) - 1.0)
    assert abs(xi.mean()) <= 5 * std / math.sqrt(n)
    assert abs(xi.std() - std) <= 5 * std / math.sqrt(2 * n)  # standard error of a normal sample's std


def test_sigma_is_variance_uses_the_square_root():
    assert neurons.NeuronConfig(kind="noisy", sigma=0.4, sigma_is_variance=True).std == pytest.approx(math.sqrt(0.4))
    assert neurons.NeuronConfig(kind="noisy", sigma=0.4).std == 0.4
    assert neurons.noise_std(0.25, True) == pytest.approx(0.5)


def test_noise_key_determines_spikes():
    config = neurons.NeuronConfig(kind="noisy")
    currents = _currents(20, (T, 16, 32))
    first = neurons.run(config, currents, jax.random.key(21))[0]
    again = neurons.run(config, currents, jax.random.key(21))[0]
    other = neurons.run(config, currents, jax.random.key(22))[0]
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert float(jnp.mean(first != other)) > 0.05
    # Noise is fresh per time step: with a constant current and no memory (τ = 0) the steps still differ.
    flat = dataclasses.replace(config, decay=0.0)
    steps = neurons.run(flat, jnp.full((T, 16, 32), 1.0), jax.random.key(23))[0]
    assert float(jnp.mean(steps[0] != steps[1])) > 0.05


def test_dtype_preserved_bfloat16():
    for config in (neurons.NeuronConfig(), neurons.NeuronConfig(kind="noisy")):
        currents = _currents(24).astype(jnp.bfloat16)
        spikes, hs = neurons.run(config, currents, jax.random.key(25))
        assert spikes.dtype == hs.dtype == jnp.bfloat16
        grad = jax.grad(lambda c: jnp.sum(neurons.run(config, c, jax.random.key(25))[0]))(currents)
        assert grad.dtype == jnp.bfloat16


BAD_FIELDS = [
    ("kind", "izhikevich"), ("reset", "zero"), ("backward", "bptt"), ("decay", 1.5), ("decay", -0.1),
    ("threshold", 0.0), ("sigma", 0.0), ("sigma", -0.4), ("surrogate", "relu"),
    # Non-finite values and wrong types (once accepted, or a bare TypeError): one line naming the field.
    ("threshold", math.inf), ("threshold", math.nan), ("sigma", math.inf), ("decay", math.nan),
    ("decay", "0.5"), ("unroll", "no"), ("fused", 1), ("surrogate_param", math.inf), ("surrogate_param", 0.0),
    ("remat", True),  # a rule across fields: remat needs fused=False
]


@pytest.mark.parametrize("field, value", BAD_FIELDS)
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}.*{value}"):
        neurons.NeuronConfig(**{field: value})


@pytest.mark.parametrize("field, value", BAD_FIELDS)
def test_run_config_check_refuses_what_the_neuron_refuses_with_its_message(field, value):
    """One rule per neuron field: the run config's check gives NeuronConfig's message, naming the config field."""
    with pytest.raises(ValueError) as neuron_error:
        neurons.NeuronConfig(**{field: value})
    config = ml_collections.ConfigDict(tiny_config().to_dict(), type_safe=False)
    config.neuron[field] = value
    with pytest.raises(config_check.ConfigError) as config_error:
        config_check.check(config)
    assert str(config_error.value) == f"config.neuron.{neuron_error.value}"


def test_missing_key_and_bad_rank_raise():
    noisy = neurons.NeuronConfig(kind="noisy")
    with pytest.raises(ValueError, match="key"):
        neurons.run(noisy, _currents())
    with pytest.raises(ValueError, match="key"):
        neurons.noisy_lif_step(jnp.zeros(3), jnp.ones(3), None)
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\].*\(5,\)"):
        neurons.run(neurons.NeuronConfig(), jnp.ones(5))
