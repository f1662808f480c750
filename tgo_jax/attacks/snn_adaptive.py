"""SNN-specific attacks: backward-rule ensembles and the surrogate sweep (docs/FORMULAS.md §4, §8).

A spiking network's input gradient depends on the surrogate the attacker picks; a model can look robust
under one surrogate and not under another (gradient masking). These attacks run under several backward
rules and keep each example's worst case.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import lif, neurons, surrogate, validation
from tgo_jax.attacks.autopgd import apgd, checkpoint_schedule
from tgo_jax.attacks.core import (ALPHA, EPS, LOSSES, Array, AttackFn, ModelLogits, check_batch, check_options,
                                  Worst, fooled, keep_worst, loss_and_grad, margin_loss, model_logits_fn,
                                  model_of, per_example, prepare, project, score, where)
from tgo_jax.attacks.core import takes_variables
from tgo_jax.attacks.evaluation import robust_correct
from tgo_jax.attacks.gradient import pgd
from tgo_jax.models import layers, mean_over_time

Rule = tuple[str, float | None]
DEFAULT_RULES: tuple[Rule, ...] = (("triangle", None), ("sigmoid", None), ("atan", None), ("bptr", None))


def rule_name(rule: Rule) -> str:
    """"triangle", "sigmoid(2.0)", "bptr", ... for reports."""
    name, param = rule
    return name if param is None else f"{name}({param})"


def rule_logits_fn(model, rule: Rule):
    """The logit function that differentiates through ``rule``: ("bptr", None) is the model's surrogate
    under the BPTR gate; any other (name, param) is that surrogate with the plain surrogate backward."""
    name, param = rule
    if name == "bptr":
        return model_logits_fn(model, surrogate_param=param, backward="bptr")
    return model_logits_fn(model, surrogate=name, surrogate_param=param, backward="surrogate")


DEFAULT_ENSEMBLE_ATTACK = functools.partial(pgd, eps=EPS, alpha=ALPHA, steps=10)


class EnsembleResult(NamedTuple):
    accuracy: Array            # [] share of examples robust under every rule
    per_rule: dict[str, Array]  # rule name -> robust accuracy under that rule alone


@takes_variables
def ensemble_robust_accuracy(model, variables, x: Array, y: Array, key: Array, *,
                             attack: AttackFn = DEFAULT_ENSEMBLE_ATTACK,
                             rules: Sequence[Rule] = DEFAULT_RULES, draws: int = 1) -> EnsembleResult:
    """Surrogate-ensemble robust accuracy (SR, Ding et al. 2024; docs/FORMULAS.md §4).

    The attack runs once per backward rule; an example counts as robust only if it survives all of
    them: ``acc = mean_b min_r c_r(b)`` with ``c_r(b)`` the share of evaluation draws under which the
    prediction at rule r's adversarial example is right (0 or 1 for a deterministic model). Hence
    ``acc <= min_r acc_r``. Every evaluation uses the model's own forward pass with fresh noise.

    Args:
      model: a ``tgo_jax.models`` module.
      variables: its variables (the whole Flax dict).
      x, y, key: as in the attacks.
      attack: ``attack(logits_fn, variables, x, y, key) -> x_adv``, e.g. ``functools.partial(pgd, steps=10)``.
      rules: (surrogate name or "bptr", shape parameter or None) pairs.
      draws: evaluation noise draws per example.
    """
    if not rules:
        raise ValueError("rules must list at least one backward rule, got an empty sequence")
    eval_fn = model_logits_fn(model)
    keys = jax.random.split(key, len(rules))
    per_example = {rule_name(rule): robust_correct(attack, rule_logits_fn(model, rule), variables, x, y, k,
                                                   draws=draws, eval_logits_fn=eval_fn)
                   for rule, k in zip(rules, keys)}
    robust = jnp.min(jnp.stack(list(per_example.values())), axis=0)
    return EnsembleResult(robust.mean(), {name: c.mean() for name, c in per_example.items()})


# --------------------------------------------------------------------------------------------------
# Spiking layers with an attack-chosen backward: per-neuron, per-step surrogate parameters
# --------------------------------------------------------------------------------------------------

def _spike_with_param(grad_fn):
    """Θ(u) forward; backward ``grad_fn(u, p)`` with a per-element parameter p, a pytree (no gradient to p)."""

    @jax.custom_vjp
    def spike(u, p):
        return surrogate.heaviside(u)

    def fwd(u, p):
        return surrogate.heaviside(u), (u, p)

    def bwd(res, g):
        u, p = res
        return (g * grad_fn(u, p)).astype(u.dtype), jax.tree.map(jnp.zeros_like, p)

    spike.defvjp(fwd, bwd)
    return spike


def _fixed(u, p):
    """The default ``adapt``: the step's parameter as it is, for the backward and for the output."""
    del u
    return p, p


