"""Spiking models (docs/FORMULAS.md §2): shapes, parameter counts, forward/backward, noise, input checks.

VGG-11 and WRN-16-4 are only traced (``jax.eval_shape``), never run; the small net runs in a tiny
configuration.
"""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tgo_jax import models
from tgo_jax.models import layers
from tests.conftest import TINY_NET, tiny_model

BATCH = 8
T = TINY_NET["num_steps"]
CIFAR = dict(in_channels=3, mean=layers.CIFAR10_MEAN, std=layers.CIFAR10_STD)

# docs/FORMULAS.md §2, written out here independently of the model code.
VGG11_WIDTHS = (64, "pool", 128, 256, "pool", 512, 512, 512, "pool", 512, 512)
WRN16_4 = dict(stem=16, widths=(64, 128, 256), blocks=2)


def _abstract_init(model, x_shape):
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    outputs = jax.eval_shape(lambda v, x: model.apply(v, x, return_h=True), variables, x)
    return variables, outputs


def _num_params(params):
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def _vgg11_expected(num_classes=10, hidden=4096, size=32, in_channels=3):
    """Parameter count and H shapes ([H, W, C] per LIF layer) of VGG-11 derived from the layer widths:
    conv3×3 with bias + BN (scale, bias) per conv; FC 512·4·4→4096→4096→classes."""
    count, shapes, c, s = 0, [], in_channels, size
    for width in VGG11_WIDTHS:
        if width == "pool":
            s //= 2
            continue
        count += 9 * c * width + width + 2 * width
        c = width
        shapes.append((s, s, c))
    fan_in = c * s * s
    for out in (hidden, hidden):
        count += fan_in * out + out
        shapes.append((out,))
        fan_in = out
    count += fan_in * num_classes + num_classes
    return count, shapes


def _wrn_expected(num_classes=10, size=32, in_channels=3):
    """Parameter count and H shapes of WRN-16-4: stem conv (no bias); per pre-activation block
    BN(in)→LIF→conv3×3→BN(out)→LIF→conv3×3, a 1×1 shortcut conv when the shape changes and the two
    convex-merge weights; head BN→LIF→FC."""
    c, s = WRN16_4["stem"], size
    count, shapes = 9 * in_channels * c, []
    for group, width in enumerate(WRN16_4["widths"]):
        for block in range(WRN16_4["blocks"]):
            stride = 2 if group > 0 and block == 0 else 1
            shapes.append((s, s, c))  # first LIF sees the block input
            count += 2 * c + 9 * c * width + 2 * width + 9 * width * width + 2
            if stride != 1 or c != width:
                count += c * width
            c, s = width, s // stride
            shapes.append((s, s, c))
    shapes.append((s, s, c))
    count += 2 * c + c * num_classes + num_classes
    return count, shapes


@pytest.mark.parametrize("arch, expected_fn, num_lif, approx, rel", [
    ("vgg11", _vgg11_expected, 10, 61.4e6, 1e-3),
    ("wrn16_4", _wrn_expected, 13, 2.75e6, 5e-3),
])
def test_big_model_shapes_and_parameter_counts(arch, expected_fn, num_lif, approx, rel):
    batch = 2
    variables, (logits, hs) = _abstract_init(models.create(arch), (batch, 32, 32, 3))
    count, h_shapes = expected_fn()
    assert logits.shape == (4, batch, 10) and logits.dtype == jnp.float32
    assert len(hs) == num_lif
    assert [h.shape for h in hs] == [(4, batch) + shape for shape in h_shapes]
    n = _num_params(variables["params"])
    assert n == count
    assert abs(n - approx) <= rel * approx, n


def test_vgg_class_count_and_steps_change_the_head():
    model = models.create("vgg11", num_classes=100, num_steps=2)
    variables, (logits, hs) = _abstract_init(model, (3, 32, 32, 3))
    assert logits.shape == (2, 3, 100)
    assert all(h.shape[:2] == (2, 3) for h in hs)
    assert _num_params(variables["params"]) == _vgg11_expected(num_classes=100)[0]


