r"""Gradient-masking audit of a trained workdir (docs/robustness.md).

    python -m tgo_train.evaluate --audit --workdir DIR [--audit_size full|quick|small|ci] [--eps 8/255] \
        [--num_examples 1000] [--transfer_from OTHER_DIR]

Runs the checks below on the run's test images and writes ``audit.json`` and ``audit.md`` in DIR, each
check with a pass/fail flag and the numbers that decided it. Accuracies are per-example correctness
(for a noisy model: the share of ``draws`` fresh noise draws that classify right) averaged over images.

(a) unbounded: PGD with ε = 1 must reach about 0 % (<= 2 %); otherwise the gradient does not lead anywhere.
(b) monotone: accuracy must not rise with more PGD steps, restarts or (noisy model) EoT draws, within
    ``tol`` (two standard errors of the larger accuracy plus one example).
(c) black-box: the best white-box accuracy must be <= Square's and <= the transfer attack's (+ tol).
(d) worst case: the per-example worst case over every attack is the headline "worst-case accuracy"; the
    flag says whether the strongest single attack comes within tol of it.
(e) noise (Noisy-LIF models): the model with noise on is attacked with EoT and by transfer from its
    noise-off twin; the flag says whether EoT white-box is at least as strong as that transfer.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Optional

import numpy as np

from tgo_jax import attacks

UNBOUNDED_MAX = 0.02  # (a): "about 0 %"


@dataclasses.dataclass(frozen=True)
class AuditSizes:
    """How big each attack of the audit is (``full`` = the reference sizes)."""

    pgd_steps: tuple = (10, 40, 100)
    restarts: tuple = (1, 5)       # of the first PGD row
    eot_draws: tuple = (1, 10, 20, 50)  # of the first PGD row, noisy models only
    eot: int = 10                  # EoT of the other white-box rows on a noisy model
    draws: int = 3                 # evaluation noise draws of a noisy model
    steps: int = 100               # APGD / APGD-T / FAB-T / ASSG iterations
    sweep_steps: int = 10          # PGD steps per surrogate of the sweep
    queries: int = 5000            # Square
    num_targets: int = 9
    unbounded_steps: int = 20
    sweep_rules: tuple = attacks.SWEEP_RULES  # surrogates of the sweep (one compilation each)


SIZES = {
    "full": AuditSizes(),
    "quick": AuditSizes(restarts=(1, 3), eot_draws=(1, 10, 20), eot=10, steps=50, queries=1000, num_targets=3),
    # A noisy model's audit on a CPU in tens of minutes (EoT 4 for the white-box rows, 20 iterations).
    "small": AuditSizes(restarts=(1, 3), eot_draws=(1, 10, 20), eot=4, steps=20, sweep_steps=5, queries=300,
                        num_targets=3),
    "ci": AuditSizes(pgd_steps=(2, 4), restarts=(1, 2), eot_draws=(1, 2), eot=2, draws=2, steps=3, sweep_steps=2,
                     queries=10, num_targets=2, unbounded_steps=5, sweep_rules=(("rectangle", 0.5), ("bptr", None))),
}


def _tolerance(p: float, n: int) -> float:
    return 2.0 * math.sqrt(max(p * (1 - p), 0.0) / n) + 1.0 / n


def _rows(model, variables, sizes: AuditSizes, eps: float, alpha: float, stochastic: bool, transfer_source):
    """(name, attack, group) for every attack of the audit; group names the check it feeds."""
    eot = sizes.eot if stochastic else 1
    k0 = sizes.pgd_steps[0]
    pgd = lambda **kw: attacks.make(f"PGD{kw.pop('steps', k0)}", eps=kw.pop("eps", eps),
                                    alpha=kw.pop("alpha", alpha), eot=kw.pop("eot", eot))
    rows = [("Clean", attacks.no_attack, "clean")]
    rows += [(f"PGD{k}", pgd(steps=k), "steps") for k in sizes.pgd_steps]
    for r in sizes.restarts[1:]:
        rows.append((f"PGD{k0} x{r} restarts",
                     lambda lf, p, x, y, k, r=r: attacks.pgd(lf, p, x, y, k, eps=eps, alpha=alpha, steps=k0,
                                                             restarts=r, eot=eot), "restarts"))
    if stochastic:
        rows += [(f"PGD{k0} EoT{n}", pgd(eot=n), "eot") for n in sizes.eot_draws]
    common = dict(eps=eps, alpha=alpha, eot=eot, num_targets=sizes.num_targets, queries=sizes.queries)
    for name in ("APGD-CE", "APGD-DLR", "APGD-T", "FAB-T", "ASSG"):
        rows.append((name, attacks.make(name, steps=sizes.steps, **common), "white"))
    sweep = attacks.make("Sweep", steps=sizes.sweep_steps, **common)
    rows.append(("Sweep", lambda *args: sweep(*args, rules=sizes.sweep_rules), "white"))
    rows.append(("Square", attacks.make("Square", **common), "square"))
    source_fn, source_params, source_name = transfer_source
    rows.append((f"Transfer ({source_name})",
                 attacks.transfer_attack(pgd(steps=sizes.pgd_steps[-1], eot=1), source_fn, source_params),
                 "transfer"))
    rows.append(("Unbounded PGD", pgd(eps=1.0, alpha=0.1, steps=sizes.unbounded_steps), "unbounded"))
    return rows


def _per_example(run, variables, name: str, attack, *, batch_size: int, draws: int, seed: int) -> np.ndarray:
    """[N] correctness after ``attack`` (share of ``draws`` fresh noise draws): one row of
    ``evaluate.evaluate_suite``, the one per-example evaluation of the programs."""
    from tgo_train import evaluate  # evaluate imports this module for --audit

    _, hits = evaluate.evaluate_suite(run, variables, [(name, attack)], batch_size=batch_size, draws=draws,
                                      seed=seed, progress=False, per_example=True)
    return hits[name]


def run_audit(run, variables, *, eps: float = 8 / 255, alpha: float = 0.01, sizes: AuditSizes = SIZES["full"],
              batch_size: int = 500, seed: int = 0, transfer_from=None, log=print) -> dict:
    """The audit's numbers and flags (see the module docstring) for a loaded run.

    Args:
      run: ``evaluate.load_run(...)[0]`` (model and test split).
      variables: its variables.
      transfer_from: None (the model's noise-off twin for a Noisy-LIF model, else the model under the
        sigmoid surrogate), or ``(logits_fn, variables, name)`` of another model.
    """
    model = run.model
    stochastic = bool(model.neuron.stochastic)
    draws = sizes.draws if stochastic else 1
    n = len(run.splits["test"][1])
    if transfer_from is None:
        transfer_from = ((attacks.model_logits_fn(model, kind="lif"), variables, "noise-off twin") if stochastic
                         else (attacks.model_logits_fn(model, surrogate="sigmoid"), variables, "sigmoid surrogate"))
    correct, seconds = {}, {}
    for i, (name, attack, _) in enumerate(rows := _rows(model, variables, sizes, eps, alpha, stochastic,
                                                          transfer_from)):
        t0 = time.time()
        # Clean is evaluated as such (no attack): its noise draws, not an attack's, decide it.
        correct[name] = _per_example(run, variables, name, None if attack is attacks.no_attack else attack,
                                     batch_size=batch_size, draws=draws, seed=seed * 1000 + i)
        seconds[name] = round(time.time() - t0, 1)
        log(f"audit: {name:28s} {100 * correct[name].mean():6.2f} %  ({seconds[name]} s)")
    groups = {name: group for name, _, group in rows}
    acc = {name: float(c.mean()) for name, c in correct.items()}
    tol = lambda p: _tolerance(p, n * draws)
    checks = {}

    unbounded = acc["Unbounded PGD"]
    checks["a_unbounded"] = {"pass": unbounded <= UNBOUNDED_MAX, "accuracy": unbounded, "max": UNBOUNDED_MAX}

    def monotone(group):
        names = [nm for nm in correct if groups[nm] == group]
        if group == "restarts":
            names = [f"PGD{sizes.pgd_steps[0]}"] + names
        rises = [(a, b, acc[b] - acc[a]) for a, b in zip(names, names[1:]) if acc[b] > acc[a] + tol(acc[b])]
        return {"pass": not rises, "accuracy": {nm: acc[nm] for nm in names},
                "rises": [{"from": a, "to": b, "by": d} for a, b, d in rises]}

    checks["b_more_steps"] = monotone("steps")
    checks["b_more_restarts"] = monotone("restarts")
    checks["b_more_eot"] = monotone("eot") if stochastic else {"pass": None, "note": "deterministic model"}
    white = {nm: acc[nm] for nm in correct if groups[nm] in ("steps", "restarts", "eot", "white")}
    best_white = min(white, key=white.get)
    square = acc["Square"]
    transfer = next(nm for nm in correct if groups[nm] == "transfer")
    checks["c_white_vs_black_box"] = {
        "pass": white[best_white] <= square + tol(square) and white[best_white] <= acc[transfer] + tol(acc[transfer]),
        "best_white_box": best_white, "white_box_accuracy": white[best_white], "square": square,
        "transfer": acc[transfer], "tol": tol(square)}
    attacked = [nm for nm in correct if groups[nm] != "unbounded"]
    worst = float(np.min(np.stack([correct[nm] for nm in attacked]), axis=0).mean())
    strongest = min((nm for nm in attacked if nm != "Clean"), key=acc.get)
    checks["d_worst_case"] = {"pass": acc[strongest] <= worst + tol(worst), "worst_case_accuracy": worst,
                              "strongest_single": strongest, "strongest_single_accuracy": acc[strongest]}
    if stochastic:
        twin = dataclasses.replace(run, model=model.clone(neuron=dataclasses.replace(model.neuron, kind="lif")))
        off = {}
        for name, attack in (("Clean", None),
                             (f"PGD{sizes.pgd_steps[0]}", attacks.make(f"PGD{sizes.pgd_steps[0]}", eps=eps,
                                                                         alpha=alpha))):
            off[name] = float(_per_example(twin, variables, name, attack, batch_size=batch_size, draws=1,
                                           seed=seed * 1000 + 999).mean())
        eot_row = f"PGD{sizes.pgd_steps[0]}"
        checks["e_noise_on_off"] = {
            "pass": acc[eot_row] <= acc[transfer] + tol(acc[transfer]),
            "noise_on": {"Clean": acc["Clean"], f"{eot_row} EoT{sizes.eot}": acc[eot_row],
                         transfer: acc[transfer]},
            "noise_off": off}
    else:
        checks["e_noise_on_off"] = {"pass": None, "note": "deterministic model (no Noisy-LIF noise)"}
    return {"eps": eps, "alpha": alpha, "num_examples": n, "draws": draws, "stochastic": stochastic,
            "sizes": dataclasses.asdict(sizes), "accuracy": acc, "seconds": seconds,
            "worst_case_accuracy": worst, "checks": checks}


def _flag(value) -> str:
    return "n/a" if value is None else ("PASS" if value else "FAIL")


def render(result: dict, title: str) -> str:
    """audit.md text: the flags, the deciding numbers, then every attack's accuracy and time."""
    pct = lambda v: f"{100 * v:.2f} %"
    lines = [f"# Gradient-masking audit: {title}", "",
             f"ε = {result['eps']:.4g}, {result['num_examples']} test images, noise draws {result['draws']}; "
             f"**worst-case accuracy {pct(result['worst_case_accuracy'])}**", "",
             "| check | flag | numbers |", "|---|---|---|"]
    for name, check in result["checks"].items():
        numbers = {k: v for k, v in check.items() if k != "pass"}
        lines.append(f"| {name} | {_flag(check['pass'])} | `{json.dumps(numbers, default=str)}` |")
    lines += ["", "| attack | accuracy | seconds |", "|---|---|---|"]
    for name, a in result["accuracy"].items():
        lines.append(f"| {name} | {pct(a)} | {result['seconds'][name]} |")
    return "\n".join(lines)


def audit_workdir(workdir: str, *, eps: float, alpha: float, sizes: AuditSizes, num_examples: int,
                  batch_size: int, step: Optional[int] = None, transfer_from: Optional[str] = None,
                  log=print) -> dict:
    """Loads ``workdir``, runs the audit, writes audit.json and audit.md there (whole files, at the end)."""
    from tgo_train import evaluate  # the run loader lives with the evaluation program

    run, variables, ckpt_step = evaluate.load_run(workdir, step, num_examples)
    source = None
    if transfer_from:
        src_run, src_vars, _ = evaluate.load_run(transfer_from, None, num_examples)
        source = (attacks.model_logits_fn(src_run.model), src_vars, os.path.basename(os.path.normpath(transfer_from)))
    result = run_audit(run, variables, eps=eps, alpha=alpha, sizes=sizes, batch_size=batch_size,
                       transfer_from=source, log=log)
    result.update(workdir=workdir, step=ckpt_step)
    title = f"{os.path.basename(os.path.normpath(workdir))} (step {ckpt_step})"
    for name, text in (("audit.json", json.dumps(result, indent=1, default=str)), ("audit.md", render(result, title))):
        tmp = os.path.join(workdir, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, os.path.join(workdir, name))
    return result
