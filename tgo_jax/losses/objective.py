"""The objectives of the paper's experiments: vanilla / TGO × TET / AT / RAT (docs/FORMULAS.md §3)."""
from __future__ import annotations

from typing import Optional, Sequence

from tgo_jax import validation
from tgo_jax.losses.compose import compose, weighted
from tgo_jax.losses.margin import margin
from tgo_jax.losses.outputs import Term
from tgo_jax.losses.regularisers import lipschitz
from tgo_jax.losses.schedules import Weight
from tgo_jax.losses.task import ce, tet

STRATEGIES = ("tet", "ce", "at", "rat")
TASKS = ("tet", "ce")
ADVERSARIAL = ("at", "rat")  # the strategies that train on PGD examples


def tgo_objective(strategy: str = "tet", *, task: str = "tet", tet_lambda: float = 1e-3,
                  margin_weight: Optional[Weight] = None, delta: float = 0.5, p: int = 2,
                  threshold: float = 1.0, lipschitz_beta: Optional[float] = None,
                  extra_terms: Sequence = ()) -> Term:
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
        when the optimiser chains ``projections.parseval_retraction`` instead.
      extra_terms: more terms for ``compose`` (e.g. ``(sr(logits_fn), 0.01)``), added last.

    Returns:
      ``compose`` of the terms named "tet" or "ce", "margin", "lipschitz" and the extras.
    """
    validation.choice("strategy", strategy, STRATEGIES)
    validation.choice("task", task, TASKS)
    base = strategy if strategy in TASKS else task
    terms: list = [tet(tet_lambda) if base == "tet" else ce(per_step=True)]
    if margin_weight is not None:
        terms.append(weighted(margin(delta, p, threshold), margin_weight))
    if lipschitz_beta is not None:
        terms.append(lipschitz(lipschitz_beta))
    return compose(*terms, *extra_terms)