@pytest.mark.parametrize("x_shape, kwargs", [((BATCH, 28, 28, 1), {}), ((BATCH, 32, 32, 3), CIFAR)])
def test_small_default_h_structure(x_shape, kwargs):
    _, (logits, hs) = _abstract_init(models.create("small", **kwargs), x_shape)
    s = x_shape[1]
    assert logits.shape == (4, BATCH, 10)
    assert [h.shape for h in hs] == [(4, BATCH, s, s, 16), (4, BATCH, s // 2, s // 2, 32), (4, BATCH, 128)]


def _batch(shape, seed=0):
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.uniform(kx, shape), jax.random.randint(ky, (shape[0],), 0, 10)


@functools.lru_cache(maxsize=None)
def _tiny(in_channels):
    """A tiny small net for 28×28×1 (in_channels=1) or 32×32×3, a batch and its initial variables."""
    kwargs, size = (CIFAR, 32) if in_channels == 3 else ({}, 28)
    model = tiny_model(**kwargs)
    x, y = _batch((BATCH, size, size, in_channels))
    return model, x, y, jax.jit(model.init)(jax.random.key(1), x)


def _train_and_eval(model):
    """One jitted function: train-mode grads of CE(mean_t logits) with the logits, H and new
    batch_stats, then an eval-mode pass (its logits and the batch_stats it leaves) and the eval
    logits again with return_h=True."""
    def loss_fn(params, batch_stats, x, y):
        (logits, hs), new_state = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                              return_h=True, mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(models.mean_over_time(logits), y).mean()
        return loss, (logits, hs, new_state["batch_stats"])

    def fn(variables, x, y):
        grads, train_out = jax.grad(loss_fn, has_aux=True)(variables["params"], variables["batch_stats"], x, y)
        eval_logits, eval_state = model.apply(variables, x, mutable=["batch_stats"])
        eval_logits_h, _ = model.apply(variables, x, return_h=True)
        return grads, train_out, (eval_logits, eval_state["batch_stats"], eval_logits_h)
    return jax.jit(fn)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_small_forward_backward_and_batch_stats(in_channels):
    model, x, y, variables = _tiny(in_channels)
    # A long-tailed surrogate: the gradient reaches the first conv even where an untrained layer is silent.
    model = model.clone(neuron=dataclasses.replace(model.neuron, surrogate="atan"))
    grads, (logits, hs, new_stats), (eval_logits, eval_stats, eval_logits_h) = _train_and_eval(model)(variables, x, y)

    s = x.shape[1]
    assert logits.shape == eval_logits.shape == (T, BATCH, 10) and logits.dtype == jnp.float32
    assert [h.shape for h in hs] == [(T, BATCH, s, s, 4), (T, BATCH, s // 2, s // 2, 8), (T, BATCH, 16)]
    assert all(bool(jnp.isfinite(a).all()) for a in jax.tree.leaves((logits, hs, grads, new_stats, eval_logits)))
    assert jax.tree.structure(grads) == jax.tree.structure(variables["params"])
    # The gradient passes back through all three LIF layers to the first convolution.
    assert float(jnp.abs(grads["Conv_0"]["kernel"]).max()) > 0
    assert float(jnp.abs(grads["Dense_1"]["bias"]).max()) > 0
    # train=True moves every running statistic (init: mean 0, var 1); eval mode leaves them alone.
    old = variables["batch_stats"]
    assert jax.tree.structure(old) == jax.tree.structure(new_stats)
    for a, b, c in zip(jax.tree.leaves(old), jax.tree.leaves(new_stats), jax.tree.leaves(eval_stats)):
        assert float(jnp.abs(a - b).max()) > 0
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    np.testing.assert_array_equal(np.asarray(eval_logits), np.asarray(eval_logits_h))
    np.testing.assert_allclose(np.asarray(models.mean_over_time(eval_logits)),
                               np.asarray(eval_logits).mean(axis=0), rtol=1e-6)


def test_noisy_model_is_keyed():
    base, x, _, variables = _tiny(1)  # the neuron kind does not change the parameters
    model = tiny_model(kind="noisy")
    assert model.neuron.stochastic and not base.neuron.stochastic
    apply = jax.jit(lambda key: model.apply(variables, x, rngs={"noise": key}))
    first, again, other = apply(jax.random.key(8)), apply(jax.random.key(8)), apply(jax.random.key(9))
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert float(jnp.abs(first - other).max()) > 0
    with pytest.raises(ValueError, match="noise"):
        model.apply(variables, x)


def test_expected_mode_needs_no_noise_key():
    _, x, _, variables = _tiny(1)
    model = tiny_model(kind="noisy", expected=True)
    assert not model.neuron.stochastic
    logits = jax.jit(model.apply)(variables, x)
    assert logits.shape == (T, BATCH, 10) and bool(jnp.isfinite(logits).all())


@pytest.mark.parametrize("make_x, kwargs, pattern", [
    (lambda: jnp.zeros((28, 28, 1)), {}, r"rank 4.*rank 3"),
    (lambda: jnp.zeros((2, 28, 28, 3)), {}, r"3 channels.*expects 1"),
    (lambda: jnp.zeros((2, 32, 32, 1)), CIFAR, r"1 channels.*expects 3"),
    (lambda: jnp.zeros((2, 28, 28, 1), jnp.uint8), {}, r"dtype.*uint8"),
    (lambda: jnp.zeros((2, 28, 28, 1)), dict(num_steps=0), r"num_steps.*0"),
], ids=["rank", "channels", "channels_cifar", "uint8", "num_steps"])
def test_bad_input_raises(make_x, kwargs, pattern):
    model = tiny_model(**kwargs)
    with pytest.raises(ValueError, match=pattern):
        model.init(jax.random.key(0), make_x())


@pytest.mark.parametrize("arch", ["vgg11", "wrn16_4"])
def test_bad_input_raises_for_big_models_too(arch):
    def init(x):
        return models.create(arch).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"dtype.*uint8"):
        jax.eval_shape(init, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.uint8))
    with pytest.raises(ValueError, match=r"1 channels.*expects 3"):
        jax.eval_shape(init, jax.ShapeDtypeStruct((2, 32, 32, 1), jnp.float32))
    # Rank 5 is event frames [B, T, H, W, C]: their T must be the model's num_steps (4); rank 6 is nothing.
    with pytest.raises(ValueError, match=r"T = 2.*num_steps = 4"):
        jax.eval_shape(init, jax.ShapeDtypeStruct((4, 2, 32, 32, 3), jnp.float32))
    with pytest.raises(ValueError, match=r"rank 4.*rank 5.*got rank 6"):
        jax.eval_shape(init, jax.ShapeDtypeStruct((1, 4, 2, 32, 32, 3), jnp.float32))


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match=r"surrogate.*'nope'"):
        models.create("small", surrogate="nope")
    with pytest.raises(ValueError, match=r"arch.*'resnet50'"):
        models.create("resnet50")
    with pytest.raises(ValueError, match=r"kind.*'spiky'"):
        models.create("vgg11", kind="spiky")
    with pytest.raises(ValueError, match="neuron"):
        models.create("small", neuron=models.SmallSNN().neuron, kind="noisy")
    with pytest.raises(ValueError, match=r"merge.*'max'"):
        jax.eval_shape(lambda x: models.create("wrn16_4", merge="max").init(jax.random.key(0), x),
                       jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))


