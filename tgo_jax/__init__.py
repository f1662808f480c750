"""tgo_jax: robust spiking neural networks in JAX/Flax with Threshold Guarding Optimization.

``import tgo_jax`` is cheap: each subpackage (``tgo_jax.attacks``, ``tgo_jax.models``, ...) is imported on first
attribute access, so ``tgo_jax.attacks.pgd`` works without importing ``tgo_jax.attacks`` first.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

SUBMODULES = (
    "analysis", "attacks", "augment", "data", "fastconv", "fused", "lif", "losses", "metrics", "models",
    "neurons", "noise", "normalization", "projections", "sharding", "surrogate", "validation",
)

__all__ = ["__version__", *SUBMODULES]


def __getattr__(name: str):
    """Imports a subpackage on first access (PEP 562)."""
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(SUBMODULES))
