"""Tests for tgo_jax.analysis: closed forms vs Monte-Carlo and autodiff, model measurements,
Jacobian power iteration vs the exact Jacobian, activation regions, loss landscape."""
from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

from tgo_jax import analysis, attacks, losses, neurons
from tests.conftest import tiny_model

H_GRID = jnp.linspace(0.0, 2.0, 21)  # potentials around θ = 1
IMAGE = (8, 8, 1)  # the small net accepts any even size; 8×8 keeps the tests fast


def _scale_kernels(params, factor):
    return jax.tree_util.tree_map_with_path(
        lambda path, a: a * factor if path[-1].key == "kernel" else a, params)


class Net(NamedTuple):
    model: Any
    variables: dict
    x: jax.Array  # [4, 8, 8, 1]


def make_net(seed=0, **kw) -> Net:
    """A tiny net and 4 inputs [4, 8, 8, 1]; kernels are scaled ×4 so that every layer of the
    untrained net fires (with the initial BatchNorm statistics the deeper layers stay silent)."""
    model = tiny_model(surrogate="atan", **kw)  # atan's unbounded support: a non-zero surrogate Jacobian untrained
    x = jax.random.uniform(jax.random.PRNGKey(seed), (4,) + IMAGE)
    rngs = {"params": jax.random.PRNGKey(seed + 1), "noise": jax.random.PRNGKey(seed + 2)}
    variables = jax.jit(model.init)(rngs, x)
    variables = {"params": _scale_kernels(variables["params"], 4.0), "batch_stats": variables["batch_stats"]}
    return Net(model, variables, x)


@pytest.fixture(scope="module")
def lif_net() -> Net:
    return make_net()


@pytest.fixture(scope="module")
def noisy_net() -> Net:
    return make_net(kind="noisy")


def binomial_se(p, n):
    return np.sqrt(np.maximum(p * (1 - p), 1.0 / n) / n)  # floor at one count for p ≈ 0 or 1


# ---------------------------------------------------------------------------------------------
# Closed forms (Theorem 1, eq. 16-17)
# ---------------------------------------------------------------------------------------------

class ClosedFormTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(0.4, 0.25)
    def test_flip_is_the_minority_side_of_firing(self, sigma):
        flip = self.variant(lambda h: analysis.flip_probability(h, 1.0, sigma))(H_GRID)
        fire = self.variant(lambda h: analysis.firing_probability(h, 1.0, sigma))(H_GRID)
        expected = jnp.where(H_GRID < 1.0, fire, 1.0 - fire)
        np.testing.assert_allclose(flip, expected, atol=1e-6)
        assert np.all(np.asarray(flip) <= 0.5 + 1e-7)
        np.testing.assert_allclose(analysis.flip_probability(1.0, 1.0, sigma), 0.5, atol=1e-7)
        np.testing.assert_allclose(flip, flip[::-1], atol=1e-6)  # symmetric about θ

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(0.4, 0.7)
    def test_sensitivity_is_derivative_of_firing_probability(self, sigma):
        grad = self.variant(jax.vmap(jax.grad(lambda h: analysis.firing_probability(h, 1.0, sigma))))
        sens = self.variant(lambda h: analysis.firing_sensitivity(h, 1.0, sigma))
        np.testing.assert_allclose(sens(H_GRID), grad(H_GRID), rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(0.4, 0.7)
    def test_dsigma_is_sigma_derivative_of_sensitivity(self, sigma):
        by_sigma = jax.grad(lambda s, h: analysis.firing_sensitivity(h, 1.0, s))
        grad = self.variant(jax.vmap(lambda h: by_sigma(sigma, h)))
        closed = self.variant(lambda h: analysis.sensitivity_dsigma(h, 1.0, sigma))
        np.testing.assert_allclose(closed(H_GRID), grad(H_GRID), rtol=1e-5, atol=1e-6)

    def test_more_noise_less_sensitivity_inside_sigma(self):
        sigma = 0.4
        d = np.asarray(analysis.sensitivity_dsigma(H_GRID, 1.0, sigma))
        u = np.abs(np.asarray(H_GRID) - 1.0)
        assert np.all(d[u < sigma - 1e-3] < 0) and np.all(d[u > sigma + 1e-3] > 0)

    def test_bad_sigma_raises(self):
        with pytest.raises(ValueError, match="sigma"):
            analysis.flip_probability(H_GRID, 1.0, 0.0)
        with pytest.raises(ValueError, match="sigma.*inf"):
            analysis.firing_probability(H_GRID, 1.0, float("inf"))
        with pytest.raises(ValueError, match="sigma"):
            analysis.firing_sensitivity(H_GRID, 1.0, jnp.array([0.4, 0.0]))
        assert analysis.firing_sensitivity(1.0, 1.0, jnp.array([0.4, 0.8])).shape == (2,)
        with pytest.raises(ValueError, match="sigma"):
            analysis.sensitivity_dsigma(H_GRID, 1.0, -1.0)


@pytest.mark.parametrize("sigma", [0.4, 0.2])
def test_simulated_flip_rate_matches_theorem_1(sigma):
    n = 20000
    rate = jax.jit(lambda k, h: analysis.simulate_flip_rate(k, h, sigma, n))(jax.random.PRNGKey(3), H_GRID)
    p = np.asarray(analysis.flip_probability(H_GRID, 1.0, sigma))
    assert np.all(np.abs(np.asarray(rate) - p) <= 5 * binomial_se(p, n))


def test_simulated_firing_rate_matches_eq_16():
    n, sigma = 20000, 0.4
    keys = jax.random.split(jax.random.PRNGKey(4), n)
    step = lambda k: neurons.noisy_lif_step(jnp.zeros_like(H_GRID), H_GRID, k, sigma=sigma)[1][0]
    rate = np.asarray(jax.jit(jax.vmap(step))(keys).mean(axis=0))
    p = np.asarray(analysis.firing_probability(H_GRID, 1.0, sigma))
    assert np.all(np.abs(rate - p) <= 5 * binomial_se(p, n))


# ---------------------------------------------------------------------------------------------
# Potentials: forward pass, threshold-neighbour share, histograms
# ---------------------------------------------------------------------------------------------

def test_forward_potentials_shapes_and_logits(lif_net):
    model, variables, x = lif_net
    logits_tb, hs = jax.jit(lambda v, x: analysis.forward_potentials(model, v, x))(variables, x)
    np.testing.assert_allclose(logits_tb, jax.jit(model.apply)(variables, x), rtol=1e-6, atol=1e-6)
    assert logits_tb.shape == (2, 4, 10)
    assert [h.shape for h in hs] == [(2, 4, 8, 8, 4), (2, 4, 4, 4, 8), (2, 4, 16)]
    assert all(0 < float(jnp.mean(h >= 1.0)) < 1 for h in hs)  # every layer is active


def test_forward_potentials_noisy_needs_key(noisy_net):
    model, variables, x = noisy_net
    with pytest.raises(ValueError, match="key"):
        analysis.forward_potentials(model, variables, x)


class NeighbourShareTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_hand_made(self):
        h1 = jnp.array([0.4, 0.6, 1.0, 1.4, 1.6, 3.0]).reshape(2, 3, 1)  # |H-1| < .5: 0.6, 1.0, 1.4
        h2 = jnp.array([1.2, -1.0]).reshape(1, 2)                          # 1.2 only
        share = self.variant(lambda hs: analysis.threshold_neighbour_share(hs, 0.5, 1.0))((h1, h2))
        np.testing.assert_allclose(share.per_layer, [3 / 6, 1 / 2])
        np.testing.assert_allclose(share.overall, 4 / 8)

    def test_is_the_losses_implementation(self):
        assert analysis.threshold_neighbour_share is losses.threshold_neighbour_share


class HistogramTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_counts_sum_to_size(self):
        rng = np.random.default_rng(1)
        hs = (jnp.asarray(rng.normal(1, 1, (2, 4, 6, 6, 2)), jnp.float32),
              jnp.asarray(rng.normal(0, 1, (2, 4, 9)), jnp.float32))
        hists = self.variant(lambda hs: analysis.potential_histograms(hs, bins=7))(hs)
        for (counts, edges), h in zip(hists, hs):
            assert counts.shape == (7,) and edges.shape == (8,)
            assert int(counts.sum()) == h.size
            np.testing.assert_allclose([edges[0], edges[-1]], [h.min(), h.max()], rtol=1e-6)

    def test_shared_range_counts_values_inside(self):
        h = jnp.asarray(np.random.default_rng(2).normal(1, 1, (2, 16, 10)), jnp.float32)
        (counts, edges), = analysis.potential_histograms((h,), bins=5, range=(0.0, 2.0))
        ref_counts, ref_edges = np.histogram(np.asarray(h), bins=5, range=(0.0, 2.0))
        np.testing.assert_array_equal(counts, ref_counts)
        np.testing.assert_allclose(edges, ref_edges, rtol=1e-6)
        assert int(counts.sum()) == int(np.sum((np.asarray(h) >= 0) & (np.asarray(h) <= 2)))

    def test_bad_range_raises(self):
        with pytest.raises(ValueError, match="range"):
            analysis.potential_histograms((jnp.zeros((2, 3)),), bins=5, range=(1.0, 1.0))


# ---------------------------------------------------------------------------------------------
# Input gradients
# ---------------------------------------------------------------------------------------------

def linear_logits_fn(w, x, key):
    del key
    return x.reshape((x.shape[0], -1)) @ w


def test_input_gradients_linear_closed_form():
    rng = np.random.default_rng(3)
    w = jnp.asarray(rng.normal(size=(2 * 2 * 3, 5)), jnp.float32)
    x = jnp.asarray(rng.uniform(size=(6, 2, 2, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 5, 6), jnp.int32)
    g = jax.jit(analysis.input_gradients, static_argnums=0)(linear_logits_fn, w, x, y, None)
    probs = jax.nn.softmax(linear_logits_fn(w, x, None))
    expected = ((probs - jax.nn.one_hot(y, 5)) @ w.T).reshape(x.shape)  # ∇_x CE = Wᵀ(p - e_y)
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-6)


def test_input_gradients_per_example_on_model(lif_net):
    model, variables, x = lif_net
    y = jnp.arange(4) % 10
    grads = jax.jit(lambda v, x, y: analysis.input_gradients(attacks.model_logits_fn(model), v, x, y, None))
    g = grads(variables, x, y)
    assert g.shape == x.shape and np.all(np.asarray(jnp.abs(g).sum(axis=(1, 2, 3))) > 0)
    # example 0's gradient is its own (summed loss): other examples and labels do not change it
    g_other = grads(variables, x.at[1:].set(x[1:][::-1]), y.at[1:].set(9))
    np.testing.assert_allclose(g_other[0], g[0], rtol=1e-5, atol=1e-7)
    assert not np.allclose(g_other[1:], g[1:])


def test_input_gradients_bad_labels_raise():
    with pytest.raises(ValueError, match="y"):
        analysis.input_gradients(linear_logits_fn, jnp.zeros((4, 2)), jnp.zeros((3, 2, 2, 1)),
                                 jnp.zeros((2,), jnp.int32))


class GradientStatsTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_sparsity_hand_made(self):
        g = jnp.array([[3.0, -4.0, 0.0, 1e-7], [0.0, 0.0, 0.0, -2.0]]).reshape(2, 1, 2, 2)
        s = self.variant(lambda g: analysis.gradient_sparsity(g, tol=1e-6))(g)
        np.testing.assert_allclose(s["l1"], [7.0 + 1e-7, 2.0], rtol=1e-6)
        np.testing.assert_allclose(s["l2"], [5.0, 2.0], rtol=1e-6)
        np.testing.assert_allclose(s["zero_share"], [0.5, 0.75])
        np.testing.assert_allclose(s["mean_l1"], 4.5, rtol=1e-6)
        np.testing.assert_allclose(s["mean_l2"], 3.5, rtol=1e-6)
        np.testing.assert_allclose(s["mean_zero_share"], 0.625)

    @chex.variants(with_jit=True, without_jit=True)
    def test_heatmap_sums_abs_over_channels(self):
        g = jnp.array([1.0, -2.0, 3.0, -4.0, 0.5, 0.5, -1.0, 0.0]).reshape(1, 2, 2, 2)
        heat = self.variant(analysis.gradient_heatmap)(g)
        np.testing.assert_allclose(heat, [[[3.0, 7.0], [1.0, 1.0]]])

    def test_heatmap_bad_rank_raises(self):
        with pytest.raises(ValueError, match="rank 4"):
            analysis.gradient_heatmap(jnp.zeros((2, 3)))


# ---------------------------------------------------------------------------------------------
# Jacobian spectral norm (eq. 10, App. B)
# ---------------------------------------------------------------------------------------------

def exact_spectral_norms(logits_fn, params, x, key):
    """‖J_b‖₂ from the full per-example Jacobian (jax.jacobian, reverse mode through the surrogate)."""
    def one(xb):
        jac = jax.jacobian(lambda z: logits_fn(params, z[None], key)[0])(xb)
        return jnp.linalg.norm(jac.reshape(jac.shape[0], -1), 2)
    return np.asarray(jax.jit(jax.vmap(one))(x))


def tanh_logits_fn(w, x, key):
    del key
    return jnp.tanh(x.reshape((x.shape[0], -1)) @ w)


def test_jacobian_norm_nonlinear_closed_form():
    rng = np.random.default_rng(5)
    w = jnp.asarray(rng.normal(size=(12, 4)) / 3, jnp.float32)
    x = jnp.asarray(rng.uniform(size=(5, 2, 2, 3)), jnp.float32)
    est = jax.jit(analysis.jacobian_spectral_norm, static_argnums=(0, 4))(
        tanh_logits_fn, w, x, jax.random.PRNGKey(0), 100)
    exact = exact_spectral_norms(tanh_logits_fn, w, x, None)
    assert len(set(np.round(exact, 4))) == 5  # the examples really differ
    np.testing.assert_allclose(est, exact, rtol=1e-4)


def test_jacobian_norm_on_spiking_model(lif_net):
    model, variables, x = lif_net
    fn = attacks.model_logits_fn(model)
    key = jax.random.PRNGKey(7)
    est = np.asarray(jax.jit(lambda v, x, k: analysis.jacobian_spectral_norm(fn, v, x, k, 100))(variables, x, key))
    exact = exact_spectral_norms(fn, variables, x, key)
    assert np.all(exact > 0)
    assert np.all(est <= exact * (1 + 1e-4))  # ‖J v‖ with ‖v‖ = 1 never exceeds σ_max
    np.testing.assert_allclose(est, exact, rtol=1e-3)


def test_jacobian_norm_needs_a_key():
    """No silent fixed start vector: the key is required."""
    with pytest.raises(ValueError, match="key must be a PRNG key"):
        analysis.jacobian_spectral_norm(linear_logits_fn, jnp.ones((4, 3)), jnp.ones((2, 2, 2, 1)), None, 5)


def test_jacobian_norm_of_zero_map_is_zero():
    est = analysis.jacobian_spectral_norm(lambda p, x, k: 0.0 * linear_logits_fn(p, x, k), jnp.ones((4, 3)),
                                          jnp.ones((2, 2, 2, 1)), jax.random.PRNGKey(0), 5)
    np.testing.assert_array_equal(est, [0.0, 0.0])


# ---------------------------------------------------------------------------------------------
# Activation regions (Theorem 2)
# ---------------------------------------------------------------------------------------------

def one_neuron_pattern_fn(w, x, key):
    """A single neuron Θ(w·Σx - 1): the pattern changes where w·Σx crosses 1."""
    del key
    return (w * x.reshape((x.shape[0], -1)).sum(axis=1, keepdims=True) >= 1.0)


def two_threshold_pattern_fn(w, x, key):
    del key
    s = w * x.reshape((x.shape[0], -1)).sum(axis=1, keepdims=True)
    return jnp.concatenate([s >= 1.0, s >= 1.1], axis=1)


def pixel_pattern_fn(params, x, key):
    """One neuron per pixel, Θ(x - 1/2): 40 bits, more than one 32-bit word."""
    del params, key
    return x.reshape((x.shape[0], -1)) >= 0.5


count_regions = jax.jit(analysis.activation_region_count, static_argnums=(0, 5))


def test_regions_one_neuron_hand_built():
    x = jnp.array([0.5, 0.2, 0.9]).reshape(3, 1, 1, 1)  # 2·x: at the threshold, below, above
    key = jax.random.PRNGKey(0)
    np.testing.assert_array_equal(count_regions(one_neuron_pattern_fn, 2.0, x, key, 0.0, 64), [1, 1, 1])
    np.testing.assert_array_equal(count_regions(one_neuron_pattern_fn, 2.0, x, key, 0.05, 64), [2, 1, 1])
    # a ball over both thresholds (2x = 1 and 2x = 1.1) meets three regions
    x2 = jnp.array([0.525]).reshape(1, 1, 1, 1)
    np.testing.assert_array_equal(count_regions(two_threshold_pattern_fn, 2.0, x2, key, 0.05, 256), [3])


def test_regions_patterns_longer_than_one_word():
    key = jax.random.PRNGKey(1)
    x = jnp.full((2, 40, 1, 1), 0.9).at[0, 37].set(0.5)  # example 0: only bit 37 can change
    np.testing.assert_array_equal(count_regions(pixel_pattern_fn, None, x, key, 0.1, 64), [2, 1])
    x_half = jnp.full((1, 40, 1, 1), 0.5)  # every bit a fair coin: 64 samples, 2^40 patterns
    np.testing.assert_array_equal(count_regions(pixel_pattern_fn, None, x_half, key, 0.1, 64), [64])


ball_stats = jax.jit(analysis.ball_statistics, static_argnums=(0, 5, 6))


def test_ball_statistics_regions_and_flips_by_layer():
    key = jax.random.PRNGKey(1)
    x = jnp.full((2, 40, 1, 1), 0.9).at[0, 37].set(0.5)  # example 0: only bit 37 (last layer) can change
    counts, flips = ball_stats(pixel_pattern_fn, None, x, key, 0.1, 64, (30, 10))
    np.testing.assert_array_equal(counts, [[2, 2], [1, 1]])
    np.testing.assert_array_equal(counts[:, 0], count_regions(pixel_pattern_fn, None, x, key, 0.1, 64))
    # the same samples by hand: bit 37 is set on the clean image (0.5 >= 0.5) and flips below 0.5
    sample_key, _ = jax.random.split(jax.random.split(key, 2)[0])
    pts = analysis.sample_linf_ball(sample_key, x[0], 0.1, 64)
    expected = float(np.mean(np.asarray(pts[:, 37, 0, 0]) < 0.5)) / 10
    np.testing.assert_allclose(flips, [[0.0, expected], [0.0, 0.0]], atol=1e-7)
    assert 0 < expected < 0.1
    with pytest.raises(ValueError, match="layer_sizes"):
        ball_stats(pixel_pattern_fn, None, x, key, 0.1, 64, (30, 9))


def test_count_distinct_rows_against_numpy():
    rng = np.random.default_rng(6)
    base = rng.integers(0, 2, (7, 70)).astype(bool)
    rows = base[rng.integers(0, 7, 50)]  # 50 rows with duplicates, patterns of 70 bits (3 words)
    count = jax.jit(analysis.count_distinct_rows)(jnp.asarray(rows))
    assert int(count) == len(np.unique(rows, axis=0))


def test_sample_linf_ball_bounds():
    x = jnp.array([[0.0, 0.5], [0.98, 1.0]])[..., None]
    pts = analysis.sample_linf_ball(jax.random.PRNGKey(2), x, 0.1, 200)
    assert pts.shape == (200, 2, 2, 1)
    assert np.all(np.abs(np.asarray(pts - x[None])) <= 0.1 + 1e-6)
    assert np.all((np.asarray(pts) >= 0) & (np.asarray(pts) <= 1))


def test_model_spike_patterns_are_lif_spikes(lif_net):
    model, variables, x = lif_net
    patterns = jax.jit(analysis.model_spike_pattern_fn(model))(variables, x, None)
    _, hs = analysis.forward_potentials(model, variables, x)
    theta = model.neuron.threshold
    expected = jnp.concatenate([jnp.swapaxes(h >= theta, 0, 1).reshape(4, -1) for h in hs], axis=1)
    assert patterns.dtype == jnp.bool_ and patterns.shape == expected.shape
    np.testing.assert_array_equal(patterns, expected)
    assert 0 < float(patterns.mean()) < 1


def test_regions_on_model(lif_net):
    model, variables, x = lif_net
    fn = analysis.model_spike_pattern_fn(model)
    key = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(count_regions(fn, variables, x, key, 0.0, 16), [1, 1, 1, 1])
    counts = np.asarray(count_regions(fn, variables, x, key, 0.05, 16))
    # exact check of the count on the same kind of samples: distinct patterns by numpy
    pts = analysis.sample_linf_ball(jax.random.PRNGKey(4), x[0], 0.05, 16)
    patterns = jax.jit(fn)(variables, pts, None)
    ref = len(np.unique(np.asarray(patterns), axis=0))
    assert int(jax.jit(analysis.count_distinct_rows)(patterns)) == ref
    assert np.all((counts >= 1) & (counts <= 16)) and counts.max() > 1 and ref > 1


def test_regions_noisy_model_fixes_noise_per_example(noisy_net):
    model, variables, x = noisy_net
    fn = analysis.model_spike_pattern_fn(model)
    counts = count_regions(fn, variables, x, jax.random.PRNGKey(5), 0.0, 8)
    np.testing.assert_array_equal(counts, [1, 1, 1, 1])  # ε = 0 and one noise draw: one pattern
    patterns = jax.jit(fn)
    assert not np.array_equal(patterns(variables, x, jax.random.PRNGKey(0)),
                              patterns(variables, x, jax.random.PRNGKey(1)))  # the noise matters


# ---------------------------------------------------------------------------------------------
# Loss landscape (App. F)
# ---------------------------------------------------------------------------------------------

def toy_params(seed=0):
    rng = np.random.default_rng(seed)
    return {"conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32),
                     "bias": jnp.asarray(rng.normal(size=(4,)), jnp.float32)},
            "dense": {"kernel": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)}}


