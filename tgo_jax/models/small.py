"""A CPU-sized spiking conv net for 28×28×1 (Fashion-MNIST) and 32×32×3 inputs.

Default layout for 28×28×1: conv 16 → BN → LIF → pool → conv 32 → BN → LIF → pool →
FC 128 → BN → LIF → FC classes; about 1.2 M multiply-adds per image per time step.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from tgo_jax.models import layers


class SmallSNN(layers.SpikingNet):
    """conv3×3→BN→LIF→avg-pool blocks (``channels``), then FC ``hidden`` → BN → LIF → FC classes.

    Call convention: ``layers.SpikingNet``.
    """

    channels: Sequence[int] = (16, 32)
    hidden: int = 128
    in_channels: int = 1
    mean: Sequence[float] = layers.FMNIST_MEAN
    std: Sequence[float] = layers.FMNIST_STD

    @nn.compact
    def __call__(self, x, train: bool = False, return_h: bool = False):
        x = self.prepare_input(x)
        hs = []
        for i, width in enumerate(self.channels):
            x = self.conv(width)(x)
            x = layers.batch_norm(train, self.dtype)(x)
            if i == 0:  # direct encoding: the first current is the same at every step
                x = layers.repeat_time(x, self.num_steps)
            x, h = self.spiking(x)
            hs.append(h)
            x = layers.avg_pool(x)
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(self.hidden, dtype=self.dtype)(x)
        x = layers.batch_norm(train, self.dtype)(x)  # keeps the hidden layer firing from the start
        x, h = self.spiking(x)
        hs.append(h)
        return self.finish(nn.Dense(self.num_classes, dtype=self.dtype)(x), hs, return_h)
