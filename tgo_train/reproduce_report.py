"""The reproduction's report: RESULTS.md, results/results.json and results/*.png from the runs' records.

``write(out_dir, records, ...)`` turns the per-run records of ``tgo_train.reproduce`` (finished or not,
``repro_record.RunRecord``) into the report. The numbers and verdicts come from ``repro_claims`` (the
statistics and claim rules), the figures from ``repro_figures``; this module renders them: every sentence
about what was observed is computed from the records, the fixed prose is the templates below.
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

from tgo_jax import attacks
from tgo_train import rundir
from tgo_train.repro_claims import (CLAIM_ATTACKS, PAPER_SHARE_DROP, PAPER_TABLE1, PAPER_TABLE4, WORST_ALL,
                                    WORST_PAPER, accuracy_values, audit_note, audit_text, claims, failed_models,
                                    mean_std, measure_values, with_worst_case)
from tgo_train.repro_committed import PER_EXAMPLE_FILE, results_path
from tgo_train.repro_figures import plot_accuracy, plot_convergence
from tgo_train.repro_record import RunRecord, encode_per_example

FAILED_MARK = "†"  # marks a model whose run failed a check of the gradient-masking audit, in every table
MEASURES = ("neighbour_share", "grad_l1", "grad_zero_share", "jacobian_norm")  # reproduce.measure's
# The report's tables: (title, models, the paper's numbers beside them, their setting).
TABLES = (("Ablation (paper Table 4) under TET", ("vanilla", "mc", "nlif", "tgo"), PAPER_TABLE4, "CIFAR-100, VGG-11"),
          ("Training strategies (paper Table 1)", ("vanilla", "tgo", "at", "at_tgo", "rat", "rat_tgo"), PAPER_TABLE1,
           "CIFAR-10, WRN-16-4"),
          ("SR baseline", ("vanilla", "sr", "tgo"), None, ""))

# ----------------------------------------------------------------------------- templates

HEADER = """# Reproduction of the paper's claims, with error bars

Produced by `python -m tgo_train.reproduce --size {size} --seeds {seeds}`. Grid: {status}.

Size `{size}`: {epochs} epoch(s) on {train_images} training images, batch {batch_size}, T = {num_steps}; \
attacked on the first {num_examples} test images; Noisy-LIF models with EoT {eot} and accuracy averaged over \
{draws} noise draws; APGD {apgd_steps} steps, MTPGD {mtpgd_steps} steps per target ({mtpgd_targets} targets); \
measures on {analysis_examples} test images. PGD: uniform random start, α = {alpha:g}. Cells: mean ± sample std \
over the seeds that finished (n shown when fewer than {n_seeds}); "missing" = not run yet. Seeds were fixed \
before the runs; no run was dropped or re-tuned.

**Dataset difference.** Every number here is the small spiking net (2 conv + 1 hidden layer) trained on \
Fashion-MNIST (28×28 grey images, 10 classes) on CPUs. The paper's numbers beside them are CIFAR-10 with \
WRN-16-4 (its Table 1) and CIFAR-100 with VGG-11 (its Table 4), 300 epochs on a GPU; they are quoted for the \
direction and size of the effects, not as values to match.

