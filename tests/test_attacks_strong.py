"""Tests of the strong-evaluation attacks: AutoAttack's parts (APGD-DLR, APGD-T, FAB-T, Square), ASSG + SA-PGD,
the surrogate sweep, transfer and differentiable attacks, the registry, and attack input checks.

Sizes are tiny (few steps, queries and targets): the tests check budgets, pixel ranges, "at least as strong
as" relations that hold by construction, formulas against hand computations, and the errors for bad input.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgo_jax import attacks, neurons, surrogate
from tgo_jax.attacks import snn_adaptive
from tests.conftest import attack_setup, tiny_model

EPS = 0.1
BATCH = 64


@pytest.fixture(scope="module")
def setup(trained_small):
    return attack_setup(trained_small, BATCH)


@pytest.fixture(scope="module")
def setup32(setup):
    """The first 32 of ``setup``'s images (for the 100-iteration and multi-run ASSG tests)."""
    model, logits_fn, params, x, y = setup
    return model, logits_fn, params, x[:32], y[:32]


def _run(setup, attack, seed=0):
    _, logits_fn, params, x, y = setup
    return jax.jit(lambda p, x, y, k: attack(logits_fn, p, x, y, k))(params, x, y, jax.random.key(seed))


def _correct(setup, x_adv):
    _, logits_fn, params, _, y = setup
    return np.asarray(jnp.argmax(logits_fn(params, x_adv, None), -1) == y)


SMALL = {
    "APGD-DLR": dict(steps=10),
    "APGD-T": dict(steps=5, num_targets=2),
    "FAB-T": dict(steps=10, num_targets=2),
    "Square": dict(queries=100),
    "ASSG": dict(steps=10),
    "Sweep": dict(steps=5),
}


@pytest.fixture(scope="module")
def adv(setup):
    out = {}
    for name, sizes in SMALL.items():
        attack = attacks.make(name, eps=EPS, **sizes)
        if name == "Sweep":
            attack = functools.partial(attack, rules=(("rectangle", 0.5), ("straight_through", None)))
        out[name] = _run(setup, attack)
    return out


@pytest.mark.parametrize("name", list(SMALL))
def test_budget_kept_pixels_valid_and_accuracy_falls(setup, adv, name):
    x = setup[3]
    x_adv = adv[name]
    assert x_adv.shape == x.shape
    assert float(jnp.max(jnp.abs(x_adv - x))) <= EPS + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert _correct(setup, x_adv).mean() < _correct(setup, x).mean() - 0.1, name


def test_fab_returns_x_or_an_adversarial_point(setup, adv):
    x, x_adv = setup[3], adv["FAB-T"]
    moved = np.asarray(jnp.any((x_adv != x).reshape(x.shape[0], -1), axis=-1))
    assert moved.any()
    assert not _correct(setup, x_adv)[moved].any()  # FAB only returns points that fool the model


def test_square_more_queries_not_weaker(setup, adv):
    """Same key: the first 20 queries are those of the 100-query run, and fooled examples stay fooled."""
    fewer = _run(setup, attacks.make("Square", eps=EPS, queries=20))
    assert _correct(setup, adv["Square"]).mean() <= _correct(setup, fewer).mean()
    assert (~_correct(setup, fewer) <= ~_correct(setup, adv["Square"])).all()


def test_assg_at_least_as_strong_as_fgsm(setup, adv):
    assert _correct(setup, adv["ASSG"]).mean() <= _correct(setup, _run(setup, attacks.make("FGSM", eps=EPS))).mean()


def test_autoattack_keeps_every_example_its_first_component_fooled(setup):
    """Staged AutoAttack's first stage is AutoAttack with its first component alone (same keys, same chunks)."""
    model, logits_fn, params, x, y = setup
    x, y = x[:32], y[:32]
    key = jax.random.key(4)
    aa = functools.partial(attacks.autoattack, eps=EPS, steps=5, num_targets=2, queries=20)
    x_aa = jax.jit(lambda p, x, y, k: aa(logits_fn, p, x, y, k))(params, x, y, key)
    first = attacks.autoattack_components(eps=EPS, steps=5, num_targets=2, queries=20)[:1]
    x_ce = jax.jit(lambda p, x, y, k: attacks.auto_attack.run_components(first, logits_fn, p, x, y, k, eot=1)[0])(
        params, x, y, key)
    c_aa = np.asarray(jnp.argmax(logits_fn(params, x_aa, None), -1) == y)
    c_ce = np.asarray(jnp.argmax(logits_fn(params, x_ce, None), -1) == y)
    assert (~c_ce <= ~c_aa).all()
    assert float(jnp.max(jnp.abs(x_aa - x))) <= EPS + 1e-6


