"""The reproduction's statistics and claim rules: pure functions of the runs' records (``repro_record``).

A difference counts when it exceeds twice its standard error over seeds (``compare``, docs/FORMULAS.md
§11); a claim of the paper is decided by that rule over its comparisons (``claims``), leaving out every
run whose gradient-masking audit failed a check (``audit_note``). The per-example worst case over columns
(``with_worst_case``) is two more columns of each record.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from tgo_train.repro_record import RunRecord

# The paper's numbers (docs/FORMULAS.md §6): Table 1, CIFAR-10, WRN-16-4, T = 4, ε = 8/255 ...
PAPER_TABLE1 = {
    "vanilla": {"Clean": 93.32, "FGSM": 14.05, "RFGSM": 31.21, "PGD10": 0.00, "PGD40": 0.00},
    "tgo": {"Clean": 88.79, "FGSM": 51.40, "RFGSM": 71.38, "PGD10": 6.14, "PGD40": 0.45},
    "at": {"Clean": 91.32, "FGSM": 39.14, "RFGSM": 74.31, "PGD10": 17.45, "PGD40": 12.93},
    "at_tgo": {"Clean": 88.16, "FGSM": 63.03, "RFGSM": 79.69, "PGD10": 35.01, "PGD40": 20.11},
    "rat": {"Clean": 91.44, "FGSM": 42.02, "RFGSM": 75.89, "PGD10": 19.81, "PGD40": 14.18},
    "rat_tgo": {"Clean": 87.33, "FGSM": 69.16, "RFGSM": 79.28, "PGD10": 47.69, "PGD40": 33.13},
}
# ... and Table 4, the ablation on CIFAR-100, VGG-11 (BPTT), ε = 8/255.
PAPER_TABLE4 = {
    "vanilla": {"Clean": 71.4, "FGSM": 5.9, "RFGSM": 25.0, "PGD40": 0.0},
    "mc": {"Clean": 64.3, "FGSM": 17.1, "RFGSM": 25.9, "PGD40": 0.5},
    "nlif": {"Clean": 70.6, "FGSM": 8.1, "RFGSM": 31.7, "PGD40": 0.1},
    "tgo": {"Clean": 66.9, "FGSM": 21.5, "RFGSM": 39.1, "PGD40": 0.5},
}
PAPER_SHARE_DROP = 0.40  # "TGO reduces the number of threshold-neighboring neurons by 40%" (paper §5.3)
SHARE_DROP_TOLERANCE = 0.10  # "about 40 %": a drop within 30-50 % counts
CLAIM_ATTACKS = ("FGSM", "PGD10", "PGD40")  # "FGSM and PGD accuracy"


# ----------------------------------------------------------------------------- statistics

def mean_std(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation (ddof = 1; None for one value) and the values."""
    v = [float(x) for x in values]
    if not v:
        return {"mean": None, "std": None, "n": 0, "values": []}
    std = float(np.std(v, ddof=1)) if len(v) > 1 else None
    return {"mean": float(np.mean(v)), "std": std, "n": len(v), "values": v}


def compare(a: Sequence[float], b: Sequence[float]) -> dict:
    """Is mean(a) above mean(b)? The rule behind every verdict (docs/FORMULAS.md §11).

    ``d = mean(a) − mean(b)``, ``se = sqrt(s_a²/n_a + s_b²/n_b)`` (sample variances over seeds):
    "higher" when d > 2·se, "lower" when d < −2·se, else "no clear difference"; "undecided" with
    fewer than 2 seeds on either side (no spread to judge by), "missing" when either has none.
    """
    if not a or not b:
        return {"verdict": "missing", "diff": None, "se": None}
    d = float(np.mean(a) - np.mean(b))
    if len(a) < 2 or len(b) < 2:
        return {"verdict": "undecided", "diff": d, "se": None}
    se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    verdict = "higher" if d > 2 * se and d > 0 else "lower" if d < -2 * se and d < 0 else "no clear difference"
    return {"verdict": verdict, "diff": d, "se": se}


WORST_PAPER, WORST_ALL = "Worst (paper)", "Worst (all)"


def with_worst_case(records: Sequence[RunRecord], paper_names: Sequence[str], all_names: Sequence[str]) -> list:
    """Copies of the records with the per-example worst case as two more columns: an example counts
    as robust only if it is classified right under every column (for a Noisy-LIF model: the least of its
    per-column shares of right draws). "Worst (paper)" over the paper's columns, "Worst (all)" over
    every column (only when the run has columns beyond the paper's); absent while a column is missing
    (docs/FORMULAS.md §11)."""
    out = []
    for r in records:
        worst = {}
        for noise in r.noises():
            for eps in r.eps_labels(noise):
                ex = r.hits(noise, eps)
                for column, names in ((WORST_PAPER, paper_names), (WORST_ALL, all_names)):
                    if column == WORST_ALL and list(all_names) == list(paper_names):
                        continue
                    if names and all(n in ex for n in names):
                        worst[(noise, eps, column)] = 100 * float(np.mean(np.min([ex[n] for n in names], axis=0)))
        out.append(r.with_cells(worst))
    return out


