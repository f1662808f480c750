"""Loss transforms: task losses, the TGO membrane-margin penalty, weight regularisers (docs/FORMULAS.md §3).

A *term* is a pure function ``term(outputs, batch, params, step) -> scalar``:

- ``outputs``: an ``Outputs`` (per-step logits [T, B, K] and the per-layer pre-spike potentials H),
  exactly what ``model.apply(..., return_h=True)`` returns;
- ``batch``: a dict with ``'image'`` [B, H, W, C] pixels in [0, 1] and ``'label'`` [B] int (and, for
  terms that run the model again on a stochastic net, an optional ``'key'``);
- ``params``: the model's ``'params'`` collection;
- ``step``: the global step, an int32 scalar (traced under jit).

Weights are numbers or schedules (``step -> value``, optax style). ``compose`` sums weighted terms into
``loss_fn(outputs, batch, params, step) -> (total, metrics)``, so one forward pass feeds every term::

    loss_fn = compose(tet(), (margin(delta=0.5), cosine_ramp(0.6, total_steps)), lipschitz(2e-3))

RAT's Parseval constraint also comes as a post-update retraction (``apply_retraction`` or the optax
transform ``parseval_retraction``), and the WRN merge coefficients are kept on the simplex by
``project_merge_simplex`` / ``merge_simplex_projection``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import optax
from jax import lax

from tgo_jax.models.layers import mean_over_time

Array = jax.Array
PyTree = Any
Batch = dict
Schedule = Callable[[Array], Array]
Weight = Union[float, Schedule]
LogitsFn = Callable[[PyTree, Array, Array], Array]


class Outputs(NamedTuple):
    """What one forward pass gives the loss terms (``model.apply(..., return_h=True)``)."""

    logits_tb: Array  # [T, B, K], float32 per-step logits
    hs: tuple  # per LIF layer, pre-spike potential H [T, B, ...]


Term = Callable[[Outputs, Batch, PyTree, Array], Array]


# ----------------------------------------------------------------------------------------------
# Argument checks (raised at construction, outside any trace).

def _concrete_float(name: str, value: Any, expected: str) -> float:
    """``float(value)`` for a Python/numpy/concrete-array number, else a ValueError naming the field."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {expected}, got {value!r}") from None


def _check_nonnegative(name: str, value: float) -> float:
    number = _concrete_float(name, value, "a number >= 0")
    if not number >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return number


def _check_positive(name: str, value: float) -> float:
    number = _concrete_float(name, value, "a number > 0")
    if not number > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return number


def _check_p(p: int) -> int:
    if p not in (1, 2) or isinstance(p, bool):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    return int(p)


def _check_total_steps(total_steps: int) -> int:
    if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral) or total_steps < 1:
        raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
    return int(total_steps)


