"""AutoAttack (Croce & Hein, ICML 2020; docs/FORMULAS.md §7): a fixed, parameter-free ensemble.

``version="standard"``: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000 queries), in this
order, each on the examples still robust after the previous ones. ``version="rand"`` (for randomised
defences such as Noisy-LIF): APGD-CE and APGD-DLR with EoT 20.

Staging under jit (static shapes): before each component the still-robust examples are gathered, in
batch order, into chunks of a fixed size (``ceil(B / chunks)``), and a ``lax.while_loop`` runs the
component on as many chunks as hold a still-robust example; its results are scattered back. So the
examples fooled earlier (and the clean misclassified ones) cost nothing, as in the reference, which runs
each component on the robust subset only. Chunk c of a component uses the key ``fold_in(k, c)``, so the
random starts and noise differ from a whole-batch run (same in distribution, not per example). On 2 CPU
cores (shared machine), 200 Fashion-MNIST test images at ε = 8/255 on a small trained net (clean 85 %,
robust 15 %): 82 s staged against 422 s for the whole batch, and 34 s against 170 s in a less loaded
run, 0.19-0.20 of the time (``bench/autoattack_cost.py``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import validation
from tgo_jax.attacks.autopgd import apgd, apgd_targeted
from tgo_jax.attacks.core import (EPS, Array, LogitsFn, check_batch, check_options, fooled, loss_logits, margin_loss,
                                  prepare, where)
from tgo_jax.attacks.core import takes_variables
from tgo_jax.attacks.fab import fab_targeted
from tgo_jax.attacks.square import square_attack

VERSIONS = ("standard", "rand")
RAND_EOT = 20
STAGE_CHUNKS = 8  # chunks per batch: a component costs ceil(robust / chunk) chunk runs, chunk = ceil(B / 8)


def _eot(version: str, eot: int | None) -> int:
    return (RAND_EOT if version == "rand" else 1) if eot is None else eot


def autoattack_components(version: str = "standard", *, eps=EPS, steps: int = 100, num_targets: int = 9,
                          queries: int = 5000, eot: int | None = None) -> list[tuple[str, callable]]:
    """AutoAttack's (name, attack) list in its order for ``version``; ``eot`` None = 1 ("standard") or 20 ("rand")."""
    validation.choice("version", version, VERSIONS)
    eot = _eot(version, eot)
    check_options(eps=eps, steps=steps, eot=eot)
    validation.count("queries", queries)
    validation.count("num_targets", num_targets)
    if version == "rand":
        return [("APGD-CE", functools.partial(apgd, eps=eps, steps=steps, eot=eot)),
                ("APGD-DLR", functools.partial(apgd, eps=eps, steps=steps, eot=eot, loss="dlr"))]
    return [("APGD-CE", functools.partial(apgd, eps=eps, steps=steps, eot=eot)),
            ("APGD-T", functools.partial(apgd_targeted, eps=eps, steps=steps, num_targets=num_targets, eot=eot)),
            ("FAB-T", functools.partial(fab_targeted, eps=eps, steps=steps, num_targets=num_targets, eot=eot)),
            ("Square", functools.partial(square_attack, eps=eps, queries=queries, eot=eot))]


def fooled_on_average(logits_fn, variables, x_adv: Array, y: Array, key: Array, eot: int) -> Array:
    """[B] bool: the EoT-mean margin over ``eot`` draws from ``key`` is positive (``core.fooled``, §4, §7)."""
    f = loss_logits(margin_loss, logits_fn, variables, x_adv, y, key, eot)
    return fooled(f.margin, f.logits, y)


def _component_keys(key: Array, j: int) -> tuple[Array, Array]:
    """(attack key, check key) of component j."""
    return tuple(jax.random.split(jax.random.fold_in(key, j)))


def _whole_batch(attack, logits_fn, variables, x, y, x_adv, robust, key, j, eot):
    """Component j on the whole batch (skipped when no example is robust); the robust examples it fools
    take its result."""
    k_attack, k_check = _component_keys(key, j)

    def run(carry):
        x_adv, robust = carry
        x_new = attack(logits_fn, variables, x, y, k_attack)
        won = robust & fooled_on_average(logits_fn, variables, x_new, y, k_check, eot)
        return where(won, x_new, x_adv), robust & ~won

    return lax.cond(jnp.any(robust), run, lambda c: c, (x_adv, robust))


