"""Spike functions (docs/FORMULAS.md §1): exact Heaviside forward, closed-form surrogate backward."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax import lax

from tgo_jax import neurons, surrogate


# Closed forms of docs/FORMULAS.md §1, written here in float64 NumPy independently of the library.
def _triangle(u, gamma):
    return np.maximum(0.0, gamma - np.abs(u)) / gamma**2


def _rectangle(u, a):
    return (np.abs(u) < a / 2).astype(np.float64) / a


def _sigmoid(u, k):
    s = 1.0 / (1.0 + np.exp(-k * u))
    return k * s * (1.0 - s)


def _atan(u, alpha):
    return alpha / (2.0 * (1.0 + (math.pi / 2 * alpha * u) ** 2))


def _exponential(u, a):
    return np.exp(-np.abs(u) / a) / (2.0 * a)


def _gaussian(u, sigma):
    z = u / sigma
    return np.exp(-0.5 * z * z) / (sigma * math.sqrt(2.0 * math.pi))


CLOSED_FORMS = {
    "triangle": _triangle,
    "rectangle": _rectangle,
    "sigmoid": _sigmoid,
    "atan": _atan,
    "exponential": _exponential,
    "gaussian": _gaussian,
}
# docs/FORMULAS.md §1 defaults (gamma, a, k, alpha, a, sigma) and the name of each shape parameter.
DEFAULTS = {"triangle": 1.0, "rectangle": 1.0, "sigmoid": 4.0, "atan": 2.0, "exponential": 0.5, "gaussian": 0.4}
PARAM_NAMES = {"triangle": "gamma", "rectangle": "a", "sigmoid": "k", "atan": "alpha", "exponential": "a",
               "gaussian": "sigma"}
NAMES = tuple(CLOSED_FORMS)
NAMED = [(name, name) for name in NAMES]


def _grid(param):
    """Many points, including 0, the parameter-dependent kinks (±param, ±param/2) and both tails."""
    kinks = np.array([0.0, param, -param, param / 2, -param / 2, 1e-7, -1e-7])
    return np.concatenate([np.linspace(-4.0, 4.0, 801), kinks])


def _vjp(spike, u, cotangent):
    out, pullback = jax.vjp(spike, u)
    return out, pullback(cotangent)[0]


def test_registry_lists_the_six_surrogates():
    assert surrogate.NAMES == tuple(surrogate.REGISTRY) and set(surrogate.NAMES) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("use_default", [True, False])
def test_backward_is_the_closed_form_float64(name, use_default):
    param = DEFAULTS[name] if use_default else 0.7 * DEFAULTS[name]
    spike = surrogate.get(name) if use_default else surrogate.get(name, param)
    u_np = _grid(param)
    cot_np = np.random.default_rng(0).uniform(0.5, 2.0, u_np.shape)
    with jax.enable_x64(True):
        u = jnp.asarray(u_np, jnp.float64)
        _, grad = _vjp(spike, u, jnp.asarray(cot_np, jnp.float64))
        assert grad.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(grad), cot_np * CLOSED_FORMS[name](u_np, param),
                                   rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_grad_fn_matches_closed_form(name):
    u_np = _grid(DEFAULTS[name])
    with jax.enable_x64(True):
        got = surrogate.grad_fn(name, DEFAULTS[name])(jnp.asarray(u_np, jnp.float64))
        np.testing.assert_allclose(np.asarray(got), CLOSED_FORMS[name](u_np, DEFAULTS[name]),
                                   rtol=1e-12, atol=1e-14)


def test_triangle_is_the_default_with_gamma_one():
    """The default spike function of a neuron (and of lif_step) is the triangle with γ = 1."""
    u_np = _grid(1.0)
    u = jnp.asarray(u_np, jnp.float32)
    expected = _triangle(u_np, 1.0)
    for spike in (surrogate.triangle(), neurons.NeuronConfig().spike_fn()):
        _, grad = _vjp(spike, u, jnp.ones_like(u))
        np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-6, atol=1e-7)


def test_gaussian_surrogate_is_the_derivative_of_the_normal_cdf():
    """φ(u/σ)/σ = d/du Φ(u/σ): the exact gradient of the Noisy-LIF firing probability (docs/FORMULAS.md §1)."""
    sigma = 0.4
    with jax.enable_x64(True):
        u = jnp.linspace(-2.0, 2.0, 81, dtype=jnp.float64)
        exact = jax.vmap(jax.grad(lambda x: jax.scipy.stats.norm.cdf(x / sigma)))(u)
        _, grad = _vjp(surrogate.get("gaussian", sigma), u, jnp.ones_like(u))
        np.testing.assert_allclose(np.asarray(grad), np.asarray(exact), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtype_preserved_forward_and_backward(name, dtype):
    spike = surrogate.get(name)
    u = jnp.linspace(-2.0, 2.0, 41).astype(dtype)
    out, grad = _vjp(spike, u, jnp.ones_like(u))
    assert out.dtype == dtype
    assert grad.dtype == dtype
    np.testing.assert_array_equal(np.asarray(out, np.float32), (np.asarray(u, np.float32) >= 0))
    # bfloat16 has an 8-bit mantissa: compare with the float64 closed form at bfloat16 precision.
    tol = 1e-6 if dtype == jnp.float32 else 2e-2
    u64 = np.asarray(u.astype(jnp.float32), np.float64)
    np.testing.assert_allclose(np.asarray(grad, np.float64), CLOSED_FORMS[name](u64, DEFAULTS[name]),
                               rtol=tol, atol=tol)


def test_unknown_surrogate_name_raises():
    with pytest.raises(ValueError, match="'relu'"):
        surrogate.get("relu")
    with pytest.raises(ValueError, match="surrogate.*'relu'"):
        neurons.NeuronConfig(surrogate="relu")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [0.0, -1.5])
def test_non_positive_parameter_raises(name, bad):
    pattern = f"{name}.*{PARAM_NAMES[name]}.*{bad}"
    with pytest.raises(ValueError, match=pattern):
        surrogate.get(name, bad)
    with pytest.raises(ValueError, match=pattern):
        surrogate.grad_fn(name, bad)
    # A neuron configuration is checked when it is built, not later inside a traced forward pass.
    with pytest.raises(ValueError, match=pattern):
        neurons.NeuronConfig(surrogate=name, surrogate_param=bad)


class SpikeTransformsTest(chex.TestCase):
    """Forward and backward under jit / no jit, vmap, grad and lax.scan."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*NAMED)
    def test_forward_is_exact_heaviside(self, name):
        spike = self.variant(surrogate.get(name))
        tiny = np.finfo(np.float32).tiny
        u_np = np.array([-3.0, -1.0, -1e-6, -tiny, -0.0, 0.0, tiny, 1e-6, 1.0, 3.0, 1e30, -1e30],
                        np.float32)
        out = spike(jnp.asarray(u_np))
        np.testing.assert_array_equal(np.asarray(out), (u_np >= 0).astype(np.float32))
        # Heaviside at the threshold: u = 0 fires (H >= θ).
        assert float(spike(jnp.float32(0.0))) == 1.0

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*NAMED)
    def test_backward_matches_closed_form(self, name):
        u_np = np.linspace(-3.0, 3.0, 121).astype(np.float32)
        cot_np = np.random.default_rng(1).normal(size=u_np.shape).astype(np.float32)
        vjp = self.variant(lambda u, c: _vjp(surrogate.get(name), u, c))
        out, grad = vjp(jnp.asarray(u_np), jnp.asarray(cot_np))
        np.testing.assert_array_equal(np.asarray(out), (u_np >= 0).astype(np.float32))
        np.testing.assert_allclose(np.asarray(grad), cot_np * CLOSED_FORMS[name](u_np.astype(np.float64),
                                                                               DEFAULTS[name]),
                                   rtol=1e-5, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*NAMED)
    def test_vmap_of_grad(self, name):
        spike = surrogate.get(name)
        u_np = np.linspace(-2.0, 2.0, 33).astype(np.float32)
        per_point = self.variant(jax.vmap(jax.grad(spike)))
        np.testing.assert_allclose(np.asarray(per_point(jnp.asarray(u_np))),
                                   CLOSED_FORMS[name](u_np.astype(np.float64), DEFAULTS[name]),
                                   rtol=1e-5, atol=1e-6)
        fwd = self.variant(jax.vmap(spike))(jnp.asarray(u_np.reshape(11, 3)))
        np.testing.assert_array_equal(np.asarray(fwd), (u_np.reshape(11, 3) >= 0).astype(np.float32))

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*NAMED)
    def test_inside_lax_scan(self, name):
        """d/du_t Σ_t w_t·S(u_t) through a scan is w_t·g(u_t); the carry sums the spikes."""
        spike = surrogate.get(name)
        u_np = np.linspace(-1.5, 1.5, 24).astype(np.float32).reshape(8, 3)
        w_np = np.random.default_rng(2).uniform(0.5, 1.5, u_np.shape).astype(np.float32)

        def weighted_count(u, w):
            def body(total, uw):
                return total + jnp.sum(uw[1] * spike(uw[0])), None
            total, _ = lax.scan(body, jnp.float32(0.0), (u, w))
            return total

        total, grad = self.variant(jax.value_and_grad(weighted_count))(jnp.asarray(u_np), jnp.asarray(w_np))
        np.testing.assert_allclose(float(total), float(np.sum(w_np * (u_np >= 0))), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(grad), w_np * CLOSED_FORMS[name](u_np.astype(np.float64),
                                                                             DEFAULTS[name]),
                                   rtol=1e-5, atol=1e-6)


def test_one_registry_gives_factory_gradient_and_default():
    """REGISTRY is the one table: the spike function's backward, the gradient and the default come from it."""
    u = jnp.linspace(-2.0, 2.0, 17)
    for name, entry in surrogate.REGISTRY.items():
        assert (entry.default, entry.param_name) == (DEFAULTS[name], PARAM_NAMES[name])
        _, grad = _vjp(surrogate.get(name), u, jnp.ones_like(u))
        np.testing.assert_array_equal(np.asarray(grad), np.asarray(surrogate.grad_fn(name)(u)))
        np.testing.assert_array_equal(np.asarray(grad), np.asarray(entry.grad(u, DEFAULTS[name])))