def _check_logits(outputs: Outputs, batch: Batch) -> tuple[Array, Array]:
    """The per-step logits [T, B, K] and the labels [B], with shapes checked (static under jit)."""
    logits_tb, labels = outputs.logits_tb, batch["label"]
    if logits_tb.ndim != 3:
        raise ValueError(f"outputs.logits_tb must be [T, B, K], got shape {logits_tb.shape}")
    if labels.shape != logits_tb.shape[1:2]:
        raise ValueError(f"batch['label'] must be [B] = {logits_tb.shape[1:2]}, got shape {labels.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"batch['label'] must hold integer classes, got dtype {labels.dtype}")
    return logits_tb, labels


def _named(fn: Term, name: str) -> Term:
    fn.__name__ = name
    fn.__qualname__ = name
    return fn


# ----------------------------------------------------------------------------------------------
# Schedules: step -> value, traceable.

def constant(value: float) -> Schedule:
    """λ(step) = value."""
    value = _check_nonnegative("value", value)
    return lambda step: jnp.full((), value, jnp.float32)


def _progress(step: Array, total_steps: int) -> Array:
    """min(max(step, 0), E) / E in float32: 0 at the start, 1 from step E on."""
    step = jnp.asarray(step, jnp.float32)
    return jnp.clip(step, 0.0, float(total_steps)) / float(total_steps)


def linear_ramp(value_max: float, total_steps: int) -> Schedule:
    """λ(e) = λ_max·min(e, E)/E (the linear option of docs/FORMULAS.md §3, dynamic λ)."""
    value_max = _check_nonnegative("value_max", value_max)
    total_steps = _check_total_steps(total_steps)
    return lambda step: value_max * _progress(step, total_steps)


def cosine_ramp(value_max: float, total_steps: int) -> Schedule:
    """λ(e) = λ_max·(1 − cos(π·min(e, E)/E))/2 (paper eq. 14 as reconstructed in docs/FORMULAS.md §3).

    Starts at 0, reaches λ_max/2 at E/2 and λ_max at E, and stays there after E.
    """
    value_max = _check_nonnegative("value_max", value_max)
    total_steps = _check_total_steps(total_steps)
    return lambda step: value_max * 0.5 * (1.0 - jnp.cos(math.pi * _progress(step, total_steps)))


SCHEDULES = ("cosine", "linear", "constant")


def schedule_by_name(name: str, value_max: float, total_steps: int) -> Schedule:
    """The margin weight schedule named in a config: "cosine" (default), "linear" or "constant"."""
    if name == "cosine":
        return cosine_ramp(value_max, total_steps)
    if name == "linear":
        return linear_ramp(value_max, total_steps)
    if name == "constant":
        return constant(value_max)
    raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {name!r}")


# ----------------------------------------------------------------------------------------------
# Task terms.

def ce(per_step: bool = True) -> Term:
    """Cross-entropy (docs/FORMULAS.md §3): ``mean_t CE(o[t], y)`` (per_step) or ``CE(mean_t o[t], y)``.

    Both are averaged over the batch.
    """
    per_step = bool(per_step)

    def ce_term(outputs, batch, params, step):
        logits_tb, labels = _check_logits(outputs, batch)
        if per_step:
            labels_tb = jnp.broadcast_to(labels, logits_tb.shape[:2])
            return optax.softmax_cross_entropy_with_integer_labels(logits_tb, labels_tb).mean()
        return optax.softmax_cross_entropy_with_integer_labels(mean_over_time(logits_tb), labels).mean()

    return _named(ce_term, "ce")


def tet(lam: float = 1e-3, phi: float = 1.0) -> Term:
    """Temporal efficient training loss (Deng et al. 2022; docs/FORMULAS.md §3, the paper's "vanilla")::

        L_TET = (1 − λ_T)·(1/T) Σ_t CE(o[t], y) + λ_T·(1/T) Σ_t MSE(o[t], φ)

    CE is averaged over the batch; MSE over the batch and the K logits. λ_T = 1e-3, φ = θ = 1.
    """
    lam_value = _concrete_float("lam", lam, "a number in [0, 1]")
    if not 0.0 <= lam_value <= 1.0:
        raise ValueError(f"lam (λ_T) must be in [0, 1], got {lam!r}")
    lam, phi = lam_value, _concrete_float("phi", phi, "a number")
    per_step_ce = ce(per_step=True)

    def tet_term(outputs, batch, params, step):
        logits_tb, _ = _check_logits(outputs, batch)
        mse = jnp.mean((logits_tb - phi) ** 2)
        return (1.0 - lam) * per_step_ce(outputs, batch, params, step) + lam * mse

    return _named(tet_term, "tet")


# ----------------------------------------------------------------------------------------------
# TGO membrane margin penalty and the threshold-neighbour share.

def _check_hs(hs: Sequence[Array]) -> tuple:
    if not isinstance(hs, (tuple, list)) or len(hs) == 0:
        raise ValueError("outputs.hs must be a non-empty tuple of H [T, B, ...] per LIF layer "
                         f"(apply the model with return_h=True), got {type(hs).__name__} of length "
                         f"{len(hs) if isinstance(hs, (tuple, list)) else 'n/a'}")
    for i, h in enumerate(hs):
        if h.ndim < 2:
            raise ValueError(f"outputs.hs[{i}] must be time-major [T, B, ...], got shape {h.shape}")
    return tuple(hs)


def layer_margin_penalty(h_tb: Array, *, delta: float = 0.5, p: int = 2, threshold: float = 1.0) -> Array:
    """One layer's margin cost (paper eq. 12, docs/FORMULAS.md §3)::

        C_l = (1/(T·N_l)) Σ_t Σ_i max(0, δ − |H_i^l[t] − θ|)^p,   averaged over the batch,

    i.e. the mean over all T·B·N_l entries of H.
    """
    gap = jnp.maximum(0.0, delta - jnp.abs(h_tb.astype(jnp.float32) - threshold))
    return jnp.mean(gap if p == 1 else gap * gap)


def margin_penalty(hs: Sequence[Array], *, delta: float = 0.5, p: int = 2, threshold: float = 1.0) -> Array:
    """L_MC = Σ_l C_l over every LIF layer (paper eq. 12-13, docs/FORMULAS.md §3)."""
    hs = _check_hs(hs)
    return sum(layer_margin_penalty(h, delta=delta, p=p, threshold=threshold) for h in hs)


def margin(delta: float = 0.5, p: int = 2, threshold: float = 1.0) -> Term:
    """The TGO membrane margin penalty term ``L_MC = Σ_l C_l`` (paper eq. 12, docs/FORMULAS.md §3).

    Potentials within δ of the threshold θ pay ``(δ − |H − θ|)^p``; p = 2 (quadratic, default) or 1.
    Pair it with a dynamic weight, e.g. ``(margin(0.5), cosine_ramp(0.6, E))`` (eq. 13-14).
    """
    delta = _check_positive("delta", delta)
    p = _check_p(p)
    threshold = _check_positive("threshold", threshold)

    def margin_term(outputs, batch, params, step):
        return margin_penalty(outputs.hs, delta=delta, p=p, threshold=threshold)

    return _named(margin_term, "margin")


class NeighbourShare(NamedTuple):
    """Share of (neuron, t, example) entries with |H − θ| < δ (same layout as ``analysis.NeighbourShare``)."""

    per_layer: Array  # [L], float32: each LIF layer's own share
    overall: Array  # [], float32: over all layers' entries pooled


def threshold_neighbour_share(hs: Sequence[Array], delta: float = 0.5, threshold: float = 1.0) -> NeighbourShare:
    """Threshold-neighbour fraction (docs/FORMULAS.md §5, paper Fig. 4): share of entries with |H − θ| < δ.

    ``overall`` counts every (layer, neuron, t, example) entry once, so wide layers weigh more;
    ``per_layer`` [L] gives each layer's own share.
    """
    hs = _check_hs(hs)
    delta = _check_positive("delta", delta)
    counts = jnp.stack([jnp.sum(jnp.abs(h.astype(jnp.float32) - threshold) < delta, dtype=jnp.float32)
                        for h in hs])
    sizes = jnp.asarray([h.size for h in hs], jnp.float32)
    return NeighbourShare(per_layer=counts / sizes, overall=counts.sum() / sizes.sum())


# ----------------------------------------------------------------------------------------------
# Lipschitz (Parseval) regulariser, retraction and merge-simplex projection (RAT, docs/FORMULAS.md §3).

def _leaf_name(path) -> str:
    last = path[-1] if path else None
    for attr in ("key", "name", "idx"):
        if hasattr(last, attr):
            return str(getattr(last, attr))
    return str(last)


def is_weight_kernel(path, leaf) -> bool:
    """Conv and dense kernels: leaves named 'kernel' with rank >= 2 (biases, BN, 'merge' excluded)."""
    return _leaf_name(path) == "kernel" and getattr(leaf, "ndim", 0) >= 2


def _matmul(a: Array, b: Array) -> Array:
    """Full-precision matmul: Gram matrices of near-orthogonal weights need float32 accuracy on
    accelerators whose default matmul precision is lower (TF32 / bf16 passes)."""
    return jnp.matmul(a, b, precision=lax.Precision.HIGHEST)


def kernel_matrix(kernel: Array) -> Array:
    """A flax kernel as W [out, in·k·k]: conv [kh, kw, in, out] and dense [in, out] both -> [out, fan_in]."""
    return kernel.reshape(-1, kernel.shape[-1]).T


def parseval_residual(w: Array) -> Array:
    """‖W Wᵀ − I‖²_F for W [m, n], computed through the smaller Gram matrix.

    With singular values s: ‖W Wᵀ − I_m‖² = Σ s⁴ − 2 Σ s² + m and ‖Wᵀ W − I_n‖² = Σ s⁴ − 2 Σ s² + n, so
    the [m, m] form equals the [r, r] one (r = min(m, n)) plus the constant m − r.
    """
    m, n = w.shape
    w = w.astype(jnp.float32)
    gram = _matmul(w, w.T) if m <= n else _matmul(w.T, w)
    eye = jnp.eye(gram.shape[0], dtype=jnp.float32)
    return jnp.sum((gram - eye) ** 2) + float(m - min(m, n))


def lipschitz_penalty(params: PyTree, beta: float = 2e-3) -> Array:
    """L_lip = (β/4)·Σ_W ‖W Wᵀ − I‖²_F over every conv (as [out, in·k·k]) and dense kernel (SNN-RAT).

    Its gradient is β·(W Wᵀ − I)·W, so one gradient step of size 1 is the retraction of
    ``apply_retraction``.
    """
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    terms = [parseval_residual(kernel_matrix(leaf)) for path, leaf in leaves if is_weight_kernel(path, leaf)]
    if not terms:
        return jnp.zeros((), jnp.float32)
    return (beta / 4.0) * sum(terms)


def lipschitz(beta: float = 2e-3) -> Term:
    """RAT's Lipschitz (Parseval) term ``(β/4)·Σ_W ‖W Wᵀ − I‖²_F`` on ``params`` (docs/FORMULAS.md §3).

    β is part of the term's value, so compose it with weight 1 (the default).
    """
    beta = _check_nonnegative("beta", beta)

    def lipschitz_term(outputs, batch, params, step):
        return lipschitz_penalty(params, beta)

    return _named(lipschitz_term, "lipschitz")


def _retract_kernel(kernel: Array, beta: float) -> Array:
    """W ← (1+β)W − β·W Wᵀ W on W = kernel_matrix(kernel), reshaped back to the kernel's layout."""
    w = kernel_matrix(kernel)
    m, n = w.shape
    wwtw = _matmul(_matmul(w, w.T), w) if m <= n else _matmul(w, _matmul(w.T, w))
    new_w = (1.0 + beta) * w - beta * wwtw
    return new_w.T.reshape(kernel.shape).astype(kernel.dtype)


def apply_retraction(params: PyTree, beta: float = 2e-3) -> PyTree:
    """SNN-RAT's Parseval retraction on every conv and dense kernel: ``W ← (1+β)W − β W Wᵀ W``.

    Apply it after the optimiser step (``params = apply_retraction(optax.apply_updates(params, u))``)
    or chain ``parseval_retraction(beta)`` last in the optimiser. Other leaves are returned unchanged.
    """
    beta = _check_nonnegative("beta", beta)
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: _retract_kernel(leaf, beta) if is_weight_kernel(path, leaf) else leaf, params)


