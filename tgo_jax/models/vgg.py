"""Spiking VGG-11 in the SNN-RAT layout (docs/FORMULAS.md §2), ≈ 61.4 M parameters for 10 classes."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn

from tgo_jax.models import layers

# Conv widths with 'M' for a 2×2 average pool: 32×32 -> 4×4 before the head.
VGG11_PLAN = (64, "M", 128, 256, "M", 512, 512, 512, "M", 512, 512)


class SpikingVGG11(layers.SpikingNet):
    """conv3×3(+bias)→BN→LIF blocks per ``plan``, then flatten→FC 4096→LIF→FC 4096→LIF→FC classes.

    Call convention: ``layers.SpikingNet`` (10 LIF layers).
    """

    plan: Sequence[Any] = VGG11_PLAN
    hidden: int = 4096

    @nn.compact
    def __call__(self, x, train: bool = False, return_h: bool = False):
        events = layers.is_event_input(x)
        x = self.prepare_input(x)

        def conv_block(mdl, x, width, first):  # conv3×3 → BN → LIF
            x = layers.batch_norm(train, mdl.dtype)(mdl.conv(width)(x))
            if first:  # direct encoding repeats layer 1's current at every step; event frames are per step
                x = mdl.over_time(x, events)
            return mdl.spiking(x)

        def dense_block(mdl, x):  # FC → LIF
            return mdl.spiking(nn.Dense(mdl.hidden, dtype=mdl.dtype)(x))

        hs = []
        for item in self.plan:
            if item == "M":
                x = layers.avg_pool(x)
                continue
            x, h = self.block(conv_block, x, width=item, first=not hs)
            hs.append(h)
        x = x.reshape((x.shape[0], -1))
        for _ in range(2):
            x, h = self.block(dense_block, x)
            hs.append(h)
        return self.finish(nn.Dense(self.num_classes, dtype=self.dtype)(x), hs, return_h)
