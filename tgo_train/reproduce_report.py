"""The reproduction's report: mean ± std over seeds, the paper's numbers beside them, a verdict per claim.

``write(out_dir, records, ...)`` turns the per-run records of ``tgo_train.reproduce`` (finished or not)
into ``RESULTS.md``, ``results/results.json`` and ``results/*.png``. Verdicts are decided by
``compare`` (a rule, not by hand): a difference counts when it exceeds twice its standard error over
seeds (docs/FORMULAS.md §11).
"""
from __future__ import annotations

import copy
import json
import math
import os
from typing import Optional, Sequence

import numpy as np

from tgo_jax import attacks
from tgo_train.tables import eps_label

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
DATASET_NOTE = (
    "**Dataset difference.** Every number here is the small spiking net (2 conv + 1 hidden layer) "
    "trained on Fashion-MNIST (28×28 grey images, 10 classes) on CPUs. The paper's numbers beside them are "
    "CIFAR-10 with WRN-16-4 (its Table 1) and CIFAR-100 with VGG-11 (its Table 4), 300 epochs on a GPU; "
    "they are quoted for the direction and size of the effects, not as values to match.")


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


# ----------------------------------------------------------------------------- collecting runs

def run_dir(workdir: str, size_name: str, model: str, seed: int) -> str:
    """Where the reproduction keeps one (model, seed) run."""
    return os.path.join(workdir, size_name, model, f"seed{seed}")


def load(report_dir: str, models: Sequence[str], columns: Sequence[str] = ("Clean", "FGSM", "RFGSM", "PGD10"),
         noise: str = "on", workdir: Optional[str] = None) -> Optional[dict]:
    """The reproduction's results for ``models`` as written in ``report_dir/results/results.json``, or None
    unless the first seed's run of every model is trained and has ``columns`` at every ε.

    ``workdir``: the reproduction's workdir, where the runs' models are (default ``report_dir``); the
    models may be missing there (a fresh clone with the committed report): ``tgo_train.reproduce.train_run``
    trains them again.

    Returns:
      ``{"size", "size_spec", "seeds", "complete", "workdirs": {model: first seed's run dir},
      "final": {model: its last metrics record}, "accuracy": {model: {ε label: {column: mean_std}}}}``.
    """
    workdir = workdir or report_dir
    results = _committed_results(report_dir)
    if results is None:
        return None
    seed = results["seeds"][0]
    runs = {r["model"]: r for r in results["runs"] if r["seed"] == seed}
    for m in models:
        cells = runs.get(m, {}).get("accuracy", {}).get(noise, {})
        if not runs.get(m, {}).get("metrics") or any(c not in cells.get(e, {}) for e in results["eps_labels"]
                                                     for c in columns):
            return None
    return {"size": results["size"], "size_spec": results["size_spec"], "seeds": results["seeds"],
            "complete": results["complete"],
            "workdirs": {m: run_dir(workdir, results["size"], m, seed) for m in models},
            "final": {m: runs[m]["metrics"][-1] for m in models},
            "accuracy": {m: results["aggregate"][m]["accuracy"][noise] for m in models}}


def is_complete(record: dict, attack_names: Sequence[str], eps_list: Sequence[float]) -> bool:
    """Every (noise setting, ε, attack) cell and every measure of the run is there."""
    noises = ["on", "off"] if record.get("config", {}).get("neuron", {}).get("kind") == "noisy" else ["on"]
    acc = record.get("accuracy", {})
    return all(n in record.get("analysis", {}) and
               all(a in acc.get(n, {}).get(eps_label(e), {}) for e in eps_list for a in attack_names)
               for n in noises)


WORST_PAPER, WORST_ALL = "Worst (paper)", "Worst (all)"


def with_worst_case(records: Sequence[dict], paper_names: Sequence[str], all_names: Sequence[str]) -> list:
    """Copies of the records with the per-example worst case as two more columns: an example counts
    as robust only if it is classified right under every column (for a Noisy-LIF model: the least of its
    per-column shares of right draws). "Worst (paper)" over the paper's columns, "Worst (all)" over
    every column (only when the run has columns beyond the paper's); absent while a column is missing
    (docs/FORMULAS.md §11)."""
    out = []
    for r in records:
        r = copy.deepcopy(r)
        for noise, by_eps in r.get("accuracy", {}).items():
            for eps, cells in by_eps.items():
                ex = r.get("per_example", {}).get(noise, {}).get(eps, {})
                for column, names in ((WORST_PAPER, paper_names), (WORST_ALL, all_names)):
                    if column == WORST_ALL and list(all_names) == list(paper_names):
                        continue
                    if names and all(n in ex for n in names):
                        cells[column] = 100 * float(np.mean(np.min([ex[n] for n in names], axis=0)))
        out.append(r)
    return out


