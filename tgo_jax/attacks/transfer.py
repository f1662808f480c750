"""Transfer attacks: adversarial examples made on a source model, evaluated on the target (docs/FORMULAS.md §8).

A source can be another trained model (another workdir), or the target itself with its noise off or
another surrogate (``model_logits_fn(model, kind="lif")``, ``model_logits_fn(model, surrogate="sigmoid")``).
A white-box attack that does worse than a transfer attack from a similar model signals gradient masking.
"""
from __future__ import annotations

import jax

from tgo_jax.attacks.core import Array, AttackFn, LogitsFn


def transfer_attack(attack: AttackFn, source_logits_fn: LogitsFn, source_params) -> AttackFn:
    """An attack ``(logits_fn, params, x, y, key) -> x_adv`` that ignores the target and runs ``attack``
    on the source ``(source_logits_fn, source_params)``.

    The source must take the target's inputs and predict the same number of classes: checked at the first
    call against the target's logit function (shapes only, no computation), one clear error each.
    """

    def run(logits_fn: LogitsFn, params, x: Array, y: Array, key: Array) -> Array:
        check_compatible(source_logits_fn, source_params, logits_fn, params, x)
        return attack(source_logits_fn, source_params, x, y, key)

    return run


def check_compatible(source_logits_fn: LogitsFn, source_params, target_logits_fn: LogitsFn, target_params,
                     x: Array) -> None:
    """Raises ValueError unless the source accepts inputs shaped like ``x`` and has the target's class count."""
    key = jax.random.key(0)
    target = jax.eval_shape(target_logits_fn, target_params, x, key)
    try:
        source = jax.eval_shape(source_logits_fn, source_params, x, key)
    except Exception as e:  # noqa: BLE001 - any failure here means the source cannot take these inputs
        raise ValueError(f"transfer source does not accept the target's inputs of shape {tuple(x.shape)}: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    if source.shape[-1] != target.shape[-1]:
        raise ValueError(f"transfer source predicts {source.shape[-1]} classes, the target {target.shape[-1]}")
