"""The fused LIF layer (``tgo_jax.fused``): same outputs and gradients as autodiff of the plain scan."""
import dataclasses
import itertools
import subprocess
import sys

import jax
import jax.ad_checkpoint
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from tgo_jax import fused, lif, neurons, noise, surrogate

SHAPE = (5, 3, 7)  # [T, B, N]


def _inputs(dtype):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    currents = jax.random.uniform(k1, SHAPE, dtype, -0.5, 1.6)
    # Cotangents on both outputs: spikes feed the next layer, H feeds the margin penalty.
    return currents, jax.random.normal(k2, SHAPE, dtype), jax.random.normal(k3, SHAPE, dtype)


def _value_and_vjp(config, currents, ds, dh, key):
    outputs, vjp = jax.vjp(lambda c: neurons.run(config, c, key), currents)
    (grad,) = vjp((ds, dh))
    return outputs, grad


def _fused_and_plain(config, dtype):
    """((spikes, H), input gradient) of the fused layer and of the plain path, in one compilation."""
    plain = dataclasses.replace(config, fused=False)

    def both(currents, ds, dh, key):
        return _value_and_vjp(config, currents, ds, dh, key), _value_and_vjp(plain, currents, ds, dh, key)

    return jax.jit(both)(*_inputs(dtype), jax.random.key(1))


CASES = [dict(kind=k, reset=r, detach_reset=d)
         for k, r, d in itertools.product(("lif", "noisy"), ("hard", "soft"), (False, True))]
CASES += [dict(kind="lif", surrogate=name) for name in surrogate.NAMES]
CASES += [dict(kind="lif", surrogate="sigmoid", surrogate_param=2.5),
          dict(kind="noisy", expected=True), dict(kind="noisy", expected=True, reset="soft"),
          dict(kind="noisy", sigma=0.3, sigma_is_variance=True, surrogate="atan"),
          dict(kind="lif", decay=0.9, threshold=0.7), dict(kind="lif", unroll=False),
          dict(kind="noisy", backward="bptr")]