def project_simplex(c: Array) -> Array:
    """Euclidean projection of each vector along the last axis onto {c ≥ 0, Σ c = 1} (Duchi et al. 2008).

    For c = (c1, c2): c1' = clip((c1 − c2 + 1)/2, 0, 1), c2' = 1 − c1'.
    """
    k = c.shape[-1]
    sorted_desc = -jnp.sort(-c, axis=-1)
    cumsum = jnp.cumsum(sorted_desc, axis=-1) - 1.0
    ranks = jnp.arange(1, k + 1, dtype=c.dtype)
    support = sorted_desc - cumsum / ranks > 0
    rho = jnp.sum(support, axis=-1, keepdims=True)  # >= 1 always: the largest entry is in the support
    tau = jnp.take_along_axis(cumsum, rho - 1, axis=-1) / rho.astype(c.dtype)
    return jnp.maximum(c - tau, 0.0)


def is_merge_param(path, leaf) -> bool:
    """The WRN residual-merge coefficients: leaves named 'merge'."""
    return _leaf_name(path) == "merge"


def project_merge_simplex(params: PyTree) -> PyTree:
    """Projects every WRN block's 'merge' (c1, c2) onto {c ≥ 0, c1 + c2 = 1} (docs/FORMULAS.md §2, RAT).

    Call it after each optimiser step, or chain ``merge_simplex_projection()`` into the optimiser.
    """
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: project_simplex(leaf) if is_merge_param(path, leaf) else leaf, params)


