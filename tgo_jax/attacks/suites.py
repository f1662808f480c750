"""Attack registry and suites: every attack by name, the paper's table, the recommended strong suite.

A *row* is ``(name, attack)`` with ``attack(logits_fn, params, x, y, key) -> x_adv`` (a partial with its
options set). ``make(name, eps=..., alpha=..., eot=...)`` builds one row's attack from its name; names are
case-insensitive, and ``PGD<k>`` gives PGD with k steps. ``paper_suite`` is the paper's robustness table;
``strong_suite`` is the recommended evaluation for robustness claims (docs/robustness.md).
"""
from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import NamedTuple

from tgo_jax import validation
from tgo_jax.attacks import auto_attack as _aa
from tgo_jax.attacks import autopgd as _apgd
from tgo_jax.attacks import fab as _fab
from tgo_jax.attacks import gradient as _gradient
from tgo_jax.attacks import snn_adaptive as _snn
from tgo_jax.attacks import square as _square
from tgo_jax.attacks import transfer as _transfer
from tgo_jax.attacks.core import ALPHA, EPS, AttackFn, check_options, model_logits_fn, model_of

# The attack functions by name (all of the form attack(logits_fn, params, x, y, key, **options)).
ATTACKS: dict[str, AttackFn] = {
    "clean": _gradient.no_attack,
    "fgsm": _gradient.fgsm,
    "rfgsm": _gradient.rfgsm,
    "pgd": _gradient.pgd,
    "apgd": _apgd.apgd,
    "apgd_targeted": _apgd.apgd_targeted,
    "mtpgd": _gradient.mtpgd,
    "fab_targeted": _fab.fab_targeted,
    "square": _square.square_attack,
    "autoattack": _aa.autoattack,
    "sa_pgd": _snn.sa_pgd,
    "surrogate_sweep": _snn.surrogate_sweep,
}


def _noise_off_transfer(logits_fn, params, x, y, key, **options):
    """PGD made on the same model with its Noisy-LIF noise off (a transfer source), evaluated on the model."""
    model = model_of(logits_fn, "Transfer-NoiseOff").neuron
    source = model_logits_fn(logits_fn.base_model, kind="lif") if model.kind == "noisy" else logits_fn
    options = {**options, "eot": 1}
    return _transfer.transfer_attack(functools.partial(_gradient.pgd, **options), source, params)(
        logits_fn, params, x, y, key)


class Row(NamedTuple):
    """One named row: the attack function, its fixed options, and which of (alpha, steps, queries,
    num_targets) it takes from ``make``'s arguments."""

    fn: AttackFn
    options: dict
    takes_alpha: bool = False


# Row name -> Row. Step counts and targets are the reference settings (AutoAttack: 100 iterations,
# 9 targets, 5000 Square queries); the paper's table uses the FGSM/RFGSM/PGD/MTPGD rows.
ROWS: dict[str, Row] = {
    "Clean": Row(_gradient.no_attack, {}),
    "FGSM": Row(_gradient.fgsm, {}),
    "RFGSM": Row(_gradient.rfgsm, {}),
    "APGD": Row(_apgd.apgd, {"steps": 100}),
    "APGD-CE": Row(_apgd.apgd, {"steps": 100}),
    "APGD-DLR": Row(_apgd.apgd, {"steps": 100, "loss": "dlr"}),
    "APGD-T": Row(_apgd.apgd_targeted, {"steps": 100, "num_targets": 9}),
    "FAB-T": Row(_fab.fab_targeted, {"steps": 100, "num_targets": 9}),
    "Square": Row(_square.square_attack, {"queries": 5000}),
    "MTPGD": Row(_gradient.mtpgd, {"steps": 10, "num_targets": 9}, takes_alpha=True),
    "AutoAttack": Row(_aa.autoattack, {"version": "standard", "steps": 100, "num_targets": 9, "queries": 5000}),
    "AutoAttack-rand": Row(_aa.autoattack, {"version": "rand", "steps": 100, "eot": _aa.RAND_EOT}),
    "ASSG": Row(_snn.sa_pgd, {"steps": 100}),
    "SA-PGD": Row(_snn.sa_pgd, {"steps": 100, "adaptive": False}),
    "Sweep": Row(_snn.surrogate_sweep, {"steps": 10}, takes_alpha=True),
    "Transfer-NoiseOff": Row(_noise_off_transfer, {"steps": 10}, takes_alpha=True),
}

_PGD = re.compile(r"^pgd(\d+)$")


def names() -> list[str]:
    """Every row name ``make`` accepts (plus ``PGD<k>`` for any k >= 1)."""
    return list(ROWS) + ["PGD<k>"]


