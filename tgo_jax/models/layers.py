"""Building blocks shared by the spiking networks (docs/FORMULAS.md §2).

Inside a model, activations are kept flat over time and batch, ``[T·B, H, W, C]``, so that
convolutions and BatchNorm (one BN over the T·B batch, shared across time) run as one big op;
``Spiking`` reshapes to time-major ``[T, B, ...]`` for the neuron scan and back.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from tgo_jax import fastconv, neurons, validation
from tgo_jax.normalization import (  # noqa: F401 - re-exported: the models' default constants
    CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, FMNIST_MEAN, FMNIST_STD)

Array = jax.Array


def check_image_batch(x: Array, channels: int, num_steps: int) -> None:
    """Validates a model input at the edge: [B, H, W, C] images or [B, T, H, W, C] event frames (T equal to
    the model's num_steps), float values in [0, 1], B >= 1, the model's C, T >= 1."""
    validation.count("num_steps (T)", num_steps)
    if x.ndim not in (4, 5):
        raise ValueError(f"input must be [B, H, W, C] images (rank 4) or [B, T, H, W, C] event frames (rank 5), "
                         f"got rank {x.ndim} with shape {x.shape}")
    if x.ndim == 5 and x.shape[1] != num_steps:
        raise ValueError(f"event frames [B, T, H, W, C] have T = {x.shape[1]}, the model runs num_steps = "
                         f"{num_steps} steps (shape {x.shape}); they must be equal")
    validation.non_empty_batch("input", x)
    if x.shape[-1] != channels:
        raise ValueError(f"input has {x.shape[-1]} channels, the model expects {channels} (shape {x.shape})")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"input dtype must be floating point pixels in [0, 1], got {x.dtype}")


def normalize(x: Array, mean: Sequence[float], std: Sequence[float]) -> Array:
    """(x - mean) / std per channel; inputs are [0, 1] pixels so attacks work in pixel space."""
    return (x - jnp.asarray(mean, x.dtype)) / jnp.asarray(std, x.dtype)


def repeat_time(x: Array, num_steps: int) -> Array:
    """Direct encoding: the same [B, ...] tensor at every step, flattened to [T·B, ...]."""
    return jnp.broadcast_to(x[None], (num_steps,) + x.shape).reshape((-1,) + x.shape[1:])


def is_event_input(x: Array) -> bool:
    """Whether a model input is event frames [B, T, H, W, C] (fed step by step) rather than images."""
    return x.ndim == 5


def time_major_frames(x: Array) -> Array:
    """Event frames [B, T, H, W, C] -> [T·B, H, W, C], step t of every example together: frame t feeds step t.

    Batches stay example-major outside the model (batching, sharding, masks and attacks index examples on
    axis 0); the model puts them time-major once, here.
    """
    return jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:])


def mean_over_time(logits_tb: Array) -> Array:
    """Prediction logits: mean over T of the per-step logits [T, B, K] -> [B, K] (docs/FORMULAS.md §2)."""
    return logits_tb.mean(axis=0)


class Spiking(nn.Module):
    """A LIF / Noisy-LIF layer over ``[T·B, ...]`` activations; returns ``(spikes, H)``.

    Spikes come back flat ``[T·B, ...]``; H comes back time-major ``[T, B, ...]`` for the
    margin penalty and the analyses. Noise is drawn from the ``'noise'`` RNG stream.
    """

    neuron: neurons.NeuronConfig
    num_steps: int

    @nn.compact
    def __call__(self, x: Array):
        x_tb = x.reshape((self.num_steps, -1) + x.shape[1:])
        key = None
        if self.neuron.stochastic:
            if not self.has_rng("noise"):
                raise ValueError("a Noisy-LIF model needs a noise key: apply(..., rngs={'noise': key})")
            key = self.make_rng("noise")
        spikes_tb, h_tb = neurons.run(self.neuron, x_tb, key)
        # Per-example firing rate [B], collected only when 'intermediates' is mutable (training: the
        # spike-rate metric and loss terms on the rates, see ``sown_spike_rates``).
        rate_axes = (0,) + tuple(range(2, spikes_tb.ndim))
        self.sow("intermediates", "spike_rate", spikes_tb.astype(jnp.float32).mean(axis=rate_axes))
        return spikes_tb.reshape(x.shape), h_tb


def sown_spike_rates(intermediates) -> tuple:
    """The per-example firing rates [B] the LIF layers sowed into ``'intermediates'``, in forward order."""
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(intermediates))
    return tuple(rate for path, values in flat.items() if path[-1] == "spike_rate" for rate in values)


def batch_norm(train: bool, dtype: Any, name: str | None = None) -> nn.BatchNorm:
    """BatchNorm over all leading axes (T·B and space), statistics shared across time."""
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                        name=name)


def conv(features: int, kernel: int = 3, stride: int = 1, use_bias: bool = True, dtype: Any = jnp.float32,
         name: str | None = None, impl: str = "auto") -> nn.Module:
    """A 'SAME'-padded 2-D convolution (the one place the models create convolutions).

    ``impl`` picks the implementation (``fastconv.IMPLS``); "auto" is XLA's convolution on GPU/TPU
    and, on CPU, the faster of im2col + matmul and XLA per layer shape (``fastconv.resolve_impl``).
    Parameters and module names are those of ``nn.Conv``, so checkpoints are unaffected.
    """
    return fastconv.Conv(features, kernel, strides=stride, use_bias=use_bias, dtype=dtype, impl=impl,
                         name=name)


def avg_pool(x: Array) -> Array:
    """2×2 average pool with stride 2."""
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class SpikingNet(nn.Module):
    """Fields and input/output handling shared by the spiking networks.

    Call convention of every subclass: ``__call__(x, train=False, return_h=False)`` takes [B, H, W, C]
    pixels in [0, 1] (the same image at every step: direct encoding) or [B, T, H, W, C] event frames in
    [0, 1] (frame t at step t), and returns the per-step logits [T, B, classes] (float32), and with
    ``return_h`` also a tuple with the pre-spike potential H [T, B, ...] of every LIF layer in forward order.
    """

    num_classes: int = 10
    num_steps: int = 4
    neuron: neurons.NeuronConfig = neurons.NeuronConfig()
    in_channels: int = 3
    mean: Sequence[float] = CIFAR10_MEAN
    std: Sequence[float] = CIFAR10_STD
    dtype: Any = jnp.float32
    conv_impl: str = "auto"  # fastconv.IMPLS: auto (per backend and layer shape), xla, im2col, xla_flip
    remat_blocks: bool = False  # recompute each block in the backward pass (see ``block``)

    def block(self, fn, x, **static):
        """``fn(self, x, **static)``, one block of layers; with ``remat_blocks`` it runs under ``nn.remat``.

        A rematerialised block keeps only its inputs for the backward pass and recomputes its
        activations there, one block at a time: peak memory falls to about one block's activations
        plus the block inputs, for roughly one extra forward pass. Parameter names do not change.
        """
        def run(mdl, x):
            return fn(mdl, x, **static)

        return (nn.remat(run) if self.remat_blocks else run)(self, x)

    def check_fields(self) -> None:
        """Validates the shared fields (at call time: a module is built before its fields are final)."""
        validation.count("num_classes", self.num_classes)
        validation.count("in_channels", self.in_channels)
        validation.choice("conv_impl", self.conv_impl, fastconv.IMPLS)
        validation.boolean("remat_blocks", self.remat_blocks)
        if not isinstance(self.neuron, neurons.NeuronConfig):
            raise ValueError(f"neuron must be a NeuronConfig, got {type(self.neuron).__name__}")

    def prepare_input(self, x: Array) -> Array:
        """Validates the fields and the input, and normalises it in the compute dtype: images stay
        [B, H, W, C], event frames become [T·B, H, W, C] (``time_major_frames``)."""
        self.check_fields()
        check_image_batch(x, self.in_channels, self.num_steps)
        x = normalize(x, self.mean, self.std).astype(self.dtype)
        return time_major_frames(x) if is_event_input(x) else x

    def over_time(self, x: Array, events: bool) -> Array:
        """The first layer's current over the T steps [T·B, ...]: repeated for images, as is for events."""
        return x if events else repeat_time(x, self.num_steps)

    def spiking(self, x: Array):
        """A LIF / Noisy-LIF layer with the model's neuron config: ``(spikes [T·B, ...], H [T, B, ...])``."""
        return Spiking(self.neuron, self.num_steps)(x)

    def conv(self, features: int, kernel: int = 3, stride: int = 1, use_bias: bool = True) -> nn.Module:
        return conv(features, kernel, stride, use_bias=use_bias, dtype=self.dtype, impl=self.conv_impl)

    def finish(self, logits: Array, hs: list, return_h: bool):
        """[T·B, K] logits -> [T, B, K] float32 (and the H tuple when asked)."""
        logits_tb = logits.reshape((self.num_steps, -1, self.num_classes)).astype(jnp.float32)
        return (logits_tb, tuple(hs)) if return_h else logits_tb
