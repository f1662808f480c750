"""A CPU-sized spiking conv net for 28×28×1 (Fashion-MNIST) and 32×32×3 inputs.

Default layout for 28×28×1: conv 16 → BN → LIF → pool → conv 32 → BN → LIF → pool →
FC 128 → BN → LIF → FC classes; about 1.2 M multiply-adds per image per time step.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from tgo_jax import neurons
from tgo_jax.models import layers


class SmallSNN(nn.Module):
    """conv3×3→BN→LIF→avg-pool blocks (``channels``), then FC ``hidden`` → BN → LIF → FC classes.

    Same call convention as ``SpikingVGG11``: returns per-step logits [T, B, classes] and, with
    ``return_h``, the tuple of per-layer H [T, B, ...].
    """

    num_classes: int = 10
    num_steps: int = 4
    neuron: neurons.NeuronConfig = neurons.NeuronConfig()
    channels: Sequence[int] = (16, 32)
    hidden: int = 128
    in_channels: int = 1
    mean: Sequence[float] = layers.FMNIST_MEAN
    std: Sequence[float] = layers.FMNIST_STD
    dtype: Any = jnp.float32
    conv_impl: str = "auto"  # fastconv.IMPLS: auto (per backend and layer shape), xla, im2col, xla_flip

    @nn.compact
    def __call__(self, x, train: bool = False, return_h: bool = False):
        layers.check_image_batch(x, self.in_channels, self.num_steps)
        x = layers.normalize(x, self.mean, self.std).astype(self.dtype)
        hs = []
        for i, width in enumerate(self.channels):
            x = layers.conv(width, dtype=self.dtype, impl=self.conv_impl)(x)
            x = layers.batch_norm(train, self.dtype)(x)
            if i == 0:  # direct encoding: the first current is the same at every step
                x = layers.repeat_time(x, self.num_steps)
            x, h = layers.Spiking(self.neuron, self.num_steps)(x)
            hs.append(h)
            x = layers.avg_pool(x)
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(self.hidden, dtype=self.dtype)(x)
        x = layers.batch_norm(train, self.dtype)(x)  # keeps the hidden layer firing from the start
        x, h = layers.Spiking(self.neuron, self.num_steps)(x)
        hs.append(h)
        logits = nn.Dense(self.num_classes, dtype=self.dtype)(x)
        logits_tb = logits.reshape((self.num_steps, -1, self.num_classes)).astype(jnp.float32)
        return (logits_tb, tuple(hs)) if return_h else logits_tb