def per_seed(records: Sequence[dict], model: str, *path: str) -> list:
    """The value at ``record[path...]`` for each seed's run of ``model`` that has it."""
    out = []
    for r in sorted((r for r in records if r["model"] == model), key=lambda r: r["seed"]):
        node = r
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        if node is not None:
            out.append(float(node))
    return out


def accuracy_values(records, model, eps, attack, noise="on") -> list:
    return per_seed(records, model, "accuracy", noise, eps, attack)


def measure_values(records, model, name, noise="on") -> list:
    return per_seed(records, model, "analysis", noise, name)


# ----------------------------------------------------------------------------- the audit

FAILED_MARK = "†"  # marks a model whose run failed a check of the gradient-masking audit, in every table


def _run_name(record: dict) -> str:
    return f"{record['model']}/seed{record['seed']}"


def audit_flags(record: dict, flag: str) -> list:
    """The checks of the run's audit (``tgo_train.reproduce.run_audits``) flagged ``flag``, as "check @ ε"."""
    return [f"{check} @ {eps}" for eps, result in sorted(record.get("audit", {}).items())
            for check, f in result["flags"].items() if f == flag]


def audit_text(records: Sequence[dict]) -> str:
    """The audit flags of some runs (one model's seeds), compact: the FAIL and WARN checks with the seeds they
    came from, "pass" when every run was audited without either, "not run" (and for which seeds; also for no
    run at all)."""
    parts = []
    for flag in ("FAIL", "WARN"):
        seeds_of = {}
        for r in sorted(records, key=lambda r: r["seed"]):
            for check in audit_flags(r, flag):
                seeds_of.setdefault(check.split(" @ ")[0], []).append(str(r["seed"]))
        parts += [f"{flag} {check} (seed {','.join(dict.fromkeys(seeds))})" for check, seeds in seeds_of.items()]
    missing = [str(r["seed"]) for r in sorted(records, key=lambda r: r["seed"]) if not r.get("audit")]
    if not records or missing:
        parts.append("not run" if len(missing) == len(records) else f"not run (seed {','.join(missing)})")
    return "; ".join(parts) or "pass"


def audit_note(records: Sequence[dict]) -> dict:
    """Which runs the claims leave out (``excluded``: {run: its FAIL checks}, docs/FORMULAS.md §11) and which
    have no audit (``not_audited``: they count in the claims, unchecked for gradient masking)."""
    ordered = sorted(records, key=lambda r: (r["model"], r["seed"]))
    return {"excluded": {_run_name(r): audit_flags(r, "FAIL") for r in ordered if audit_flags(r, "FAIL")},
            "not_audited": [_run_name(r) for r in ordered if not r.get("audit")],
            "audited": sum(bool(r.get("audit")) for r in ordered)}


def _failed_models(records: Sequence[dict]) -> set:
    return {r["model"] for r in records if audit_flags(r, "FAIL")}


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


def _summarise(rows: list) -> str:
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


def claims(records: Sequence[dict], eps_labels: Sequence[str]) -> dict:
    """Claims (a)-(e) of the paper (and TGO vs the SR baseline), each with its rule's verdict and numbers.

    A run whose audit failed a check is left out (``audit_note``): a claim never holds on its numbers; a
    claim that would have used it says so in its verdict."""
    excluded = audit_note(records)["excluded"]
    out = _claims([r for r in records if _run_name(r) not in excluded], eps_labels)
    for c in out.values():
        compared = {m for row in c["rows"] for m in (row["a"], row["b"])}
        runs = [run for run in excluded if run.split("/")[0] in compared]
        if runs:
            c["excluded"] = runs
            c["verdict"] += f" (without {', '.join(runs)}: audit FAIL)"
    return out


