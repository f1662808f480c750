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

from tgo_jax import attacks, models, neurons, surrogate
from tgo_jax.attacks import snn_adaptive
from tests.conftest import attack_setup

EPS = 0.1
BATCH = 64


@pytest.fixture(scope="module")
def setup(trained_small):
    return attack_setup(trained_small, BATCH)


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
    model, logits_fn, params, x, y = setup
    x, y = x[:32], y[:32]
    key = jax.random.key(4)
    aa = functools.partial(attacks.autoattack, eps=EPS, steps=5, num_targets=2, queries=20)
    x_aa = jax.jit(lambda p, x, y, k: aa(logits_fn, p, x, y, k))(params, x, y, key)
    k_first = jax.random.split(jax.random.fold_in(key, 0))[0]
    x_ce = jax.jit(lambda p, x, y, k: attacks.apgd(logits_fn, p, x, y, k, eps=EPS, steps=5))(params, x, y, k_first)
    c_aa = np.asarray(jnp.argmax(logits_fn(params, x_aa, None), -1) == y)
    c_ce = np.asarray(jnp.argmax(logits_fn(params, x_ce, None), -1) == y)
    assert (~c_ce <= ~c_aa).all()
    assert float(jnp.max(jnp.abs(x_aa - x))) <= EPS + 1e-6


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
    h = (jnp.array([[1.5, 0.2]]),)  # [T=1, N=2], θ = 1: |u| = (0.5, 0.8)
    stats = snn_adaptive.AssgStats((jnp.ones((1, 2)),), (jnp.zeros((1, 2)),))
    new = snn_adaptive.assg_update(stats, h, threshold=1.0)
    m = 0.9 + 0.1 * jnp.array([0.5, 0.8])
    np.testing.assert_allclose(new.m[0][0], m, rtol=1e-6)
    np.testing.assert_allclose(new.d[0][0], 0.1 * jnp.abs(jnp.array([0.5, 0.8]) - m), rtol=1e-6)
    alpha = snn_adaptive.assg_sharpness(new)[0]
    omega = 2 * np.tan(0.425 * np.pi / 2) / np.pi
    np.testing.assert_allclose(alpha, omega / (new.m[0] + 1.5 * new.d[0] + 1e-4), rtol=1e-6)


@functools.cache
def _tiny(kind="lif", **neuron):
    model = models.create("small", channels=(4, 8), hidden=16, num_steps=2, kind=kind, threshold=0.5, **neuron)
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
    rgb = models.create("small", channels=(4, 8), hidden=16, num_steps=2, in_channels=3)
    rgb_vars = rgb.init(jax.random.key(0), jnp.zeros((1, 28, 28, 3)))
    with pytest.raises(ValueError, match=r"does not accept the target's inputs of shape \(8, 28, 28, 1\)"):
        attacks.transfer_attack(fgsm, attacks.model_logits_fn(rgb), rgb_vars)(fn, variables, x, y, key)


@functools.cache
def _tiny_classes(k):
    model = models.create("small", channels=(4, 8), hidden=16, num_steps=2, num_classes=k)
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