def spiking_layer_with_surrogate(config, currents_tb: Array, key, param_tb, grad_fn, adapt=_fixed):
    """A LIF / Noisy-LIF layer (``neurons.lif_step`` / ``noisy_lif_step`` scanned over T) whose surrogate
    is ``grad_fn(u, q)`` at the surrogate's argument u (H - θ, or H + ξ - θ for Noisy-LIF).

    ``param_tb`` is a pytree of [T, ...] arrays (per neuron where [T, B, ...]); at step t,
    ``adapt(u, p[t]) -> (q, out)`` (u without gradient) gives the backward's parameter q and the step's
    output ``out``; the default uses p[t] for both. ASSG folds the current |u| into its moments this way
    (``assg_adapt``). The forward equals ``neurons.run``'s (same steps, the same noise ξ[t] of ``key``);
    autodiff of the scan gives BPTT. Returns ``(spikes_tb, h_tb, out_tb)``; a step that never calls the
    spike function (Noisy-LIF in expected mode) outputs p[t].
    """
    spike = _spike_with_param(grad_fn)
    common = dict(decay=config.decay, threshold=config.threshold, reset=config.reset,
                  detach_reset=config.detach_reset)

    def step(v, inputs):
        current, t, p = inputs
        outs = []  # the step's output, set when the spike function is traced (once per step)

        def fn(u):
            q, out = adapt(lax.stop_gradient(u), p)
            outs.append(out)
            return spike(u, q)

        if config.kind == "lif":
            v, (s, h) = neurons.lif_step(v, current, spike_fn=fn, **common)
        else:
            v, (s, h) = neurons.noisy_lif_step(v, current, key, sigma=config.sigma,
                                               sigma_is_variance=config.sigma_is_variance, expected=config.expected,
                                               spike_fn=fn, t=t, **common)
        return v, (s, h, outs[0] if outs else p)

    v0 = jnp.zeros(currents_tb.shape[1:], currents_tb.dtype)
    _, (spikes_tb, h_tb, out_tb) = lax.scan(step, v0, (currents_tb, lif.time_steps(currents_tb.shape[0]), param_tb))
    return spikes_tb, h_tb, out_tb


def apply_with_surrogate(model, variables, x: Array, key, params_per_layer, grad_fn, adapt=_fixed):
    """Logits [B, K] of ``model`` at x with every spiking layer's backward replaced by ``grad_fn(u, q)``,
    layer l (in forward order) using ``params_per_layer[l]`` (a pytree of [T, ...] arrays, broadcast against
    [T, B, ...]) through ``adapt`` (see ``spiking_layer_with_surrogate``).

    The layers are swapped at call time with ``flax.linen.intercept_methods`` (the model code is
    unchanged). Also returns the tuple of each layer's per-step outputs of ``adapt``.
    """
    collected = []

    def intercept(next_fun, args, kwargs, context):
        module = context.module
        if not (isinstance(module, layers.Spiking) and context.method_name == "__call__"):
            return next_fun(*args, **kwargs)
        (inp,) = args
        x_tb = inp.reshape((module.num_steps, -1) + inp.shape[1:])
        k = module.make_rng("noise") if module.neuron.stochastic else None
        spikes_tb, h_tb, out_tb = spiking_layer_with_surrogate(module.neuron, x_tb, k,
                                                               params_per_layer[len(collected)], grad_fn, adapt)
        collected.append(out_tb)
        return spikes_tb.reshape(inp.shape), h_tb

    rngs = None if key is None else {"noise": key}
    with nn.intercept_methods(intercept):
        logits_tb = model.apply(variables, x, train=False, rngs=rngs)
    return mean_over_time(logits_tb), tuple(collected)


