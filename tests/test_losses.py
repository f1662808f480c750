"""Tests for tgo_jax.losses (terms against hand-computed values, per example; schedules; compose) and the RAT
projections of tgo_jax.projections."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

from tgo_jax import losses, metrics, models, projections
from tests.conftest import tiny_model

# Two "layers" of hand-picked potentials H [T=2, B=1, N]; θ = 1, δ = 0.5.
#   layer 0: H = 1.2, 0.1 | 0.7, 1.0  -> |H-θ| = 0.2, 0.9, 0.3, 0.0 -> gaps 0.3, 0, 0.2, 0.5
#   layer 1: H = 1.4      | 2.0       -> |H-θ| = 0.4, 1.0           -> gaps 0.1, 0
H0 = np.array([[[1.2, 0.1]], [[0.7, 1.0]]], np.float32)
H1 = np.array([[[1.4]], [[2.0]]], np.float32)
MARGIN_P2 = (0.09 + 0.0 + 0.04 + 0.25) / 4 + (0.01 + 0.0) / 2  # = 0.1
MARGIN_P1 = (0.3 + 0.0 + 0.2 + 0.5) / 4 + (0.1 + 0.0) / 2  # = 0.3
SHARE_L0, SHARE_L1, SHARE_ALL = 3 / 4, 1 / 2, 4 / 6

# Per-step logits [T=2, B=2, K=3] and labels.
LOGITS = np.array([[[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]],
                   [[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]]], np.float32)
LABELS = np.array([1, 2], np.int32)


def np_ce(logits, labels):
    """Per-example cross-entropy -log softmax(z)_y, in float64 numpy."""
    z = np.asarray(logits, np.float64)
    log_z = np.log(np.exp(z).sum(-1))
    return log_z - np.take_along_axis(z, labels[..., None], -1)[..., 0]


def make_outputs(logits=LOGITS, hs=(H0, H1)):
    return losses.Outputs(jnp.asarray(logits), tuple(jnp.asarray(h) for h in hs))


def make_batch(labels=LABELS):
    return {"image": jnp.zeros((labels.shape[0], 4, 4, 1)), "label": jnp.asarray(labels)}


def orthogonal(n, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return q.astype(np.float32)


def parseval_error(kernel):
    w = np.asarray(kernel, np.float64).reshape(-1, kernel.shape[-1]).T
    return np.sum((w @ w.T - np.eye(w.shape[0])) ** 2)


class SchedulesTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters((0, 0.0), (25, 0.3), (50, 0.6), (80, 0.6), (10, 0.6 * (1 - math.cos(math.pi * 0.2)) / 2))
    def test_cosine_ramp(self, step, expected):
        schedule = self.variant(losses.cosine_ramp(0.6, 50))
        np.testing.assert_allclose(schedule(jnp.int32(step)), expected, rtol=1e-6, atol=1e-7)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters((0, 0.0), (20, 0.2), (40, 0.4), (100, 0.4), (10, 0.1))
    def test_linear_ramp(self, step, expected):
        schedule = self.variant(losses.linear_ramp(0.4, 40))
        np.testing.assert_allclose(schedule(jnp.int32(step)), expected, rtol=1e-6, atol=1e-7)

    @chex.variants(with_jit=True, without_jit=True)
    def test_constant(self):
        schedule = self.variant(losses.constant(0.25))
        for step in (0, 7, 10**6):
            np.testing.assert_allclose(schedule(jnp.int32(step)), 0.25)

    def test_schedule_by_name(self):
        for name, ref in (("cosine", losses.cosine_ramp(0.6, 10)), ("linear", losses.linear_ramp(0.6, 10)),
                          ("constant", losses.constant(0.6))):
            np.testing.assert_allclose(losses.schedule_by_name(name, 0.6, 10)(3), ref(3))
        with pytest.raises(ValueError, match="schedule"):
            losses.schedule_by_name("step", 0.6, 10)

    @parameterized.parameters(0, -5, 2.5, True)
    def test_bad_total_steps(self, total_steps):
        for factory in (losses.cosine_ramp, losses.linear_ramp):
            with pytest.raises(ValueError, match="total_steps"):
                factory(0.6, total_steps)

    def test_negative_values(self):
        with pytest.raises(ValueError, match="value_max"):
            losses.cosine_ramp(-0.1, 10)
        with pytest.raises(ValueError, match="value_max"):
            losses.linear_ramp(-0.1, 10)
        with pytest.raises(ValueError, match="value"):
            losses.constant(-1.0)


class TaskTermsTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_ce_per_step(self):
        value = self.variant(losses.ce(per_step=True))(make_outputs(), make_batch(), {}, jnp.int32(0))
        per_example = np_ce(LOGITS, np.broadcast_to(LABELS, (2, 2))).mean(0)
        np.testing.assert_allclose(value, per_example, rtol=1e-5)
        np.testing.assert_allclose(value.mean(), per_example.mean(), rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_ce_of_mean_logits(self):
        value = self.variant(losses.ce(per_step=False))(make_outputs(), make_batch(), {}, jnp.int32(0))
        per_example = np_ce(LOGITS.mean(0), LABELS)
        np.testing.assert_allclose(value, per_example, rtol=1e-5)
        np.testing.assert_allclose(value.mean(), per_example.mean(), rtol=1e-5)
        per_step = losses.ce(per_step=True)(make_outputs(), make_batch(), {}, 0)
        assert not np.isclose(value.mean(), per_step.mean())  # the two options are different losses on this input

    @chex.variants(with_jit=True, without_jit=True)
    def test_tet(self):
        lam, phi = 0.2, 1.0
        value = self.variant(losses.tet(lam, phi))(make_outputs(), make_batch(), {}, jnp.int32(0))
        ce_part = np_ce(LOGITS, np.broadcast_to(LABELS, (2, 2))).mean(0)
        mse_part = np.mean((LOGITS.astype(np.float64) - phi) ** 2, axis=(0, 2))
        np.testing.assert_allclose(value, (1 - lam) * ce_part + lam * mse_part, rtol=1e-5)
        np.testing.assert_allclose(value.mean(), (1 - lam) * ce_part.mean() + lam * mse_part.mean(), rtol=1e-5)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="lam"):
            losses.tet(lam=1.5)
        with pytest.raises(ValueError, match="label"):
            losses.ce()(make_outputs(), make_batch(np.array([1, 2, 0], np.int32)), {}, 0)
        with pytest.raises(ValueError, match="label"):
            losses.ce()(make_outputs(), {"label": jnp.array([1.0, 2.0])}, {}, 0)
        with pytest.raises(ValueError, match="logits_tb"):
            losses.ce()(losses.Outputs(jnp.asarray(LOGITS[0]), ()), make_batch(), {}, 0)


class MarginTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters((2, MARGIN_P2), (1, MARGIN_P1))
    def test_margin_hand_value(self, p, expected):
        value = self.variant(losses.margin(delta=0.5, p=p))(make_outputs(), make_batch(), {}, jnp.int32(3))
        np.testing.assert_allclose(value, expected, rtol=1e-5)

    def test_margin_averages_over_batch(self):
        # Doubling the batch with a far-from-threshold copy halves every layer's mean cost.
        far = [np.full_like(h, 5.0) for h in (H0, H1)]
        hs = tuple(np.concatenate([h, f], axis=1) for h, f in zip((H0, H1), far))
        value = losses.margin()(make_outputs(hs=hs), make_batch(), {}, 0)
        np.testing.assert_allclose(value, [MARGIN_P2, 0.0], rtol=1e-5, atol=1e-8)  # per example
        np.testing.assert_allclose(value.mean(), MARGIN_P2 / 2, rtol=1e-5)
        np.testing.assert_allclose(losses.margin_penalty(hs), MARGIN_P2 / 2, rtol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_threshold_neighbour_share(self):
        share = self.variant(metrics.threshold_neighbour_share)((jnp.asarray(H0), jnp.asarray(H1)))
        np.testing.assert_allclose(share.overall, SHARE_ALL, rtol=1e-6)
        np.testing.assert_allclose(share.per_layer, (SHARE_L0, SHARE_L1), rtol=1e-6)

    def test_margin_gradient_pushes_potentials_away(self):
        h = jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 32), minval=0.6, maxval=1.4)
        grad = jax.grad(lambda hs: losses.margin_penalty(hs, delta=0.5, p=2))((h,))[0]
        moved = h - h.size * 0.5 * grad  # mean over entries: undo the 1/size scale
        before = losses.threshold_neighbour_share((h,)).overall
        after = losses.threshold_neighbour_share((moved,)).overall
        assert after < before
        assert jnp.all(jnp.abs(moved - 1.0) >= jnp.abs(h - 1.0))  # every potential moved away from θ
        assert losses.margin_penalty((moved,)) < losses.margin_penalty((h,))

    @parameterized.parameters(dict(p=3), dict(p=0), dict(delta=0.0), dict(delta=-0.5), dict(threshold=0.0))
    def test_bad_arguments(self, **kwargs):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            losses.margin(**kwargs)

    @parameterized.parameters(3, 0, True)
    def test_bad_exponent_of_the_penalty_functions(self, p):
        # p = 3 used to compute p = 2 without a word.
        for fn in (losses.layer_margin_penalty, losses.layer_margin_cost):
            with pytest.raises(ValueError, match="p must be one of"):
                fn(jnp.asarray(H0), p=p)
        with pytest.raises(ValueError, match="p must be one of"):
            losses.margin_penalty((H0, H1), p=p)

    def test_needs_potentials(self):
        with pytest.raises(ValueError, match="return_h"):
            losses.margin()(make_outputs(hs=()), make_batch(), {}, 0)
        with pytest.raises(ValueError, match="delta"):
            losses.threshold_neighbour_share((H0,), delta=0.0)


def toy_params(dense_kernel, conv_kernel=None):
    """A flax-like params tree: kernels plus leaves the Lipschitz term must skip."""
    params = {"Dense_0": {"kernel": jnp.asarray(dense_kernel), "bias": jnp.full((dense_kernel.shape[-1],), 7.0)},
              "BatchNorm_0": {"scale": jnp.full((3,), 5.0), "bias": jnp.ones((3,))},
              "PreActBlock_0": {"merge": jnp.array([3.0, -2.0])}}
    if conv_kernel is not None:
        params["Conv_0"] = {"kernel": jnp.asarray(conv_kernel), "bias": jnp.ones((conv_kernel.shape[-1],))}
    return params


def orthogonal_conv_kernel():
    """A [3, 3, 2, 4] kernel whose [out=4, in·k·k=18] matrix has orthonormal rows."""
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(18, 4)))  # orthonormal columns [18, 4]
    return q.reshape(3, 3, 2, 4).astype(np.float32)


class LipschitzTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_zero_for_orthogonal(self):
        params = toy_params(orthogonal(5), orthogonal_conv_kernel())
        value = self.variant(losses.lipschitz(2e-3))(make_outputs(), make_batch(), params, jnp.int32(0))
        np.testing.assert_allclose(value, 0.0, atol=1e-8)

    @chex.variants(with_jit=True, without_jit=True)
    def test_hand_values(self):
        beta = 0.4
        term = self.variant(lambda p: losses.lipschitz_penalty(p, beta))
        # Dense kernel [in, out] = diag(2, 1): W Wᵀ − I = diag(3, 0) -> 9.
        np.testing.assert_allclose(term(toy_params(np.diag([2.0, 1.0]).astype(np.float32))), beta / 4 * 9, rtol=1e-6)
        # Dense kernel [in=1, out=2] = [[1, 0]]: W = [[1], [0]], W Wᵀ − I = diag(0, −1) -> 1.
        np.testing.assert_allclose(term(toy_params(np.array([[1.0, 0.0]], np.float32))), beta / 4, rtol=1e-6)

    def test_positive_and_matches_numpy(self):
        rng = np.random.default_rng(2)
        dense = rng.normal(size=(6, 4)).astype(np.float32)
        conv = rng.normal(size=(3, 3, 2, 5)).astype(np.float32)
        value = losses.lipschitz_penalty(toy_params(dense, conv), 2e-3)
        expected = 2e-3 / 4 * (parseval_error(dense) + parseval_error(conv))
        assert value > 0
        np.testing.assert_allclose(value, expected, rtol=1e-4)

    def test_gradient_step_is_the_retraction(self):
        beta = 0.05
        params = toy_params(orthogonal(4) + 0.1, orthogonal_conv_kernel() * 1.1)
        grads = jax.grad(lambda p: losses.lipschitz_penalty(p, beta))(params)
        stepped = jax.tree_util.tree_map(lambda p, g: p - g, params, grads)
        chex.assert_trees_all_close(stepped, projections.apply_retraction(params, beta), rtol=1e-5, atol=1e-6)

    def test_negative_beta(self):
        with pytest.raises(ValueError, match="beta"):
            losses.lipschitz(-1e-3)
        with pytest.raises(ValueError, match="beta"):
            projections.parseval_retraction(-1e-3)


class RetractionTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_moves_towards_orthogonal(self):
        noise = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)
        conv = orthogonal_conv_kernel()
        params = toy_params(orthogonal(4) + 0.05 * noise, conv * 1.05)
        for beta in (2e-3, 0.1):
            new = self.variant(lambda p: projections.apply_retraction(p, beta))(params)
            for name in ("Dense_0", "Conv_0"):
                assert parseval_error(new[name]["kernel"]) < parseval_error(params[name]["kernel"])
            for name, leaf in (("Dense_0", "bias"), ("BatchNorm_0", "scale"), ("PreActBlock_0", "merge")):
                np.testing.assert_array_equal(new[name][leaf], params[name][leaf])

    def test_fixed_point_at_orthogonal(self):
        params = toy_params(orthogonal(5), orthogonal_conv_kernel())
        chex.assert_trees_all_close(projections.apply_retraction(params, 0.1), params, atol=1e-6)

    def test_optax_wrapper(self):
        params = toy_params(orthogonal(4) + 0.1, orthogonal_conv_kernel())
        grads = jax.tree_util.tree_map(jnp.ones_like, params)
        sgd = optax.sgd(0.01)
        opt = optax.chain(sgd, projections.parseval_retraction(0.1), projections.merge_simplex_projection())
        updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
        plain, _ = sgd.update(grads, sgd.init(params), params)
        expected = projections.project_merge_simplex(projections.apply_retraction(optax.apply_updates(params, plain), 0.1))
        chex.assert_trees_all_close(optax.apply_updates(params, updates), expected, rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="params"):
            opt.update(grads, opt.init(params))


class SimplexTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(
        ([0.5, 0.5], [0.5, 0.5]), ([0.7, 0.5], [0.6, 0.4]), ([2.0, -1.0], [1.0, 0.0]),
        ([-0.3, 0.1], [0.3, 0.7]), ([0.0, 0.0], [0.5, 0.5]), ([-4.0, 3.0], [0.0, 1.0]),
        ([1.0, 1.0, -1.0], [0.5, 0.5, 0.0]))
    def test_projection_cases(self, c, expected):
        np.testing.assert_allclose(self.variant(projections.project_simplex)(jnp.array(c)), expected, atol=1e-6)

    def test_merge_params_only(self):
        params = toy_params(np.eye(2, dtype=np.float32))
        params["PreActBlock_1"] = {"merge": jnp.array([0.7, 0.5]), "Conv_0": {"kernel": jnp.ones((1, 1, 2, 2))}}
        new = projections.project_merge_simplex(params)
        np.testing.assert_allclose(new["PreActBlock_0"]["merge"], [1.0, 0.0])
        np.testing.assert_allclose(new["PreActBlock_1"]["merge"], [0.6, 0.4], atol=1e-6)
        for path in (("Dense_0", "kernel"), ("BatchNorm_0", "scale"), ("PreActBlock_1", "Conv_0")):
            chex.assert_trees_all_equal(new[path[0]][path[1]], params[path[0]][path[1]])

    def test_wrn_merge_params_found(self):
        model = models.create("wrn16_4", widths=(4, 8, 8), blocks_per_group=1, stem=4, num_steps=1)
        shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))["params"]
        params = jax.tree_util.tree_map(lambda s: jnp.full(s.shape, 0.8, s.dtype), shapes)
        projected = projections.project_merge_simplex(params)
        merges = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(projected)[0]
                  if projections.is_merge_param(path, leaf)]
        assert len(merges) == 3
        for c in merges:
            np.testing.assert_allclose(c, [0.5, 0.5], atol=1e-6)


def linear_logits_fn(params, x, key):
    del key
    return x.reshape(x.shape[0], -1) @ params["a"]


def np_pair_prob(x, a, y, j):
    z = x @ a
    return 1.0 / (1.0 + np.exp(-(z[np.arange(len(y)), y] - z[np.arange(len(y)), j])))


class SRTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_hand_value_linear_model(self):
        rng = np.random.default_rng(4)
        x = rng.uniform(size=(3, 2, 2, 1)).astype(np.float32)
        a = rng.normal(size=(4, 3)).astype(np.float32)
        y = np.array([0, 2, 1], np.int32)
        h = 0.01
        # By hand: j = top wrong class; ∇_x p = p(1−p)(a[:, y] − a[:, j]); d = sign(∇_x p).
        xf = x.reshape(3, -1).astype(np.float64)
        z = xf @ a
        z_masked = np.where(np.eye(3, dtype=bool)[y], -np.inf, z)
        j = z_masked.argmax(-1)
        p = np_pair_prob(xf, a, y, j)
        d = np.sign((p * (1 - p))[:, None] * (a[:, y] - a[:, j]).T)
        expected = np.mean(((np_pair_prob(xf + h * d, a, y, j) - p) / h) ** 2)

        batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
        term = self.variant(losses.sr(linear_logits_fn, h=h))
        value = term(make_outputs(), batch, {"a": jnp.asarray(a)}, jnp.int32(0), key=jax.random.PRNGKey(0))
        assert value.shape == (3,)  # per example
        np.testing.assert_allclose(value.mean(), expected, rtol=2e-3)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="h"):
            losses.sr(linear_logits_fn, h=0.0)
        with pytest.raises(ValueError, match="logits_fn"):
            losses.sr(None)


class ComposeTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_weighted_sum_of_parts(self):
        params = toy_params(np.diag([2.0, 1.0]).astype(np.float32))
        outputs, batch, step = make_outputs(), make_batch(), jnp.int32(30)
        schedule = losses.cosine_ramp(0.6, 40)
        loss_fn = losses.compose(losses.tet(), (losses.margin(0.5), schedule),
                                 losses.weighted(losses.ce(per_step=False), 0.3, name="ce_mean"),
                                 losses.lipschitz(0.4))
        total, metrics = self.variant(loss_fn)(outputs, batch, params, step)
        parts = {"tet": (losses.tet()(outputs, batch, params, step).mean(), 1.0),
                 "margin": (MARGIN_P2, schedule(step)),
                 "ce_mean": (losses.ce(per_step=False)(outputs, batch, params, step).mean(), 0.3),
                 "lipschitz": (0.4 / 4 * 9, 1.0)}
        assert set(metrics) == set(parts) | {name + "_weight" for name in parts}
        for name, (value, weight) in parts.items():
            np.testing.assert_allclose(metrics[name], value, rtol=1e-5)
            np.testing.assert_allclose(metrics[name + "_weight"], weight, rtol=1e-6)
        np.testing.assert_allclose(total, sum(v * w for v, w in parts.values()), rtol=1e-5)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="weight"):
            losses.compose((losses.margin(), -0.5))
        with pytest.raises(ValueError, match="weight"):
            losses.compose((losses.margin(), "high"))
        with pytest.raises(ValueError, match="unique"):
            losses.compose(losses.ce(), losses.ce(per_step=False))
        with pytest.raises(ValueError, match="at least one"):
            losses.compose()
        with pytest.raises(ValueError, match="term"):
            losses.weighted("tet", 1.0)


class ClosedComposeTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_a_composed_loss_is_a_term(self):
        outputs, batch, step = make_outputs(), make_batch(), jnp.int32(10)
        inner = losses.compose((losses.margin(0.5, p=1), 2.0), losses.ce(per_step=False))
        outer = losses.compose(losses.tet(), (inner, losses.linear_ramp(0.4, 20), "reg"))
        total, metrics = self.variant(outer)(outputs, batch, {}, step)
        inner_total, inner_metrics = inner(outputs, batch, {}, step)
        np.testing.assert_allclose(inner_total, 2.0 * MARGIN_P1 + inner_metrics["ce"], rtol=1e-5)
        tet_value = losses.tet()(outputs, batch, {}, step).mean()
        np.testing.assert_allclose(total, tet_value + 0.2 * inner_total, rtol=1e-5)
        np.testing.assert_allclose(metrics["reg"], inner_total, rtol=1e-6)
        np.testing.assert_allclose(metrics["reg_weight"], 0.2, rtol=1e-6)
        np.testing.assert_allclose(metrics["reg/margin"], MARGIN_P1, rtol=1e-5)
        assert set(metrics) == {"tet", "tet_weight", "reg", "reg_weight", "reg/margin", "reg/margin_weight",
                                "reg/ce", "reg/ce_weight"}

    def test_extra_inputs_reach_the_terms_that_name_them(self):
        seen = {}

        def needs_key(outputs, batch, params, step, key):
            seen["key"] = key
            return jnp.zeros(outputs.logits_tb.shape[1])

        def takes_all(outputs, batch, params, step, **extra):
            seen["all"] = sorted(extra)
            return jnp.zeros(())

        def plain(outputs, batch, params, step):
            return jnp.ones(outputs.logits_tb.shape[1])

        loss_fn = losses.compose(needs_key, takes_all, plain)
        total, _ = loss_fn(make_outputs(), make_batch(), {}, 0, key=jax.random.PRNGKey(3), other=1)
        np.testing.assert_array_equal(seen["key"], jax.random.PRNGKey(3))
        assert seen["all"] == ["key", "other"] and float(total) == 1.0
        # A composed loss passes its extras on to the terms inside it.
        losses.compose((loss_fn, 1.0, "inner"))(make_outputs(), make_batch(), {}, 0, key=jax.random.PRNGKey(4))
        np.testing.assert_array_equal(seen["key"], jax.random.PRNGKey(4))

    def test_a_term_must_return_per_example_values_or_a_scalar(self):
        def wrong(outputs, batch, params, step):
            return outputs.logits_tb  # [T, B, K]

        with pytest.raises(ValueError, match="wrong.*per-example"):
            losses.compose(wrong)(make_outputs(), make_batch(), {}, 0)

    def test_names_stay_importable_from_losses(self):
        assert losses.apply_retraction is projections.apply_retraction
        assert losses.parseval_retraction is projections.parseval_retraction
        assert losses.threshold_neighbour_share is metrics.threshold_neighbour_share


class FiringRateTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    def test_hand_values(self):
        rates = (jnp.array([0.1, 0.5]), jnp.array([0.3, 0.0]))
        outputs = losses.Outputs(jnp.asarray(LOGITS), (), rates)
        value = self.variant(losses.firing_rate())(outputs, make_batch(), {}, jnp.int32(0))
        np.testing.assert_allclose(value, [(0.01 + 0.09) / 2, (0.25 + 0.0) / 2], rtol=1e-6)
        value = self.variant(losses.firing_rate(target=0.2))(outputs, make_batch(), {}, jnp.int32(0))
        np.testing.assert_allclose(value, [(0.01 + 0.01) / 2, (0.09 + 0.04) / 2], rtol=1e-5)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="target"):
            losses.firing_rate(target=1.5)
        with pytest.raises(ValueError, match="spike_rates"):
            losses.firing_rate()(make_outputs(), make_batch(), {}, 0)  # no rates in the outputs

    def test_sown_rates_are_the_spike_rates_and_the_term_lowers_them(self):
        model = models.create("small", channels=(4,), hidden=8, num_steps=2, threshold=0.3)
        x = jax.random.uniform(jax.random.PRNGKey(1), (4, 12, 12, 1))
        variables = model.init(jax.random.PRNGKey(0), x)
        loss_fn = losses.compose(losses.firing_rate())

        @jax.jit
        def rates_and_grads(params):
            def objective(p):
                (logits_tb, hs), state = model.apply(dict(variables, params=p), x, train=True, return_h=True,
                                                     mutable=["batch_stats", "intermediates"])
                rates = models.sown_spike_rates(state["intermediates"])
                total, _ = loss_fn(losses.Outputs(logits_tb, hs, rates), {}, p, 0)
                return total, (rates, hs)
            return jax.grad(objective, has_aux=True)(params)

        grads, (rates, hs) = rates_and_grads(variables["params"])
        assert len(rates) == len(hs) == 2 and all(r.shape == (4,) for r in rates)
        for r, h in zip(rates, hs):  # a spike is H >= θ (hard reset, LIF): the rate is that share per example
            axes = tuple(i for i in range(h.ndim) if i != 1)
            np.testing.assert_allclose(r, np.mean(np.asarray(h) >= 0.3, axis=axes), rtol=1e-6)
        assert float(sum(r.mean() for r in rates)) > 0
        stepped = jax.tree.map(lambda p, g: p - 5.0 * g, variables["params"], grads)
        _, (new_rates, _) = rates_and_grads(stepped)
        assert sum(float(r.mean()) for r in new_rates) < sum(float(r.mean()) for r in rates)


class ObjectiveTest(chex.TestCase):

    def test_strategies(self):
        outputs, batch, step = make_outputs(), make_batch(), jnp.int32(5)
        params = toy_params(np.diag([2.0, 1.0]).astype(np.float32))
        vanilla = losses.tgo_objective("tet")
        _, metrics = vanilla(outputs, batch, params, step)
        assert set(metrics) == {"tet", "tet_weight"}
        tgo_rat = losses.tgo_objective("rat", task="ce", margin_weight=losses.linear_ramp(0.4, 10),
                                       delta=0.5, p=1, lipschitz_beta=0.4)
        total, metrics = tgo_rat(outputs, batch, params, step)
        assert set(metrics) == {"ce", "ce_weight", "margin", "margin_weight", "lipschitz", "lipschitz_weight"}
        expected = losses.ce()(outputs, batch, params, step).mean() + 0.2 * MARGIN_P1 + 0.4 / 4 * 9
        np.testing.assert_allclose(total, expected, rtol=1e-5)
        with pytest.raises(ValueError, match="strategy"):
            losses.tgo_objective("fgsm")
        with pytest.raises(ValueError, match="task"):
            losses.tgo_objective("at", task="mse")

    def test_tiny_model_end_to_end(self):
        model = tiny_model()
        key_init, key_x = jax.random.split(jax.random.PRNGKey(0))
        x = jax.random.uniform(key_x, (8, 12, 12, 1))
        batch = {"image": x, "label": jnp.arange(8, dtype=jnp.int32) % 10}
        variables = model.init(key_init, x)
        loss_fn = losses.tgo_objective("tet", margin_weight=losses.cosine_ramp(0.6, 100), lipschitz_beta=2e-3)

        @jax.jit
        def grad_step(params, batch_stats, batch, step):
            def objective(p):
                (logits_tb, hs), _ = model.apply({"params": p, "batch_stats": batch_stats}, batch["image"],
                                                 train=True, return_h=True, mutable=["batch_stats"])
                return loss_fn(losses.Outputs(logits_tb, hs), batch, p, step)
            return jax.grad(objective, has_aux=True)(params)

        grads, metrics = grad_step(variables["params"], variables["batch_stats"], batch, jnp.int32(50))
        for name in ("tet", "margin", "lipschitz"):
            assert np.isfinite(metrics[name]) and metrics[name] > 0
        np.testing.assert_allclose(metrics["margin_weight"], 0.3, rtol=1e-6)
        assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
        assert np.abs(grads["Conv_0"]["kernel"]).sum() > 0


class SRModelTest(chex.TestCase):

    def test_sr_on_tiny_model_has_gradients(self):
        # A low threshold makes the freshly initialised net fire, so the logits depend on x.
        model = tiny_model(threshold=0.3)
        key_init, key_x = jax.random.split(jax.random.PRNGKey(0))
        x = jax.random.uniform(key_x, (8, 12, 12, 1))
        batch = {"image": x, "label": jnp.arange(8, dtype=jnp.int32) % 10}
        params = model.init(key_init, x)["params"]
        term = losses.sr(losses.training_logits_fn(model))
        key = jax.random.PRNGKey(1)
        value, grads = jax.jit(jax.value_and_grad(lambda p: term(None, batch, p, jnp.int32(0), key=key).mean()))(params)
        assert np.isfinite(value) and value > 0
        assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))
        assert np.abs(grads["Dense_1"]["kernel"]).sum() > 0

    def test_noise_key_is_an_explicit_argument(self):
        def noisy_logits_fn(params, x, key):
            return linear_logits_fn(params, x, key) + jax.random.normal(key, (x.shape[0], 3))

        rng = np.random.default_rng(5)
        params = {"a": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)}
        x = jnp.asarray(rng.uniform(size=(6, 2, 2, 1)), jnp.float32)
        y = jnp.array([0, 1, 2, 0, 1, 2], jnp.int32)
        term = losses.sr(noisy_logits_fn)
        key, other = jax.random.PRNGKey(7), jax.random.PRNGKey(8)
        with_key = term(None, {"image": x, "label": y}, params, 0, key=key)
        np.testing.assert_allclose(with_key.mean(), losses.sr_penalty(noisy_logits_fn, params, x, y, key), rtol=1e-6)
        with_other = term(None, {"image": x, "label": y}, params, 0, key=other)
        assert not np.isclose(with_key.mean(), with_other.mean())  # the key is the noise the model sees
        # No silent fallback key: a missing key is an error, also through compose.
        with pytest.raises(ValueError, match="key"):
            term(None, {"image": x, "label": y, "key": key}, params, 3)
        with pytest.raises(ValueError, match="key"):
            losses.compose(losses.sr(noisy_logits_fn))(None, {"image": x, "label": y}, params, 3)
        total, _ = losses.compose(losses.sr(noisy_logits_fn))(None, {"image": x, "label": y}, params, 3, key=key)
        np.testing.assert_allclose(total, with_key.mean(), rtol=1e-6)