def test_empty_batch_and_no_classes_raise_a_clear_error():
    """Batch 0 and num_classes = 0 once ended in a ZeroDivisionError inside a reshape."""
    model = tiny_model()
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), jax.ShapeDtypeStruct((2, 28, 28, 1),
                                                                                              jnp.float32))
    with pytest.raises(ValueError, match=r"input must hold at least one example, got shape \(0, 28, 28, 1\)"):
        jax.eval_shape(model.apply, variables, jax.ShapeDtypeStruct((0, 28, 28, 1), jnp.float32))
    with pytest.raises(ValueError, match="num_classes must be an int >= 1, got 0"):
        tiny_model(num_classes=0).init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)))
    with pytest.raises(ValueError, match=r"unknown small model argument\(s\) \['hiden'\]"):
        models.create("small", hiden=32)


def test_neuron_fields_reach_every_layer():
    model = models.create("wrn16_4", kind="noisy", sigma=0.3, surrogate="atan")
    assert model.neuron.kind == "noisy" and model.neuron.sigma == 0.3 and model.neuron.surrogate == "atan"
    variables = jax.eval_shape(lambda x: model.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, x),
                               jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
    with pytest.raises(ValueError, match="noise"):
        jax.eval_shape(lambda v, x: model.apply(v, x), variables, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))


TINY_ARCHS = {  # the block structures at a size that compiles in seconds (VGG's blocks are the small net's)
    "small": (dict(channels=(4, 8), hidden=16, in_channels=3), 8),
    "wrn16_4": (dict(widths=(4, 8), stem=4, blocks_per_group=1), 8),  # identity and conv shortcuts
}


@pytest.mark.parametrize("arch", sorted(TINY_ARCHS))
def test_block_remat_changes_nothing_but_memory(arch):
    """remat_blocks recomputes blocks in the backward pass: same parameter names, outputs, noise,
    sown spike rates, BN statistics and gradients."""
    kwargs, size = TINY_ARCHS[arch]
    x, y = _batch((4, size, size, 3), seed=3)

    def run(remat_blocks):
        model = models.create(arch, num_steps=T, kind="noisy", unroll=False, remat_blocks=remat_blocks, **kwargs)
        variables = jax.jit(model.init)({"params": jax.random.key(4), "noise": jax.random.key(5)}, x)

        def loss_fn(params):
            (logits, hs), state = model.apply(
                {"params": params, "batch_stats": variables["batch_stats"]}, x, train=True, return_h=True,
                rngs={"noise": jax.random.key(6)}, mutable=["batch_stats", "intermediates"])
            loss = optax.softmax_cross_entropy_with_integer_labels(models.mean_over_time(logits), y).mean()
            return loss + 0.1 * sum(jnp.mean(h**2) for h in hs), (logits, hs, state)
        return variables, jax.jit(jax.grad(loss_fn, has_aux=True))(variables["params"])

    (vars_a, (grads_a, out_a)), (vars_b, (grads_b, out_b)) = run(False), run(True)
    assert jax.tree.structure(vars_a) == jax.tree.structure(vars_b)
    for a, b in zip(jax.tree.leaves(out_a), jax.tree.leaves(out_b)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    assert len(jax.tree.leaves(out_a[2]["intermediates"])) >= 3  # spike rates sown from inside the blocks
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads_a)) > 0


def test_vgg_block_remat_traces_to_the_same_variables_and_outputs():
    kwargs = dict(plan=(4, "M", 8), hidden=16, num_steps=T)
    plain = _abstract_init(models.create("vgg11", **kwargs), (2, 8, 8, 3))
    remat = _abstract_init(models.create("vgg11", remat_blocks=True, **kwargs), (2, 8, 8, 3))
    assert jax.tree.map(lambda a: (a.shape, a.dtype), plain) == jax.tree.map(lambda a: (a.shape, a.dtype), remat)
