"""SR gradient-sparsity regulariser (Ding et al. 2024; docs/FORMULAS.md §3)."""
from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import validation
from tgo_jax.losses.outputs import Term, named
from tgo_jax.models.layers import mean_over_time

Array = jax.Array
PyTree = Any
LogitsFn = Callable[[PyTree, Array, Array], Array]


def training_logits_fn(model) -> LogitsFn:
    """A logit function for ``sr`` from a flax model, run as in the train step.

    ``logits_fn(params, x, key) -> [B, K]`` = mean over T of ``model.apply({'params': params}, x,
    train=True, rngs={'noise': key})``: BatchNorm uses the batch's statistics (as the main training
    forward does) and its running-average update is discarded.
    """

    def logits_fn(params, x, key):
        logits_tb, _ = model.apply({"params": params}, x, train=True, mutable=["batch_stats"],
                                   rngs={"noise": key})
        return mean_over_time(logits_tb)

    return logits_fn


def _pair_probability(logits: Array, labels: Array, wrong: Array) -> Array:
    """p = e^{z_y} / (e^{z_y} + e^{z_j}) = σ(z_y − z_j), per example."""
    z_y = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    z_j = jnp.take_along_axis(logits, wrong[:, None], axis=-1)[:, 0]
    return jax.nn.sigmoid(z_y - z_j)


def top_wrong_class(logits: Array, labels: Array) -> Array:
    """argmax_{j ≠ y} z_j per example, [B] int32."""
    masked = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return jnp.argmax(masked, axis=-1).astype(jnp.int32)


def sr_cost(logits_fn: LogitsFn, params: PyTree, x: Array, labels: Array, key: Array,
            h: float = 0.01) -> Array:
    """R per example [B], the SR regulariser (Ding et al. 2024, docs/FORMULAS.md §3)::

        p = e^{z_y}/(e^{z_y} + e^{z_j}),  j = top wrong class at x,
        d = sign(∇_x p),  R = ((p(x + h·d) − p(x)) / h)²  ≈ ‖∇_x p‖₁².

    j and d are held constant (no gradient); x + h·d is not clipped (it is a finite difference, not
    an attack). All three model calls share ``key``, so a Noisy-LIF model sees the same noise in
    p(x) and p(x + h·d).
    """
    logits = logits_fn(params, x, key)
    wrong = lax.stop_gradient(top_wrong_class(logits, labels))

    def prob(inputs):
        return _pair_probability(logits_fn(params, inputs, key), labels, wrong)

    direction = lax.stop_gradient(jnp.sign(jax.grad(lambda inputs: prob(inputs).sum())(x)))
    slope = (prob(x + h * direction) - _pair_probability(logits, labels, wrong)) / h
    return slope**2


def sr_penalty(logits_fn: LogitsFn, params: PyTree, x: Array, labels: Array, key: Array,
               h: float = 0.01) -> Array:
    """``sr_cost`` averaged over the batch: mean_b R_b."""
    return jnp.mean(sr_cost(logits_fn, params, x, labels, key, h))


def sr(logits_fn: LogitsFn, h: float = 0.01) -> Term:
    """SR gradient-sparsity term ``((p(x+h·d) − p(x))/h)²`` per example (Ding et al. 2024, docs/FORMULAS.md §3).

    Needs a logit function ``logits_fn(params, x, key) -> [B, K]`` whose ``params`` is what the loss
    receives (the 'params' collection); ``training_logits_fn(model)`` builds one. It runs the model
    three more times (p(x), the input gradient for d, p(x + h·d)) on ``batch['image']``, with the noise
    key passed to the loss as ``key=`` (the step's noise key for a Noisy-LIF model); without one it
    raises. Use ``compose(ce(), (sr(fn), λ_SR))`` for ``CE + λ_SR·mean(R)``.
    """
    validation.function("logits_fn", logits_fn, "(params, x, key) -> [B, K]")
    h = validation.positive("h", h)

    def sr_term(outputs, batch, params, step, *, key: Optional[Array] = None):
        if key is None:
            raise ValueError("the sr term needs a PRNG key: call the loss with key=... (the noise key of the step)")
        return sr_cost(logits_fn, params, batch["image"], batch["label"], key, h)

    return named(sr_term, "sr")
