"""Tests of tgo_jax.attacks on a small trained spiking net (see conftest.trained_small).

Comparisons run at ε = 0.1 (on Fashion-MNIST 8/255 is a mild attack, docs/FORMULAS.md §4) and, where the
paper's budget matters, at ε = 8/255. ε and α are traced arguments of the jitted attacks below, so each
attack configuration compiles once for every ε.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgo_jax import attacks, models
from tgo_jax.attacks import core
from tests.conftest import attack_setup, tiny_model

EPS = 0.1
BATCH = 128


# ------------------------------------------------------------------------------------------------
# Fixtures and compiled helpers
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def setup(trained_small):
    return attack_setup(trained_small, BATCH)


@functools.cache
def _jit_attack(logits_fn, name, **options):
    """``jit(attack)(params, x, y, key, eps, alpha)`` with ε (and α for the PGD family) traced."""
    attack = attacks.ATTACKS[name]
    takes_alpha = name in ("pgd", "mtpgd")

    def run(params, x, y, key, eps, alpha):
        extra = {"alpha": alpha} if takes_alpha else {}
        return attack(logits_fn, params, x, y, key, eps=eps, **extra, **options)

    return jax.jit(run)


def _attack(setup, name, *, eps=EPS, alpha=attacks.ALPHA, seed=0, **options):
    _, logits_fn, params, x, y = setup
    return _jit_attack(logits_fn, name, **options)(params, x, y, jax.random.key(seed), eps, alpha)


@functools.cache
def _jit_eval(logits_fn):
    """Per-example (correct, CE loss) of a deterministic model."""
    def evaluate(params, x, y):
        logits = logits_fn(params, x, None)
        return jnp.argmax(logits, axis=-1) == y, attacks.ce_loss(logits, y)
    return jax.jit(evaluate)


def _correct_loss(setup, x_adv):
    _, logits_fn, params, _, y = setup
    correct, loss = _jit_eval(logits_fn)(params, x_adv, y)
    return np.asarray(correct), np.asarray(loss)


def _acc(setup, x_adv) -> float:
    return float(_correct_loss(setup, x_adv)[0].mean())


# Attack configurations shared by several tests (compiled once each, results cached per key).
CONFIGS = {
    "fgsm": ("fgsm", {}),
    "rfgsm": ("rfgsm", {}),
    "pgd5": ("pgd", {"steps": 5}),
    "pgd20": ("pgd", {"steps": 20}),
    "apgd20": ("apgd", {"steps": 20}),
    "mtpgd": ("mtpgd", {"steps": 5, "num_targets": 3, "alpha": 0.025}),  # 5·α > ε
}


@pytest.fixture(scope="module")
def adv(setup):
    """x_adv at ε = 0.1 for every configuration in CONFIGS (seed 0)."""
    return {label: _attack(setup, name, **opts) for label, (name, opts) in CONFIGS.items()}


# ------------------------------------------------------------------------------------------------
# Budget and pixel range
# ------------------------------------------------------------------------------------------------

def test_model_is_trained(setup):
    _, _, _, x, _ = setup
    assert _acc(setup, x) > 0.6  # chance is 0.1


@pytest.mark.parametrize("label", list(CONFIGS))
def test_perturbation_within_budget_and_pixels_valid(setup, adv, label):
    x = setup[3]
    x_adv = adv[label]
    chex.assert_equal_shape((x_adv, x))
    assert float(jnp.max(jnp.abs(x_adv - x))) <= EPS + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float(jnp.max(jnp.abs(x_adv - x))) > 0.0  # the attack moved the input


# ------------------------------------------------------------------------------------------------
# Strength ordering
# ------------------------------------------------------------------------------------------------

def test_iterative_attacks_at_least_as_strong_as_fgsm(setup, adv):
    """Iterative attacks whose steps can cross the ball (k·α >= ε) beat the single FGSM step."""
    clean = _acc(setup, setup[3])
    fgsm = _acc(setup, adv["fgsm"])
    assert fgsm < clean
    for label in ("pgd20", "apgd20", "mtpgd"):
        assert _acc(setup, adv[label]) <= fgsm, label


def test_more_pgd_steps_not_weaker(setup, adv):
    assert _acc(setup, adv["pgd20"]) <= _acc(setup, adv["pgd5"])


def test_apgd_at_least_as_strong_as_pgd_at_equal_budget(setup):
    """20 steps each, at the paper's ε = 8/255, on average over two random starts."""
    seeds, eps = (0, 1), 8 / 255
    pgd = np.mean([_acc(setup, _attack(setup, "pgd", eps=eps, steps=20, seed=s)) for s in seeds])
    apgd = np.mean([_acc(setup, _attack(setup, "apgd", eps=eps, steps=20, seed=s)) for s in seeds])
    assert apgd <= pgd