def _post_update(project: Callable[[PyTree], PyTree]) -> optax.GradientTransformation:
    """An optax transform that makes ``params + updates`` land on ``project(params + updates)``.

    Chain it last: ``optax.chain(optax.sgd(...), parseval_retraction(beta))``; the updates it emits are
    ``project(params + u) − params``, so ``optax.apply_updates`` gives the projected parameters.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("this transform needs params: call optimizer.update(grads, state, params)")
        new_params = project(optax.apply_updates(params, updates))
        return jax.tree_util.tree_map(lambda new, old: new - old, new_params, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def parseval_retraction(beta: float = 2e-3) -> optax.GradientTransformation:
    """Optax form of ``apply_retraction``: after the inner update, ``W ← (1+β)W − β W Wᵀ W`` (SNN-RAT)."""
    beta = _check_nonnegative("beta", beta)
    return _post_update(lambda params: apply_retraction(params, beta))


def merge_simplex_projection() -> optax.GradientTransformation:
    """Optax form of ``project_merge_simplex`` (chain it last, like ``parseval_retraction``)."""
    return _post_update(project_merge_simplex)


# ----------------------------------------------------------------------------------------------
# SR gradient-sparsity regulariser (Ding et al. 2024).

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


def sr_penalty(logits_fn: LogitsFn, params: PyTree, x: Array, labels: Array, key: Array,
               h: float = 0.01) -> Array:
    """mean_b R_b, the SR regulariser (Ding et al. 2024, docs/FORMULAS.md §3)::

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
    return jnp.mean(slope**2)