def _claims(records: Sequence[dict], eps_labels: Sequence[str]) -> dict:
    out = {}
    rows = _pairwise(records, [("tgo", "vanilla")], eps_labels)
    out["a"] = {"claim": "TGO raises FGSM and PGD accuracy over vanilla", "rows": rows,
                "verdict": _summarise(rows)}
    parts = {"MC alone helps": [("mc", "vanilla")], "NLIF alone helps": [("nlif", "vanilla")],
             "together more than either": [("tgo", "mc"), ("tgo", "nlif")]}
    sub = {k: _pairwise(records, v, eps_labels) for k, v in parts.items()}
    out["b"] = {"claim": "MC alone and NLIF alone each help, and together more",
                "rows": [r for v in sub.values() for r in v],
                "parts": {k: _summarise(v) for k, v in sub.items()},
                "verdict": _summarise([r for v in sub.values() for r in v])}
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
                "parts": {k: _summarise(v) for k, v in sub.items()},
                "verdict": _summarise([r for v in sub.values() for r in v])}
    rows = _pairwise(records, [("tgo", "sr")], eps_labels)
    worst = _pairwise(records, [("tgo", "sr")], eps_labels, (WORST_ALL,))
    out["f"] = {"claim": "TGO beats the SR baseline (paper Fig. 4, Table 3)", "rows": rows + worst,
                "parts": {"on the paper's columns (the verdict)": _summarise(rows),
                          "under the per-example worst case over every column, the strong suite included "
                          "(a lead of SR that came from gradient masking would shrink here)": _summarise(worst)},
                "verdict": _summarise(rows)}
    sub = {f"{a} over {b}": _pairwise(records, [(a, b)], eps_labels, (WORST_ALL,))
           for a, b in (("tgo", "vanilla"), ("at_tgo", "at"), ("rat_tgo", "rat"))}
    rows = [r for v in sub.values() for r in v]
    out["g"] = {"claim": "TGO's gains survive the per-example worst case over every attack, the strong suite "
                         "included (not a claim of the paper: a check for gradient masking)",
                "rows": rows, "parts": {k: _summarise(v) for k, v in sub.items()}, "verdict": _summarise(rows)}
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


# ----------------------------------------------------------------------------- markdown

def fmt(stats: dict, expected_n: int, digits: int = 2) -> str:
    if not stats["n"]:
        return "missing"
    text = f"{stats['mean']:.{digits}f}"
    if stats["std"] is not None:
        text += f" ± {stats['std']:.{digits}f}"
    if stats["n"] < expected_n:
        text += f" (n={stats['n']})"
    return text


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def accuracy_table(records, models: dict, names: Sequence[str], eps: str, attack_names, n_seeds, noise="on",
                   paper: Optional[dict] = None, paper_label: str = "") -> str:
    rows = []
    for m in names:
        if m not in models:
            continue
        label = _label(records, models, m) + (" (noise off)" if noise == "off" else "")
        rows.append([label] + [fmt(mean_std(accuracy_values(records, m, eps, a, noise)), n_seeds)
                               for a in attack_names] + [audit_text([r for r in records if r["model"] == m])])
        if paper and m in paper and eps == "8/255" and any(a in paper[m] for a in attack_names):
            rows.append([f"*paper, {paper_label}*"] + [f"*{paper[m][a]:.2f}*" if a in paper[m] else ""
                                                      for a in attack_names] + [""])
    return _table(["model"] + list(attack_names) + ["audit"], rows)


def _label(records, models: dict, m: str) -> str:
    """The model's label, marked when a run of it failed an audit check (``FAILED_MARK``)."""
    return models[m] + (f" {FAILED_MARK}" if m in _failed_models(records) else "")


def _audit_lines(note: Optional[dict]) -> list:
    """The sentences on the gradient-masking audit above the claims: the runs left out, the runs without one."""
    if note is None:
        return []
    text = (f"Gradient-masking audit (`tgo_train/audit.py`, column \"audit\" of every table, {FAILED_MARK} = a run "
            "of the model failed a check): a run that fails a check is excluded from every claim, since its "
            "accuracy may come from masked gradients (docs/FORMULAS.md §11); a WARN or NOT RUN check does not "
            "exclude. ")
    missing = note["not_audited"]
    if note["excluded"]:
        runs = [f"{run} ({', '.join(fails)})" for run, fails in note["excluded"].items()]
        text += "Excluded: " + "; ".join(runs) + ". "
    elif note["audited"]:
        text += "No audited run failed a check. "
    if missing and not note["audited"]:
        text += (f"The audit has not been run for any of the {len(missing)} runs yet: they count in the claims, "
                 "unchecked for gradient masking.")
    elif missing:
        text += (f"The audit has not been run for {len(missing)} run(s) ({', '.join(missing)}): they count in the "
                 "claims, unchecked for gradient masking.")
    return [text.rstrip(), ""]


