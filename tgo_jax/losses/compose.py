"""The combinator: weighted terms summed into one loss, itself a term (docs/FORMULAS.md §3, eq. 13)."""
from __future__ import annotations

import inspect
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from tgo_jax import validation
from tgo_jax.losses.outputs import Batch, Outputs, PyTree, Term
from tgo_jax.losses.schedules import Weight, constant

Array = jax.Array
_TERM_SIGNATURE = "(outputs, batch, params, step, **extra) -> [B] or []"


class Weighted(NamedTuple):
    """A term with its weight (a number >= 0 or a schedule) and the name its metrics go under."""

    term: Term
    weight: Callable[[Array], Array]
    name: str


def term_name(term: Term) -> str:
    return getattr(term, "__name__", type(term).__name__)


def weighted(term: Term, weight: Weight = 1.0, name: Optional[str] = None) -> Weighted:
    """Pairs a term with a weight: a number >= 0 (made a ``constant``) or a schedule ``step -> value``."""
    validation.function("term", term, _TERM_SIGNATURE)
    if not callable(weight):
        weight = constant(validation.non_negative(f"weight of {term_name(term)}", weight))
    return Weighted(term, weight, name or term_name(term))


def _as_weighted(item) -> Weighted:
    if isinstance(item, Weighted):
        return item
    if isinstance(item, tuple):
        if len(item) not in (2, 3):
            raise ValueError(f"a weighted term is (term, weight) or (term, weight, name), got {item!r}")
        return weighted(*item)
    return weighted(item)


def _extra_names(term: Term) -> Optional[frozenset]:
    """The extra keyword inputs a term takes: None for all (it has ``**kwargs``), else their names."""
    try:
        parameters = list(inspect.signature(term).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature takes no extras
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters[4:])


def _reduce(name: str, value: Array) -> Array:
    """A term's value averaged over the batch: per-example [B] -> [], a scalar stays."""
    value = jnp.asarray(value, jnp.float32)
    if value.ndim > 1:
        raise ValueError(f"term {name!r} must return per-example values [B] or a scalar, got shape {value.shape}")
    return jnp.mean(value) if value.ndim == 1 else value


def compose(*weighted_terms) -> Term:
    """Sums weighted terms into one loss (docs/FORMULAS.md §3, eq. 13: ``L = L_task + λ(e)·L_MC``).

    Args:
      *weighted_terms: each a term (weight 1), a ``(term, weight)`` or ``(term, weight, name)`` tuple,
        or a ``weighted(...)``; weights are numbers >= 0 or schedules ``step -> value``. A term is
        ``term(outputs, batch, params, step, **extra)`` returning per-example values [B] or a scalar,
        or ``(value, metrics)`` as a composed loss does.

    Returns:
      ``loss_fn(outputs, batch, params, step, **extra) -> (total, metrics)``: ``total = Σ w_i(step)·mean_b
      term_i`` (a scalar), ``metrics[name]`` each term's batch mean, ``metrics[name + '_weight']`` its
      weight, and a composed term's own metrics under ``name + '/'``. Extra keyword inputs (``key=``)
      reach the terms that name them (or take ``**kwargs``). ``loss_fn`` is itself a term, so composed
      losses nest: ``compose(tet(), (compose(margin(), firing_rate()), 0.1, "reg"))``.
    """
    items = [_as_weighted(item) for item in weighted_terms]
    if not items:
        raise ValueError("compose needs at least one term")
    names = [item.name for item in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"term names must be unique, got duplicates {duplicates}; "
                         "give one a name with weighted(term, weight, name=...)")
    extras = [_extra_names(item.term) for item in items]

    def composed(outputs: Outputs, batch: Batch, params: PyTree, step: Array, **extra):
        total = jnp.zeros((), jnp.float32)
        metrics = {}
        for item, accepted in zip(items, extras):
            kwargs = extra if accepted is None else {k: v for k, v in extra.items() if k in accepted}
            result = item.term(outputs, batch, params, step, **kwargs)
            value, inner = result if isinstance(result, tuple) else (result, {})
            value = _reduce(item.name, value)
            weight = jnp.asarray(item.weight(step), jnp.float32)
            total = total + weight * value
            metrics[item.name] = value
            metrics[item.name + "_weight"] = weight
            metrics.update({f"{item.name}/{k}": v for k, v in inner.items()})
        return total, metrics

    return composed