def _staged(attack, logits_fn, variables, x, y, x_adv, robust, key, j, eot, chunk):
    """Component j on the still-robust examples only: gathered in batch order into chunks of ``chunk``
    rows, chunk c attacked with key ``fold_in(k_attack, c)`` and checked with ``fold_in(k_check, c)``."""
    k_attack, k_check = _component_keys(key, j)
    batch = x.shape[0]
    num_chunks = -(-batch // chunk)
    order = jnp.argsort(jnp.where(robust, 0, 1), stable=True)          # robust rows first
    order = jnp.pad(order, (0, num_chunks * chunk - batch))             # padding rows: never valid
    left = jnp.sum(robust)

    def body(carry):
        c, x_adv, robust = carry
        start = c * chunk
        rows = lax.dynamic_slice(order, (start,), (chunk,))
        valid = start + jnp.arange(chunk) < left
        xs, ys = x[rows], y[rows]
        x_new = attack(logits_fn, variables, xs, ys, jax.random.fold_in(k_attack, c))
        won = valid & fooled_on_average(logits_fn, variables, x_new, ys, jax.random.fold_in(k_check, c), eot)
        dest = jnp.where(won, rows, batch)                               # out of range: dropped
        return c + 1, x_adv.at[dest].set(x_new, mode="drop"), robust.at[dest].set(False, mode="drop")

    _, x_adv, robust = lax.while_loop(lambda carry: carry[0] * chunk < left, body,
                                      (jnp.int32(0), x_adv, robust))
    return x_adv, robust


def run_components(components, logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *, eot: int,
                   chunks: int | None = STAGE_CHUNKS) -> tuple[Array, Array]:
    """Runs ``components`` ((name, attack) pairs) in order, AutoAttack's way; returns (x_adv, robust [B]).

    An example is robust at the start when its clean EoT-mean margin (``eot`` draws from
    ``fold_in(key, 1000)``) is not positive; after component j, a robust example whose new point has a
    positive EoT-mean margin (``eot`` fresh draws) takes that point and is no longer attacked. ``chunks``:
    stage on ``ceil(B / chunks)``-row chunks of the still-robust examples (``_staged``); None: every
    component on the whole batch (the robust examples take its result). Inputs as ``prepare`` leaves them.
    """
    robust = ~fooled_on_average(logits_fn, variables, x, y, jax.random.fold_in(key, 1000), eot)
    x_adv = x
    chunk = None if chunks is None else -(-x.shape[0] // chunks)
    for j, (_, attack) in enumerate(components):
        if chunk is None:
            x_adv, robust = _whole_batch(attack, logits_fn, variables, x, y, x_adv, robust, key, j, eot)
        else:
            x_adv, robust = _staged(attack, logits_fn, variables, x, y, x_adv, robust, key, j, eot, chunk)
    return x_adv, robust


@takes_variables
def autoattack(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array, *, eps=EPS,
               version: str = "standard", steps: int = 100, num_targets: int = 9, queries: int = 5000,
               eot: int | None = None, chunks: int | None = STAGE_CHUNKS) -> Array:
    """AutoAttack, L∞ (Croce & Hein 2020; docs/FORMULAS.md §7).

    Runs the components of ``autoattack_components(version)`` in order, each only on the examples still
    robust (``run_components``): an example counts as fooled when its margin ``max_{j≠y} z_j - z_y``,
    averaged over the components' ``eot`` fresh noise draws, is positive (not on one draw); it then keeps
    that point and is not attacked further. The still-robust examples run in chunks of ``ceil(B/chunks)``
    rows (static shapes under jit), so the work shrinks with them.

    Args:
      logits_fn, variables, x, y, key, eps: as in ``fgsm``.
      version: "standard" or "rand".
      steps: APGD / FAB iterations (100); num_targets: APGD-T / FAB-T targets (9); queries: Square (5000).
      eot: EoT draws per gradient and per robustness check, None for the version's default (1 or 20).
      chunks: chunks per batch for the staging (8); None runs every component on the whole batch.

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    components = autoattack_components(version, eps=eps, steps=steps, num_targets=num_targets,
                                       queries=queries, eot=eot)
    if chunks is not None:
        validation.count("chunks", chunks)
    check_batch(x, y, logits_fn, variables)
    variables, x, y = prepare(variables, x, y)
    return run_components(components, logits_fn, variables, x, y, key, eot=_eot(version, eot), chunks=chunks)[0]