"{worst_paper}" and "{worst_all}": per-example worst case — the share of test images classified right under \
every column of the table before it (the paper's columns; all columns, the strong suite included). The strong \
suite (`tgo_jax.attacks.strong_suite`, docs/robustness.md) runs at this size's effort: {strong_steps} \
iterations, {strong_queries} Square queries, {strong_targets} targets for APGD-T / FAB-T; it is evaluated after \
the paper's columns of every run.

## Claims

Rule (in `tgo_train/repro_claims.py`, `compare`): a difference of means over seeds counts when it exceeds \
twice its standard error (√(s_a²/n_a + s_b²/n_b)); a claim on accuracy holds when every comparison over \
{claim_attacks} at every ε is significantly higher. Noisy-LIF models with their noise on (attacked with EoT). \
Each line: difference ± 2·SE → verdict.
"""
INCOMPLETE = ("**INCOMPLETE: {finished} of {expected} runs finished** (the paper's columns: {paper_done} of "
              "{expected}); missing or unfinished: {missing}")
AUDIT_RULE = ("Gradient-masking audit (`tgo_train/audit.py`, column \"audit\" of every table, {mark} = a run "
              "of the model failed a check): a run that fails a check is excluded from every claim, since its "
              "accuracy may come from masked gradients (docs/FORMULAS.md §11); a WARN or NOT RUN check does not "
              "exclude. ")
NOISE_ON_OFF = ("## Noisy-LIF models with the noise on and off\n\n"
                "Same weights; \"noise off\" replaces the Noisy-LIF neurons by plain LIF at evaluation.")
MEASURES_TEXT = ("## Per-model measures\n\n"
                 "Threshold-neighbour share (|H − θ| < δ = 0.5 over all layers, steps and neurons, "
                 "docs/FORMULAS.md §5), input-gradient L1 norm ‖∇ₓCE‖₁ and its share of zero entries, "
                 "input-Jacobian spectral norm (power iteration, eq. 10), means over the test images; noise on.\n")
PAPER_MEASURES = ("Paper: TGO lowers the threshold-neighbour share by about {drop:.0f} % (CIFAR, its Fig. 4) and "
                  "makes input gradients sparser (its Fig. 5).")
TIMING = ("## Runs and their times\n\n"
          "Seconds per run, wall clock and CPU (all threads), training and attacks (compilation included; "
          "the first seed compiles, later seeds reuse the compiled code from disk; a resumed run counts only the "
          "session that finished it). {busy}CPU seconds ÷ {cores} approximates the wall time on {cores} idle "
          "cores.")
AGREEMENT = ("## Retrained runs against their first record\n\n"
             "A run whose workdir was lost (a fresh machine) is retrained to evaluate more columns. Training is "
             "deterministic for a given code, JAX and machine, so there its test-accuracy curve and the cells it "
             "shares with its committed record are equal. {observed} The report then holds the retrained run in "
             "every column (same seed, same config; nothing chosen), and the first record's cells are kept, old → "
             "new, in `results/results.json` (`committed_check`). The largest change shows how far such a "
             "difference moves one cell, against the spread between seeds.")
DIFFERED_CAUSE = ("; the likely cause, not verified, is that XLA compiles its CPU kernels for the instruction set "
                  "of the CPU it runs on, so floating-point results (the noise's sampling among them) may round "
                  "differently (each record now names its CPU model, `train_cpu_model`).")


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


def accuracy_table(records: Sequence[RunRecord], models: dict, names: Sequence[str], eps: str, attack_names,
                   n_seeds, noise="on", paper: Optional[dict] = None, paper_label: str = "") -> str:
    rows = []
    for m in names:
        if m not in models:
            continue
        label = _label(records, models, m) + (" (noise off)" if noise == "off" else "")
        rows.append([label] + [fmt(mean_std(accuracy_values(records, m, eps, a, noise)), n_seeds)
                               for a in attack_names] + [audit_text([r for r in records if r.model == m])])
        if paper and m in paper and eps == "8/255" and any(a in paper[m] for a in attack_names):
            rows.append([f"*paper, {paper_label}*"] + [f"*{paper[m][a]:.2f}*" if a in paper[m] else ""
                                                      for a in attack_names] + [""])
    return _table(["model"] + list(attack_names) + ["audit"], rows)


def _label(records: Sequence[RunRecord], models: dict, m: str) -> str:
    """The model's label, marked when a run of it failed an audit check (``FAILED_MARK``)."""
    return models[m] + (f" {FAILED_MARK}" if m in failed_models(records) else "")


def _audit_lines(note: Optional[dict]) -> list:
    """The sentences on the gradient-masking audit above the claims: the runs left out, the runs without one."""
    if note is None:
        return []
    text = AUDIT_RULE.format(mark=FAILED_MARK)
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


def render(summary: dict, records: Sequence[RunRecord]) -> str:
    """RESULTS.md text."""
    models, eps_labels = summary["models"], summary["eps_labels"]
    groups = summary["column_groups"]
    n = len(summary["seeds"])
    spec = summary["size_spec"]
    status = "complete" if summary["complete"] else INCOMPLETE.format(
        finished=summary["finished"], expected=summary["expected"], paper_done=summary["finished_paper_columns"],
        missing=", ".join(summary["missing"]))
    out = [HEADER.format(size=summary["size"], seeds=",".join(map(str, summary["seeds"])), status=status,
                         train_images=spec["train_subset"] or 60000, alpha=attacks.ALPHA, n_seeds=n,
                         worst_paper=WORST_PAPER, worst_all=WORST_ALL, claim_attacks=", ".join(CLAIM_ATTACKS),
                         **spec)]
    out += _audit_lines(summary.get("audit"))
    out += _claim_lines(summary["claims"])
    for title, names, paper, label in TABLES:
        out += ["", f"## {title}"]
        for eps in eps_labels:
            for columns in groups:
                out += ["", f"ε = {eps}:", "", accuracy_table(records, models, names, eps, columns, n, paper=paper,
                                                               paper_label=label)]
    out += ["", "![accuracy](results/accuracy.png)"]  # every model of the tables above, the paper's columns
    noisy = [m for m in models if any(r.model == m and "off" in r.noises() for r in records)]
    if noisy:
        out += ["", NOISE_ON_OFF]
        for eps in eps_labels:
            for columns in groups:
                rows = [[f"{_label(records, models, m)} (noise {noise})"] +
                        [fmt(mean_std(accuracy_values(records, m, eps, a, noise)), n) for a in columns]
                        for m in noisy for noise in ("on", "off")]
                out += ["", f"ε = {eps}:", "", _table(["model"] + list(columns), rows)]
    out += ["", MEASURES_TEXT]
    rows = []
    for m in models:
        cells = [fmt(mean_std([100 * v for v in measure_values(records, m, "neighbour_share")]), n),
                 fmt(mean_std(measure_values(records, m, "grad_l1")), n, 3),
                 fmt(mean_std([100 * v for v in measure_values(records, m, "grad_zero_share")]), n),
                 fmt(mean_std(measure_values(records, m, "jacobian_norm")), n, 3)]
        rows.append([_label(records, models, m)] + cells)
    out.append(_table(["model", "neighbour share %", "grad L1", "grad zero share %", "Jacobian norm"], rows))
    out += ["", PAPER_MEASURES.format(drop=100 * PAPER_SHARE_DROP)]
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


def _differed_sentence(checked: Sequence[RunRecord]) -> str:
    """What the retrained runs showed, by neuron kind: which differed from their first record."""
    by_kind = {}
    for r in checked:
        by_kind.setdefault("Noisy-LIF" if r.noisy else "LIF", []).append(r.committed_check.differs)
    if not any(any(v) for v in by_kind.values()):
        return "Every run retrained so far is equal to its first record."
    parts = []
    for kind in sorted(by_kind, key=lambda k: not any(by_kind[k])):  # the kinds that differed first
        k, total = sum(by_kind[kind]), len(by_kind[kind])
        parts.append(f"no {kind} run so far" if k == 0 else
                     f"some {kind} runs have differed (\"different\" below; others retrained equal)" if k < total
                     else f"every {kind} run has differed (\"different\" below)")
    return "On another machine " + ", ".join(parts) + DIFFERED_CAUSE


def _agreement_lines(records: Sequence[RunRecord]) -> list:
    """Runs retrained on a later machine (their workdir was gone) against their committed records."""
    checked = [r for r in sorted(records, key=lambda r: (r.seed, r.model)) if r.committed_check]
    if not checked:
        return []
    rows = [[r.model, str(r.seed), "equal" if c.same_test_curve else "different", str(c.cells_equal),
             str(len(c.cells_differ)), f"{c.max_change:.2f}", (c.committed_train_commit or "?")[:12]]
            for r in checked for c in [r.committed_check]]
    return ["", AGREEMENT.format(observed=_differed_sentence(checked)), "",
            _table(["model", "seed", "test curve", "cells equal", "cells different", "largest change (points)",
                    "first trained at"], rows)]


def grid_estimate(records: Sequence[RunRecord], models: Sequence[str], n_seeds: int,
                  cores: int = 2) -> Optional[dict]:
    """Wall time of the whole grid on ``cores`` idle cores, estimated from the finished runs' CPU seconds:
    per model the mean CPU seconds of its runs (later seeds reuse compiled code, so runs of seed 0 only
    overstate it) times the seeds, divided by the cores. None until every model has a run."""
    per_model = {}
    for m in models:
        cpu = [r.seconds()[1] + r.seconds()[3] for r in records if r.model == m and r.eval_cpu_s]
        if not cpu:
            return None
        per_model[m] = float(sum(cpu) / len(cpu))
    return {"per_model_cpu_s": per_model, "hours": sum(per_model.values()) * n_seeds / cores / 3600}


def _timing_lines(records: Sequence[RunRecord], models=(), n_seeds: int = 0, cores: int = 2) -> list:
    """The runs' times, and the grid's estimated wall time on ``cores`` idle cores (the machine the sizes are
    meant for); what the machine was doing is read off the records (CPU ÷ wall seconds), not assumed."""
    if not records:
        return []
    rows = []
    for r in sorted(records, key=lambda r: (r.seed, r.model)):
        train_wall, train_cpu, eval_wall, eval_cpu = r.seconds()
        rows.append([r.model, str(r.seed), f"{train_wall:.0f}", f"{train_cpu:.0f}", f"{eval_wall:.0f}",
                     f"{eval_cpu:.0f}", (r.eval_commit or r.train_commit or "?")[:12]])
    wall = sum(s[0] + s[2] for s in (r.seconds() for r in records))
    cpu = sum(s[1] + s[3] for s in (r.seconds() for r in records))
    busy = (f"Over these runs CPU seconds ÷ wall seconds = {cpu / wall:.2f} (the cores a run kept busy on average). "
            if wall > 0 else "")
    estimate = grid_estimate(records, models, n_seeds, cores)
    return ["", TIMING.format(busy=busy, cores=cores), "",
            _table(["model", "seed", "train wall s", "train CPU s", "attack wall s", "attack CPU s", "commit"], rows),
            "",
            (f"Estimated wall time of the whole grid on {cores} idle cores, from these CPU seconds: "
             f"{estimate['hours']:.1f} h." if estimate else
             "Estimate of the whole grid's time: needs a finished run of every model.")]


# ----------------------------------------------------------------------------- writing

def summary_of(records: Sequence[RunRecord], *, size_name: str, size_spec: dict, seeds: Sequence[int],
              models: dict, attack_names: Sequence[str], paper_names: Sequence[str], eps_labels: Sequence[str],
              convergence: Optional[list] = None) -> tuple:
    """(summary, records with their worst-case columns): everything the report states, as data."""
    done = {(r.model, r.seed) for r in records if r.is_complete(attack_names, eps_labels)}
    paper_names = [a for a in attack_names if a in paper_names]
    paper_done = sum(r.is_complete(paper_names, eps_labels) for r in records)
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
            "analysis": {noise: {k: mean_std(measure_values(records, m, k, noise)) for k in MEASURES}
                         for noise in ("on", "off")}}
        for m in models}
    summary["paper"] = {"table1_cifar10_wrn16_4": PAPER_TABLE1, "table4_cifar100_vgg11": PAPER_TABLE4,
                        "share_drop": PAPER_SHARE_DROP}
    return summary, records


