r"""Gradient-masking audit of a trained workdir (docs/robustness.md).

    tgo-audit --workdir DIR [--size full|quick|small|ci] [--eps 8/255] \
        [--num_examples 1000] [--pgd_step paper|madry] [--transfer_from OTHER_DIR [--transfer_from DIR2]]

(the program: ``tgo_train/audit_main.py``; this module is the audit itself, for it and the reproduction)

Runs the checks below on the run's test images and writes ``audit.json`` and ``audit.md`` in DIR, each
check with a flag (PASS, FAIL, WARN or NOT RUN) and the numbers that decided it. ``run_audit`` returns
``{"checks": {name: {"flag": ..., "why": ..., numbers}}, "flags": {name: flag}, ...}``. Accuracies are
per-example correctness c_i (for a noisy model: the share of ``draws`` fresh noise draws that classify
example i right) averaged over the images.

Paired comparison (docs/FORMULAS.md §11): every attack runs on the same images, so "attack B leaves a higher
accuracy than attack A" is decided on the per-example differences d_i = c_B,i - c_A,i:
B is higher when mean(d) > 2·SE(d) + 1/n, SE(d) = sd(d)/√n (sample standard deviation, n images). For 0/1
correctness this is McNemar-like: mean(d) = (b - a)/n from the discordant counts a (only A right) and
b (only B right), and sd(d) comes from those counts only.

(a) unbounded: PGD with ε = 1 must reach about 0 % (<= 2 %); otherwise the gradient does not lead anywhere.
(b) monotone: accuracy must not rise (paired) with more PGD steps, restarts or (noisy model) EoT draws;
    single step: FGSM must not be stronger than any PGD-k (PGD-k's accuracy higher than FGSM's ⇒ FAIL).
(c) black-box: the best white-box accuracy must not be higher (paired) than Square's (for a noisy model
    Square minimises the margin averaged over ``eot`` draws), than the transfer attack from the model's
    twin (noise off, or the sigmoid surrogate), or than each transfer attack from an independently trained
    model (``--transfer_from``; NOT RUN without one).
(d) worst case: the per-example worst case over every attack is the headline "worst-case accuracy"; the
    flag says whether the strongest single attack comes within the paired tolerance of it.
(e) noise (Noisy-LIF models): the model with noise on is attacked with EoT and by transfer from its
    noise-off twin; the flag says whether EoT white-box is at least as strong as that transfer.
(f) plateau: when every attack leaves at least ``PLATEAU_SHARE`` (90 %) of the clean accuracy, the audit
    cannot tell a robust model from a masked one: WARN, naming the decisive attacks (ASSG with the `a`
    search, Square at 5000 queries, transfer from independently trained models).

A check that cannot run (no transfer source, a size without Square, a deterministic model for (e)) is
NOT RUN with the reason; none passes silently.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Optional, Sequence, Union

import numpy as np

from tgo_jax import attacks, validation
from tgo_train import rundir
from tgo_train.evaluation import evaluate_suite
from tgo_train.trained import load_run, load_transfer_sources

FLAGS = ("PASS", "FAIL", "WARN", "NOT RUN")
UNBOUNDED_MAX = 0.02    # (a): "about 0 %"
UNBOUNDED_EPS = 1.0     # (a): the whole pixel range
UNBOUNDED_ALPHA = 0.1   # (a): PGD step of the unbounded attack
PLATEAU_SHARE = 0.9     # (f): "close to clean": every attack leaves >= 90 % of the clean accuracy
WHITE_ROWS = ("APGD-CE", "APGD-DLR", "APGD-T", "FAB-T", "ASSG")
DECISIVE = "ASSG with the `a` search (ASSG-search), Square with 5000 queries, transfer from independently " \
           "trained models (--transfer_from DIR, e.g. another seed and the vanilla model)"
_WHITE_GROUPS = ("single", "steps", "restarts", "eot", "white")


@dataclasses.dataclass(frozen=True)
class AuditSizes:
    """How big each attack of the audit is (``full`` = the reference sizes). ``queries=None`` leaves Square
    out, an empty ``sweep_rules`` the surrogate sweep and an empty ``white_rows`` the AutoAttack/ASSG rows:
    the checks they feed say NOT RUN. A budget of 0 is an error naming the field."""

    pgd_steps: tuple = (10, 40, 100)
    restarts: tuple = (1, 5)       # of the first PGD row
    eot_draws: tuple = (1, 10, 20, 50)  # of the first PGD row, noisy models only
    eot: int = 10                  # EoT of the other white-box rows (and Square's margin) on a noisy model
    draws: int = 3                 # evaluation noise draws of a noisy model
    steps: int = 100               # APGD / APGD-T / FAB-T / ASSG iterations
    sweep_steps: int = 10          # PGD steps per surrogate of the sweep
    queries: Optional[int] = 5000  # Square (None: not run)
    num_targets: int = 9
    unbounded_steps: int = 20
    sweep_rules: tuple = attacks.SWEEP_RULES  # surrogates of the sweep (one compilation each)
    white_rows: tuple = WHITE_ROWS  # registry rows of the white-box set besides PGD (full: + ASSG-search)

    def __post_init__(self):
        for field in ("pgd_steps", "restarts", "eot_draws"):
            values = getattr(self, field)
            if not isinstance(values, tuple) or not values:
                raise ValueError(f"audit size {field} must be a non-empty tuple of ints >= 1, got {values!r}")
            for i, v in enumerate(values):
                validation.count(f"audit size {field}[{i}]", v)
        for field in ("eot", "draws", "steps", "sweep_steps", "num_targets", "unbounded_steps"):
            validation.count(f"audit size {field}", getattr(self, field))
        if self.queries is not None:
            validation.count("audit size queries (None leaves Square out)", self.queries)
        for name in self.white_rows:
            attacks.canonical(name)


SIZES = {
    # The reference: AutoAttack's budgets, and ASSG with the search over a (17 runs of 100 iterations), the
    # decisive white-box attack for a model whose accuracy plateaus near clean (f).
    "full": AuditSizes(white_rows=WHITE_ROWS + ("ASSG-search",)),
    "quick": AuditSizes(restarts=(1, 3), eot_draws=(1, 10, 20), eot=10, steps=50, queries=1000, num_targets=3),
    # A noisy model's audit on a CPU in tens of minutes (EoT 4 for the white-box rows, 20 iterations).
    "small": AuditSizes(restarts=(1, 3), eot_draws=(1, 10, 20), eot=4, steps=20, sweep_steps=5, queries=300,
                        num_targets=3),
    "ci": AuditSizes(pgd_steps=(2, 4), restarts=(1, 2), eot_draws=(1, 2), eot=2, draws=2, steps=3, sweep_steps=2,
                     queries=10, num_targets=2, unbounded_steps=5, sweep_rules=(("rectangle", 0.5), ("bptr", None))),
}
REFERENCE = SIZES["full"]


def describe(sizes: AuditSizes) -> str:
    """What ``sizes`` cuts relative to the reference (``full``), one line, e.g. "steps 100 → 20, ..."."""
    show = lambda field, v: f"{len(v)} surrogates" if field == "sweep_rules" else (
        "none" if v is None or v == () else (",".join(map(str, v)) if isinstance(v, tuple) else str(v)))
    cuts = [f"{f.name} {show(f.name, getattr(REFERENCE, f.name))} → {show(f.name, getattr(sizes, f.name))}"
            for f in dataclasses.fields(AuditSizes) if getattr(sizes, f.name) != getattr(REFERENCE, f.name)]
    return "the reference sizes" if not cuts else "cut from the reference (full): " + "; ".join(cuts)


def size_name(sizes: AuditSizes) -> str:
    """The name of ``sizes`` in ``SIZES``, else "custom"."""
    return next((name for name, preset in SIZES.items() if preset == sizes), "custom")


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """Does B leave a higher accuracy than A on the same images? (docs/FORMULAS.md §11, module docstring)

    d_i = b_i - a_i per example (correctness in [0, 1]); ``higher`` when mean(d) > tol = 2·sd(d)/√n + 1/n.
    Returns the mean difference ``by``, ``tol``, ``higher`` and how many examples each side wins."""
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    n = d.size
    se = float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    tol = 2.0 * se + 1.0 / n
    return {"by": float(d.mean()), "tol": tol, "higher": bool(d.mean() > tol),
            "b_better_on": int((d > 0).sum()), "a_better_on": int((d < 0).sum())}


def _rows(sizes: AuditSizes, eps: float, alpha: float, pgd_step: str, stochastic: bool, twin, sources):
    """(name, attack, group) for every attack of the audit; group names the check it feeds."""
    eot = sizes.eot if stochastic else 1
    k0 = sizes.pgd_steps[0]
    step = lambda k: attacks.pgd_alpha(eps, k, pgd_step, alpha)
    pgd = lambda k, n=eot: attacks.make(f"PGD{k}", eps=eps, alpha=alpha, pgd_step=pgd_step, eot=n)
    rows = [("Clean", attacks.no_attack, "clean"), ("FGSM", attacks.make("FGSM", eps=eps, eot=eot), "single")]
    rows += [(f"PGD{k}", pgd(k), "steps") for k in sizes.pgd_steps]
    for r in sizes.restarts[1:]:
        rows.append((f"PGD{k0} x{r} restarts",
                     lambda lf, p, x, y, k, r=r: attacks.pgd(lf, p, x, y, k, eps=eps, alpha=step(k0), steps=k0,
                                                             restarts=r, eot=eot), "restarts"))
    if stochastic:
        rows += [(f"PGD{k0} EoT{n}", pgd(k0, n), "eot") for n in sizes.eot_draws]
    common = dict(eps=eps, alpha=alpha, eot=eot, num_targets=sizes.num_targets, pgd_step=pgd_step)
    for name in sizes.white_rows:
        rows.append((attacks.canonical(name), attacks.make(name, steps=sizes.steps, **common), "white"))
    if sizes.sweep_rules:
        sweep = attacks.make("Sweep", steps=sizes.sweep_steps, **common)
        rows.append(("Sweep", lambda *args: sweep(*args, rules=sizes.sweep_rules), "white"))
    if sizes.queries is not None:
        rows.append(("Square", attacks.make("Square", queries=sizes.queries, **common), "square"))
    twin_fn, twin_params, twin_name = twin
    k_last = sizes.pgd_steps[-1]
    rows.append((f"Transfer ({twin_name})", attacks.transfer_attack(pgd(k_last, 1), twin_fn, twin_params), "twin"))
    for source in sources:
        rows.append((f"Transfer-{source.name}",
                     attacks.make(f"Transfer-{source.name}", steps=k_last, sources=sources, **common), "transfer"))
    rows.append(("Unbounded PGD", attacks.make(f"PGD{sizes.unbounded_steps}", eps=UNBOUNDED_EPS,
                                               alpha=UNBOUNDED_ALPHA, eot=eot), "unbounded"))
    return rows


def _per_example(run, variables, name: str, attack, *, batch_size: int, draws: int, seed: int) -> np.ndarray:
    """[N] correctness after ``attack`` (share of ``draws`` fresh noise draws): one row of
    ``evaluation.evaluate_suite``, the one per-example evaluation of the programs."""
    _, hits = evaluate_suite(run, variables, [(name, attack)], batch_size=batch_size, draws=draws, seed=seed,
                             progress=False, per_example=True)
    return hits[name]


def run_audit(run, variables, *, eps: float = 8 / 255, alpha: float = attacks.ALPHA, pgd_step: str = "paper",
              sizes: AuditSizes = SIZES["full"], batch_size: int = 500, seed: int = 0,
              sources: Sequence[attacks.Source] = (), log=print) -> dict:
    """The audit's numbers and flags (see the module docstring) for a loaded run.

    Args:
      run: ``trained.load_run(...)[0]`` (model and test split).
      variables: its variables.
      pgd_step: "paper" (fixed ``alpha``) or "madry" (2.5·ε/k) for every PGD row (``attacks.pgd_alpha``).
      sources: independently trained models (``attacks.Source``, checked compatible by the caller), each a
        ``Transfer-<name>`` row for check (c); none: that check is NOT RUN.

    Returns:
      a dict with ``checks`` ({check: {"flag": "PASS"|"FAIL"|"WARN"|"NOT RUN", "why": ..., numbers}}),
      ``flags`` ({check: flag}), ``accuracy``, ``seconds`` and ``per_example`` correctness per attack,
      ``groups`` ({attack: the check it feeds}, so that ``decide`` can be rerun), ``worst_case_accuracy`` and the
      settings (ε, α, PGD step rule, sizes and what they cut from the reference).
    """
    model = run.model
    stochastic = bool(model.neuron.stochastic)
    draws = sizes.draws if stochastic else 1
    n = len(run.splits["test"][1])
    twin = ((attacks.model_logits_fn(model, kind="lif"), variables, "noise-off twin") if stochastic
            else (attacks.model_logits_fn(model, surrogate="sigmoid"), variables, "sigmoid surrogate"))
    correct, seconds = {}, {}
    rows = _rows(sizes, eps, alpha, pgd_step, stochastic, twin, list(sources))
    for i, (name, attack, _) in enumerate(rows):
        t0 = time.time()
        # Clean is evaluated as such (no attack): its noise draws, not an attack's, decide it.
        correct[name] = _per_example(run, variables, name, None if attack is attacks.no_attack else attack,
                                     batch_size=batch_size, draws=draws, seed=seed * 1000 + i)
        seconds[name] = round(time.time() - t0, 1)
        log(f"audit: {name:28s} {100 * correct[name].mean():6.2f} %  ({seconds[name]} s)")
    groups = {name: group for name, _, group in rows}
    noise_off = None
    if stochastic:
        twin_run = dataclasses.replace(run, model=model.clone(neuron=dataclasses.replace(model.neuron, kind="lif")))
        k0 = sizes.pgd_steps[0]
        noise_off = {name: float(_per_example(twin_run, variables, name, attack, batch_size=batch_size, draws=1,
                                              seed=seed * 1000 + 999).mean())
                     for name, attack in (("Clean", None), (f"PGD{k0}", attacks.make(
                         f"PGD{k0}", eps=eps, alpha=alpha, pgd_step=pgd_step)))}
    checks = decide(correct, groups, sizes=sizes, stochastic=stochastic, noise_off=noise_off)
    return {"eps": eps, "alpha": alpha, "pgd_step": pgd_step, "pgd_step_text": attacks.pgd_step_text(pgd_step, eps, alpha),
            "num_examples": n, "draws": draws, "stochastic": stochastic, "size": size_name(sizes),
            "sizes": dataclasses.asdict(sizes),
            "size_cuts": describe(sizes), "accuracy": {nm: float(c.mean()) for nm, c in correct.items()},
            "seconds": seconds, "worst_case_accuracy": checks["d_worst_case"]["worst_case_accuracy"],
            "checks": checks, "flags": {name: check["flag"] for name, check in checks.items()},
            "groups": groups, "per_example": {nm: [round(float(v), 4) for v in c] for nm, c in correct.items()}}


def _not_run(why: str) -> dict:
    return {"flag": "NOT RUN", "why": f"not run: {why}"}


def decide(correct: dict, groups: dict, *, sizes: AuditSizes, stochastic: bool,
           noise_off: Optional[dict] = None) -> dict:
    """The checks (a)-(f) from each attack's per-example correctness ``correct`` ({name: [N]}, the same
    images for every attack) and the check each attack feeds (``groups``: {name: group}, as ``_rows``)."""
    acc = {name: float(np.mean(c)) for name, c in correct.items()}
    names = lambda *gs: [nm for nm in correct if groups[nm] in gs]
    pct = lambda v: f"{100 * v:.2f} %"
    checks = {}

    if "Unbounded PGD" in acc:
        u = acc["Unbounded PGD"]
        checks["a_unbounded"] = {"flag": "PASS" if u <= UNBOUNDED_MAX else "FAIL",
                                 "why": f"PGD at ε = {UNBOUNDED_EPS:g} leaves {pct(u)} (at most {pct(UNBOUNDED_MAX)})",
                                 "accuracy": u, "max": UNBOUNDED_MAX}
    else:
        checks["a_unbounded"] = _not_run("no unbounded PGD row")

    def monotone(chain, what):
        if len(chain) < 2:
            return _not_run(f"one {what} setting only")
        comps = [{"from": a, "to": b, **paired(correct[a], correct[b])} for a, b in zip(chain, chain[1:])]
        rises = [c for c in comps if c["higher"]]
        why = (f"accuracy rises with more {what}: " + ", ".join(
            f"{c['from']} {pct(acc[c['from']])} → {c['to']} {pct(acc[c['to']])} (by {pct(c['by'])} > tol "
            f"{pct(c['tol'])})" for c in rises)) if rises else f"no paired rise with more {what}"
        return {"flag": "FAIL" if rises else "PASS", "why": why, "accuracy": {nm: acc[nm] for nm in chain},
                "comparisons": comps}

    steps_rows = names("steps")
    checks["b_more_steps"] = monotone(steps_rows, "PGD steps")
    checks["b_more_restarts"] = (monotone(steps_rows[:1] + names("restarts"), "restarts") if names("restarts")
                                 else _not_run("the size runs one restart only"))
    checks["b_more_eot"] = (monotone(names("eot"), "EoT draws") if stochastic
                            else _not_run("deterministic model (no noise draws to average)"))
    if "FGSM" in correct and steps_rows:
        comps = [{"pgd": nm, **paired(correct["FGSM"], correct[nm])} for nm in steps_rows]
        weaker = [c["pgd"] for c in comps if c["higher"]]
        checks["b_single_step"] = {
            "flag": "FAIL" if weaker else "PASS",
            "why": (f"one FGSM step ({pct(acc['FGSM'])}) is stronger than " + ", ".join(
                f"{nm} ({pct(acc[nm])})" for nm in weaker)) if weaker else
            "no PGD-k is weaker than FGSM beyond the paired tolerance",
            "fgsm": acc["FGSM"], "pgd": {nm: acc[nm] for nm in steps_rows}, "comparisons": comps}
    else:
        checks["b_single_step"] = _not_run("no FGSM or PGD row")

    white = names(*_WHITE_GROUPS)
    best = min(white, key=acc.get) if white else None

    def not_stronger(others, what):
        """Each of ``others`` (black-box or transfer rows) must not be stronger than the best white-box."""
        comps = [{"attack": nm, **paired(correct[nm], correct[best])} for nm in others]
        stronger = [c["attack"] for c in comps if c["higher"]]
        why = (f"{', '.join(f'{nm} ({pct(acc[nm])})' for nm in stronger)} stronger than the best white-box "
               f"{best} ({pct(acc[best])}): the white-box gradient is masked") if stronger else \
            f"{what}: not stronger than the best white-box {best} ({pct(acc[best])}) beyond the paired tolerance"
        return {"flag": "FAIL" if stronger else "PASS", "why": why, "best_white_box": best,
                "white_box_accuracy": acc[best], "accuracy": {nm: acc[nm] for nm in others}, "comparisons": comps}

    if not best:
        for name in ("c_square", "c_transfer_twin", "c_transfer"):
            checks[name] = _not_run("no white-box row")
    else:
        checks["c_square"] = (not_stronger(names("square"), f"Square ({sizes.queries} queries)") if names("square")
                              else _not_run("the size leaves Square out (queries=None)"))
        if names("square"):
            checks["c_square"].update(queries=sizes.queries, reference_queries=REFERENCE.queries)
            if sizes.queries < REFERENCE.queries:
                checks["c_square"]["why"] += f" (at {sizes.queries} queries, below the reference {REFERENCE.queries})"
        checks["c_transfer_twin"] = (not_stronger(names("twin"), "the transfer from the model's twin")
                                     if names("twin") else _not_run("no twin transfer row"))
        checks["c_transfer"] = (not_stronger(names("transfer"), "the transfers from independently trained models")
                                if names("transfer") else
                                _not_run("no independently trained transfer source (give --transfer_from DIR, "
                                         "e.g. the same model with another seed and the vanilla model)"))

    attacked = [nm for nm in correct if groups[nm] != "unbounded"]
    worst_per_example = np.min(np.stack([np.asarray(correct[nm], np.float64) for nm in attacked]), axis=0)
    worst = float(worst_per_example.mean())
    singles = [nm for nm in attacked if groups[nm] != "clean"]
    strongest = min(singles, key=acc.get) if singles else None
    if strongest:
        comp = paired(worst_per_example, correct[strongest])
        checks["d_worst_case"] = {
            "flag": "FAIL" if comp["higher"] else "PASS",
            "why": (f"the strongest single attack {strongest} ({pct(acc[strongest])}) "
                    f"{'is above' if comp['higher'] else 'comes within the paired tolerance of'} the per-example "
                    f"worst case {pct(worst)}; report the worst case"),
            "worst_case_accuracy": worst, "strongest_single": strongest,
            "strongest_single_accuracy": acc[strongest], "comparison": comp}
    else:
        checks["d_worst_case"] = {**_not_run("no attack row"), "worst_case_accuracy": worst}

    if stochastic and names("twin") and steps_rows:
        twin_row, eot_row = names("twin")[0], steps_rows[0]
        comp = paired(correct[twin_row], correct[eot_row])
        checks["e_noise_on_off"] = {
            "flag": "FAIL" if comp["higher"] else "PASS",
            "why": (f"{eot_row} with EoT {sizes.eot} ({pct(acc[eot_row])}) is "
                    f"{'weaker than' if comp['higher'] else 'not weaker than'} the transfer from the noise-off "
                    f"twin ({pct(acc[twin_row])}) beyond the paired tolerance"),
            "noise_on": {"Clean": acc.get("Clean"), f"{eot_row} EoT{sizes.eot}": acc[eot_row],
                         twin_row: acc[twin_row]}, "noise_off": noise_off, "comparison": comp}
    else:
        checks["e_noise_on_off"] = _not_run("deterministic model (no Noisy-LIF noise)" if not stochastic
                                            else "no twin transfer or PGD row")

    if strongest and acc.get("Clean", 0.0) > 0:
        clean = acc["Clean"]
        plateau = acc[strongest] >= PLATEAU_SHARE * clean
        ran = ([nm for nm in correct if nm.startswith("ASSG-search")] + names("square") + names("transfer"))
        checks["f_plateau"] = {
            "flag": "WARN" if plateau else "PASS",
            "why": (f"every attack leaves >= {PLATEAU_SHARE:.0%} of the clean accuracy (strongest {strongest} "
                    f"{pct(acc[strongest])}, clean {pct(clean)}): robust and masked look alike here; run the "
                    f"decisive attacks: {DECISIVE} (run here: {', '.join(ran) or 'none'})") if plateau else
            f"the strongest attack {strongest} ({pct(acc[strongest])}) takes more than "
            f"{1 - PLATEAU_SHARE:.0%} of the clean accuracy ({pct(clean)})",
            "clean": clean, "strongest_single": strongest, "strongest_single_accuracy": acc[strongest],
            "share_of_clean": acc[strongest] / clean if clean else None, "plateau_share": PLATEAU_SHARE}
    else:
        checks["f_plateau"] = _not_run("no attack row, or no example classified right" if "Clean" in acc
                                       else "no clean row")
    return checks


def render(result: dict, title: str) -> str:
    """audit.md text: the size and what it cuts, the flags with their reasons and deciding numbers, then
    every attack's accuracy and time."""
    pct = lambda v: f"{100 * v:.2f} %"
    lines = [f"# Gradient-masking audit: {title}", "",
             f"Size `{result['size']}`: {result['size_cuts']}.", "",
             f"ε = {result['eps']:.4g}, {result['num_examples']} test images, noise draws {result['draws']}; "
             f"{result['pgd_step_text']}; **worst-case accuracy {pct(result['worst_case_accuracy'])}**", "",
             "Paired comparisons: attack B counts as higher than A when the mean per-example difference exceeds "
             "2 standard errors of the differences + 1/n (docs/FORMULAS.md §11).", "",
             "| check | flag | why | numbers |", "|---|---|---|---|"]
    for name, check in result["checks"].items():
        numbers = {k: v for k, v in check.items() if k not in ("flag", "why", "comparisons", "comparison")}
        lines.append(f"| {name} | {check['flag']} | {check['why']} | `{json.dumps(numbers, default=str)}` |")
    lines += ["", "| attack | accuracy | seconds |", "|---|---|---|"]
    for name, a in result["accuracy"].items():
        lines.append(f"| {name} | {pct(a)} | {result['seconds'][name]} |")
    return "\n".join(lines)


