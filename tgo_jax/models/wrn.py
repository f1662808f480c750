"""Spiking WRN-16-4 with pre-activation blocks (docs/FORMULAS.md §2), ≈ 2.75 M parameters."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from tgo_jax import neurons, validation
from tgo_jax.models import layers

MERGES = ("convex", "sum")


class PreActBlock(nn.Module):
    """BN→LIF→conv3×3(stride)→BN→LIF→conv3×3, merged with the shortcut.

    The shortcut is the block's input, or a 1×1 conv of its *activated* input when the shape
    changes. ``merge="convex"`` learns ``c1·shortcut + c2·branch`` with c = (c1, c2) initialised to
    (½, ½) (kept on the simplex by the RAT projection in training); ``merge="sum"`` adds them.
    Returns ``(out, (h1, h2))``.
    """

    features: int
    stride: int
    neuron: neurons.NeuronConfig
    num_steps: int
    merge: str = "convex"
    dtype: Any = jnp.float32
    conv_impl: str = "auto"  # fastconv.IMPLS: auto (per backend and layer shape), xla, im2col, xla_flip

    @nn.compact
    def __call__(self, x, train: bool):
        act = layers.batch_norm(train, self.dtype)(x)
        act, h1 = layers.Spiking(self.neuron, self.num_steps)(act)
        if self.stride != 1 or x.shape[-1] != self.features:
            shortcut = layers.conv(self.features, 1, self.stride, use_bias=False, dtype=self.dtype,
                                   impl=self.conv_impl)(act)
        else:
            shortcut = x
        conv3 = dict(use_bias=False, dtype=self.dtype, impl=self.conv_impl)
        branch = layers.conv(self.features, 3, self.stride, **conv3)(act)
        branch = layers.batch_norm(train, self.dtype)(branch)
        branch, h2 = layers.Spiking(self.neuron, self.num_steps)(branch)
        branch = layers.conv(self.features, 3, 1, **conv3)(branch)
        if self.merge == "sum":
            return shortcut + branch, (h1, h2)
        c = self.param("merge", nn.initializers.constant(0.5), (2,), jnp.float32).astype(self.dtype)
        return c[0] * shortcut + c[1] * branch, (h1, h2)


class SpikingWRN(layers.SpikingNet):
    """WRN-d-k: conv C→16, three groups of ``blocks_per_group`` pre-activation blocks with widths
    16k/32k/64k and strides 1/2/2, then BN→LIF→global average pool→FC. WRN-16-4 is the default.

    Call convention: ``layers.SpikingNet`` (13 LIF layers).
    """

    widths: Sequence[int] = (64, 128, 256)
    blocks_per_group: int = 2
    stem: int = 16
    merge: str = "convex"

    @nn.compact
    def __call__(self, x, train: bool = False, return_h: bool = False):
        validation.choice("merge", self.merge, MERGES)
        validation.count("blocks_per_group", self.blocks_per_group)
        events = layers.is_event_input(x)
        x = self.prepare_input(x)
        x = self.conv(self.stem, 3, 1, use_bias=False)(x)
        x = self.over_time(x, events)  # direct encoding repeats the stem's output; event frames are per step

        def pre_act_block(mdl, x, width, stride):
            return PreActBlock(width, stride, mdl.neuron, mdl.num_steps, mdl.merge, mdl.dtype,
                               mdl.conv_impl)(x, train)

        hs = []
        for group, width in enumerate(self.widths):
            for block in range(self.blocks_per_group):
                stride = 2 if group > 0 and block == 0 else 1
                x, block_hs = self.block(pre_act_block, x, width=width, stride=stride)
                hs.extend(block_hs)
        x = layers.batch_norm(train, self.dtype)(x)
        x, h = self.spiking(x)
        hs.append(h)
        x = x.mean(axis=(1, 2))
        return self.finish(nn.Dense(self.num_classes, dtype=self.dtype)(x), hs, return_h)