def _claim_lines(result: dict) -> list:
    lines = []
    for key, c in result.items():
        lines.append(f"- **({key}) {c['claim']}: {c['verdict']}.**")
        for name, v in c.get("parts", {}).items():
            lines.append(f"  - {name}: {v}")
        shown = [r for r in c["rows"] if r["diff"] is not None]
        if shown:
            cells = []
            for r in shown:
                what = f"{r['attack']} @ {r['eps']}" if "attack" in r else r["measure"]
                se = f" ± {2 * r['se']:.2f}" if r["se"] is not None else ""
                drop = f", relative drop {100 * r['relative_drop']:.1f} %" if r.get("relative_drop") is not None else ""
                cells.append(f"{r['a']} − {r['b']}, {what}: {r['diff']:+.2f}{se} → {r['verdict']}{drop}")
            lines.append("  - " + "; ".join(cells))
    return lines


def render(summary: dict, records: Sequence[dict]) -> str:
    """RESULTS.md text."""
    models, eps_labels = summary["models"], summary["eps_labels"]
    groups = summary["column_groups"]
    n = len(summary["seeds"])
    spec = summary["size_spec"]
    status = ("complete" if summary["complete"] else
              f"**INCOMPLETE: {summary['finished']} of {summary['expected']} runs finished** (the paper's "
              f"columns: {summary.get('finished_paper_columns', 0)} of {summary['expected']}); missing or "
              f"unfinished: {', '.join(summary['missing'])}")
    out = [
        "# Reproduction of the paper's claims, with error bars",
        "",
        f"Produced by `python -m tgo_train.reproduce --size {summary['size']} --seeds "
        f"{','.join(map(str, summary['seeds']))}`. Grid: {status}.",
        "",
        f"Size `{summary['size']}`: {spec['epochs']} epoch(s) on "
        f"{spec['train_subset'] or 60000} training images, batch {spec['batch_size']}, T = {spec['num_steps']}; "
        f"attacked on the first {spec['num_examples']} test images; Noisy-LIF models with EoT {spec['eot']} "
        f"and accuracy averaged over {spec['draws']} noise draws; APGD {spec['apgd_steps']} steps, MTPGD "
        f"{spec['mtpgd_steps']} steps per target ({spec.get('mtpgd_targets', 9)} targets); measures on "
        f"{spec['analysis_examples']} test images. PGD: uniform random start, α = {attacks.ALPHA:g}. Cells: mean ± "
        "sample std over the seeds that finished "
        f"(n shown when fewer than {n}); \"missing\" = not run yet. Seeds were fixed before the runs; "
        "no run was dropped or re-tuned.",
        "",
        DATASET_NOTE,
        "",
        f"\"{WORST_PAPER}\" and \"{WORST_ALL}\": per-example worst case — the share of test images classified "
        "right under every column of the table before it (the paper's columns; all columns, the strong suite "
        "included). The strong suite (`tgo_jax.attacks.strong_suite`, docs/robustness.md) runs at this size's "
        f"effort: {spec.get('strong_steps')} iterations, {spec.get('strong_queries')} Square queries, "
        f"{spec.get('strong_targets')} targets for APGD-T / FAB-T; it is evaluated after the paper's columns "
        "of every run.",
        "",
        "## Claims",
        "",
        "Rule (in `tgo_train/reproduce_report.py`, `compare`): a difference of means over seeds counts when it "
        "exceeds twice its standard error (√(s_a²/n_a + s_b²/n_b)); a claim on accuracy holds when every "
        f"comparison over {', '.join(CLAIM_ATTACKS)} at every ε is significantly higher. Noisy-LIF models with "
        "their noise on (attacked with EoT). Each line: difference ± 2·SE → verdict.",
        "",
    ]
    out += _audit_lines(summary.get("audit"))
    out += _claim_lines(summary["claims"])
    groups_of_models = [("Ablation (paper Table 4) under TET", ["vanilla", "mc", "nlif", "tgo"], PAPER_TABLE4,
               "CIFAR-100, VGG-11"),
              ("Training strategies (paper Table 1)", ["vanilla", "tgo", "at", "at_tgo", "rat", "rat_tgo"],
               PAPER_TABLE1, "CIFAR-10, WRN-16-4"),
              ("SR baseline", ["vanilla", "sr", "tgo"], None, "")]
    for title, names, paper, label in groups_of_models:
        out += ["", f"## {title}"]
        for eps in eps_labels:
            for columns in groups:
                out += ["", f"ε = {eps}:", "", accuracy_table(records, models, names, eps, columns, n, paper=paper,
                                                               paper_label=label)]
    out += ["", "![accuracy](results/accuracy.png)"]  # every model of the tables above, the paper's columns
    noisy = [m for m in models if any(r["model"] == m and "off" in r.get("accuracy", {}) for r in records)]
    if noisy:
        out += ["", "## Noisy-LIF models with the noise on and off",
                "", "Same weights; \"noise off\" replaces the Noisy-LIF neurons by plain LIF at evaluation."]
        for eps in eps_labels:
            for columns in groups:
                rows = []
                for m in noisy:
                    for noise in ("on", "off"):
                        rows.append([f"{_label(records, models, m)} (noise {noise})"] +
                                    [fmt(mean_std(accuracy_values(records, m, eps, a, noise)), n) for a in columns])
                out += ["", f"ε = {eps}:", "", _table(["model"] + list(columns), rows)]
    out += ["", "## Per-model measures", "",
            "Threshold-neighbour share (|H − θ| < δ = 0.5 over all layers, steps and neurons, "
            "docs/FORMULAS.md §5), input-gradient L1 norm ‖∇ₓCE‖₁ and its share of zero entries, "
            "input-Jacobian spectral norm (power iteration, eq. 10), means over the test images; noise on.",
            ""]
    rows = []
    for m in models:
        label = _label(records, models, m)
        cells = [fmt(mean_std([100 * v for v in measure_values(records, m, "neighbour_share")]), n),
                 fmt(mean_std(measure_values(records, m, "grad_l1")), n, 3),
                 fmt(mean_std([100 * v for v in measure_values(records, m, "grad_zero_share")]), n),
                 fmt(mean_std(measure_values(records, m, "jacobian_norm")), n, 3)]
        rows.append([label] + cells)
    out.append(_table(["model", "neighbour share %", "grad L1", "grad zero share %", "Jacobian norm"], rows))
    out += ["", "Paper: TGO lowers the threshold-neighbour share by about 40 % (CIFAR, its Fig. 4) and makes "
            "input gradients sparser (its Fig. 5)."]
    out += _convergence_lines(summary.get("convergence"))
    out += _timing_lines(records, list(models), n)
    out += _agreement_lines(records)
    out += ["", "Per-seed values, each run's config, seed and git commit: `results/results.json`."]
    return "\n".join(out) + "\n"