def sr(logits_fn: LogitsFn, h: float = 0.01) -> Term:
    """SR gradient-sparsity term (Ding et al. 2024, docs/FORMULAS.md §3): ``mean_b ((p(x+h·d) − p(x))/h)²``.

    Needs a logit function ``logits_fn(params, x, key) -> [B, K]`` whose ``params`` is what the loss
    receives (the 'params' collection); ``training_logits_fn(model)`` builds one. It runs the model
    three more times (p(x), the input gradient for d, p(x + h·d)) on ``batch['image']``. The noise key
    is ``batch['key']`` when the batch has one (put the step's key there for a Noisy-LIF model),
    otherwise ``fold_in(PRNGKey(0), step)``. Use ``compose(ce(), (sr(fn), λ_SR))`` for ``CE + λ_SR·R``.
    """
    if not callable(logits_fn):
        raise ValueError(f"logits_fn must be callable (params, x, key) -> [B, K], got {logits_fn!r}")
    h = _check_positive("h", h)

    def sr_term(outputs, batch, params, step):
        key = batch["key"] if "key" in batch else jax.random.fold_in(jax.random.PRNGKey(0), step)
        return sr_penalty(logits_fn, params, batch["image"], batch["label"], key, h)

    return _named(sr_term, "sr")


# ----------------------------------------------------------------------------------------------
# Combinator.

class Weighted(NamedTuple):
    """A term with its weight (a number >= 0 or a schedule) and the name its metrics go under."""

    term: Term
    weight: Weight
    name: str


def term_name(term: Term) -> str:
    return getattr(term, "__name__", type(term).__name__)


