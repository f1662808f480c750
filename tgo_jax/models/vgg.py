"""Spiking VGG-11 in the SNN-RAT layout (FORMULAS.md §2), ≈ 61.4 M parameters for 10 classes."""
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
        x = self.prepare_input(x)
        hs = []
        first = True
        for item in self.plan:
            if item == "M":
                x = layers.avg_pool(x)
                continue
            x = self.conv(item)(x)
            x = layers.batch_norm(train, self.dtype)(x)
            if first:  # direct encoding: layer 1's current is the same at every step
                x, first = layers.repeat_time(x, self.num_steps), False
            x, h = self.spiking(x)
            hs.append(h)
        x = x.reshape((x.shape[0], -1))
        for _ in range(2):
            x, h = self.spiking(nn.Dense(self.hidden, dtype=self.dtype)(x))
            hs.append(h)
        return self.finish(nn.Dense(self.num_classes, dtype=self.dtype)(x), hs, return_h)
