"""Metrics of a forward pass that training reports beside the loss (docs/FORMULAS.md §5)."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from tgo_jax import validation

Array = jax.Array


class NeighbourShare(NamedTuple):
    """Share of (neuron, t, example) entries with |H − θ| < δ."""

    per_layer: Array  # [L], float32: each LIF layer's own share
    overall: Array  # [], float32: over all layers' entries pooled


def threshold_neighbour_share(hs: Sequence[Array], delta: float = 0.5, threshold: float = 1.0) -> NeighbourShare:
    """Threshold-neighbour fraction (docs/FORMULAS.md §5, paper Fig. 4): share of entries with |H − θ| < δ.

    ``overall`` counts every (layer, neuron, t, example) entry once, so wide layers weigh more;
    ``per_layer`` [L] gives each layer's own share.
    """
    hs = validation.per_layer("hs", hs, 2, "apply the model with return_h=True")
    delta = validation.positive("delta", delta)
    counts = jnp.stack([jnp.sum(jnp.abs(h.astype(jnp.float32) - threshold) < delta, dtype=jnp.float32)
                        for h in hs])
    sizes = jnp.asarray([h.size for h in hs], jnp.float32)
    return NeighbourShare(per_layer=counts / sizes, overall=counts.sum() / sizes.sum())


def mean_spike_rate(spike_rates: Sequence[Array]) -> Array:
    """The firing rate averaged over layers and examples, from the per-layer rates [B]; 0 without layers."""
    if not spike_rates:
        return jnp.zeros((), jnp.float32)
    return jnp.mean(jnp.stack([jnp.mean(r) for r in spike_rates]))