def _seeds_of(records: Sequence[RunRecord], model: str) -> list:
    return sorted((r for r in records if r.model == model), key=lambda r: r.seed)


def accuracy_values(records: Sequence[RunRecord], model: str, eps: str, attack: str, noise: str = "on") -> list:
    """The accuracy of column ``attack`` at (noise, ε) for each seed's run of ``model`` that has it."""
    values = (r.accuracy(noise, eps, attack) for r in _seeds_of(records, model))
    return [float(v) for v in values if v is not None]


def measure_values(records: Sequence[RunRecord], model: str, name: str, noise: str = "on") -> list:
    """The measure ``name`` (``reproduce.measure``) for each seed's run of ``model`` that has it."""
    values = (r.analysis.get(noise, {}).get(name) for r in _seeds_of(records, model))
    return [float(v) for v in values if v is not None]


# ----------------------------------------------------------------------------- the audit

def audit_flags(record: RunRecord, flag: str) -> list:
    """The checks of the run's audit (``tgo_train.reproduce.run_audits``) flagged ``flag``, as "check @ ε"."""
    return [f"{check} @ {eps}" for eps, result in sorted(record.audit.items())
            for check, f in result["flags"].items() if f == flag]


def audit_text(records: Sequence[RunRecord]) -> str:
    """The audit flags of some runs (one model's seeds), compact: the FAIL and WARN checks with the seeds they
    came from, "pass" when every run was audited without either, "not run" (and for which seeds; also for no
    run at all)."""
    parts = []
    for flag in ("FAIL", "WARN"):
        seeds_of = {}
        for r in sorted(records, key=lambda r: r.seed):
            for check in audit_flags(r, flag):
                seeds_of.setdefault(check.split(" @ ")[0], []).append(str(r.seed))
        parts += [f"{flag} {check} (seed {','.join(dict.fromkeys(seeds))})" for check, seeds in seeds_of.items()]
    missing = [str(r.seed) for r in sorted(records, key=lambda r: r.seed) if not r.audit]
    if not records or missing:
        parts.append("not run" if len(missing) == len(records) else f"not run (seed {','.join(missing)})")
    return "; ".join(parts) or "pass"


def audit_note(records: Sequence[RunRecord]) -> dict:
    """Which runs the claims leave out (``excluded``: {run: its FAIL checks}, docs/FORMULAS.md §11) and which
    have no audit (``not_audited``: they count in the claims, unchecked for gradient masking)."""
    ordered = sorted(records, key=lambda r: (r.model, r.seed))
    return {"excluded": {r.name: audit_flags(r, "FAIL") for r in ordered if audit_flags(r, "FAIL")},
            "not_audited": [r.name for r in ordered if not r.audit],
            "audited": sum(bool(r.audit) for r in ordered)}


def failed_models(records: Sequence[RunRecord]) -> set:
    """The models with a run that failed a check of its audit."""
    return {r.model for r in records if audit_flags(r, "FAIL")}


# ----------------------------------------------------------------------------- claims

def _pairwise(records, pairs, eps_labels, columns: Sequence[str] = CLAIM_ATTACKS) -> list:
    """compare(better, worse) for each (better, worse) model pair, column and ε."""
    rows = []
    for better, worse in pairs:
        for eps in eps_labels:
            for attack in columns:
                c = compare(accuracy_values(records, better, eps, attack),
                            accuracy_values(records, worse, eps, attack))
                rows.append(dict(c, a=better, b=worse, eps=eps, attack=attack))
    return rows


def summarise(rows: list) -> str:
    """'holds' when every comparison is 'higher', 'does not hold' when none is or one is 'lower' (the
    count of 'higher' ones is said too)."""
    verdicts = [r["verdict"] for r in rows]
    if not verdicts or "missing" in verdicts:
        return "not decided: runs missing"
    if "undecided" in verdicts:
        return "not decided: fewer than 2 seeds"
    higher = verdicts.count("higher")
    if "lower" in verdicts:  # one significant loss decides; the gains are still counted, not hidden
        also = f", {higher} significantly higher" if higher else ""
        return f"does not hold ({verdicts.count('lower')} of {len(rows)} comparisons significantly lower{also})"
    if higher == len(rows):
        return "holds"
    if higher == 0:
        return "does not hold (no comparison significantly higher)"
    return f"partly holds ({higher} of {len(rows)} comparisons significantly higher, the rest not clearly)"