@pytest.mark.parametrize("fields", CASES, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_fused_matches_autodiff_of_the_plain_scan(fields):
    fused_cfg = neurons.NeuronConfig(fused=True, **fields)
    plain_cfg = dataclasses.replace(fused_cfg, fused=False)
    def both(currents, ds, dh, key):  # one compilation for the pair
        return (_value_and_vjp(fused_cfg, currents, ds, dh, key),
                _value_and_vjp(plain_cfg, currents, ds, dh, key))

    with jax.enable_x64(True):
        currents, ds, dh = _inputs(jnp.float64)
        ((s_f, h_f), g_f), ((s_p, h_p), g_p) = jax.jit(both)(currents, ds, dh, jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(s_f), np.asarray(s_p))  # same noise, same spikes
    np.testing.assert_array_equal(np.asarray(h_f), np.asarray(h_p))
    np.testing.assert_allclose(np.asarray(g_f), np.asarray(g_p), rtol=1e-12, atol=1e-12)
    assert np.abs(np.asarray(g_f)).max() > 0
    if not fused_cfg.expected:
        assert 0 < np.asarray(s_f).mean() < 1  # both firing and silent neurons are exercised


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_fused_keeps_the_dtype_and_agrees_in_low_precision(dtype):
    ((s_f, h_f), g_f), ((s_p, _), g_p) = _fused_and_plain(neurons.NeuronConfig(kind="noisy"), dtype)
    assert s_f.dtype == h_f.dtype == g_f.dtype == dtype
    np.testing.assert_array_equal(np.asarray(s_f, np.float32), np.asarray(s_p, np.float32))
    tol = 1e-5 if dtype == jnp.float32 else 5e-2
    np.testing.assert_allclose(np.asarray(g_f, np.float32), np.asarray(g_p, np.float32), rtol=tol, atol=tol)


def test_hand_written_backward_of_two_steps():
    """T = 2, hard reset, triangle surrogate, cotangent on S[1] only, worked by hand:
    H0 = I0, S0 = Θ(H0-1), V0 = H0(1-S0); H1 = 0.5·V0 + I1; dL/dI1 = g(H1-1), and
    dL/dI0 = 0.5·g(H1-1)·[(1-S0) - H0·g(H0-1)]."""
    config = neurons.NeuronConfig()
    currents = jnp.array([[1.2], [0.6]])  # H0 = 1.2 fires; H1 = 0.6 (V0 = 0 after the reset)
    _, vjp = jax.vjp(lambda c: fused.run(config, c, lif.NO_NOISE), currents)
    (grad,) = vjp((jnp.array([[0.0], [1.0]]), jnp.zeros((2, 1))))
    g1 = surrogate.triangle_grad(0.6 - 1.0, 1.0)
    g0 = surrogate.triangle_grad(1.2 - 1.0, 1.0)
    np.testing.assert_allclose(np.asarray(grad)[:, 0], [0.5 * g1 * (0.0 - 1.2 * g0), g1], rtol=1e-6)


def test_fused_layer_needs_a_key_when_noisy():
    with pytest.raises(ValueError, match="PRNG key"):
        neurons.run(neurons.NeuronConfig(kind="noisy"), jnp.zeros(SHAPE))


def test_per_step_remat_asks_for_the_plain_path():
    with pytest.raises(ValueError, match="set fused=False"):
        neurons.NeuronConfig(remat=True)
    assert neurons.NeuronConfig(remat=True, fused=False).remat


def test_fused_layer_keeps_only_h_for_the_backward(capsys):
    """The point of the fused layer: one saved [T, B, N] tensor (H) instead of the plain path's several."""
    currents = _inputs(jnp.float32)[0]

    def saved_layer_tensors(config):
        jax.ad_checkpoint.print_saved_residuals(lambda c: jnp.sum(neurons.run(config, c)[0]), currents)
        lines = capsys.readouterr().out.splitlines()
        return [line for line in lines if "[5,3,7]" in line and "argument" not in line]

    assert len(saved_layer_tensors(neurons.NeuronConfig())) == 1
    assert len(saved_layer_tensors(neurons.NeuronConfig(fused=False))) >= 2


def test_neuron_math_depends_only_downward():
    """lif (the math) and fused (the custom_vjp layer) load without neurons, the public module above them."""
    code = "import sys, tgo_jax.fused; print('tgo_jax.neurons' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _scan_unrolls(fn, *args) -> set:
    """The ``unroll`` of every scan in the jaxpr of ``fn`` (forward and backward)."""
    found = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "scan":
                found.add(eqn.params["unroll"])
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


@pytest.mark.parametrize("fused_layer", [True, False])
def test_noise_is_drawn_in_a_rolled_loop_and_time_loops_unroll(fused_layer):
    # Drawn inside an unrolled time loop, XLA fuses every step's noise draw into each later step (10 s instead
    # of 0.6 s per gradient on 2 CPU cores): the draws run in their own rolled loop (lif.draw_noise_tb), and
    # the time loops, forward and backward, unroll for Noisy-LIF layers as for LIF ones.
    x, key = jnp.ones((4, 2, 3)), jax.random.key(0)
    for kind, want in (("noisy", {1, x.shape[0]}), ("lif", {x.shape[0]})):
        cfg = neurons.NeuronConfig(kind=kind, fused=fused_layer)
        grad = jax.grad(lambda x: jnp.sum(neurons.run(cfg, x, key)[0] * x))
        assert _scan_unrolls(grad, x) == want, kind
    rolled = neurons.NeuronConfig(kind="noisy", fused=fused_layer, unroll=False)
    assert _scan_unrolls(jax.grad(lambda x: jnp.sum(neurons.run(rolled, x, key)[0] * x)), x) == {1}

@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_noise_drawn_before_the_loop_is_each_steps_draw(dtype):
    """lif.draw_noise_tb stacks exactly lif.draw_noise(key, t) for t = 0..T−1 (compiled, so bit for bit)."""
    config, key = neurons.NeuronConfig(kind="noisy"), jax.random.key(2)
    currents = jnp.zeros(SHAPE, dtype)

    def both(key):
        layer_key = noise.layer_key(key)
        steps = [lif.draw_noise(layer_key, t, SHAPE[1:], dtype, config.std) for t in range(SHAPE[0])]
        return lif.draw_noise_tb(config, layer_key, currents), jnp.stack(steps)

    stacked, per_step = jax.jit(both)(key)
    assert stacked.dtype == dtype and stacked.shape == SHAPE
    np.testing.assert_array_equal(np.asarray(stacked, np.float32), np.asarray(per_step, np.float32))
    assert len(np.unique(np.asarray(stacked, np.float32))) > SHAPE[0] * SHAPE[1]  # fresh draws per step
    assert lif.draw_noise_tb(neurons.NeuronConfig(), lif.NO_NOISE, currents) is None
