"""fastconv: the im2col convolution equals XLA's and flax's, in values and gradients, f32 and bf16."""
import itertools
import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax import lax

from tgo_jax import fastconv
from tests.conftest import tiny_model
from tgo_jax.models import layers

F32_RTOL = 1e-5  # float32 sums taken in another order: a few ulps (2^-23) of the largest term
BF16_U = 2.0**-8  # bfloat16 unit roundoff: 8 significant bits, round to nearest

# kernel, stride, (H, W), use_bias: every kernel (1, 3) × stride (1, 2) × size (odd, even and
# non-square) combination, with the bias on in half of them (each size and stride seen with and without).
CASES = [(k, s, hw, (i + j) % 2 == 0)
         for i, (k, s) in enumerate(itertools.product((1, 3), (1, 2))) for j, hw in enumerate(((7, 7), (8, 6)))]


def _normal(shape, seed):
    # numpy draws: eager jax.random would compile one small program per shape.
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _operands(hw, kernel, c_in=3, c_out=4, batch=2, seed=0):
    x = _normal((batch, *hw, c_in), seed)
    w = _normal((kernel, kernel, c_in, c_out), seed + 1) / np.sqrt(kernel * kernel * c_in)
    return jnp.asarray(x), jnp.asarray(w)


def _lax_conv(x, w, stride):
    return lax.conv_general_dilated(x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _assert_close_f32(actual, expected):
    expected = np.asarray(expected)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=F32_RTOL, atol=F32_RTOL * np.abs(expected).max())


def _vjp_loss(fn, ct):
    """A scalar whose gradient is the VJP of ``fn`` with the cotangent ``ct``."""
    return lambda *args: jnp.sum(fn(*args).astype(jnp.float32) * ct)


