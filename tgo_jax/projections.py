"""Parameter projections after the optimiser step, as optax post-update transforms (docs/FORMULAS.md §2-3).

- SNN-RAT's Parseval retraction ``W ← (1+β)W − β W Wᵀ W`` on every conv and dense kernel;
- the WRN residual-merge coefficients kept on the simplex {c ≥ 0, Σ c = 1}.

Each comes as a function on the params tree (``apply_retraction``, ``project_merge_simplex``) and as an optax
transform to chain last in the optimiser (``parseval_retraction``, ``merge_simplex_projection``). The
kernel predicate ``is_weight_kernel`` also picks what weight decay and the Lipschitz term apply to.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from tgo_jax import validation

Array = jax.Array
PyTree = Any


def _leaf_name(path) -> str:
    last = path[-1] if path else None
    for attr in ("key", "name", "idx"):
        if hasattr(last, attr):
            return str(getattr(last, attr))
    return str(last)


def is_weight_kernel(path, leaf) -> bool:
    """Conv and dense kernels: leaves named 'kernel' with rank >= 2 (biases, BN, 'merge' excluded)."""
    return _leaf_name(path) == "kernel" and getattr(leaf, "ndim", 0) >= 2


def kernel_mask(params: PyTree) -> PyTree:
    """``is_weight_kernel`` over a params tree: a tree of bools (the weight-decay mask)."""
    return jax.tree_util.tree_map_with_path(is_weight_kernel, params)


def is_merge_param(path, leaf) -> bool:
    """The WRN residual-merge coefficients: leaves named 'merge'."""
    return _leaf_name(path) == "merge"


def precise_matmul(a: Array, b: Array) -> Array:
    """Full-precision matmul: Gram matrices of near-orthogonal weights need float32 accuracy on
    accelerators whose default matmul precision is lower (TF32 / bf16 passes)."""
    return jnp.matmul(a, b, precision=lax.Precision.HIGHEST)


def kernel_matrix(kernel: Array) -> Array:
    """A flax kernel as W [out, in·k·k]: conv [kh, kw, in, out] and dense [in, out] both -> [out, fan_in]."""
    return kernel.reshape(-1, kernel.shape[-1]).T


def _retract_kernel(kernel: Array, beta: float) -> Array:
    """W ← (1+β)W − β·W Wᵀ W on W = kernel_matrix(kernel), reshaped back to the kernel's layout."""
    w = kernel_matrix(kernel)
    m, n = w.shape
    wwtw = (precise_matmul(precise_matmul(w, w.T), w) if m <= n
            else precise_matmul(w, precise_matmul(w.T, w)))
    new_w = (1.0 + beta) * w - beta * wwtw
    return new_w.T.reshape(kernel.shape).astype(kernel.dtype)


def apply_retraction(params: PyTree, beta: float = 2e-3) -> PyTree:
    """SNN-RAT's Parseval retraction on every conv and dense kernel: ``W ← (1+β)W − β W Wᵀ W`` (docs/FORMULAS.md §3).

    It is one gradient step of size 1 on the Lipschitz term ``losses.lipschitz_penalty``. Other leaves
    are returned unchanged.
    """
    beta = validation.non_negative("beta", beta)
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: _retract_kernel(leaf, beta) if is_weight_kernel(path, leaf) else leaf, params)


def project_simplex(c: Array) -> Array:
    """Euclidean projection of each vector along the last axis onto {c ≥ 0, Σ c = 1}.

    ``optax.projections.projection_simplex`` (Duchi et al. 2008), mapped over the leading axes. For
    c = (c1, c2): c1' = clip((c1 − c2 + 1)/2, 0, 1), c2' = 1 − c1' (docs/FORMULAS.md §2).
    """
    project = optax.projections.projection_simplex
    for _ in range(c.ndim - 1):
        project = jax.vmap(project)
    return project(c)


def project_merge_simplex(params: PyTree) -> PyTree:
    """Projects every WRN block's 'merge' (c1, c2) onto {c ≥ 0, c1 + c2 = 1} (docs/FORMULAS.md §2, RAT)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: project_simplex(leaf) if is_merge_param(path, leaf) else leaf, params)


def post_update(project: Callable[[PyTree], PyTree]) -> optax.GradientTransformation:
    """An optax transform that makes ``params + updates`` land on ``project(params + updates)``.

    Chain it last: ``optax.chain(optax.sgd(...), parseval_retraction(beta))``; the updates it emits are
    ``project(params + u) − params``, so ``optax.apply_updates`` gives the projected parameters (to
    float rounding: ``p + (q − p)`` may differ from q in the last bit).
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
    beta = validation.non_negative("beta", beta)
    return post_update(lambda params: apply_retraction(params, beta))


def merge_simplex_projection() -> optax.GradientTransformation:
    """Optax form of ``project_merge_simplex`` (chain it last, like ``parseval_retraction``)."""
    return post_update(project_merge_simplex)