def tree_dot(a, b):
    return sum(float(jnp.vdot(u, v)) for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def filter_norms(a):
    return np.sqrt(np.sum(np.asarray(a) ** 2, axis=tuple(range(a.ndim - 1))))


def test_filter_directions():
    params, grad = toy_params(0), toy_params(1)
    d1, d2 = jax.jit(analysis.landscape_directions)(params, grad, jax.random.PRNGKey(0))
    assert abs(tree_dot(d1, d2)) <= 1e-5 * np.sqrt(tree_dot(d1, d1) * tree_dot(d2, d2))
    for path in (("conv", "kernel"), ("dense", "kernel")):
        p, g, u, v = (t[path[0]][path[1]] for t in (params, grad, d1, d2))
        np.testing.assert_allclose(filter_norms(u), filter_norms(p), rtol=1e-5)
        np.testing.assert_allclose(filter_norms(v), filter_norms(p), rtol=1e-5)
        axes = tuple(range(p.ndim - 1))
        cos = np.sum(np.asarray(u * g), axis=axes) / (filter_norms(u) * filter_norms(g))
        np.testing.assert_allclose(cos, 1.0, rtol=1e-5)  # d1 is the gradient direction, filter-wise
        np.testing.assert_allclose(np.sum(np.asarray(u * v), axis=axes), 0.0, atol=1e-4)
    np.testing.assert_array_equal(d1["conv"]["bias"], 0.0)
    np.testing.assert_array_equal(d2["conv"]["bias"], 0.0)


def test_unit_directions():
    params, grad = toy_params(0), toy_params(1)
    d1, d2 = analysis.landscape_directions(params, grad, jax.random.PRNGKey(0), norm="unit")
    np.testing.assert_allclose([tree_dot(d1, d1), tree_dot(d2, d2)], [1.0, 1.0], rtol=1e-5)
    assert abs(tree_dot(d1, d2)) <= 1e-5
    np.testing.assert_allclose(tree_dot(d1, grad), np.sqrt(tree_dot(grad, grad)), rtol=1e-5)
    with pytest.raises(ValueError, match="norm"):
        analysis.landscape_directions(params, grad, jax.random.PRNGKey(0), norm="layer")


def test_landscape_of_quadratic_closed_form():
    params = toy_params(0)
    d1, d2 = analysis.landscape_directions(params, toy_params(1), jax.random.PRNGKey(1))
    loss_fn = lambda p: 0.5 * sum(jnp.sum(t * t) for t in jax.tree_util.tree_leaves(p))
    alphas, betas = jnp.linspace(-1, 1, 5), jnp.linspace(-0.5, 0.5, 3)
    grid = jax.jit(analysis.loss_landscape, static_argnums=0)(loss_fn, params, (d1, d2), alphas, betas)
    # ½‖θ + a d1 + b d2‖² with d1 ⟂ d2
    pp, p1, p2, n1, n2 = (tree_dot(params, params), tree_dot(params, d1), tree_dot(params, d2),
                          tree_dot(d1, d1), tree_dot(d2, d2))
    a, b = np.meshgrid(np.asarray(alphas), np.asarray(betas), indexing="ij")
    expected = 0.5 * (pp + 2 * a * p1 + 2 * b * p2 + a * a * n1 + b * b * n2)
    assert grid.shape == (5, 3)
    np.testing.assert_allclose(grid, expected, rtol=1e-5)


def test_landscape_on_model_center_is_the_loss(lif_net):
    model, variables, x = lif_net
    y = jnp.arange(4) % 10
    fn = attacks.model_logits_fn(model)

    def loss_fn(params):
        logits = fn({"params": params, "batch_stats": variables["batch_stats"]}, x, None)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grad = jax.jit(jax.value_and_grad(loss_fn))(variables["params"])
    dirs = analysis.landscape_directions(variables["params"], grad, jax.random.PRNGKey(2))
    alphas = betas = jnp.array([-0.5, 0.0, 0.5])
    grid = jax.jit(lambda p, d: analysis.loss_landscape(loss_fn, p, d, alphas, betas))(variables["params"], dirs)
    assert grid.shape == (3, 3) and np.all(np.isfinite(grid))
    np.testing.assert_allclose(grid[1, 1], loss, rtol=1e-5)
    assert not np.allclose(grid, grid[1, 1])  # the directions move the loss
