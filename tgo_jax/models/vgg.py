"""Spiking VGG-11 in the SNN-RAT layout (FORMULAS.md §2), ≈ 61.4 M parameters for 10 classes."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from tgo_jax import neurons
from tgo_jax.models import layers

# Conv widths with 'M' for a 2×2 average pool: 32×32 -> 4×4 before the head.
VGG11_PLAN = (64, "M", 128, 256, "M", 512, 512, 512, "M", 512, 512)


class SpikingVGG11(nn.Module):
    """conv3×3(+bias)→BN→LIF blocks per ``plan``, then flatten→FC 4096→LIF→FC 4096→LIF→FC classes.

    ``__call__(x, train=False, return_h=False)`` takes [B, H, W, C] pixels in [0, 1] and returns the
    per-step logits [T, B, classes], and with ``return_h`` also a tuple with the pre-spike potential
    H [T, B, ...] of every LIF layer in forward order.
    """

    num_classes: int = 10
    num_steps: int = 4
    neuron: neurons.NeuronConfig = neurons.NeuronConfig()
    plan: Sequence[Any] = VGG11_PLAN
    hidden: int = 4096
    in_channels: int = 3
    mean: Sequence[float] = layers.CIFAR10_MEAN
    std: Sequence[float] = layers.CIFAR10_STD
    dtype: Any = jnp.float32
    conv_impl: str = "auto"  # fastconv.IMPLS: auto (per backend and layer shape), xla, im2col, xla_flip

    @nn.compact
    def __call__(self, x, train: bool = False, return_h: bool = False):
        layers.check_image_batch(x, self.in_channels, self.num_steps)
        x = layers.normalize(x, self.mean, self.std).astype(self.dtype)
        hs = []
        first = True
        for item in self.plan:
            if item == "M":
                x = layers.avg_pool(x)
                continue
            x = layers.conv(item, dtype=self.dtype, impl=self.conv_impl)(x)
            x = layers.batch_norm(train, self.dtype)(x)
            if first:  # direct encoding: layer 1's current is the same at every step
                x, first = layers.repeat_time(x, self.num_steps), False
            x, h = layers.Spiking(self.neuron, self.num_steps)(x)
            hs.append(h)
        x = x.reshape((x.shape[0], -1))
        for _ in range(2):
            x = nn.Dense(self.hidden, dtype=self.dtype)(x)
            x, h = layers.Spiking(self.neuron, self.num_steps)(x)
            hs.append(h)
        logits = nn.Dense(self.num_classes, dtype=self.dtype)(x)
        logits_tb = logits.reshape((self.num_steps, -1, self.num_classes)).astype(jnp.float32)
        return (logits_tb, tuple(hs)) if return_h else logits_tb
