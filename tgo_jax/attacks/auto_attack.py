"""AutoAttack (Croce & Hein, ICML 2020; docs/FORMULAS.md §7): a fixed, parameter-free ensemble.

``version="standard"``: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000 queries), in this
order, each on the examples still robust after the previous ones. ``version="rand"`` (for randomised
defences such as Noisy-LIF): APGD-CE and APGD-DLR with EoT 20.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import validation
from tgo_jax.attacks.autopgd import apgd, apgd_targeted
from tgo_jax.attacks.core import (EPS, Array, LogitsFn, check_batch, check_options, misclassified, prepare, where)
from tgo_jax.attacks.fab import fab_targeted
from tgo_jax.attacks.square import square_attack

VERSIONS = ("standard", "rand")
RAND_EOT = 20


def autoattack_components(version: str = "standard", *, eps=EPS, steps: int = 100, num_targets: int = 9,
                          queries: int = 5000, eot: int | None = None) -> list[tuple[str, callable]]:
    """AutoAttack's (name, attack) list in its order for ``version``; ``eot`` None = 1 ("standard") or 20 ("rand")."""
    validation.choice("version", version, VERSIONS)
    eot = (RAND_EOT if version == "rand" else 1) if eot is None else eot
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


def autoattack(logits_fn: LogitsFn, params, x: Array, y: Array, key: Array, *, eps=EPS,
               version: str = "standard", steps: int = 100, num_targets: int = 9, queries: int = 5000,
               eot: int | None = None) -> Array:
    """AutoAttack, L∞ (Croce & Hein 2020; docs/FORMULAS.md §7).

    Runs the components of ``autoattack_components(version)`` in order; after each, an example that is
    misclassified (one fresh noise draw) keeps that adversarial point and is not attacked further. A
    component is skipped (``lax.cond``) when no example is left; otherwise it runs on the whole batch
    (shapes are static under jit) and only the still-robust examples take its result.

    Args:
      logits_fn, params, x, y, key, eps: as in ``fgsm``.
      version: "standard" or "rand".
      steps: APGD / FAB iterations (100); num_targets: APGD-T / FAB-T targets (9); queries: Square (5000).
      eot: EoT draws per gradient, None for the version's default (1 or 20).

    Returns:
      x_adv [B, ...] with ``||x_adv - x||∞ <= ε`` and pixels in [0, 1].
    """
    components = autoattack_components(version, eps=eps, steps=steps, num_targets=num_targets,
                                       queries=queries, eot=eot)
    check_batch(x, y, logits_fn, params)
    params, x, y = prepare(params, x, y)
    x_adv = x
    robust = ~misclassified(logits_fn(params, x, jax.random.fold_in(key, 1000)), y)
    for j, (_, attack) in enumerate(components):
        k_attack, k_check = jax.random.split(jax.random.fold_in(key, j))

        def run(carry, attack=attack, k_attack=k_attack, k_check=k_check):
            x_adv, robust = carry
            x_new = attack(logits_fn, params, x, y, k_attack)
            fooled = misclassified(logits_fn(params, x_new, k_check), y) & robust
            return where(fooled, x_new, x_adv), robust & ~fooled

        x_adv, robust = lax.cond(jnp.any(robust), run, lambda c: c, (x_adv, robust))
    return x_adv
