"""Transfer attacks: adversarial examples made on a source model, evaluated on the target (docs/FORMULAS.md §8).

A source can be another trained model (another workdir: ``Source``, the registry's ``Transfer-<name>`` rows),
or the target itself with its noise off or another surrogate (``model_logits_fn(model, kind="lif")``,
``model_logits_fn(model, surrogate="sigmoid")``). A white-box attack that does worse than a transfer attack
from a similar model signals gradient masking.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax

from tgo_jax.attacks import gradient as _gradient
from tgo_jax.attacks.core import Array, AttackFn, LogitsFn, takes_variables


class Source(NamedTuple):
    """An independently trained model as a transfer source (``Transfer-<name>`` rows of the registry)."""

    name: str                    # the column is ``Transfer-<name>`` (a workdir's basename)
    logits_fn: LogitsFn          # ``attacks.model_logits_fn(model)``
    params: Any                  # its variables
    dataset: Optional[str] = None          # the data set it was trained on, when known
    input_shape: Optional[tuple] = None    # one example's shape, e.g. (28, 28, 1), when known

    @property
    def stochastic(self) -> bool:
        return bool(getattr(self.logits_fn, "stochastic", False))


def transfer_attack(attack: AttackFn, source_logits_fn: LogitsFn, source_variables) -> AttackFn:
    """An attack ``(logits_fn, variables, x, y, key) -> x_adv`` that ignores the target and runs ``attack``
    on the source ``(source_logits_fn, source_variables)``.

    The source must take the target's inputs and predict the same number of classes: checked at the first
    call against the target's logit function (shapes only, no computation), one clear error each.
    """

    @takes_variables(name="transfer_attack")
    def run(logits_fn: LogitsFn, variables, x: Array, y: Array, key: Array) -> Array:
        check_compatible(source_logits_fn, source_variables, logits_fn, variables, x)
        return attack(source_logits_fn, source_variables, x, y, key)

    return run


def pgd_transfer(source: Source, *, eps, alpha, steps: int, eot: int = 1) -> AttackFn:
    """PGD-k (α, ``eot`` draws per gradient when the source is noisy, else 1) made on ``source`` and
    evaluated on the target: the ``Transfer-<name>`` row."""
    attack = functools.partial(_gradient.pgd, eps=eps, alpha=alpha, steps=steps,
                               eot=eot if source.stochastic else 1)
    return transfer_attack(attack, source.logits_fn, source.params)


def check_compatible(source_logits_fn: LogitsFn, source_variables, target_logits_fn: LogitsFn, target_variables,
                     x: Array, *, name: str = "transfer source", source_dataset: Optional[str] = None,
                     target_dataset: Optional[str] = None, source_input_shape: Optional[tuple] = None) -> None:
    """Raises ValueError (one line naming both values) unless the source was trained on the target's data
    set (when both are given), takes inputs shaped like one example of ``x`` (``source_input_shape`` when
    given, and by tracing the source on ``x``) and predicts the target's number of classes."""
    target_shape = tuple(x.shape[1:])
    if source_dataset is not None and target_dataset is not None and source_dataset != target_dataset:
        raise ValueError(f"{name} was trained on {source_dataset}, the target on {target_dataset}")
    if source_input_shape is not None and tuple(source_input_shape) != target_shape:
        raise ValueError(f"{name} takes inputs of shape {tuple(source_input_shape)}, the target {target_shape}")
    key = jax.random.key(0)
    target = jax.eval_shape(target_logits_fn, target_variables, x, key)
    try:
        source = jax.eval_shape(source_logits_fn, source_variables, x, key)
    except Exception as e:  # noqa: BLE001 - any failure here means the source cannot take these inputs
        raise ValueError(f"{name} does not accept the target's inputs of shape {tuple(x.shape)}: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if source.shape[-1] != target.shape[-1]:
        raise ValueError(f"{name} predicts {source.shape[-1]} classes, the target {target.shape[-1]}")


def check_source(source: Source, target_logits_fn: LogitsFn, target_variables, x: Array,
                 target_dataset: Optional[str] = None) -> None:
    """``check_compatible`` for a ``Source`` (its data set and input shape where known)."""
    check_compatible(source.logits_fn, source.params, target_logits_fn, target_variables, x,
                     name=f"transfer source {source.name!r}", source_dataset=source.dataset,
                     target_dataset=target_dataset, source_input_shape=source.input_shape)