def layer_shapes(model, variables, x: Array) -> tuple:
    """Shapes of every spiking layer's H [T, B, ...] in forward order (no computation)."""
    key = jax.random.key(0)
    out = jax.eval_shape(lambda: model.apply(variables, x, train=False, rngs={"noise": key}, return_h=True))
    return tuple(h.shape for h in out[1])


def straight_through_grad(u: Array, p: Array) -> Array:
    """Straight-through estimator: dS/du = 1 everywhere (docs/FORMULAS.md §8)."""
    del p
    return jnp.ones_like(u)


class StraightThroughLogits(ModelLogits):
    """Logit function whose attack gradient uses the straight-through estimator in every spiking layer."""

    def __call__(self, variables, x, key):
        per_layer = [jnp.zeros((s[0],), x.dtype) for s in layer_shapes(self.model, variables, x)]
        return apply_with_surrogate(self.model, variables, x, key, per_layer, straight_through_grad)[0]


# --------------------------------------------------------------------------------------------------
# Surrogate sweep (Özdenizci & Legenstein, TMLR 2024)
# --------------------------------------------------------------------------------------------------

WIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)
SWEEP_RULES: tuple[Rule, ...] = (tuple(("triangle", w) for w in WIDTHS) + tuple(("rectangle", w) for w in WIDTHS)
                                 + (("exponential", None), ("sigmoid", None), ("straight_through", None),
                                    ("bptr", None)))


def sweep_logits_fn(model, rule: Rule):
    """``rule_logits_fn`` plus the straight-through estimator ("straight_through")."""
    if rule[0] == "straight_through":
        return StraightThroughLogits(model)
    return rule_logits_fn(model, rule)


