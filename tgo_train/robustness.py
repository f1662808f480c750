"""A trained workdir's robustness in the paper's table layout: the attack suite at each ε, the ε sweep, the
event attack on event data, and the files that hold them (``eval.json``, ``eval.md``, TensorBoard scalars,
``eps_sweep.png``).

``evaluate_workdir`` is what ``tgo-evaluate`` runs for each workdir and the main job
(``tgo_train.experiment``) for its two models; ``comparison`` puts several workdirs' results in one table.
The attacks run through ``tgo_train.evaluation`` (sharded over the devices); the run is loaded by
``tgo_train.trained``.
"""
from __future__ import annotations

import os
import time
from typing import Optional, Sequence

from tgo_jax import attacks, sharding
from tgo_train import distributed, figures, rundir, workdir as workdirs
from tgo_train.evaluation import evaluate_event_attack, evaluate_suite
from tgo_train.summaries import Summaries
from tgo_train.tables import eps_label
from tgo_train.trained import load_run, load_transfer_sources


def markdown_table(rows: dict, columns: Sequence[str], title: str = "") -> str:
    """rows: name -> {column: accuracy %}."""
    lines = [f"**{title}**", ""] if title else []
    lines.append("| model | " + " | ".join(columns) + " |")
    lines.append("|---" * (len(columns) + 1) + "|")
    for name, result in rows.items():
        cells = [f"{result[c]:.2f}" if c in result else "-" for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_workdir(workdir: str, *, eps_list: Sequence[float], alpha: float, extra: Sequence[str],
                     eot: int, draws: int, eps_sweep: Sequence[float], sweep_attack: str,
                     num_examples: int, batch_size: int, step: Optional[int] = None,
                     attacks_subset: Optional[Sequence[str]] = None, progress: bool = True,
                     event_steps: int = 50, num_devices: int = 0, pgd_step: str = "paper",
                     transfer_from: Sequence[str] = (), sweep_figure: bool = True) -> dict:
    """Evaluates one workdir over ``num_devices`` devices (0: all of every process); process 0 writes
    eval.json / eval.md (and eps_sweep.png unless ``sweep_figure`` is False); returns the results (on every
    process).

    ``pgd_step``: "paper" (α = ``alpha`` for every PGD-k) or "madry" (α = 2.5·ε/k), ``attacks.pgd_alpha``.
    ``transfer_from``: trained workdirs, each a ``Transfer-<basename>`` column (added after the others
    unless ``attacks_subset`` names it)."""
    t0 = time.time()
    name = os.path.basename(os.path.normpath(workdir))
    mesh = sharding.make_mesh(num_devices)
    sharding.check_batch_size(batch_size, mesh)
    if distributed.is_primary():
        workdirs.check_writable(workdir)  # before the attacks: the results go there
    run, variables, ckpt_step = load_run(workdir, step, num_examples, mesh)
    sources = load_transfer_sources(list(transfer_from), run, variables, num_examples, mesh)
    stochastic = run.model.neuron.stochastic
    eot, draws = (eot, draws) if stochastic else (1, 1)
    results = {"workdir": str(workdir), "step": ckpt_step, "eot": eot, "draws": draws,
               "num_examples": int(len(run.splits["test"][1])), "alpha": alpha, "pgd_step": pgd_step,
               "pgd_step_text": {}, "transfer_from": dict(zip((s.name for s in sources), transfer_from)),
               "tables": {}}
    for eps in eps_list:
        suite = attacks.paper_suite(eps=eps, alpha=alpha, eot=eot, extra=tuple(extra), pgd_step=pgd_step)
        if attacks_subset:
            suite = select_attacks(suite, attacks_subset, eps=eps, alpha=alpha, eot=eot, pgd_step=pgd_step,
                                   sources=sources)
        have = {n for n, _ in suite}
        suite += [(f"Transfer-{s.name}", attacks.make(f"Transfer-{s.name}", eps=eps, alpha=alpha, eot=eot,
                                                      pgd_step=pgd_step, sources=sources))
                  for s in sources if f"Transfer-{s.name}" not in have]
        results["pgd_step_text"][eps_label(eps)] = attacks.pgd_step_text(pgd_step, eps, alpha)
        results["tables"][eps_label(eps)] = evaluate_suite(run, variables, suite, batch_size=batch_size,
                                                           draws=draws, progress=progress, mesh=mesh,
                                                           label=f"{name} ε={eps_label(eps)}")
    if eps_sweep:
        sweep = {}
        for eps in eps_sweep:
            suite = [(n, a) for n, a in attacks.paper_suite(eps=eps, alpha=alpha, eot=eot, pgd_step=pgd_step)
                     if n == sweep_attack]
            sweep[eps_label(eps)] = evaluate_suite(run, variables, suite, batch_size=batch_size, draws=draws,
                                                   progress=progress, mesh=mesh,
                                                   label=f"{name} ε={eps_label(eps)}")[sweep_attack]
        clean = next((t["Clean"] for t in results["tables"].values() if "Clean" in t), None)
        if clean is None:  # the figure starts at ε = 0
            clean = evaluate_suite(run, variables, [("Clean", None)], batch_size=batch_size, draws=draws,
                                   progress=progress, mesh=mesh, label=f"{name} clean")["Clean"]
        results["eps_sweep"] = {"attack": sweep_attack, "accuracy": sweep, "pgd_step": pgd_step, "clean": clean}
    if run.config.dataset == "dvs_cifar10" and event_steps:
        results["event_attack"] = evaluate_event_attack(run, variables, batch_size=batch_size, draws=draws,
                                                        eot=eot, steps=event_steps, progress=progress, mesh=mesh)
    results["seconds"] = round(time.time() - t0, 1)
    if distributed.is_primary():
        write_results(workdir, results, sweep_figure)
    return results


def write_results(workdir: str, results: dict, sweep_figure: bool = True) -> None:
    """eval.json, eval.md, the TensorBoard scalars and eps_sweep.png, the most wanted first. When a write
    fails (a full disk) the table is printed before the error is raised, so the attacks' work is not lost."""
    try:
        rundir.write_json(rundir.file(workdir, rundir.EVAL_JSON), results)  # whole or not at all
        rundir.write_atomic(rundir.file(workdir, rundir.EVAL_MD), render(results) + "\n")
        write_summaries(workdir, results)
        if "eps_sweep" in results and sweep_figure:
            plot_sweep([results], os.path.join(workdir, "eps_sweep.png"))
    except OSError:
        print(render(results), flush=True)
        raise


def select_attacks(suite, names: Sequence[str], *, eps: float, alpha: float, eot: int, pgd_step: str = "paper",
                   sources=()) -> list:
    """The rows ``names`` (any attack of the registry, ``attacks.names(sources)``): those of ``suite`` in its
    order, then the others in the order given. An unknown name is a ValueError listing the known ones."""
    wanted = [attacks.canonical(n, sources) for n in names]
    rows = [(n, a) for n, a in suite if n in wanted]
    have = {n for n, _ in rows}
    return rows + [(n, attacks.make(n, eps=eps, alpha=alpha, eot=eot, pgd_step=pgd_step, sources=sources))
                   for n in dict.fromkeys(wanted) if n not in have]


def write_summaries(workdir: str, results: dict) -> None:
    """The results as TensorBoard scalars ``eval/<attack>_<ε>`` (and ``eval_sweep/``) at the checkpoint step."""
    with Summaries(workdir) as summaries:
        for eps, table in results["tables"].items():
            summaries.scalars(results["step"], {f"{attack}_{eps}": acc for attack, acc in table.items()},
                              prefix="eval/")
        if "eps_sweep" in results:
            sweep = results["eps_sweep"]
            summaries.scalars(results["step"], {f"{sweep['attack']}_{eps}": acc
                                                for eps, acc in sweep["accuracy"].items()}, prefix="eval_sweep/")


def render(results: dict) -> str:
    """eval.md text: one paper-layout table per ε, then the ε sweep."""
    name = os.path.basename(os.path.normpath(results["workdir"]))
    parts = [f"# Robustness of {name} (step {results['step']}, {results['num_examples']} test images, "
             f"EoT {results['eot']}, PGD step rule {results.get('pgd_step', 'paper')})"]
    for eps, table in results["tables"].items():
        parts.append(markdown_table({name: table}, list(table), title=f"ε = {eps}"))
        if eps in results.get("pgd_step_text", {}):
            parts.append(results["pgd_step_text"][eps])
    if "event_attack" in results:
        e = results["event_attack"]
        parts.append(f"**Event attack** (Yao et al. 2024, {e['steps']} steps): attack success rate "
                     f"{e['asr']:.2f} % ({e['fooled']:g} of {e['clean_correct']:g} correctly classified test "
                     "examples misclassified)")
    if "eps_sweep" in results:
        sweep = results["eps_sweep"]
        parts.append(markdown_table({name: sweep["accuracy"]}, list(sweep["accuracy"]),
                                    title=f"{sweep['attack']} accuracy against ε"))
    return "\n\n".join(parts)


def comparison(all_results: Sequence[dict]) -> str:
    """One table per ε with a row per workdir."""
    parts = []
    for eps in all_results[0]["tables"]:
        rows = {os.path.basename(os.path.normpath(r["workdir"])): r["tables"][eps] for r in all_results
                if eps in r["tables"]}
        columns = list(all_results[0]["tables"][eps])
        parts.append(markdown_table(rows, columns, title=f"ε = {eps}"))
        texts = dict.fromkeys(r["pgd_step_text"][eps] for r in all_results if eps in r.get("pgd_step_text", {}))
        if texts:
            parts.append("; ".join(texts))
    return "\n\n".join(parts)


def plot_sweep(all_results: Sequence[dict], path: str) -> str:
    """The ε-sweep figure of one or more evaluated workdirs (``tgo_train.figures``): the sweep attack's
    accuracy against ε, from ε = 0 (clean) on, a line per workdir; returns ``path``."""
    by_model = {os.path.basename(os.path.normpath(r["workdir"])): r for r in all_results if "eps_sweep" in r}
    sweep_attacks = list(dict.fromkeys(r["eps_sweep"]["attack"] for r in by_model.values()))
    return figures.plot_eps_curves(figures.eps_curves(by_model, sweep_attacks), path)


def combined_sweep_path(workdirs_: Sequence[str], out: Optional[str]) -> str:
    """Where the ε-sweep figure of several workdirs goes: beside ``--out``, else in the first workdir's parent."""
    if out:
        return os.path.splitext(out)[0] + "_eps_sweep.png"
    return os.path.join(os.path.dirname(os.path.normpath(workdirs_[0])), "eps_sweep.png")