def test_unbounded_pgd_drives_accuracy_to_zero(setup):
    x_adv = _attack(setup, "pgd", eps=1.0, alpha=0.1, steps=20)
    assert _acc(setup, x_adv) <= 0.02


def test_random_noise_much_weaker_than_pgd(setup, adv):
    _, _, _, x, _ = setup
    for eps, x_pgd in ((EPS, adv["pgd20"]), (1.0, _attack(setup, "pgd", eps=1.0, alpha=0.1, steps=20))):
        noise = jax.random.uniform(jax.random.key(7), x.shape, x.dtype, -eps, eps)
        x_noise = jnp.clip(x + noise, 0.0, 1.0)
        clean, noisy, pgd = _acc(setup, x), _acc(setup, x_noise), _acc(setup, x_pgd)
        assert noisy > pgd, eps
        if eps == EPS:  # a small random perturbation costs far less than PGD of the same size
            assert clean - noisy < 0.25 * (clean - pgd)


def test_loss_does_not_decrease_per_example(setup, adv):
    """CE at x_adv >= CE at x for every example, for PGD and APGD."""
    _, loss_clean = _correct_loss(setup, setup[3])
    for label in ("pgd5", "pgd20", "apgd20"):
        _, loss_adv = _correct_loss(setup, adv[label])
        assert np.all(loss_adv >= loss_clean), label


def test_pgd_restarts_keep_the_worst_run_per_example(setup):
    """Restart r runs with ``split(fold_in(key, r))[0]``; the result is, per example, the worst run."""
    key = jax.random.key(3)
    best = _attack(setup, "pgd", steps=5, restarts=2, seed=3)
    runs = [_jit_attack(setup[1], "pgd", steps=5)(setup[2], setup[3], setup[4],
                                                   jax.random.split(jax.random.fold_in(key, r))[0],
                                                   EPS, attacks.ALPHA) for r in range(2)]
    (c0, l0), (c1, l1) = (_correct_loss(setup, r) for r in runs)
    cb, lb = _correct_loss(setup, best)
    np.testing.assert_array_equal(~cb, ~c0 | ~c1)
    none_fooled = c0 & c1
    np.testing.assert_allclose(lb[none_fooled], np.maximum(l0, l1)[none_fooled], rtol=1e-5)


def test_mtpgd_more_targets_not_weaker(setup, adv):
    one = _attack(setup, "mtpgd", steps=5, num_targets=1, alpha=0.025)
    assert _acc(setup, adv["mtpgd"]) <= _acc(setup, one)


# ------------------------------------------------------------------------------------------------
# APGD schedule
# ------------------------------------------------------------------------------------------------