def write(out_dir: str, records: Sequence[RunRecord], *, size_name: str, size_spec: dict, seeds: Sequence[int],
          models: dict, attack_names: Sequence[str], paper_names: Sequence[str], eps_labels: Sequence[str],
          convergence: Optional[list] = None) -> str:
    """Writes RESULTS.md, results/results.json and results/*.png under ``out_dir``; returns RESULTS.md's path.

    ``paper_names``: the columns of the paper's table (the rest of ``attack_names`` form a second table);
    each table ends with its per-example worst case (``with_worst_case``)."""
    summary, records = summary_of(records, size_name=size_name, size_spec=size_spec, seeds=seeds, models=models,
                                 attack_names=attack_names, paper_names=paper_names, eps_labels=eps_labels,
                                 convergence=convergence)
    os.makedirs(os.path.dirname(results_path(out_dir)), exist_ok=True)
    runs = [r.to_json(per_example=False) for r in records]  # per-example: a file of its own
    rundir.write_atomic(results_path(out_dir), json.dumps(dict(summary, runs=runs), indent=1, default=str))
    rundir.write_atomic(results_path(out_dir, PER_EXAMPLE_FILE), json.dumps(
        {r.name: encode_per_example(r) for r in records}, indent=0, sort_keys=True))
    paper_columns = summary["column_groups"][0]
    plot_accuracy(records, models, eps_labels, paper_columns, results_path(out_dir, "accuracy.png"))
    if convergence:
        plot_convergence(convergence, results_path(out_dir, "convergence.png"))
    path = os.path.join(out_dir, "RESULTS.md")
    rundir.write_atomic(path, render(summary, records))
    return path