def weighted(term: Term, weight: Weight = 1.0, name: Optional[str] = None) -> Weighted:
    """Pairs a term with a weight: a number >= 0 (made a ``constant``) or a schedule ``step -> value``."""
    if not callable(term):
        raise ValueError(f"term must be callable (outputs, batch, params, step) -> scalar, got {term!r}")
    if not callable(weight):
        weight = constant(_check_nonnegative(f"weight of {term_name(term)}", weight))
    return Weighted(term, weight, name or term_name(term))


def _as_weighted(item) -> Weighted:
    if isinstance(item, Weighted):
        return item
    if isinstance(item, tuple):
        if len(item) not in (2, 3):
            raise ValueError(f"a weighted term is (term, weight) or (term, weight, name), got {item!r}")
        return weighted(*item)
    return weighted(item)


def compose(*weighted_terms) -> Callable[[Outputs, Batch, PyTree, Array], tuple[Array, dict]]:
    """Sums weighted terms (docs/FORMULAS.md §3, eq. 13: ``L = L_task + λ(e)·L_MC``).

    Args:
      *weighted_terms: each a term (weight 1), a ``(term, weight)`` or ``(term, weight, name)`` tuple,
        or a ``weighted(...)``; weights are numbers >= 0 or schedules ``step -> value``.

    Returns:
      ``loss_fn(outputs, batch, params, step) -> (total, metrics)``, where ``total = Σ w_i(step)·term_i``
      and ``metrics[name]`` is each term's raw value, ``metrics[name + '_weight']`` its weight.
    """
    items = [_as_weighted(item) for item in weighted_terms]
    if not items:
        raise ValueError("compose needs at least one term")
    names = [item.name for item in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"term names must be unique, got duplicates {duplicates}; "
                         "give one a name with weighted(term, weight, name=...)")

    def loss_fn(outputs: Outputs, batch: Batch, params: PyTree, step: Array):
        total = jnp.zeros((), jnp.float32)
        metrics = {}
        for item in items:
            value = jnp.asarray(item.term(outputs, batch, params, step), jnp.float32)
            weight = jnp.asarray(item.weight(step), jnp.float32)
            total = total + weight * value
            metrics[item.name] = value
            metrics[item.name + "_weight"] = weight
        return total, metrics

    return loss_fn


# ----------------------------------------------------------------------------------------------
# Objectives of the paper's experiments.

STRATEGIES = ("tet", "ce", "at", "rat")
TASKS = ("tet", "ce")


def tgo_objective(strategy: str = "tet", *, task: str = "tet", tet_lambda: float = 1e-3,
                  margin_weight: Optional[Weight] = None, delta: float = 0.5, p: int = 2,
                  threshold: float = 1.0, lipschitz_beta: Optional[float] = None):
    """The composed loss for vanilla / TGO × TET / AT / RAT (docs/FORMULAS.md §3).

    Args:
      strategy: "tet" or "ce" (clean training with that loss), "at" or "rat" (the ``task`` loss; the
        training program feeds them PGD examples, see docs/FORMULAS.md §3 AT).
      task: the loss used under "at"/"rat": "tet" (default) or "ce".
      tet_lambda: λ_T of the TET loss.
      margin_weight: None for vanilla training; for TGO the margin weight λ(e), a number or a schedule
        (``cosine_ramp(0.6, E)`` in the paper; the Noisy-LIF half of TGO is a model option).
      delta, p, threshold: the margin penalty's δ, exponent and θ.
      lipschitz_beta: add the Lipschitz term with this β (RAT in loss form). Leave it None under "rat"
        when the training program applies ``parseval_retraction`` instead.

    Returns:
      ``loss_fn(outputs, batch, params, step) -> (total, metrics)`` with terms named "tet" or "ce",
      "margin", "lipschitz".
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    base = strategy if strategy in TASKS else task
    terms: list = [tet(tet_lambda) if base == "tet" else ce(per_step=True)]
    if margin_weight is not None:
        terms.append(weighted(margin(delta, p, threshold), margin_weight))
    if lipschitz_beta is not None:
        terms.append(lipschitz(lipschitz_beta))
    return compose(*terms)