class PureConvTest(chex.TestCase):
    """The pure convolutions against ``lax.conv_general_dilated``, jitted and not (full grid below)."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(impl=("im2col", "xla_flip"), case=((3, 2, (7, 7)), (2, 1, (5, 6)), (4, 3, (9, 8))))
    def test_matches_lax_conv(self, impl, case):
        kernel, stride, hw = case  # also even kernels and stride 3: asymmetric 'SAME' pads
        x, w = _operands(hw, kernel)
        conv = lambda x, w: fastconv.IMPL_FNS[impl](x, w, stride=stride)
        y = self.variant(conv)(x, w)
        y_ref = _lax_conv(x, w, stride)
        self.assertEqual(y.shape, (x.shape[0], -(-hw[0] // stride), -(-hw[1] // stride), w.shape[-1]))
        _assert_close_f32(y, y_ref)

        ct = _normal(y_ref.shape, 7)
        gx_ref, gw_ref = jax.grad(_vjp_loss(lambda x, w: _lax_conv(x, w, stride), ct), argnums=(0, 1))(x, w)
        gx, gw = self.variant(jax.grad(_vjp_loss(conv, ct), argnums=(0, 1)))(x, w)
        _assert_close_f32(gx, gx_ref)
        _assert_close_f32(gw, gw_ref)

    @chex.variants(with_jit=True)
    def test_conv2d_dispatch_matches_both_impls(self):
        x, w = _operands((6, 6), 3)
        ys = self.variant(lambda x, w: [fastconv.conv2d(x, w, stride=2, impl=i) for i in fastconv.IMPLS])(x, w)
        for y in ys:
            _assert_close_f32(y, _lax_conv(x, w, 2))


@pytest.mark.parametrize("kernel,use_bias", [(3, True), (1, False)])
def test_module_initialises_like_nn_conv(kernel, use_bias):
    """Same parameter names, shapes and initial values as ``nn.Conv``: checkpoints are interchangeable."""
    x = jnp.zeros((2, 5, 5, 3))
    ref = nn.Conv(4, (kernel, kernel), padding="SAME", use_bias=use_bias)
    mods = [fastconv.Conv(4, kernel, use_bias=use_bias, impl=impl) for impl in fastconv.IMPLS]
    v_ref, *v_mods = jax.jit(lambda key: [m.init(key, x) for m in [ref, *mods]])(jax.random.PRNGKey(3))
    for v in v_mods:
        chex.assert_trees_all_equal(v, v_ref)


@pytest.mark.parametrize("kernel,stride,hw,use_bias", CASES)
def test_module_matches_nn_conv(kernel, stride, hw, use_bias):
    """Every impl against ``nn.Conv``: outputs, gradients wrt input and parameters."""
    x, w = _operands(hw, kernel)
    ref = nn.Conv(4, (kernel, kernel), strides=(stride, stride), padding="SAME", use_bias=use_bias)
    mods = [fastconv.Conv(4, kernel, strides=stride, use_bias=use_bias, impl=impl)
            for impl in ("xla", "im2col", "xla_flip")]
    params = {"kernel": w, "bias": jnp.linspace(-1.0, 1.0, 4)} if use_bias else {"kernel": w}
    v = {"params": params}
    ct = _normal(jax.eval_shape(ref.apply, v, x).shape, 5)

    @jax.jit
    def outputs_and_grads(v, x):
        return [(m.apply(v, x), jax.grad(_vjp_loss(m.apply, ct), argnums=(0, 1))(v, x)) for m in [ref, *mods]]

    (y_ref, g_ref), *others = outputs_and_grads(v, x)
    for y, g in others:
        _assert_close_f32(y, y_ref)
        jax.tree.map(_assert_close_f32, g, g_ref)


def _f32_reference(x, w, b, ct, stride):
    """f32 output and gradients, and Σ|x||w|, Σ|w||ct|, Σ|x||ct| (the scales of the error bounds)."""
    conv = lambda x, w: _lax_conv(x, w, stride)
    y = conv(x, w) + b
    gx, gw = jax.grad(_vjp_loss(conv, ct), argnums=(0, 1))(x, w)
    ax, aw, act = jnp.abs(x), jnp.abs(w), jnp.abs(ct)
    y_abs = conv(ax, aw) + jnp.abs(b)
    gx_abs = jax.grad(lambda x: jnp.sum(act * conv(x, aw)))(ax)
    gw_abs = jax.grad(lambda w: jnp.sum(act * conv(ax, w)))(aw)
    return (y, gx, gw), (y_abs, gx_abs, gw_abs)


@pytest.mark.parametrize("stride", [1, 2])
def test_bfloat16_within_rounding_bounds(stride):
    """bf16 against the f32 result on the same (bf16-representable) operands, every impl.

    Bounds, with u = 2^-8 the bf16 unit roundoff and products accumulated in f32 (XLA's CPU dot and
    conv do): the output is rounded once by the conv/matmul and once by the bias add, so
    |y - y32| <= 2u·(Σ|x||w| + |b|); the kernel gradient is one conv/matmul, u·Σ|x||ct| with 2u
    allowed. The input gradient is one conv for the XLA impls (2u·Σ|w||ct|); im2col sums the
    kh·kw window gradients in bf16, a rounding after each add: kh·kw·u·Σ|w||ct|.
    """
    kernel, bf16, f32 = 3, jnp.bfloat16, jnp.float32
    x, w = _operands((8, 8), kernel, c_in=16, c_out=8, batch=4)
    x, w = x.astype(bf16), w.astype(bf16)
    b = jnp.linspace(-1.0, 1.0, 8).astype(bf16)
    ct = jnp.asarray(_normal((4, 8 // stride, 8 // stride, 8), 9))
    impls = ("xla", "im2col", "xla_flip")

    @jax.jit
    def bf16_results(x, w, b):
        out = []
        for impl in impls:
            conv = lambda x, w, impl=impl: fastconv.conv2d(x, w, stride=stride, impl=impl) + b
            out.append((conv(x, w), *jax.grad(_vjp_loss(conv, ct), argnums=(0, 1))(x, w)))
        return out

    refs, bounds = jax.jit(_f32_reference, static_argnums=4)(
        x.astype(f32), w.astype(f32), b.astype(f32), ct, stride)
    for impl, results in zip(impls, bf16_results(x, w, b)):
        grad_x_factor = kernel * kernel * BF16_U if impl == "im2col" else 2 * BF16_U
        factors = (2 * BF16_U, grad_x_factor, 2 * BF16_U)  # y, grad x, grad w
        for name, r, ref, bound, factor in zip(("y", "grad_x", "grad_w"), results, refs, bounds, factors):
            assert r.dtype == bf16, (impl, name)
            err = np.abs(np.asarray(r, np.float32) - np.asarray(ref))
            assert np.all(err <= factor * np.asarray(bound)), (impl, name, float(np.max(err / np.asarray(bound))))


def _primitives(fn, *args):
    return {eqn.primitive.name for eqn in jax.make_jaxpr(fn)(*args).jaxpr.eqns}


def test_auto_picks_per_backend_and_layer():
    """Off CPU: XLA. On CPU: im2col for 1×1 and narrow windows (kh·kw·C_in <= 27), else xla_flip."""
    cpu = jax.default_backend() == "cpu"
    cases = {(3, 3, 3, 8): "im2col", (3, 3, 4, 8): "xla_flip", (1, 1, 64, 8): "im2col", (3, 3, 64, 8): "xla_flip"}
    for shape, on_cpu in cases.items():
        assert fastconv.resolve_impl("auto", shape) == (on_cpu if cpu else "xla"), shape
        assert fastconv.resolve_impl("im2col", shape) == "im2col"
    x3, narrow = jnp.zeros((1, 6, 6, 3)), jnp.zeros((3, 3, 3, 4))
    x4, wide = jnp.zeros((1, 6, 6, 4)), jnp.zeros((3, 3, 4, 4))
    assert ("conv_general_dilated" in _primitives(fastconv.conv2d, x3, narrow)) != cpu  # impl="auto"
    assert ("custom_vjp_call" in _primitives(fastconv.conv2d, x4, wide)) == cpu
    assert "conv_general_dilated" in _primitives(lambda x, w: fastconv.conv2d(x, w, impl="xla"), x3, narrow)
    assert "conv_general_dilated" not in _primitives(lambda x, w: fastconv.conv2d(x, w, impl="im2col"), x4, wide)


def _dimension_labels(hlo_text):
    return set(re.findall(r"dim_labels=(\S+?)[,\s]", hlo_text))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU layout property")
def test_xla_flip_input_gradient_in_a_loop_keeps_the_kernel_layout():
    """Inside a loop (as in PGD), XLA's own input gradient convolves with the kernel in the ``01oi``
    layout, which XLA:CPU runs up to 10× slower; ``xla_flip`` must give only ``01io`` kernels."""
    x, w = _operands((6, 6), 3, c_in=4)

    def attack(conv):
        step = lambda _, x: x + 0.01 * jnp.sign(jax.grad(lambda x: jnp.sum(jnp.sin(conv(x, w))))(x))
        return jax.jit(lambda x: lax.fori_loop(0, 2, step, x)).lower(x).compile().as_text()

    flip_labels = _dimension_labels(attack(fastconv.conv_xla_flip))
    assert flip_labels and all("_01io->" in label for label in flip_labels), flip_labels


def test_layers_conv_keeps_the_model_parameter_tree():
    model = tiny_model()
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((2, 28, 28, 1)))["params"]
    assert params["Conv_0"]["kernel"].shape == (3, 3, 1, 4) and params["Conv_0"]["bias"].shape == (4,)
    assert params["Conv_1"]["kernel"].shape == (3, 3, 4, 8)
    shortcut = layers.conv(8, kernel=1, stride=2, use_bias=False, impl="im2col")
    assert isinstance(shortcut, fastconv.Conv)
    x = jnp.ones((2, 7, 7, 4))
    v = jax.eval_shape(shortcut.init, jax.random.PRNGKey(0), x)
    assert set(v["params"]) == {"kernel"}
    assert jax.eval_shape(shortcut.apply, v, x).shape == (2, 4, 4, 8)


def test_module_keeps_leading_batch_axes():
    mod = fastconv.Conv(4, 3, impl="im2col")
    x = jnp.asarray(_normal((2, 3, 6, 6, 2), 0))
    v = jax.eval_shape(mod.init, jax.random.PRNGKey(1), x)
    assert v["params"]["kernel"].shape == (3, 3, 2, 4)
    v = {"params": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.arange(4.0)}}
    y, y_flat = jax.jit(lambda v, x: (mod.apply(v, x), mod.apply(v, x.reshape(6, 6, 6, 2))))(v, x)
    assert y.shape == (2, 3, 6, 6, 4)
    _assert_close_f32(y, y_flat.reshape(y.shape))


@pytest.mark.parametrize("kwargs,field", [
    ({"impl": "cudnn"}, "impl"),
    ({"strides": (1, 2)}, "strides"),
    ({"kernel_size": 0}, "kernel_size"),
])
def test_bad_module_config_raises(kwargs, field):
    with pytest.raises(ValueError, match=field):
        fastconv.Conv(4, **kwargs).init(jax.random.PRNGKey(0), jnp.zeros((1, 5, 5, 2)))


def test_bad_operands_raise():
    with pytest.raises(ValueError, match="rank"):
        fastconv.Conv(4).init(jax.random.PRNGKey(0), jnp.zeros((5, 5, 2)))
    with pytest.raises(ValueError, match="kernel"):
        fastconv.conv_im2col(jnp.zeros((1, 5, 5, 2)), jnp.zeros((3, 3, 3, 4)))
    with pytest.raises(ValueError, match="stride"):
        fastconv.conv_xla(jnp.zeros((1, 5, 5, 2)), jnp.zeros((3, 3, 2, 4)), stride=0)