def claims(records: Sequence[RunRecord], eps_labels: Sequence[str]) -> dict:
    """Claims (a)-(e) of the paper (and TGO vs the SR baseline), each with its rule's verdict and numbers.

    A run whose audit failed a check is left out (``audit_note``): a claim never holds on its numbers; a
    claim that would have used it says so in its verdict."""
    excluded = audit_note(records)["excluded"]
    out = _claims([r for r in records if r.name not in excluded], eps_labels)
    for c in out.values():
        compared = {m for row in c["rows"] for m in (row["a"], row["b"])}
        runs = [run for run in excluded if run.split("/")[0] in compared]
        if runs:
            c["excluded"] = runs
            c["verdict"] += f" (without {', '.join(runs)}: audit FAIL)"
    return out


def _claims(records: Sequence[RunRecord], eps_labels: Sequence[str]) -> dict:
    out = {}
    rows = _pairwise(records, [("tgo", "vanilla")], eps_labels)
    out["a"] = {"claim": "TGO raises FGSM and PGD accuracy over vanilla", "rows": rows,
                "verdict": summarise(rows)}
    parts = {"MC alone helps": [("mc", "vanilla")], "NLIF alone helps": [("nlif", "vanilla")],
             "together more than either": [("tgo", "mc"), ("tgo", "nlif")]}
    sub = {k: _pairwise(records, v, eps_labels) for k, v in parts.items()}
    out["b"] = {"claim": "MC alone and NLIF alone each help, and together more",
                "rows": [r for v in sub.values() for r in v],
                "parts": {k: summarise(v) for k, v in sub.items()},
                "verdict": summarise([r for v in sub.values() for r in v])}
    out["c"] = _share_claim(records)
    van, tgo = measure_values(records, "vanilla", "grad_l1"), measure_values(records, "tgo", "grad_l1")
    c = compare(van, tgo)
    out["d"] = {"claim": "input gradients become sparser (lower input-gradient L1 norm under TGO)",
                "rows": [dict(c, a="vanilla", b="tgo", measure="grad_l1")],
                "verdict": {"higher": "holds", "lower": "does not hold (TGO's gradients are larger)",
                            "no clear difference": "does not hold (no clear difference)",
                            "undecided": "not decided: fewer than 2 seeds",
                            "missing": "not decided: runs missing"}[c["verdict"]]}
    sub = {"AT + TGO beats AT": _pairwise(records, [("at_tgo", "at")], eps_labels),
           "RAT + TGO beats RAT": _pairwise(records, [("rat_tgo", "rat")], eps_labels)}
    out["e"] = {"claim": "AT + TGO beats AT, RAT + TGO beats RAT", "rows": [r for v in sub.values() for r in v],
                "parts": {k: summarise(v) for k, v in sub.items()},
                "verdict": summarise([r for v in sub.values() for r in v])}
    rows = _pairwise(records, [("tgo", "sr")], eps_labels)
    worst = _pairwise(records, [("tgo", "sr")], eps_labels, (WORST_ALL,))
    out["f"] = {"claim": "TGO beats the SR baseline (paper Fig. 4, Table 3)", "rows": rows + worst,
                "parts": {"on the paper's columns (the verdict)": summarise(rows),
                          "under the per-example worst case over every column, the strong suite included "
                          "(a lead of SR that came from gradient masking would shrink here)": summarise(worst)},
                "verdict": summarise(rows)}
    sub = {f"{a} over {b}": _pairwise(records, [(a, b)], eps_labels, (WORST_ALL,))
           for a, b in (("tgo", "vanilla"), ("at_tgo", "at"), ("rat_tgo", "rat"))}
    rows = [r for v in sub.values() for r in v]
    out["g"] = {"claim": "TGO's gains survive the per-example worst case over every attack, the strong suite "
                         "included (not a claim of the paper: a check for gradient masking)",
                "rows": rows, "parts": {k: summarise(v) for k, v in sub.items()}, "verdict": summarise(rows)}
    return out


def _share_claim(records) -> dict:
    """(c): the share must fall significantly and by 40 % ± 10 % of the vanilla share (relative,
    docs/FORMULAS.md §11)."""
    van, tgo = measure_values(records, "vanilla", "neighbour_share"), measure_values(records, "tgo", "neighbour_share")
    c = compare(van, tgo)
    drop = 1 - np.mean(tgo) / np.mean(van) if van and tgo and np.mean(van) > 0 else None
    row = dict(c, a="vanilla", b="tgo", measure="neighbour_share", relative_drop=drop)
    if c["verdict"] in ("missing", "undecided"):
        verdict = {"missing": "not decided: runs missing", "undecided": "not decided: fewer than 2 seeds"}[
            c["verdict"]]
    elif c["verdict"] != "higher":
        verdict = f"does not hold (share {c['verdict']} under TGO, drop {100 * drop:.0f} %)"
    elif abs(drop - PAPER_SHARE_DROP) <= SHARE_DROP_TOLERANCE:
        verdict = f"holds (drop {100 * drop:.0f} %)"
    else:
        verdict = f"partly holds: the share falls, by {100 * drop:.0f} % rather than about 40 %"
    return {"claim": "the threshold-neighbour share falls by about 40 %", "rows": [row], "verdict": verdict}