def audit_workdir(workdir: str, *, eps: float, alpha: float = attacks.ALPHA, pgd_step: str = "paper",
                  sizes: Union[str, AuditSizes] = "full", num_examples: int, batch_size: int,
                  step: Optional[int] = None, transfer_from: Union[None, str, Sequence[str]] = None,
                  log=print) -> dict:
    """Loads ``workdir`` (and each ``transfer_from`` workdir, checked compatible), runs the audit, writes
    audit.json and audit.md there (whole files, at the end). ``sizes``: a name of ``SIZES`` or sizes."""
    sizes = SIZES[sizes] if isinstance(sizes, str) else sizes
    run, variables, ckpt_step = load_run(workdir, step, num_examples)
    dirs = [transfer_from] if isinstance(transfer_from, str) else list(transfer_from or ())
    sources = load_transfer_sources(dirs, run, variables, num_examples)
    result = run_audit(run, variables, eps=eps, alpha=alpha, pgd_step=pgd_step, sizes=sizes,
                       batch_size=batch_size, sources=sources, log=log)
    result.update(workdir=workdir, step=ckpt_step, transfer_from=dict(zip(
        (s.name for s in sources), dirs)))
    title = f"{os.path.basename(os.path.normpath(workdir))} (step {ckpt_step})"
    rundir.write_json(rundir.file(workdir, rundir.AUDIT_JSON), result)
    rundir.write_atomic(rundir.file(workdir, rundir.AUDIT_MD), render(result, title) + "\n")
    return result