def _mean_pixel_logits(params, x, key):
    """Constructed 3-class logits, label 0: per draw the margin is ``m = 10·mean(x) - 6`` plus
    ``noise·(u - 1/2)``, u ~ U(0, 1) per example and draw (noise 0: deterministic, fooled iff mean(x) > 0.6)."""
    m = 10.0 * x.reshape(x.shape[0], -1).mean(-1) - 6.0
    if key is not None:
        m = m + params["noise"] * (jax.random.uniform(key, m.shape) - 0.5)
    return jnp.stack([jnp.zeros_like(m), m, jnp.full_like(m, -5.0)], axis=-1)


def _shift_component(delta, calls=None):
    """A stand-in AutoAttack component: ``x + delta`` (clipped to [0, 1]); logs each call's row count."""
    def attack(logits_fn, params, x, y, key):
        if calls is not None:
            jax.debug.callback(lambda: calls.append(x.shape[0]))
        return jnp.clip(x + delta, 0.0, 1.0)
    return attack


def test_autoattack_staging_runs_each_component_on_the_still_robust_chunks_only():
    """32 examples of mean pixel v (0.3..0.7), chunks of 4 rows: clean v > 0.6 fooled; the first component
    (+0.05) fools 0.55 < v <= 0.6 and runs on the ceil(#{v <= 0.6}/4) chunks holding robust examples, the
    second on ceil(#{v <= 0.55}/4); whole-batch staging runs each once on 32 rows; same per-example result."""
    v = 0.3 + 0.4 * (jnp.arange(32) + 0.5) / 32
    x = jnp.broadcast_to(v[:, None, None, None], (32, 4, 4, 1))
    y = jnp.zeros((32,), jnp.int32)
    params = {"noise": jnp.float32(0.0)}
    results = {}
    for chunks in (8, None):
        calls = ([], [])
        comps = [("up", _shift_component(0.05, calls[0])), ("none", _shift_component(0.0, calls[1]))]
        run = jax.jit(lambda p, x, y, k, comps=comps, chunks=chunks: attacks.auto_attack.run_components(
            comps, _mean_pixel_logits, p, x, y, k, eot=1, chunks=chunks))
        x_adv, robust = jax.block_until_ready(run(params, x, y, jax.random.key(0)))
        results[chunks] = (np.asarray(x_adv), np.asarray(robust), calls)
    v = np.asarray(v)
    n1, n2 = int((v <= 0.6).sum()), int((v <= 0.55).sum())
    assert 0 < n2 < n1 < 32
    assert results[8][2] == ([4] * -(-n1 // 4), [4] * -(-n2 // 4))
    assert results[None][2] == ([32], [32])
    expected = np.where(((v > 0.55) & (v <= 0.6))[:, None, None, None], np.asarray(x) + 0.05, np.asarray(x))
    for chunks, (x_adv, robust, _) in results.items():
        np.testing.assert_array_equal(robust, v <= 0.55)
        np.testing.assert_allclose(x_adv, expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("chunks", [8, None])
def test_autoattack_judges_robustness_on_the_eot_mean_margin(chunks):
    """Noisy constructed logits: at x the margin is -1 + 3(u - 1/2) per draw (fooled on 1 draw in 6, robust on
    the mean); the first component returns x, the second x + 0.2 (margin +1 on the mean). With EoT 16 no
    example may count as fooled at x, on the clean check or after the first component: every example ends
    at the second component's point (one draw per check would leave about a third at x)."""
    x = jnp.full((32, 4, 4, 1), 0.5)
    y = jnp.zeros((32,), jnp.int32)
    params = {"noise": jnp.float32(3.0)}
    comps = [("same", _shift_component(0.0)), ("up", _shift_component(0.2))]
    draws = jax.vmap(lambda k: _mean_pixel_logits(params, x, k)[:, 1])(jax.random.split(jax.random.key(0), 64))
    assert 0.05 < float((draws > 0).mean()) < 0.3  # single draws at x do flip
    run = jax.jit(lambda p, x, y, k: attacks.auto_attack.run_components(comps, _mean_pixel_logits, p, x, y, k,
                                                                       eot=16, chunks=chunks))
    x_adv, robust = run(params, x, y, jax.random.key(1))
    assert not np.asarray(robust).any()
    np.testing.assert_allclose(x_adv, x + 0.2, rtol=0, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# Formulas
# ------------------------------------------------------------------------------------------------

def test_dlr_losses_match_the_formula_and_ignore_shift_and_scale():
    z = jax.random.normal(jax.random.key(0), (16, 10))
    y = jnp.arange(16) % 10
    s = jnp.sort(z, axis=-1)[:, ::-1]
    zy = z[jnp.arange(16), y]
    other = jnp.where(jax.nn.one_hot(y, 10, dtype=bool), -jnp.inf, z).max(-1)
    np.testing.assert_allclose(attacks.dlr_loss(z, y), -(zy - other) / (s[:, 0] - s[:, 2] + 1e-12), rtol=1e-5)
    np.testing.assert_allclose(attacks.dlr_loss(3.0 * z + 7.0, y), attacks.dlr_loss(z, y), rtol=1e-4, atol=1e-5)
    assert ((attacks.dlr_loss(z, y) > 0) == (jnp.argmax(z, -1) != y)).all()
    t = (y + 1) % 10
    expected = -(zy - z[jnp.arange(16), t]) / (s[:, 0] - 0.5 * (s[:, 2] + s[:, 3]) + 1e-12)
    np.testing.assert_allclose(attacks.targeted_dlr_loss(z, y, t), expected, rtol=1e-5)


def test_square_fraction_follows_the_reference_schedule():
    got = [float(attacks.square.square_fraction(i)) for i in (0, 10, 11, 50, 51, 500, 501, 8001)]
    assert got == pytest.approx([0.8, 0.8, 0.4, 0.4, 0.2, 0.1, 0.05, 0.8 / 512])


def test_hyperplane_projection_is_on_the_plane_in_the_box_and_minimal():
    key = jax.random.key(0)
    z = jax.random.uniform(key, (4, 20), minval=0.3, maxval=0.7)
    w = jax.random.normal(jax.random.fold_in(key, 1), (4, 20))
    gap = jnp.array([0.05, -0.1, 0.2, -0.02])
    b = jnp.sum(w * z, -1) + gap
    d = attacks.project_hyperplane_linf(z, w, b)
    # Box inactive: the L∞-minimal step is gap·sign(w)/||w||_1 (norm |gap|/||w||_1).
    np.testing.assert_allclose(d, (gap / jnp.abs(w).sum(-1))[:, None] * jnp.sign(w), atol=1e-6)
    # Box active (z near the edges, a large gap): still on the plane and in [0, 1].
    z2 = jnp.clip(z + 0.29 * jnp.sign(w), 0.0, 1.0)
    b2 = jnp.sum(w * z2, -1) - jnp.abs(w).sum(-1) * 0.3
    d2 = attacks.project_hyperplane_linf(z2, w, b2)
    np.testing.assert_allclose(jnp.sum(w * (z2 + d2), -1), b2, rtol=1e-4, atol=1e-4)
    assert float((z2 + d2).min()) >= 0.0 and float((z2 + d2).max()) <= 1.0


def test_assg_moments_and_sharpness():
    u = (jnp.array([[0.5, -0.8]]),)  # [T=1, N=2]: |u| = (0.5, 0.8)
    stats = snn_adaptive.AssgStats((jnp.ones((1, 2)),), (jnp.zeros((1, 2)),))
    new = snn_adaptive.assg_update(stats, u)
    m = 0.9 + 0.1 * jnp.array([0.5, 0.8])
    np.testing.assert_allclose(new.m[0][0], m, rtol=1e-6)
    np.testing.assert_allclose(new.d[0][0], 0.1 * jnp.abs(jnp.array([0.5, 0.8]) - m), rtol=1e-6)
    alpha = snn_adaptive.assg_sharpness(new)[0]
    omega = 2 * np.tan(0.425 * np.pi) / np.pi
    np.testing.assert_allclose(alpha, omega / (new.m[0] + 1.5 * new.d[0] + 1e-4), rtol=1e-6)


def test_assg_scale_is_the_reference_constant():
    """ω = 2·tan(π·a)/π as the reference's ASSGrad (a = 0.425: ω ≈ 2.652, not 2·tan(πa/2)/π ≈ 0.502)."""
    assert snn_adaptive.assg_scale() == pytest.approx(2.6517, abs=1e-4)
    for a in (0.05, 0.2125, 0.35, 0.425, 0.49):
        assert snn_adaptive.assg_scale(a) == pytest.approx(2 * np.tan(a * np.pi) / np.pi, rel=1e-12)
    traced = jax.jit(snn_adaptive.assg_scale)(0.425)
    assert float(traced) == pytest.approx(snn_adaptive.assg_scale(0.425), rel=1e-6)


@pytest.mark.parametrize("a", [0.0, 0.5, -0.1, 0.7, float("nan")])
def test_assg_a_outside_the_open_interval_is_one_clear_error(a):
    message = r"^a must be a number in \(0.0, 0.5\), got " + ("nan" if a != a else repr(a)) + "$"
    with pytest.raises(ValueError, match=message):
        snn_adaptive.assg_scale(a)
    model, variables, x, y = _tiny()
    with pytest.raises(ValueError, match=message):
        attacks.sa_pgd(attacks.model_logits_fn(model), variables, x, y, jax.random.key(0), steps=1, a=a)
    with pytest.raises(ValueError, match=message):
        attacks.assg_search(attacks.model_logits_fn(model), variables, x, y, jax.random.key(0), steps=1, a=a)


def test_assg_search_bad_range_or_rounds_is_one_clear_error():
    model, variables, x, y = _tiny()
    search = functools.partial(attacks.assg_search, attacks.model_logits_fn(model), variables, x, y,
                               jax.random.key(0), steps=1)
    with pytest.raises(ValueError, match=r"^a_range\[1\] must be a number in \(0.0, 0.5\), got 0.5$"):
        search(a_range=(0.35, 0.5))
    with pytest.raises(ValueError, match=r"^a_range must be \(lo, hi\) with lo < hi, got \(0.4, 0.35\)$"):
        search(a_range=(0.4, 0.35))
    with pytest.raises(ValueError, match=r"^rounds must be an int >= 1, got 0$"):
        search(rounds=0)


def test_assg_folds_the_current_u_into_the_moments_before_the_backward():
    """As the reference's ASSGrad.forward: the backward at a forward pass uses α of the moments updated
    with that pass's |u| (u = H - θ for LIF), which are also what the pass returns."""
    model, variables, x, y = _tiny()
    shapes = snn_adaptive.layer_shapes(model, variables, x)
    stats = snn_adaptive.assg_init(model, variables, x)
    per_layer = tuple(zip(stats.m, stats.d))
    omega = snn_adaptive.assg_scale()
    adapt = snn_adaptive.assg_adapt(omega)

    def loss(x_, params, how):
        logits, outs = snn_adaptive.apply_with_surrogate(model, variables, x_, None, params,
                                                         snn_adaptive._atan_sharpness_grad, how)
        return attacks.ce_loss(logits, y).sum(), outs

    hs = model.apply(variables, x, train=False, return_h=True)[1]
    expected = snn_adaptive.assg_update(stats, tuple(h - model.neuron.threshold for h in hs))

    @jax.jit
    def grads(x_):
        g, outs = jax.grad(loss, has_aux=True)(x_, per_layer, adapt)
        g_fixed = jax.grad(loss, has_aux=True)(x_, snn_adaptive.assg_sharpness(expected), snn_adaptive._fixed)[0]
        return g, outs, g_fixed

    g, outs, g_fixed = grads(x)
    assert len(outs) == len(shapes) >= 2
    for (m, d), m_ref, d_ref in zip(outs, expected.m, expected.d):
        np.testing.assert_allclose(m, m_ref, rtol=1e-6)
        np.testing.assert_allclose(d, d_ref, rtol=1e-6, atol=1e-7)
        assert float(jnp.abs(m - 1.0).max()) > 1e-3  # the current |u| moved M from its start 1
    assert float(jnp.abs(g).max()) > 0
    np.testing.assert_allclose(g, g_fixed, rtol=1e-5, atol=1e-8)


def test_ternary_step_moves_toward_the_lower_robust_accuracy():
    """The reference's rule: right ← a2 if acc1 < acc2, else left ← a1 (ties move left)."""
    np.testing.assert_allclose(snn_adaptive.ternary_step(0.35, 0.49, 0.3, 0.4), (0.35, 0.49 - 0.14 / 3), rtol=1e-6)
    np.testing.assert_allclose(snn_adaptive.ternary_step(0.35, 0.49, 0.4, 0.3), (0.35 + 0.14 / 3, 0.49), rtol=1e-6)
    np.testing.assert_allclose(snn_adaptive.ternary_step(0.35, 0.49, 0.3, 0.3), (0.35 + 0.14 / 3, 0.49), rtol=1e-6)


def test_assg_at_its_default_iterations_at_least_as_strong_as_pgd10(setup32):
    """At ε = 8/255 on 32 of the fixture's images: ASSG + SA-PGD (100 iterations, a = 0.425) against PGD10."""
    eps = 8 / 255
    assg = _correct(setup32, _run(setup32, attacks.make("ASSG", eps=eps))).mean()
    pgd10 = _correct(setup32, _run(setup32, attacks.make("PGD10", eps=eps))).mean()
    assert assg <= pgd10, (assg, pgd10)
    assert assg < _correct(setup32, setup32[3]).mean() - 0.2


def test_assg_search_per_example_at_least_as_strong_as_assg_at_the_default_a(setup32):
    """Probe 0 of the search is sa_pgd at a = 0.425 with key split(fold_in(key, 0))[0]: every example it
    fools, the search fools too."""
    _, logits_fn, params, x, y = setup32
    options = dict(eps=8 / 255, steps=5)
    key = jax.random.key(3)
    search = _run(setup32, functools.partial(attacks.assg_search, rounds=1, **options), seed=3)
    k0 = jax.random.split(jax.random.fold_in(key, 0))[0]
    single = jax.jit(lambda p, x, y, k: attacks.sa_pgd(logits_fn, p, x, y, k, **options))(params, x, y, k0)
    c_search, c_single = _correct(setup32, search), _correct(setup32, single)
    assert (~c_single <= ~c_search).all()
    assert c_single.mean() < _correct(setup32, x).mean()
    assert float(jnp.max(jnp.abs(search - x))) <= 8 / 255 + 1e-6
    assert float(search.min()) >= 0.0 and float(search.max()) <= 1.0


@functools.cache
def _tiny(kind="lif", **neuron):
    model = tiny_model(kind=kind, threshold=0.5, **neuron)
    x = jax.random.uniform(jax.random.key(0), (8, 28, 28, 1))
    y = jnp.arange(8, dtype=jnp.int32) % 10
    variables = jax.jit(model.init)({"params": jax.random.key(1), "noise": jax.random.key(2)}, x)
    return model, variables, x, y


def test_per_neuron_surrogate_layer_matches_the_model_for_a_constant_parameter():
    """The attack-side layer (used by ASSG and straight-through) with atan α = 2 everywhere gives the
    model's own forward and its atan(2) surrogate gradient."""
    model, variables, x, y = _tiny()
    shapes = snn_adaptive.layer_shapes(model, variables, x)
    params = [jnp.full(s, 2.0) for s in shapes]
    custom = lambda x_: snn_adaptive.apply_with_surrogate(model, variables, x_, None, params,
                                                          surrogate.atan_grad)[0]
    own = attacks.model_logits_fn(model, surrogate="atan", surrogate_param=2.0)
    np.testing.assert_allclose(custom(x), own(variables, x, None), rtol=1e-6)
    g_custom = jax.grad(lambda x_: attacks.ce_loss(custom(x_), y).sum())(x)
    g_own = jax.grad(lambda x_: attacks.ce_loss(own(variables, x_, None), y).sum())(x)
    assert float(jnp.abs(g_own).sum()) > 0
    np.testing.assert_allclose(g_custom, g_own, rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# Transfer and differentiable attacks
# ------------------------------------------------------------------------------------------------

def test_transfer_from_the_model_itself_is_the_white_box_attack_and_bad_sources_are_named():
    model, variables, x, y = _tiny()
    fn = attacks.model_logits_fn(model)
    fgsm = functools.partial(attacks.fgsm, eps=EPS)
    key = jax.random.key(0)
    np.testing.assert_array_equal(attacks.transfer_attack(fgsm, fn, variables)(fn, variables, x, y, key),
                                  fgsm(fn, variables, x, y, key))
    other, other_vars, _, _ = _tiny_classes(7)
    with pytest.raises(ValueError, match="7 classes, the target 10"):
        attacks.transfer_attack(fgsm, attacks.model_logits_fn(other), other_vars)(fn, variables, x, y, key)
    rgb = tiny_model(in_channels=3)
    rgb_vars = rgb.init(jax.random.key(0), jnp.zeros((1, 28, 28, 3)))
    with pytest.raises(ValueError, match=r"does not accept the target's inputs of shape \(8, 28, 28, 1\)"):
        attacks.transfer_attack(fgsm, attacks.model_logits_fn(rgb), rgb_vars)(fn, variables, x, y, key)


@functools.cache
def _tiny_classes(k):
    model = tiny_model(num_classes=k)
    return model, model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1))), None, None


def test_differentiable_pgd_matches_finite_differences_in_float64():
    """A small smooth spiking model in float64 (a Noisy-LIF layer in expected mode, Φ firing with its exact
    gradient, between two dense maps; the library's models cast logits to float32, too coarse for finite
    differences) and the smooth step: the gradient of a loss at x_adv(θ, x) through 3 unrolled steps, in θ
    and in x, equals central finite differences; remat gives the same gradient."""
    with jax.enable_x64(True):
        config = neurons.NeuronConfig(kind="noisy", expected=True, threshold=0.5)

        def fn(v, x_, key):
            current = jnp.tanh(x_.reshape(x_.shape[0], -1) @ v["w1"])
            spikes_tb, _ = neurons.run(config, jnp.broadcast_to(current, (3,) + current.shape))
            return spikes_tb.mean(0) @ v["w2"]

        k = jax.random.split(jax.random.key(0), 5)
        x = jax.random.uniform(k[0], (3, 6, 6, 1), jnp.float64, 0.2, 0.8)
        y = jnp.array([1, 3, 0])
        variables = {"w1": jax.random.normal(k[1], (36, 8), jnp.float64), "w2": jax.random.normal(k[2], (8, 4), jnp.float64)}
        direction_p = jax.tree.map(lambda a: jax.random.normal(k[3], a.shape, a.dtype), variables)
        direction_x = jax.random.normal(k[4], x.shape, x.dtype)

        def robust_loss(v, x_, remat=False):
            x_adv = attacks.differentiable.pgd(fn, v, x_, y, jax.random.key(5), eps=0.05, alpha=0.02, steps=3,
                                               temperature=1.0, remat=remat)
            return attacks.ce_loss(fn(v, x_adv, None), y).sum()

        gv, gx = jax.grad(robust_loss, argnums=(0, 1))(variables, x)
        h = 1e-6
        shift = lambda t: jax.tree.map(lambda a, d: a + t * d, variables, direction_p)
        fd_p = (robust_loss(shift(h), x) - robust_loss(shift(-h), x)) / (2 * h)
        fd_x = (robust_loss(variables, x + h * direction_x) - robust_loss(variables, x - h * direction_x)) / (2 * h)
        ad_p = sum(jnp.vdot(a, d) for a, d in zip(jax.tree.leaves(gv), jax.tree.leaves(direction_p)))
        ad_x = jnp.vdot(gx, direction_x)
        assert abs(float(ad_p)) > 1e-3 and abs(float(ad_x)) > 1e-3
        np.testing.assert_allclose(float(ad_p), float(fd_p), rtol=1e-6)
        np.testing.assert_allclose(float(ad_x), float(fd_x), rtol=1e-6)
        gx_remat = jax.grad(functools.partial(robust_loss, remat=True), argnums=1)(variables, x)
        np.testing.assert_allclose(gx_remat, gx, rtol=1e-10, atol=1e-14)


def test_differentiable_pgd_ste_forward_is_pgd():
    """The straight-through step's forward is the sign step: same iterates as attacks.pgd (LIF: no noise)."""
    model, variables, x, y = _tiny()
    fn = attacks.model_logits_fn(model)
    options = dict(eps=0.05, alpha=0.02, steps=2, random_start=False)
    x_adv = attacks.differentiable.pgd(fn, variables, x, y, jax.random.key(0), step="ste", **options)
    np.testing.assert_allclose(x_adv, attacks.pgd(fn, variables, x, y, jax.random.key(0), **options), atol=1e-6)
    assert float(jnp.max(jnp.abs(x_adv - x))) > 0.0


# ------------------------------------------------------------------------------------------------
# Registry and bad input
# ------------------------------------------------------------------------------------------------

def test_registry_builds_every_row_and_lists_the_known_names():
    for name in attacks.ROWS:
        assert callable(attacks.make(name, eps=0.1))
    assert attacks.make("pgd25").keywords["steps"] == 25
    assert [n for n, _ in attacks.strong_suite()] == list(attacks.STRONG_ROWS)
    with pytest.raises(ValueError, match=r"unknown attack 'cw'; known: Clean, FGSM, .*Square.*PGD<k>"):
        attacks.make("cw")
    with pytest.raises(ValueError, match="queries"):
        attacks.make("Square", queries=0)
    with pytest.raises(ValueError, match="eot"):
        attacks.make("PGD10", eot=0)


def _bad_calls():
    x = jnp.full((4, 28, 28, 1), 0.5)
    y = jnp.zeros((4,), jnp.int32)
    nan, inf = x.at[0, 3, 3, 0].set(jnp.nan), x.at[1, 0, 0, 0].set(jnp.inf)
    cases = []
    for name in ("fgsm", "pgd", "apgd", "square", "fab_targeted", "sa_pgd"):
        cases += [(name, nan, y, {}, r"x must be finite, got 1 NaN/inf"),
                  (name, inf, y, {}, r"x must be finite"),
                  (name, x, y.at[0].set(15), {}, r"y must be class labels in \[0, 10\), got values in \[0, 15\]"),
                  (name, x, y.at[0].set(-1), {}, r"y must be class labels in \[0, 10\)"),
                  (name, x, y, {"eot": 0}, "eot")]
    cases += [("square", x, y, {"queries": 0}, "queries"),
              ("apgd_targeted", x, y, {"num_targets": 10}, r"num_targets must be <= K - 1 = 9"),
              ("fab_targeted", x, y, {"num_targets": 10}, r"num_targets must be <= K - 1 = 9"),
              ("autoattack", x, y, {"version": "plus"}, "version"),
              ("autoattack", x, y, {"eot": 0}, "eot")]
    return cases


@pytest.mark.parametrize("name,x,y,options,message", _bad_calls())
def test_bad_input_is_one_clear_error(name, x, y, options, message):
    model, variables, _, _ = _tiny()
    with pytest.raises(ValueError, match=message):
        attacks.ATTACKS[name](attacks.model_logits_fn(model), variables, x, y, jax.random.key(0), **options)


def test_model_attacks_need_a_model_logit_function():
    model, variables, x, y = _tiny()
    plain = lambda v, x_, k: attacks.model_logits_fn(model)(v, x_, k)
    with pytest.raises(ValueError, match="sa_pgd with ASSG needs a logit function made by attacks.model_logits_fn"):
        attacks.sa_pgd(plain, variables, x, y, jax.random.key(0), steps=1)


def test_attack_under_jit_with_closed_over_inputs():
    """Checks needing values are skipped for traced values and run on closed-over constants."""
    model, variables, x, y = _tiny()
    fn = attacks.model_logits_fn(model)
    x_adv = jax.jit(lambda: attacks.pgd(fn, variables, x, y, jax.random.key(0), eps=8 / 255, steps=1))()
    assert float(jnp.max(jnp.abs(x_adv - x))) <= 8 / 255 + 1e-6
    bad = x.at[0, 0, 0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="x must be finite"):
        jax.jit(lambda: attacks.pgd(fn, variables, bad, y, jax.random.key(0)))()
