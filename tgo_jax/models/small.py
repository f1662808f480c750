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
        events = layers.is_event_input(x)
        x = self.prepare_input(x)

        def conv_block(mdl, x, width, first):  # conv3×3 → BN → LIF → pool
            x = layers.batch_norm(train, mdl.dtype)(mdl.conv(width)(x))
            if first:  # direct encoding repeats the first current at every step; event frames are per step
                x = mdl.over_time(x, events)
            x, h = mdl.spiking(x)
            return layers.avg_pool(x), h

        def dense_block(mdl, x):  # FC → BN → LIF; the BN keeps the hidden layer firing from the start
            x = nn.Dense(mdl.hidden, dtype=mdl.dtype)(x)
            return mdl.spiking(layers.batch_norm(train, mdl.dtype)(x))

        hs = []
        for width in self.channels:
            x, h = self.block(conv_block, x, width=width, first=not hs)
            hs.append(h)
        x, h = self.block(dense_block, x.reshape((x.shape[0], -1)))
        hs.append(h)
        return self.finish(nn.Dense(self.num_classes, dtype=self.dtype)(x), hs, return_h)
