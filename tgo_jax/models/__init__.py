"""Spiking networks (flax.linen) and a by-name factory.

All models take [B, H, W, C] pixels in [0, 1] (or [B, T, H, W, C] event frames) and return per-step
logits [T, B, classes]; with
``return_h=True`` they also return a tuple of per-LIF-layer pre-spike potentials H [T, B, ...].
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

from tgo_jax import neurons, validation
from tgo_jax.models.layers import mean_over_time, sown_spike_rates
from tgo_jax.models.small import SmallSNN
from tgo_jax.models.vgg import SpikingVGG11
from tgo_jax.models.wrn import SpikingWRN

ARCHS = {"small": SmallSNN, "vgg11": SpikingVGG11, "wrn16_4": SpikingWRN}
_NEURON_FIELDS = {f.name for f in dataclasses.fields(neurons.NeuronConfig)}


def create(arch: str, **kwargs: Any) -> nn.Module:
    """Builds a model by name ("small", "vgg11", "wrn16_4").

    Keyword arguments that name a ``NeuronConfig`` field (kind, decay, threshold, surrogate, sigma,
    ...) configure every spiking layer; the rest go to the model (num_classes, num_steps, ...).
    """
    validation.choice("arch", arch, sorted(ARCHS))
    neuron_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in _NEURON_FIELDS}
    if "neuron" in kwargs and neuron_kw:
        raise ValueError(f"pass either neuron= or neuron fields {sorted(neuron_kw)}, not both")
    model_fields = {f.name for f in dataclasses.fields(ARCHS[arch])} - {"parent", "name"}
    unknown = sorted(set(kwargs) - model_fields)
    if unknown:
        raise ValueError(f"unknown {arch} model argument(s) {unknown}; expected NeuronConfig fields "
                         f"{sorted(_NEURON_FIELDS)} or model fields {sorted(model_fields)}")
    neuron = kwargs.pop("neuron", neurons.NeuronConfig(**neuron_kw))
    return ARCHS[arch](neuron=neuron, **kwargs)


__all__ = ["ARCHS", "create", "mean_over_time", "sown_spike_rates", "SmallSNN", "SpikingVGG11", "SpikingWRN"]
