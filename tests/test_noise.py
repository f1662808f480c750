"""Noisy-LIF noise (tgo_jax.noise): Philox-4x32-10 bits and an exact N(0, σ²) draw, tested statistically.

Every statistical bound is 5 standard errors of a fixed-seed sample, so a correct generator fails with
probability below 1e-6 per check, while a wrong scale, shift, tail or correlation of the size a bug would
make fails outright.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from scipy import stats

from tgo_jax import noise

N = 1 << 20  # samples per distribution check

# Known-answer vectors of Philox-4x32-10 from the Random123 distribution (kat_vectors):
# (key k0 k1, counter c0..c3) -> output.
PHILOX_KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000, 0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0xA4093822, 0x299F31D0), (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("key, counter, want", PHILOX_KAT)
def test_philox_known_answers(key, counter, want):
    as_u32 = lambda words: tuple(jnp.uint32(w) for w in words)  # noqa: E731
    got = noise.philox4x32(as_u32(key), as_u32(counter))
    assert [int(w) for w in got] == list(want)


def _moments_within_se(z, std=1.0):
    """Mean, variance, skewness, excess kurtosis and two tail shares of N(0, std²), each within 5 SE."""
    n = z.size
    z = np.asarray(z, np.float64).ravel() / std
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2.0 / n)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6.0 / n)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24.0 / n)
    for c in (2.0, 3.0):
        p = 2 * stats.norm.sf(c)  # P(|z| > c)
        assert abs(np.mean(np.abs(z) > c) - p) < 5 * math.sqrt(p * (1 - p) / n)
    # Kolmogorov-Smirnov against the exact CDF: D stays below the 1e-6 critical value √(ln(2e6)/2n).
    assert stats.kstest(z, "norm").statistic < math.sqrt(math.log(2e6) / (2 * n))


@pytest.mark.parametrize("t", [0, 3])
def test_standard_normal_float32_is_n01(t):
    z = noise.standard_normal(noise.layer_key(jax.random.key(0)), t, (N // 64, 64))
    assert z.dtype == jnp.float32 and z.shape == (N // 64, 64)
    _moments_within_se(z)
    # The 2^23 uniform levels are symmetric in (-1, 1): the draw never reaches ±inf and its tail is ~5.3σ.
    assert np.isfinite(np.asarray(z)).all() and 4.0 < float(jnp.abs(z).max()) < 5.5


def test_standard_normal_float64_is_n01():
    with jax.enable_x64(True):
        z = noise.standard_normal(noise.layer_key(jax.random.key(1)), 0, (N,), jnp.float64)
        assert z.dtype == jnp.float64
        _moments_within_se(z)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gaussian_has_std_sigma_in_the_layer_dtype(dtype):
    xi = noise.gaussian(noise.layer_key(jax.random.key(2)), 1, (N,), dtype, 0.4)
    assert xi.dtype == dtype
    if dtype == jnp.float32:
        _moments_within_se(xi, std=0.4)
    else:  # one rounding to bfloat16 (8-bit mantissa) changes the std by far less than 1 %
        assert abs(float(jnp.std(xi.astype(jnp.float32))) - 0.4) < 0.004


def test_draws_are_independent_across_steps_keys_and_neighbours():
    key = noise.layer_key(jax.random.key(3))
    z0, z1 = (np.asarray(noise.standard_normal(key, t, (N,)), np.float64) for t in (0, 1))
    other = np.asarray(noise.standard_normal(noise.layer_key(jax.random.key(4)), 0, (N,)), np.float64)
    bound = 5 / math.sqrt(N)  # SE of a sample correlation of independent variables
    for a, b in ((z0, z1), (z0, other), (z0[1:], z0[:-1])):
        assert abs(np.corrcoef(a, b)[0, 1]) < bound



@pytest.mark.parametrize("bits_dtype, m, int_dtype, dtype", [
    (jnp.uint32, 23, jnp.int32, jnp.float32), (jnp.uint64, 52, jnp.int64, jnp.float64)])
def test_uniform_levels_are_exact_and_never_reach_minus_one_when_compiled(bits_dtype, m, int_dtype, dtype):
    """u = (2k + 1)·2⁻ᵐ − 1 at the extreme and central levels, compiled alone and inside reductions, where
    XLA once folded a floating-point form into u = −1 (ξ = −∞)."""
    with jax.enable_x64(True):
        width = np.dtype(bits_dtype).itemsize * 8
        bits = jnp.array([0, 2**width - 1, 2 ** (width - 1), 2 ** (width - 1) - 1], bits_dtype)
        step = 2.0 ** -m
        want = np.array([-1 + step, 1 - step, step, -step])
        uniform = jax.jit(lambda b: noise._symmetric_uniform(b, m, int_dtype, dtype))
        np.testing.assert_array_equal(np.asarray(uniform(bits), np.float64), want)
        lo, hi, total = jax.jit(lambda b: (jnp.min(u := noise._symmetric_uniform(b, m, int_dtype, dtype)),
                                           jnp.max(u), jnp.sum(jnp.square(lax.erf_inv(u)))))(bits)
        assert (float(lo), float(hi)) == (-1 + step, 1 - step) and np.isfinite(float(total))

def test_draw_is_a_pure_function_of_key_and_step():
    """The same (key, t) gives the same bits and, compiled, the same normals, whether t is static or traced.
    (Op-by-op execution may round erfinv in the last bit differently from a compiled program.)"""
    key = noise.layer_key(jax.random.key(5))
    draw = jax.jit(lambda k, t: noise.standard_normal(k, t, (4, 8)))
    a = draw(key, jnp.uint32(2))
    static_t = jax.jit(lambda k: noise.standard_normal(k, 2, (4, 8)))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(static_t(key)))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(draw(key, jnp.uint32(2))))
    assert not np.array_equal(np.asarray(a), np.asarray(draw(key, jnp.uint32(3))))


def test_layer_key_accepts_every_prng_implementation():
    for impl in ("threefry2x32", "rbg"):
        key = noise.layer_key(jax.random.key(6, impl=impl))
        assert key.shape == (2,) and key.dtype == jnp.uint32
    assert noise.layer_key(jax.random.PRNGKey(6)).shape == (2,)  # a raw uint32 key