def make(name: str, *, eps=EPS, alpha=ALPHA, eot: int = 1, steps: int | None = None, queries: int | None = None,
         num_targets: int | None = None) -> AttackFn:
    """The attack of row ``name`` (case-insensitive) at budget ε, PGD step α and ``eot`` draws per gradient.

    ``steps``, ``queries`` and ``num_targets`` override the row's reference sizes where the row has them
    (e.g. smaller sizes for a quick audit); rows without them ignore them.

    Raises:
      ValueError: for an unknown name (listing the known ones) or a bad option.
    """
    check_options(eps=eps, alpha=alpha, eot=eot)
    for field, value in (("steps", steps), ("queries", queries), ("num_targets", num_targets)):
        if value is not None:
            validation.count(field, value)
    key = str(name).strip().lower()
    match = _PGD.match(key)
    if match:
        k = validation.count(f"steps of {name}", int(match.group(1)))
        return functools.partial(_gradient.pgd, eps=eps, alpha=alpha, steps=k, eot=eot)
    row = ROWS[canonical(name)]
    if row.fn is _gradient.no_attack:
        return row.fn
    options = dict(row.options)
    for field, value in (("steps", steps), ("queries", queries), ("num_targets", num_targets)):
        if value is not None and field in options:
            options[field] = value
    if row.takes_alpha:
        options["alpha"] = alpha
    return functools.partial(row.fn, **{"eps": eps, "eot": eot, **options})


def canonical(name: str) -> str:
    """The registry's spelling of ``name`` ("pgd10" -> "PGD10", "apgd-t" -> "APGD-T")."""
    key = str(name).strip().lower()
    if _PGD.match(key):
        return key.upper()
    for n in ROWS:
        if n.lower() == key:
            return n
    raise ValueError(f"unknown attack {name!r}; known: {', '.join(names())}")


def suite(row_names: Sequence[str], *, eps=EPS, alpha=ALPHA, eot: int = 1, **sizes) -> list[tuple[str, AttackFn]]:
    """``[(canonical name, attack)]`` for the given row names (``sizes``: as in ``make``)."""
    return [(canonical(n), make(n, eps=eps, alpha=alpha, eot=eot, **sizes)) for n in row_names]


def paper_suite(eps=EPS, alpha=ALPHA, eot: int = 1, extra: Sequence[str] = ("apgd", "mtpgd"), *,
                pgd_steps: Sequence[int] = (7, 10, 20, 40), apgd_steps: int = 100, mtpgd_steps: int = 10,
                num_targets: int = 9) -> list[tuple[str, AttackFn]]:
    """The rows of the paper's robustness tables as (name, attack) pairs, each attack a partial
    ``attack(logits_fn, params, x, y, key) -> x_adv``: Clean, FGSM, RFGSM, PGD7/10/20/40 at ε, step α,
    then the optional "apgd" (APGD-CE) and "mtpgd" rows (paper Tables 1-3).

    Example::

        for name, attack in paper_suite(eps=8/255):
            print(name, robust_accuracy(attack, logits_fn, params, x, y, key, draws=10))
    """
    check_options(eps=eps, alpha=alpha, eot=eot)
    unknown = set(extra) - {"apgd", "mtpgd"}
    if unknown:
        raise ValueError(f"extra must list attacks among ['apgd', 'mtpgd'], got {sorted(unknown)}")
    rows = suite(["Clean", "FGSM", "RFGSM"], eps=eps, alpha=alpha, eot=eot)
    rows += [(f"PGD{k}", functools.partial(_gradient.pgd, eps=eps, alpha=alpha, steps=k, eot=eot)) for k in pgd_steps]
    if "apgd" in extra:
        rows.append(("APGD", functools.partial(_apgd.apgd, eps=eps, steps=apgd_steps, eot=eot)))
    if "mtpgd" in extra:
        rows.append(("MTPGD", functools.partial(_gradient.mtpgd, eps=eps, alpha=alpha, steps=mtpgd_steps,
                                                num_targets=num_targets, eot=eot)))
    return rows


STRONG_ROWS = ("Clean", "PGD100", "APGD-CE", "APGD-DLR", "APGD-T", "FAB-T", "Square", "ASSG", "Sweep",
               "Transfer-NoiseOff")


def strong_suite(eps=EPS, alpha=ALPHA, eot: int = 1, **sizes) -> list[tuple[str, AttackFn]]:
    """The recommended evaluation for robustness claims (docs/robustness.md): AutoAttack's components
    (APGD-CE, APGD-DLR, APGD-T, FAB-T, Square), PGD100, ASSG + SA-PGD, the surrogate sweep and a transfer
    from the noise-free twin; report the per-example worst case over all rows as the headline
    "worst-case accuracy". For a stochastic model pass ``eot`` (AutoAttack's "rand" uses 20).
    ``sizes`` (steps, queries, num_targets) shrink the reference sizes for quick checks."""
    return suite(STRONG_ROWS, eps=eps, alpha=alpha, eot=eot, **sizes)