def _convergence_lines(curve: Optional[list]) -> list:
    if not curve:
        return ["", "## Convergence of vanilla", "",
                "Not measured yet: no epoch of the curve's run (vanilla, seed 0, all 60k images, "
                "e.g. `--convergence_epochs 10`, in `<workdir>/convergence/vanilla_seed0`) has finished; rerunning the "
                "command with that flag resumes it. Until it is measured, the `full` size's epoch count is "
                "provisional."]
    rows = [[str(r["epoch"]), f"{r['test_accuracy']:.2f}" if r["test_accuracy"] is not None else "-",
             f"{r['elapsed_s']:.0f}"] for r in curve]
    out = ["", "## Convergence of vanilla", "",
           f"Vanilla, seed 0, all 60k training images, a {curve[0]['epochs_total']}-epoch cosine schedule, "
           "test accuracy on all 10k test images after each epoch (this sets the `full` size):", "",
           _table(["epoch", "test accuracy %", "elapsed s"], rows), "", "![convergence](results/convergence.png)"]
    done = [r for r in curve if r["test_accuracy"] is not None]
    if len(done) >= 4:  # how much the second half of the finished epochs still added
        mid, last = done[len(done) // 2 - 1], done[-1]
        out += ["", f"Epochs {mid['epoch'] + 1}–{last['epoch']} add "
                    f"{last['test_accuracy'] - mid['test_accuracy']:+.2f} points "
                    f"({mid['test_accuracy']:.2f} → {last['test_accuracy']:.2f} %); the best epoch is "
                    f"{max(done, key=lambda r: r['test_accuracy'])['epoch']}."]
    return out


def _max_change(check: dict) -> float:
    """The largest cell change of a ``committed_check``; read off its ``cells_differ`` lines ("... a -> b")
    for a check written before ``max_change`` was recorded."""
    if "max_change" in check:
        return float(check["max_change"])
    pairs = [line.rsplit(": ", 1)[1].split(" -> ") for line in check["cells_differ"]]
    return max((abs(float(b) - float(a)) for a, b in pairs), default=0.0)


def _agreement_lines(records) -> list:
    """Runs retrained on a later machine (their workdir was gone) against their committed records."""
    checked = [r for r in sorted(records, key=lambda r: (r["seed"], r["model"])) if r.get("committed_check")]
    if not checked:
        return []
    rows = [[r["model"], str(r["seed"]), "equal" if c["same_test_curve"] else "different", str(c["cells_equal"]),
             str(len(c["cells_differ"])), f"{_max_change(c):.2f}",
             (c.get("committed_train_commit") or "?")[:12]]
            for r in checked for c in [r["committed_check"]]]
    return ["", "## Retrained runs against their first record", "",
            "A run whose workdir was lost (a fresh machine) is retrained to evaluate more columns. Training is "
            "deterministic for a given code, JAX and machine, so there its test-accuracy curve and the cells it "
            "shares with its committed record are equal. On another machine some Noisy-LIF runs have differed "
            "(\"different\" below; others retrained equal), no LIF run so far; the likely cause, not verified, is that "
            "XLA compiles its CPU kernels for the instruction set of the CPU it runs on, so floating-point results "
            "(the noise's sampling among them) may round differently (each record now names its CPU model, "
            "`train_cpu_model`). The report then holds the retrained run in "
            "every column (same seed, same config; nothing chosen), and the first record's cells are kept, old → "
            "new, in `results/results.json` (`committed_check`). The largest change shows how far such a "
            "difference moves one cell, against the spread between seeds.", "",
            _table(["model", "seed", "test curve", "cells equal", "cells different", "largest change (points)",
                    "first trained at"], rows)]


def _run_cpu_seconds(r: dict) -> float:
    return float(r.get("train_cpu_s", 0)) + sum(r.get("eval_cpu_s", {}).values())


def grid_estimate(records: Sequence[dict], models: Sequence[str], n_seeds: int, cores: int = 2) -> Optional[dict]:
    """Wall time of the whole grid on ``cores`` idle cores, estimated from the finished runs' CPU seconds:
    per model the mean CPU seconds of its runs (later seeds reuse compiled code, so runs of seed 0 only
    overstate it) times the seeds, divided by the cores. None until every model has a run."""
    per_model = {}
    for m in models:
        cpu = [_run_cpu_seconds(r) for r in records if r["model"] == m and r.get("eval_cpu_s")]
        if not cpu:
            return None
        per_model[m] = float(np.mean(cpu))
    return {"per_model_cpu_s": per_model, "hours": sum(per_model.values()) * n_seeds / cores / 3600}


def _timing_lines(records, models=(), n_seeds: int = 0, cores: int = 2) -> list:
    """The runs' times, and the grid's estimated wall time on ``cores`` idle cores (the machine the sizes are
    meant for); what the machine was doing is read off the records (CPU ÷ wall seconds), not assumed."""
    if not records:
        return []
    rows = []
    for r in sorted(records, key=lambda r: (r["seed"], r["model"])):
        rows.append([r["model"], str(r["seed"]), f"{r.get('train_wall_s', 0):.0f}", f"{r.get('train_cpu_s', 0):.0f}",
                     f"{sum(r.get('eval_wall_s', {}).values()):.0f}", f"{sum(r.get('eval_cpu_s', {}).values()):.0f}",
                     (r.get("eval_commit") or r.get("train_commit", "?"))[:12]])
    wall = sum(r.get("train_wall_s", 0) + sum(r.get("eval_wall_s", {}).values()) for r in records)
    cpu = sum(r.get("train_cpu_s", 0) + sum(r.get("eval_cpu_s", {}).values()) for r in records)
    busy = (f"Over these runs CPU seconds ÷ wall seconds = {cpu / wall:.2f} (the cores a run kept busy on average). "
            if wall > 0 else "")
    estimate = grid_estimate(records, models, n_seeds, cores)
    return ["", "## Runs and their times", "",
            "Seconds per run, wall clock and CPU (all threads), training and attacks (compilation included; "
            "the first seed compiles, later seeds reuse the compiled code from disk; a resumed run counts only the "
            f"session that finished it). {busy}CPU seconds ÷ {cores} approximates the wall time on {cores} idle "
            "cores.", "",
            _table(["model", "seed", "train wall s", "train CPU s", "attack wall s", "attack CPU s", "commit"], rows),
            "",
            (f"Estimated wall time of the whole grid on {cores} idle cores, from these CPU seconds: "
             f"{estimate['hours']:.1f} h." if estimate else
             "Estimate of the whole grid's time: needs a finished run of every model.")]


# ----------------------------------------------------------------------------- figures

def plot_accuracy(records, models: dict, eps_labels, attack_names, path: str) -> None:
    """Grouped bars: mean accuracy per model and attack (one panel per ε), error bars = std over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(eps_labels), 1, figsize=(10, 3.2 * len(eps_labels)), squeeze=False)
    width = 0.8 / max(len(models), 1)
    for ax, eps in zip(axes[:, 0], eps_labels):
        for i, (m, label) in enumerate(models.items()):
            stats = [mean_std(accuracy_values(records, m, eps, a)) for a in attack_names]
            means = [s["mean"] if s["n"] else np.nan for s in stats]
            stds = [s["std"] or 0.0 for s in stats]
            ax.bar(np.arange(len(attack_names)) + i * width, means, width, yerr=stds, label=label, capsize=2)
        ax.set_xticks(np.arange(len(attack_names)) + 0.4 - width / 2)
        ax.set_xticklabels(attack_names)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"ε = {eps}")
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].legend(ncol=3, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_convergence(curve: list, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    pts = [(r["epoch"], r["test_accuracy"]) for r in curve if r["test_accuracy"] is not None]
    ax.plot(*zip(*pts), marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("vanilla, Fashion-MNIST")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- the committed report

PER_EXAMPLE_FILE = "per_example.json"


def encode_per_example(per_example: dict) -> dict:
    """Each column's per-example correctness (shares k/d of d noise draws, d ≤ 9) as one string
    ``"d:kkk…"``: 200 examples take 202 characters instead of a list of floats, so every run's hits fit
    in the committed ``results/per_example.json`` (the worst case over columns needs them)."""
    return {noise: {eps: {name: _encode(v) for name, v in cells.items()} for eps, cells in by_eps.items()}
            for noise, by_eps in per_example.items()}


def _encode(values: Sequence[float]) -> str:
    v = np.asarray(values, dtype=np.float64)
    for d in range(1, 10):
        k = np.round(v * d)
        if np.all(np.abs(v * d - k) < 1e-2) and np.all((k >= 0) & (k <= d)):
            return f"{d}:" + "".join(str(int(x)) for x in k)
    raise ValueError("per-example values are not shares of at most 9 draws")


def decode_per_example(encoded: dict) -> dict:
    """Inverse of ``encode_per_example`` (shares as floats)."""
    def decode(s: str) -> list:
        d, digits = s.split(":")
        return [int(c) / int(d) for c in digits]
    return {noise: {eps: {name: decode(s) for name, s in cells.items()} for eps, cells in by_eps.items()}
            for noise, by_eps in encoded.items()}


def read_committed(report_dir: str, size_name: str) -> dict:
    """``{(model, seed): record}`` of the report under ``report_dir/results`` (the repository's, when the
    report is written there) for ``size_name``, per-example hits included; {} without one.

    A run's workdir (checkpoints, ``reproduce.json``) lives on one machine, the report in the repository:
    a later session on a fresh machine finds the finished runs here, so it neither repeats their columns
    nor loses them from the report (``tgo_train.reproduce``)."""
    results = _committed_results(report_dir)
    if results is None or results.get("size") != size_name:
        return {}
    hits_path = os.path.join(report_dir, "results", PER_EXAMPLE_FILE)
    hits = {}
    if os.path.exists(hits_path):
        with open(hits_path) as f:
            hits = json.load(f)
    out = {}
    for r in results["runs"]:
        key = f"{r['model']}/seed{r['seed']}"
        out[(r["model"], r["seed"])] = dict(r, per_example=decode_per_example(hits[key])) if key in hits else r
    return out


def committed_convergence(report_dir: str) -> Optional[list]:
    """The convergence curve of the report under ``report_dir/results``, or None: kept in the report when
    its workdir (``tgo_train.reproduce.convergence_dir``) is gone."""
    results = _committed_results(report_dir)
    return results.get("convergence") if results else None


def _committed_results(report_dir: str) -> Optional[dict]:
    path = os.path.join(report_dir, "results", "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def n_cells(record: Optional[dict]) -> int:
    """How many (noise, ε, column) accuracy cells a record has."""
    return sum(len(cells) for by_eps in (record or {}).get("accuracy", {}).values() for cells in by_eps.values())


def agreement(new: dict, old: dict) -> dict:
    """How a retrained run compares with the committed record of the same (model, seed, config): training is
    deterministic for a given code, JAX and machine, so there its test accuracy after each epoch and its
    accuracy cells are equal; a difference (another machine: XLA compiles for the CPU it runs on) is
    reported, not hidden: each differing cell old -> new, and the largest change in points."""
    curve = lambda r: [m.get("test_accuracy") for m in r.get("metrics", []) if not m.get("partial")]
    same, differ, largest = 0, [], 0.0
    for noise, by_eps in old.get("accuracy", {}).items():
        for eps, cells in by_eps.items():
            for name, value in cells.items():
                if name.startswith("Worst"):
                    continue
                now = new.get("accuracy", {}).get(noise, {}).get(eps, {}).get(name)
                if now is None:
                    continue
                if abs(now - value) < 1e-9:
                    same += 1
                else:
                    differ.append(f"{noise} {eps} {name}: {value:.2f} -> {now:.2f}")
                    largest = max(largest, abs(now - value))
    return {"same_test_curve": curve(new) == curve(old), "cells_equal": same, "cells_differ": differ,
            "max_change": round(largest, 2), "committed_train_commit": old.get("train_commit")}


# ----------------------------------------------------------------------------- writing

def write(out_dir: str, records: Sequence[dict], *, size_name: str, size_spec: dict, seeds: Sequence[int],
          models: dict, attack_names: Sequence[str], paper_names: Sequence[str], eps_labels: Sequence[str],
          convergence: Optional[list] = None) -> str:
    """Writes RESULTS.md, results/results.json and results/*.png under ``out_dir``; returns RESULTS.md's path.

    ``paper_names``: the columns of the paper's table (the rest of ``attack_names`` form a second table);
    each table ends with its per-example worst case (``with_worst_case``)."""
    from tgo_train.evaluate import parse_eps

    eps_values = [parse_eps(e) for e in eps_labels]
    done = {(r["model"], r["seed"]) for r in records if is_complete(r, attack_names, eps_values)}
    paper_names = [a for a in attack_names if a in paper_names]
    paper_done = sum(is_complete(r, paper_names, eps_values) for r in records)
    others = [a for a in attack_names if a not in paper_names]
    records = with_worst_case(records, paper_names, list(attack_names))
    groups = [paper_names + [WORST_PAPER]] + ([others + [WORST_ALL]] if others else [])
    columns = [c for g in groups for c in g]
    expected = [(m, s) for s in seeds for m in models]
    summary = {
        "size": size_name, "size_spec": size_spec, "seeds": list(seeds), "models": dict(models),
        "attack_names": list(attack_names), "column_groups": groups, "eps_labels": list(eps_labels),
        "expected": len(expected), "finished": len(done), "complete": len(done) == len(expected),
        "finished_paper_columns": paper_done,
        "missing": [f"{m}/seed{s}" for m, s in expected if (m, s) not in done],
        "claims": claims(records, eps_labels), "audit": audit_note(records), "convergence": convergence,
    }
    summary["aggregate"] = {
        m: {"accuracy": {noise: {eps: {a: mean_std(accuracy_values(records, m, eps, a, noise))
                                       for a in columns} for eps in eps_labels} for noise in ("on", "off")},
            "analysis": {noise: {k: mean_std(measure_values(records, m, k, noise))
                                 for k in ("neighbour_share", "grad_l1", "grad_zero_share", "jacobian_norm")}
                         for noise in ("on", "off")}}
        for m in models}
    summary["paper"] = {"table1_cifar10_wrn16_4": PAPER_TABLE1, "table4_cifar100_vgg11": PAPER_TABLE4,
                        "share_drop": PAPER_SHARE_DROP}
    fig_dir = os.path.join(out_dir, "results")
    os.makedirs(fig_dir, exist_ok=True)
    runs = [{k: v for k, v in r.items() if k != "per_example"} for r in records]  # per-example: a file of its own
    _atomic_write(os.path.join(fig_dir, "results.json"), json.dumps(dict(summary, runs=runs), indent=1,
                                                                    default=str))
    _atomic_write(os.path.join(fig_dir, PER_EXAMPLE_FILE), json.dumps(
        {f"{r['model']}/seed{r['seed']}": encode_per_example(r.get("per_example", {})) for r in records},
        indent=0, sort_keys=True))
    plot_accuracy(records, models, eps_labels, paper_names + [WORST_PAPER], os.path.join(fig_dir, "accuracy.png"))
    if convergence:
        plot_convergence(convergence, os.path.join(fig_dir, "convergence.png"))
    path = os.path.join(out_dir, "RESULTS.md")
    _atomic_write(path, render(summary, records))
    return path


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
