"""tgo_jax: robust spiking neural networks in JAX/Flax with Threshold Guarding Optimization."""

__version__ = "0.1.0"
