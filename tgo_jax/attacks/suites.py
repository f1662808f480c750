"""Attack registry and suites: every attack by name, the paper's table, the recommended strong suite.

A *row* is ``(name, attack)`` with ``attack(logits_fn, variables, x, y, key) -> x_adv`` (a partial with its
options set). ``make(name, eps=..., alpha=..., eot=...)`` builds one row's attack from its name; names are
case-insensitive, ``PGD<k>`` gives PGD with k steps, and ``Transfer-<name>`` gives PGD made on the transfer
source ``name`` (a ``transfer.Source``: another trained model, passed in ``sources``). ``paper_suite`` is the
paper's robustness table; ``strong_suite`` is the recommended evaluation for robustness claims
(docs/robustness.md).

PGD step rule (``pgd_step``, docs/FORMULAS.md §4): "paper" keeps the fixed α (``ALPHA`` = 0.01, the paper's
columns); "madry" uses α = 2.5·ε/k for k steps (Madry et al. 2018), so that k steps can cross the ball
(at ε = 0.1 the paper's PGD10 moves at most 10 × 0.01 = 0.1 from its random start: it cannot reach the
far corners). The rule applies to every PGD-based row (PGD<k>, MTPGD, Sweep, Transfer-*).
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
from tgo_jax.attacks.core import ALPHA, EPS, AttackFn, check_options, model_logits_fn, model_of, takes_variables

# The attack functions by name (all of the form attack(logits_fn, variables, x, y, key, **options)).
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
    "assg_search": _snn.assg_search,
    "surrogate_sweep": _snn.surrogate_sweep,
}


@takes_variables(name="Transfer-NoiseOff")
def _noise_off_transfer(logits_fn, variables, x, y, key, **options):
    """PGD made on the same model with its Noisy-LIF noise off (a transfer source), evaluated on the model."""
    model = model_of(logits_fn, "Transfer-NoiseOff").neuron
    source = model_logits_fn(logits_fn.base_model, kind="lif") if model.kind == "noisy" else logits_fn
    options = {**options, "eot": 1}
    return _transfer.transfer_attack(functools.partial(_gradient.pgd, **options), source, variables)(
        logits_fn, variables, x, y, key)


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
    "ASSG-search": Row(_snn.assg_search, {"steps": 100}),  # 17 runs: a = 0.425, then the ternary search
    "SA-PGD": Row(_snn.sa_pgd, {"steps": 100, "adaptive": False}),
    "Sweep": Row(_snn.surrogate_sweep, {"steps": 10}, takes_alpha=True),
    "Transfer-NoiseOff": Row(_noise_off_transfer, {"steps": 10}, takes_alpha=True),
}

_PGD = re.compile(r"^pgd(\d+)$")
_TRANSFER = re.compile(r"^transfer-(.+)$")
TRANSFER_STEPS = 10  # PGD steps of a Transfer-<name> row (as Transfer-NoiseOff)

PGD_STEP_RULES = ("paper", "madry")
MADRY_STEP = 2.5  # α = 2.5·ε/k (Madry et al. 2018; docs/FORMULAS.md §4)


def pgd_alpha(eps, steps: int, rule: str = "paper", alpha=ALPHA):
    """The PGD step α of a k-step PGD row under ``rule`` (docs/FORMULAS.md §4): "paper" → ``alpha``
    (fixed, ``ALPHA`` = 0.01 by default), "madry" → 2.5·ε/k (at ε = 0 the ball is a point, any α does the
    same, and ``alpha`` is kept)."""
    validation.choice("pgd_step", rule, PGD_STEP_RULES)
    validation.count("steps", steps)
    if rule == "madry" and eps > 0:
        return MADRY_STEP * eps / steps
    return alpha


def pgd_step_text(rule: str, eps, alpha=ALPHA) -> str:
    """One line naming the PGD step rule at ε, printed beside every table (e.g. "PGD step: paper, α = 0.01
    for every k" or "PGD step: madry, α = 2.5·ε/k = 0.0784/k")."""
    validation.choice("pgd_step", rule, PGD_STEP_RULES)
    if rule == "madry" and eps > 0:
        return f"PGD step: madry, α = {MADRY_STEP:g}·ε/k = {MADRY_STEP * eps:.4g}/k"
    return f"PGD step: paper, α = {alpha:g} for every k"


def _sources(sources) -> dict:
    """{lower-case name: Source} of a sequence or mapping of ``transfer.Source``."""
    items = sources.values() if isinstance(sources, dict) else (sources or ())
    return {s.name.lower(): s for s in items}


def names(sources=()) -> list[str]:
    """Every row name ``make`` accepts (plus ``PGD<k>`` for any k >= 1 and ``Transfer-<name>`` for each
    transfer source)."""
    transfer = [f"Transfer-{s.name}" for s in _sources(sources).values()] or ["Transfer-<workdir>"]
    return list(ROWS) + ["PGD<k>"] + transfer


def make(name: str, *, eps=EPS, alpha=ALPHA, eot: int = 1, steps: int | None = None, queries: int | None = None,
         num_targets: int | None = None, pgd_step: str = "paper", sources=()) -> AttackFn:
    """The attack of row ``name`` (case-insensitive) at budget ε, PGD step α and ``eot`` draws per gradient.

    ``steps``, ``queries`` and ``num_targets`` override the row's reference sizes where the row has them
    (e.g. smaller sizes for a quick audit); rows without them ignore them. ``pgd_step`` ("paper" or
    "madry") sets the step of the PGD-based rows (``pgd_alpha``). ``sources`` (``transfer.Source``s) name
    the models of the ``Transfer-<name>`` rows (PGD-10 made on the source, or ``steps``).

    Raises:
      ValueError: for an unknown name (listing the known ones) or a bad option.
    """
    check_options(eps=eps, alpha=alpha, eot=eot)
    validation.choice("pgd_step", pgd_step, PGD_STEP_RULES)
    for field, value in (("steps", steps), ("queries", queries), ("num_targets", num_targets)):
        if value is not None:
            validation.count(field, value)
    key = str(name).strip().lower()
    match = _PGD.match(key)
    if match:
        k = validation.count(f"steps of {name}", int(match.group(1)))
        return functools.partial(_gradient.pgd, eps=eps, alpha=pgd_alpha(eps, k, pgd_step, alpha), steps=k, eot=eot)
    canonical_name = canonical(name, sources)
    if canonical_name not in ROWS:  # Transfer-<source>
        source = _sources(sources)[canonical_name[len("Transfer-"):].lower()]
        k = steps or TRANSFER_STEPS
        return _transfer.pgd_transfer(source, eps=eps, alpha=pgd_alpha(eps, k, pgd_step, alpha), steps=k, eot=eot)
    row = ROWS[canonical_name]
    if row.fn is _gradient.no_attack:
        return row.fn
    options = dict(row.options)
    for field, value in (("steps", steps), ("queries", queries), ("num_targets", num_targets)):
        if value is not None and field in options:
            options[field] = value
    if row.takes_alpha:
        options["alpha"] = pgd_alpha(eps, options["steps"], pgd_step, alpha)
    return functools.partial(row.fn, **{"eps": eps, "eot": eot, **options})


def canonical(name: str, sources=()) -> str:
    """The registry's spelling of ``name`` ("pgd10" -> "PGD10", "apgd-t" -> "APGD-T", "transfer-seed1" ->
    "Transfer-seed1" for a source named "seed1")."""
    key = str(name).strip().lower()
    if _PGD.match(key):
        return key.upper()
    for n in ROWS:
        if n.lower() == key:
            return n
    match = _TRANSFER.match(key)
    if match:
        known = _sources(sources)
        if match.group(1) in known:
            return f"Transfer-{known[match.group(1)].name}"
        raise ValueError(f"unknown transfer source {name[len('Transfer-'):]!r} of {name!r}; transfer sources: "
                         f"{', '.join(s.name for s in known.values()) or 'none'} (each --transfer_from DIR adds "
                         f"Transfer-<basename of DIR>)")
    raise ValueError(f"unknown attack {name!r}; known: {', '.join(names(sources))}")


def suite(row_names: Sequence[str], *, eps=EPS, alpha=ALPHA, eot: int = 1, pgd_step: str = "paper", sources=(),
          **sizes) -> list[tuple[str, AttackFn]]:
    """``[(canonical name, attack)]`` for the given row names (``pgd_step``, ``sources``, ``sizes``: as in
    ``make``)."""
    return [(canonical(n, sources), make(n, eps=eps, alpha=alpha, eot=eot, pgd_step=pgd_step, sources=sources,
                                         **sizes)) for n in row_names]


def paper_suite(eps=EPS, alpha=ALPHA, eot: int = 1, extra: Sequence[str] = ("apgd", "mtpgd"), *,
                pgd_steps: Sequence[int] = (7, 10, 20, 40), apgd_steps: int = 100, mtpgd_steps: int = 10,
                num_targets: int = 9, pgd_step: str = "paper") -> list[tuple[str, AttackFn]]:
    """The rows of the paper's robustness tables as (name, attack) pairs, each attack a partial
    ``attack(logits_fn, variables, x, y, key) -> x_adv``: Clean, FGSM, RFGSM, PGD7/10/20/40 at ε, step α
    (``pgd_step="paper"``, the paper's columns) or 2.5·ε/k (``"madry"``), then the optional "apgd"
    (APGD-CE) and "mtpgd" rows (paper Tables 1-3).

    Example::

        for name, attack in paper_suite(eps=8/255):
            print(name, robust_accuracy(attack, logits_fn, variables, x, y, key, draws=10))
    """
    check_options(eps=eps, alpha=alpha, eot=eot)
    unknown = set(extra) - {"apgd", "mtpgd"}
    if unknown:
        raise ValueError(f"extra must list attacks among ['apgd', 'mtpgd'], got {sorted(unknown)}")
    validation.choice("pgd_step", pgd_step, PGD_STEP_RULES)
    rows = suite(["Clean", "FGSM", "RFGSM"], eps=eps, alpha=alpha, eot=eot)
    rows += [(f"PGD{k}", functools.partial(_gradient.pgd, eps=eps, alpha=pgd_alpha(eps, k, pgd_step, alpha),
                                           steps=k, eot=eot)) for k in pgd_steps]
    if "apgd" in extra:
        rows.append(("APGD", functools.partial(_apgd.apgd, eps=eps, steps=apgd_steps, eot=eot)))
    if "mtpgd" in extra:
        rows.append(("MTPGD", functools.partial(_gradient.mtpgd, eps=eps,
                                                alpha=pgd_alpha(eps, mtpgd_steps, pgd_step, alpha), steps=mtpgd_steps,
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