def test_apgd_checkpoints_follow_the_recurrence():
    """p0 = 0, p1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06): exact in iterations for N = 100."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    assert attacks.apgd_checkpoints(100) == tuple(round(100 * q) for q in p[1:])


@pytest.mark.parametrize("steps", [1, 5, 37, 250])
def test_apgd_checkpoints_are_increasing_and_within_budget(steps):
    points = attacks.apgd_checkpoints(steps)
    assert points[0] == max(int(0.22 * steps), 1)
    assert all(b > a for a, b in itertools.pairwise(points))
    assert points[-1] <= steps


# ------------------------------------------------------------------------------------------------
# EoT on a Noisy-LIF model
# ------------------------------------------------------------------------------------------------

def _gradient_estimates(logits_fn, params, x, y, key, *, eot, num):
    """``num`` independent EoT gradient estimates, [num, B, ...]."""
    one = lambda k: attacks.loss_and_grad(attacks.ce_loss, logits_fn, params, x, y, k, eot=eot).grad
    return jax.jit(jax.vmap(one))(jax.random.split(key, num))


def test_eot_reduces_gradient_variance(trained_small):
    noisy = trained_small.model.clone(neuron=dataclasses.replace(trained_small.model.neuron, kind="noisy"))
    assert noisy.neuron.stochastic
    logits_fn = attacks.model_logits_fn(noisy)
    x, y = jnp.asarray(trained_small.test.x[:8]), jnp.asarray(trained_small.test.y[:8])
    params, n, num = trained_small.variables, 4, 8
    g1 = _gradient_estimates(logits_fn, params, x, y, jax.random.key(0), eot=1, num=num)
    gn = _gradient_estimates(logits_fn, params, x, y, jax.random.key(1), eot=n, num=num)
    var1, varn = float(g1.var(axis=0).mean()), float(gn.var(axis=0).mean())
    assert var1 > 0.0  # the single-draw gradient is random
    assert varn < 0.5 * var1  # the mean of n draws has variance var1 / n in expectation
    # Both estimate the same expected gradient.
    assert float(jnp.abs(gn.mean(0) - g1.mean(0)).mean()) < float(jnp.abs(g1.mean(0)).mean())


def test_eot_means_are_over_the_draws_of_the_split_keys():
    """loss_and_grad / loss_logits with eot = 2: loss, logits, gradient and margin are the means over the
    draws of the keys split(key, 2), one call per key (up to float32 rounding of the sum)."""
    model, variables, x, y = _tiny("noisy")
    logits_fn = attacks.model_logits_fn(model)
    key = jax.random.key(7)
    single = jax.jit(lambda k: core.loss_and_grad(core.ce_loss, logits_fn, variables, x, y, k))
    once = [single(k) for k in jax.random.split(key, 2)]
    batched, forward = jax.jit(lambda k: (core.loss_and_grad(core.ce_loss, logits_fn, variables, x, y, k, eot=2),
                                          core.loss_logits(core.ce_loss, logits_fn, variables, x, y, k, 2)))(key)
    assert not np.allclose(once[0].grad, once[1].grad)  # the draws differ
    for field in ("loss", "logits", "grad", "margin"):
        looped = (getattr(once[0], field) + getattr(once[1], field)) / 2
        # float32 rounding, relative to the field's scale (a gradient entry can be a near-cancelling sum)
        np.testing.assert_allclose(getattr(batched, field), looped, rtol=1e-6,
                                   atol=1e-6 * float(jnp.abs(looped).max()))
        if field != "grad":
            np.testing.assert_allclose(getattr(forward, field), looped, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(batched.margin, (core.margin_loss(once[0].logits, y)
                                                + core.margin_loss(once[1].logits, y)) / 2, rtol=1e-6)


def _flipping_logits(params, x, key):
    """Constructed 3-class logits (label 0): margin ``params - 1 + 3(u - 1/2)`` per draw, u ~ U(0, 1) per
    example and draw, so at params = 0 one draw in six is misclassified but the mean margin is -1."""
    m = params - 1.0 + 3.0 * (jax.random.uniform(key, (x.shape[0],)) - 0.5)
    return jnp.stack([jnp.zeros_like(m), m, jnp.full_like(m, -5.0)], axis=-1)


def test_selection_goes_by_the_eot_mean_margin_not_one_draw():
    """core.score (restarts of PGD/APGD, targets of MTPGD/APGD-T) and core.fooled (APGD, FAB, AutoAttack):
    fooled is the mean margin over the eot draws > 0; keep_worst keeps the higher mean-loss point."""
    x, y, key = jnp.zeros((64, 2)), jnp.zeros((64,), jnp.int32), jax.random.key(3)
    per_draw = jax.vmap(lambda k: core.margin_loss(_flipping_logits(0.0, x, k), y))(jax.random.split(key, 16))
    assert float((per_draw > 0).any(axis=0).mean()) > 0.5  # most are misclassified on some draw
    noisy = core.score(core.margin_loss, _flipping_logits, 0.0, x, y, key, 16)
    np.testing.assert_allclose(noisy.score, per_draw.mean(0), rtol=1e-5, atol=1e-6)
    assert not np.asarray(noisy.fooled).any()
    one = core.score(core.margin_loss, _flipping_logits, 0.0, x, y, key, 1)  # eot = 1: the single draw decides
    assert np.asarray(one.fooled).any() and not np.asarray(one.fooled).all()
    # A point with a higher mean margin (-0.5, never misclassified) wins over the flipping one.
    steady = core.Worst(x + 1.0, jnp.zeros((64,), bool), jnp.full((64,), -0.5))
    kept = core.keep_worst(noisy, steady)
    np.testing.assert_array_equal(kept.x, x + 1.0)
    # Shifted by +2 the mean margin is +1: fooled on the mean though 1 draw in 6 is classified right.
    shifted = core.score(core.margin_loss, _flipping_logits, 2.0, x, y, key, 16)
    assert np.asarray(shifted.fooled).all()
    # A zero mean margin is broken as argmax breaks ties (the first class), so one draw is exactly argmax.
    tied = jnp.zeros((2, 3))
    np.testing.assert_array_equal(core.fooled(core.margin_loss(tied, jnp.array([1, 0])), tied, jnp.array([1, 0])),
                                  [True, False])


# ------------------------------------------------------------------------------------------------
# Surrogate ensemble
# ------------------------------------------------------------------------------------------------

def test_surrogate_ensemble_at_most_min_single_rule(setup):
    model, _, params, x, y = setup
    fgsm = functools.partial(attacks.fgsm, eps=EPS)  # deterministic: the key does not matter
    rules = attacks.DEFAULT_RULES
    ensemble = jax.jit(functools.partial(attacks.ensemble_robust_accuracy, model, attack=fgsm, rules=rules))
    result = ensemble(params, x, y, jax.random.key(0))

    @jax.jit
    def single_rules(params, x, y, key):
        return [attacks.robust_accuracy(fgsm, attacks.rule_logits_fn(model, r), params, x, y, key)
                for r in rules]

    singles = [float(a) for a in single_rules(params, x, y, jax.random.key(1))]
    assert set(result.per_rule) == {attacks.rule_name(r) for r in rules}
    np.testing.assert_allclose([float(result.per_rule[attacks.rule_name(r)]) for r in rules], singles,
                               atol=1.5 / BATCH)  # at most one borderline example apart
    assert float(result.accuracy) <= min(singles) + 1e-6
    assert float(result.accuracy) <= min(float(a) for a in result.per_rule.values())


# ------------------------------------------------------------------------------------------------
# Tiny untrained model: backward rules, jit agreement, input validation, suite
# ------------------------------------------------------------------------------------------------

@functools.cache
def _tiny(kind="lif"):
    """An untrained tiny net; threshold 0.5 keeps it active enough for non-zero input gradients."""
    model = tiny_model(kind=kind, threshold=0.5)
    x = jax.random.uniform(jax.random.key(0), (8, 28, 28, 1))
    y = jnp.arange(8, dtype=jnp.int32) % 10
    variables = jax.jit(model.init)({"params": jax.random.key(1), "noise": jax.random.key(2)}, x)
    return model, variables, x, y


def test_backward_rule_changes_gradient_not_forward(setup):
    model, _, params, x, y = setup
    rules = attacks.DEFAULT_RULES

    @jax.jit
    def logits_and_grads(params, x, y, key):
        fns = [attacks.rule_logits_fn(model, r) for r in rules]
        return ([f(params, x, key) for f in fns],
                [attacks.loss_and_grad(attacks.ce_loss, f, params, x, y, key).grad for f in fns])

    logits, grads = logits_and_grads(params, x[:16], y[:16], jax.random.key(0))
    assert float(jnp.abs(grads[0]).sum()) > 0.0
    for r, lg, g in zip(rules[1:], logits[1:], grads[1:]):
        np.testing.assert_allclose(lg, logits[0], rtol=1e-5, atol=1e-5)
        assert not np.allclose(g, grads[0]), r


def test_model_logits_fn_is_mean_over_time():
    model, variables, x, _ = _tiny()
    expected = models.mean_over_time(model.apply(variables, x))
    np.testing.assert_allclose(attacks.model_logits_fn(model)(variables, x, None), expected, rtol=1e-6)


class JitAgreementTest(chex.TestCase):
    """Jitted and non-jitted attacks give the same x_adv for the same key (Noisy-LIF: noise threaded).

    The un-jitted result is computed once per attack and shared by both variants (un-jitted attacks
    recompile their loops at every call, so each extra call costs seconds).
    """

    _reference: ClassVar[dict] = {}

    def _check(self, name, attack, kind="lif"):
        model, variables, x, y = _tiny(kind)
        logits_fn = attacks.model_logits_fn(model)
        run = lambda params, x, y, key: attack(logits_fn, params, x, y, key)
        key = jax.random.key(5)
        if name not in self._reference:
            self._reference[name] = run(variables, x, y, key)
        x_adv = self.variant(run)(variables, x, y, key)
        chex.assert_trees_all_close(x_adv, self._reference[name], atol=1e-6)
        self.assertLessEqual(float(jnp.max(jnp.abs(x_adv - x))), 0.1 + 1e-6)
        self.assertGreater(float(jnp.max(jnp.abs(x_adv - x))), 0.0)

    @chex.variants(with_jit=True, without_jit=True)
    def test_pgd_noisy_eot(self):
        self._check("pgd", functools.partial(attacks.pgd, eps=0.1, steps=2, eot=2), kind="noisy")

    @chex.variants(with_jit=True, without_jit=True)
    def test_apgd(self):
        self._check("apgd", functools.partial(attacks.apgd, eps=0.1, steps=4))

    @chex.variants(with_jit=True, without_jit=True)
    def test_mtpgd(self):
        self._check("mtpgd", functools.partial(attacks.mtpgd, eps=0.1, steps=2, num_targets=2))

    @chex.variants(with_jit=True, without_jit=True)
    def test_rfgsm(self):
        self._check("rfgsm", functools.partial(attacks.rfgsm, eps=0.1))


def test_attack_key_is_used():
    """Different keys give different random starts and, on a Noisy-LIF model, different noise."""
    model, variables, x, y = _tiny("noisy")
    pgd = jax.jit(functools.partial(attacks.pgd, attacks.model_logits_fn(model), eps=0.1, steps=2, eot=2))
    a, b = pgd(variables, x, y, jax.random.key(0)), pgd(variables, x, y, jax.random.key(1))
    assert not np.allclose(a, b)
    no_start = jax.jit(functools.partial(attacks.pgd, attacks.model_logits_fn(model), eps=0.1, steps=2,
                                         random_start=False))
    a, b = no_start(variables, x, y, jax.random.key(0)), no_start(variables, x, y, jax.random.key(1))
    assert not np.allclose(a, b)  # the gradient steps see different noise


def _bad_calls():
    x = jnp.full((4, 28, 28, 1), 0.5)
    y = jnp.zeros((4,), jnp.int32)
    ok = {"x": x, "y": y}
    cases = []
    for name in ("fgsm", "rfgsm", "pgd", "apgd", "mtpgd"):
        cases += [(name, ok, {"eps": -0.1}, "eps"),
                  (name, ok, {"eot": 0}, "eot"),
                  (name, {"x": x + 1.0, "y": y}, {}, "x"),
                  (name, {"x": x - 1.0, "y": y}, {}, "x"),
                  (name, {"x": x, "y": y[:3]}, {}, "y"),
                  (name, {"x": x, "y": y.astype(jnp.float32)}, {}, "y")]
    for name in ("pgd", "apgd", "mtpgd"):
        cases.append((name, ok, {"steps": 0}, "steps"))
    for name in ("pgd", "mtpgd"):
        cases += [(name, ok, {"alpha": 0.0}, "alpha"), (name, ok, {"alpha": -0.01}, "alpha")]
    cases += [("pgd", ok, {"restarts": 0}, "restarts"), ("pgd", ok, {"loss": "hinge"}, "loss"),
              ("apgd", ok, {"rho": 1.5}, "rho"), ("mtpgd", ok, {"num_targets": 10}, "num_targets"),
              ("mtpgd", ok, {"num_targets": 0}, "num_targets"), ("mtpgd", ok, {"grad_clip": 0.0}, "grad_clip")]
    return cases


@pytest.mark.parametrize("name,data,options,field", _bad_calls())
def test_bad_input_raises(name, data, options, field):
    model, variables, _, _ = _tiny()
    with pytest.raises(ValueError, match=field):
        attacks.ATTACKS[name](attacks.model_logits_fn(model), variables, data["x"], data["y"],
                              jax.random.key(0), **options)


def test_bad_evaluation_options_raise():
    model, variables, x, y = _tiny()
    with pytest.raises(ValueError, match="draws"):
        attacks.accuracy(attacks.model_logits_fn(model), variables, x, y, jax.random.key(0), draws=0)
    with pytest.raises(ValueError, match="rules"):
        attacks.ensemble_robust_accuracy(model, variables, x, y, jax.random.key(0), rules=())
    with pytest.raises(ValueError, match="extra"):
        attacks.paper_suite(extra=("cw",))
    with pytest.raises(ValueError, match="neuron"):
        attacks.model_logits_fn(object())


def test_old_params_keyword_error():
    """``params=`` (the old name of the variables argument) is one clear TypeError; ``variables=`` works."""
    model, variables, x, y = _tiny()
    logits_fn, key = attacks.model_logits_fn(model), jax.random.key(0)
    calls = {"pgd": functools.partial(attacks.pgd, steps=2), "fgsm": attacks.fgsm,
             "robust_accuracy": functools.partial(attacks.robust_accuracy, attacks.fgsm),
             "apgd": attacks.make("APGD", steps=2), "Transfer-NoiseOff": attacks.make("Transfer-NoiseOff", steps=2),
             "transfer_attack": attacks.transfer_attack(attacks.fgsm, logits_fn, variables)}
    for name, fn in calls.items():
        with pytest.raises(TypeError, match=rf"^{name}\(\) takes the model's variables as `variables` "
                                            r"\(renamed from `params`\)$"):
            fn(logits_fn, params=variables, x=x, y=y, key=key)
    by_keyword = attacks.pgd(logits_fn, variables=variables, x=x, y=y, key=key, eps=0.1, steps=2)
    positional = jax.jit(functools.partial(attacks.pgd, logits_fn, eps=0.1, steps=2))(variables, x, y, key)
    np.testing.assert_allclose(by_keyword, positional, atol=1e-6)
    assert float(attacks.robust_accuracy(attacks.fgsm, logits_fn, variables=variables, x=x, y=y, key=key)) >= 0.0

def test_paper_suite_rows():
    rows = attacks.paper_suite(eps=0.1, alpha=0.02, eot=3)
    assert [name for name, _ in rows] == ["Clean", "FGSM", "RFGSM", "PGD7", "PGD10", "PGD20", "PGD40",
                                          "APGD", "MTPGD"]
    pgd_rows = {name: fn for name, fn in rows if name.startswith("PGD")}
    assert {n: f.keywords["steps"] for n, f in pgd_rows.items()} == {"PGD7": 7, "PGD10": 10, "PGD20": 20,
                                                                      "PGD40": 40}
    assert all(f.keywords["eps"] == 0.1 and f.keywords["eot"] == 3 for _, f in rows[1:])
    assert [n for n, _ in attacks.paper_suite(extra=())][-1] == "PGD40"
    model, variables, x, y = _tiny()
    logits_fn = attacks.model_logits_fn(model)
    clean = attacks.accuracy(logits_fn, variables, x, y, jax.random.key(0))
    np.testing.assert_allclose(attacks.robust_accuracy(rows[0][1], logits_fn, variables, x, y,
                                                       jax.random.key(0)), clean)