@takes_variables
def surrogate_sweep(logits_fn, variables, x: Array, y: Array, key: Array, *, eps=EPS, alpha=ALPHA, steps: int = 10,
                    eot: int = 1, rules: Sequence[Rule] = SWEEP_RULES, attack: str = "pgd") -> Array:
    """Surrogate sweep (after Özdenizci & Legenstein, TMLR 2024, arXiv 2311.09266; docs/FORMULAS.md §8): the attack under
    every backward rule of ``rules``; per example a point that fools the model's own forward pass if
    any rule found one, else the one with the highest margin.

    Args:
      logits_fn: a ``model_logits_fn`` logit function (its model is attacked under each rule).
      variables, x, y, key, eps, alpha, steps, eot: as in ``pgd``.
      rules: (surrogate name, shape parameter) pairs, "bptr" or "straight_through"; default: triangle and
        rectangle of widths 0.25 … 4, exponential, sigmoid, straight-through, BPTR.
      attack: "pgd" (PGD-k with step α) or "apgd" (APGD-CE, k steps).

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    model = model_of(logits_fn, "surrogate_sweep") and logits_fn.base_model
    if not rules:
        raise ValueError("rules must list at least one backward rule, got an empty sequence")
    validation.choice("attack", attack, ("pgd", "apgd"))
    check_batch(x, y, logits_fn, variables)
    check_options(eps=eps, alpha=alpha, steps=steps, eot=eot)
    variables, x, y = prepare(variables, x, y)
    own = model_logits_fn(logits_fn.base_model)
    best = None
    for i, rule in enumerate(rules):
        k_attack, k_eval = jax.random.split(jax.random.fold_in(key, i))
        fn = sweep_logits_fn(model, rule)
        if attack == "pgd":
            x_adv = pgd(fn, variables, x, y, k_attack, eps=eps, alpha=alpha, steps=steps, eot=eot)
        else:
            x_adv = apgd(fn, variables, x, y, k_attack, eps=eps, steps=steps, eot=eot)
        new = score(margin_loss, own, variables, x_adv, y, k_eval, eot)
        best = new if best is None else keep_worst(best, new)
    return best.x


# --------------------------------------------------------------------------------------------------
# ASSG + SA-PGD (Wang et al., CVPR 2026, arXiv 2512.22522)
# --------------------------------------------------------------------------------------------------

# The reference's constants (Wang et al., CVPR 2026; their code repository "Towards-Reliable-Evaluation-of-
# Adversarial-Robustness-for-Spiking-Neural-Networks": my_node.py ASSGrad, attack.py ASSG_SAPGD, evaluate.py).
ASSG_A = 0.425                      # a: the bound on the expected gradient-vanishing degree, halved (A/2)
ASSG_A_BOUNDS = (0.0, 0.5)          # ω = 2·tan(π·a)/π is finite and > 0 only for a in (0, 0.5)
ASSG_SEARCH_RANGE = (0.35, 0.49)    # the reference's ternary search interval for a
ASSG_SEARCH_ROUNDS = 8              # its rounds; two probes each (16 runs)
ASSG_RELAX, ASSG_BETA1, ASSG_BETA2 = 1.5, 0.9, 0.9
ASSG_FLOOR = 1e-4                   # added to M + relax·D in α's denominator
SA_MOMENTUM, SA_SECOND = 0.5, 0.8   # SA-PGD's decay of the normalised first and second moments


def check_a(a, name: str = "a"):
    """``a`` in (0, 0.5) (checked when concrete; a traced value passes)."""
    return validation.in_open_range(name, a, *ASSG_A_BOUNDS)


def assg_scale(a=ASSG_A):
    """ω = 2·tan(π·a)/π (docs/FORMULAS.md §8): the atan sharpness times E|u| that bounds the expected
    gradient-vanishing degree by A = 2a (the reference's ``ASSGrad``). A traced ``a`` gives a traced ω."""
    check_a(a)
    tan = jnp.tan if isinstance(a, jax.core.Tracer) else math.tan
    return 2.0 * tan(math.pi * a) / math.pi


class AssgStats(NamedTuple):
    """Running moments of |u| per layer, per time step, per example and neuron ([T, B, ...] each); u is the
    surrogate's argument (H - θ, or H + ξ - θ for Noisy-LIF)."""

    m: tuple  # first moment M: EMA of |u|
    d: tuple  # dispersion D: EMA of ||u| - M|


def assg_init(model, variables, x: Array) -> AssgStats:
    """M = 1, D = 0 (the reference's start)."""
    shapes = layer_shapes(model, variables, x)
    return AssgStats(tuple(jnp.ones(s, x.dtype) for s in shapes), tuple(jnp.zeros(s, x.dtype) for s in shapes))


def assg_moments(m: Array, d: Array, u: Array, beta1=ASSG_BETA1, beta2=ASSG_BETA2) -> tuple[Array, Array]:
    """``M ← β1·M + (1-β1)|u|``, ``D ← β2·D + (1-β2)·||u| - M||`` with the new M (docs/FORMULAS.md §8)."""
    u = jnp.abs(lax.stop_gradient(u))
    m = beta1 * m + (1 - beta1) * u
    return m, beta2 * d + (1 - beta2) * jnp.abs(u - m)


def assg_update(stats: AssgStats, us: tuple, beta1=ASSG_BETA1, beta2=ASSG_BETA2) -> AssgStats:
    """``assg_moments`` per layer, ``us`` the layers' surrogate arguments u [T, B, ...]."""
    new = [assg_moments(m, d, u, beta1, beta2) for m, d, u in zip(stats.m, stats.d, us)]
    return AssgStats(tuple(m for m, _ in new), tuple(d for _, d in new))


def _alpha(m: Array, d: Array, omega, relax) -> Array:
    """α = ω / (M + relax·D + 1e-4) (docs/FORMULAS.md §8)."""
    return omega / (m + relax * d + ASSG_FLOOR)


def assg_sharpness(stats: AssgStats, a=ASSG_A, relax: float = ASSG_RELAX) -> tuple:
    """Per layer α = ω / (M + relax·D + 1e-4), ω = ``assg_scale(a)``: the atan sharpness per neuron and step."""
    omega = assg_scale(a)
    return tuple(_alpha(m, d, omega, relax) for m, d in zip(stats.m, stats.d))


def assg_adapt(omega, relax: float = ASSG_RELAX, update: bool = True):
    """The ``adapt`` of ``spiking_layer_with_surrogate`` for ASSG: from a step's moments (M, D) and the
    surrogate's argument u, the moments with the current |u| folded in (``update``; as the reference's
    ``ASSGrad.forward``, which updates before the backward) and the α of those moments."""

    def adapt(u, p):
        m, d = assg_moments(*p, u) if update else p
        return _alpha(m, d, omega, relax), (m, d)

    return adapt


def _atan_sharpness_grad(u, alpha):
    return surrogate.atan_grad(u, alpha)


class _SaState(NamedTuple):
    x_adv: Array
    m: Array        # normalised first moment of the gradient
    v: Array        # normalised second moment
    grad: Array
    step: Array     # [B] step size
    x_best: Array
    loss_best: Array
    x_fooled: Array
    fooled: Array
    stats: Any      # AssgStats or ()


@takes_variables
def sa_pgd(logits_fn, variables, x: Array, y: Array, key: Array, *, eps=EPS, steps: int = 100, eot: int = 1,
           loss: str = "ce", adaptive: bool = True, a=ASSG_A, relax: float = ASSG_RELAX) -> Array:
    """SA-PGD with the ASSG surrogate (Wang et al., CVPR 2026, arXiv 2512.22522; docs/FORMULAS.md §8).

    Gradient: with ``adaptive`` every spiking layer's backward is the atan surrogate with a sharpness
    α per neuron, time step and example, ``α = ω/(M + 1.5·D + 1e-4)``, ω = 2·tan(π·a)/π, from running
    moments of |u| over the attack's forward passes, the current pass's |u| folded in before its backward
    (``assg_adapt``); else the logit function's own backward. Step (from the random APGD start, η = ε):
    with ĝ = g/mean|g| and per example means, ``m ← 0.5·m + ĝ``, ``v ← 0.8·v + g²/mean(g²)``,
    ``x ← Π_ε(x + clip(η·m/√v, -η, η))``; η is halved at APGD's checkpoints (unconditionally). Each
    example returns a fooled point (EoT-mean margin > 0, ``core.fooled``) if met, else its highest-loss point.

    Args:
      logits_fn: a ``model_logits_fn`` logit function (needed for ``adaptive``).
      variables, x, y, key, eps, eot: as in ``fgsm``.
      steps: iterations >= 1 (100 in the reference).
      loss: "ce" or "dlr".
      adaptive: ASSG (True) or the logit function's fixed backward (False).
      a: in (0, 0.5), half the bound A on the expected gradient-vanishing degree (the reference's 0.425;
        ``assg_search`` searches it); may be traced. relax: the D weight (1.5).

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    check_batch(x, y, logits_fn, variables)
    check_options(eps=eps, steps=steps, eot=eot)
    validation.choice("loss", loss, ("ce", "dlr"))
    omega = assg_scale(a)
    validation.non_negative("relax", relax)
    model = model_of(logits_fn, "sa_pgd with ASSG") if adaptive else None
    variables, x, y = prepare(variables, x, y)
    objective = LOSSES[loss]
    k_start, k_steps = jax.random.split(key)
    is_check, _ = checkpoint_schedule(steps)

    def grads(x_adv, stats, k):
        """EoT-mean (loss, logits, grad, margin); the first draw folds its |u| into the moments, the others
        use the moments after it without updating (as the reference)."""
        if not adaptive:
            lg = loss_and_grad(objective, logits_fn, variables, x_adv, y, k, eot=eot)
            return lg.loss, lg.logits, lg.grad, lg.margin, stats

        def once(kk, moments, update):
            per_layer = tuple(zip(moments.m, moments.d))

            def total(x_):
                logits, outs = apply_with_surrogate(model, variables, x_, kk, per_layer, _atan_sharpness_grad,
                                                    assg_adapt(omega, relax, update))
                l_ = objective(logits, y)
                return l_.sum(), (l_, logits, outs)
            g, (l_, logits, outs) = jax.grad(total, has_aux=True)(x_adv)
            new = AssgStats(tuple(m for m, _ in outs), tuple(d for _, d in outs))
            return (l_, logits, g, margin_loss(logits, y)), new

        keys = jax.random.split(k, eot)
        sums, stats = once(keys[0], stats, True)
        if eot > 1:
            sums = lax.fori_loop(1, eot, lambda i, acc: jax.tree.map(jnp.add, acc, once(keys[i], stats, False)[0]),
                                 sums)
            sums = jax.tree.map(lambda a_: a_ / eot, sums)
        return (*sums, stats)

    u = jax.random.uniform(k_start, x.shape, x.dtype, -1.0, 1.0)
    x0 = project(x + eps * per_example(jnp.divide, jnp.max(jnp.abs(u).reshape(x.shape[0], -1), axis=-1), u), x, eps)
    stats = assg_init(model, variables, x) if adaptive else ()
    loss0, logits0, g0, margin0, stats = grads(x0, stats, jax.random.fold_in(k_steps, 0))
    batch = x.shape[0]
    fooled0 = fooled(margin0, logits0, y)
    zeros = jnp.zeros_like(x)
    state = _SaState(x0, zeros, zeros, g0, jnp.full((batch,), eps, x.dtype), x0, loss0, x0, fooled0, stats)

    def mean_abs(a_):
        return jnp.mean(jnp.abs(a_).reshape(a_.shape[0], -1), axis=-1)

    def step(i, s: _SaState) -> _SaState:
        g = s.grad
        first = (i == 0).astype(x.dtype)
        g_hat = per_example(jnp.divide, mean_abs(g) + 1e-12, g)
        g2 = per_example(jnp.divide, mean_abs(g * g) + 1e-12, g * g)
        m = (1 - first) * SA_MOMENTUM * s.m + g_hat
        v = (1 - first) * SA_SECOND * s.v + g2
        eta = per_example(jnp.multiply, s.step, jnp.ones_like(x))
        x_new = project(s.x_adv + jnp.clip(m / (jnp.sqrt(v) + 1e-12) * eta, -eta, eta), x, eps)
        l_, logits, g_new, margin, stats = grads(x_new, s.stats, jax.random.fold_in(k_steps, i + 1))
        wrong = fooled(margin, logits, y)
        better = l_ > s.loss_best
        return _SaState(x_new, m, v, g_new, jnp.where(is_check[i], s.step / 2, s.step),
                        where(better, x_new, s.x_best), jnp.where(better, l_, s.loss_best),
                        where(wrong, x_new, s.x_fooled), s.fooled | wrong, stats)

    final = lax.fori_loop(0, steps, step, state)
    return where(final.fooled, final.x_fooled, final.x_best)


def ternary_step(left, right, acc1, acc2):
    """One round of the reference's ternary search for a (``evaluate.py``, ``assg-sapgd``): probes
    a1 = left + (right - left)/3 and a2 = right - (right - left)/3 with robust accuracies acc1, acc2;
    ``right ← a2`` if acc1 < acc2, else ``left ← a1``. Returns ``(left, right)`` (traced values allowed)."""
    third = (right - left) / 3
    lower = acc1 < acc2
    return jnp.where(lower, left, left + third), jnp.where(lower, right - third, right)


@takes_variables
def assg_search(logits_fn, variables, x: Array, y: Array, key: Array, *, eps=EPS, steps: int = 100, eot: int = 1,
                loss: str = "ce", rounds: int = ASSG_SEARCH_ROUNDS, a_range=ASSG_SEARCH_RANGE, a=ASSG_A,
                relax: float = ASSG_RELAX) -> Array:
    """ASSG + SA-PGD with the reference's search over a (docs/FORMULAS.md §8), per example the strongest
    point of all probes.

    Probe 0 is ``sa_pgd`` at ``a`` (0.425) with key ``split(fold_in(key, 0))[0]``; then ``rounds`` rounds of
    the reference's ternary search over ``a_range`` ([0.35, 0.49]), two probes each (``ternary_step``; the
    interval moves by the batch's robust accuracy at the two probes), probe j with key
    ``split(fold_in(key, j))[0]``: 1 + 2·rounds runs of ``steps`` iterations (17 of 100 by default). Each
    probe's point is judged on the model's own forward (margin, EoT-mean logits, key
    ``split(fold_in(key, j))[1]``); per example a misclassified point if any probe found one, else the
    highest-margin one. This is at least as strong as the reference's choice (the whole set at the probe
    of lowest robust accuracy) and per example at least as strong as probe 0 alone.

    Args:
      logits_fn, variables, x, y, key, eps, steps, eot, loss, relax: as in ``sa_pgd``.
      rounds: ternary rounds >= 1 (8 in the reference).
      a_range: (lo, hi) with 0 < lo < hi < 0.5.
      a: probe 0's a, in (0, 0.5).

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    model_of(logits_fn, "assg_search")
    check_batch(x, y, logits_fn, variables)
    check_options(eps=eps, steps=steps, eot=eot)
    rounds = validation.count("rounds", rounds)
    lo, hi = a_range
    check_a(lo, "a_range[0]")
    check_a(hi, "a_range[1]")
    if not lo < hi:
        raise ValueError(f"a_range must be (lo, hi) with lo < hi, got {a_range!r}")
    check_a(a)
    variables, x, y = prepare(variables, x, y)
    own = model_logits_fn(logits_fn.base_model)

    def probe(j, a_j):
        k_attack, k_eval = jax.random.split(jax.random.fold_in(key, j))
        x_adv = sa_pgd(logits_fn, variables, x, y, k_attack, eps=eps, steps=steps, eot=eot, loss=loss, a=a_j,
                       relax=relax)
        return score(margin_loss, own, variables, x_adv, y, k_eval, eot)

    def body(j, carry):
        left, right, acc1, best = carry
        r = j - 1                       # probe index inside the search
        second = (r % 2) == 1
        third = (right - left) / 3
        a_j = jnp.where(j == 0, a, jnp.where(second, right - third, left + third))
        new = probe(j, a_j)
        acc = jnp.mean(1.0 - new.fooled.astype(jnp.float32))
        moved = ternary_step(left, right, acc1, acc)
        update = (j > 0) & second
        left, right = jnp.where(update, moved[0], left), jnp.where(update, moved[1], right)
        return left, right, jnp.where(second, acc1, acc), keep_worst(best, new)

    batch = x.shape[0]
    start = Worst(x, jnp.zeros((batch,), bool), jnp.full((batch,), -jnp.inf, jnp.float32))
    carry = (jnp.float32(lo), jnp.float32(hi), jnp.float32(0.0), start)
    return lax.fori_loop(0, 1 + 2 * rounds, body, carry)[3].x
