r"""Robustness evaluation of trained checkpoints in the paper's table layout.

    tgo-evaluate --workdir runs/fmnist/tgo [--workdir runs/fmnist/vanilla ...] \
        [--eps 8/255] [--extra apgd,mtpgd] [--eps_sweep 2/255,4/255,6/255,8/255] [--num_examples 1000]

Writes ``eval.json`` and ``eval.md`` in each workdir; with several workdirs it also prints one comparison
table with a row each (``--out`` writes it to a file). With ``--eps_sweep`` it draws the sweep attack's accuracy
against ε from ε = 0 (clean) on (``tgo_train.figures``): for one workdir in ``<workdir>/eps_sweep.png``; for
several, ONE figure with every model (no per-workdir ones), beside ``--out`` (``<out without .md>_eps_sweep.png``)
or else in the first workdir's parent folder (``eps_sweep.png``); its path is printed.
Noisy (stochastic) models are attacked with EoT (``--eot``, default 10 draws) and their accuracy is
the mean over fresh noise draws (``--draws``). ``--attacks`` takes any attack of the registry by name
(``tgo_jax.attacks.names()``: APGD-T, FAB-T, Square, AutoAttack, ASSG, Sweep, ...). Every attack runs with
the batch sharded over all devices (``--num_devices``), also over several processes with ``--distributed``.
``--pgd_step paper|madry`` sets the PGD step: the paper's fixed α (``--alpha``, 0.01) or α = 2.5·ε/k
(Madry et al. 2018); the rule is printed beside every table. ``--transfer_from DIR`` (repeatable) adds a
``Transfer-<basename of DIR>`` column: PGD-10 made on that trained model, evaluated on the workdir's.

    python -m tgo_train.evaluate --audit --workdir DIR [--audit_size full|quick|small|ci] [--transfer_from DIR2 ...]

runs the gradient-masking audit (``tgo_train/audit.py``) and writes ``audit.json`` and ``audit.md``.
"""
from __future__ import annotations

import contextlib
import os
import time
from fractions import Fraction
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

from tgo_jax import attacks, data, sharding
from tgo_train import audit, cli, distributed, feed, figures, records, train, workdir as workdirs
from tgo_train.checkpoint import Checkpoints, read_meta
from tgo_train.configs.base import get_base_config
from tgo_train.progress import Progress
from tgo_train.summaries import Summaries
from tgo_train.tables import eps_label

PAPER_COLUMNS = ("Clean", "FGSM", "RFGSM", "PGD7", "PGD10", "PGD20", "PGD40")


def parse_eps(text: str) -> float:
    """'8/255' or '0.1' -> float; raises ValueError for text that is not a number >= 0."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError) as e:
        raise ValueError(f"cannot read epsilon {text!r}: use a number or a fraction like 8/255") from e
    if value < 0:
        raise ValueError(f"epsilon must be >= 0, got {text!r}")
    return value


def load_run(workdir: workdirs.PathLike, step: Optional[int] = None, num_examples: int = 0, mesh=None):
    """Rebuilds the model and data of a training workdir and restores its weights (params, batch_stats),
    replicated on ``mesh`` (default: every device of every process).

    Only those two entries of the checkpoint are read; no optimiser, objective or train step is built.
    """
    ckpt_dir = workdirs.as_path(workdir) / "checkpoints"
    if not ckpt_dir.is_dir():
        raise FileNotFoundError(f"no checkpoints in {workdir} (expected {ckpt_dir})")
    config = get_base_config()  # options added since the run was made keep their defaults
    config.update(read_meta(ckpt_dir, step)["config"])
    if num_examples:
        config.eval_subset = num_examples
    config.train_subset = config.batch_size  # evaluation needs the test split only
    run = train.prepare(config)
    manager = Checkpoints(ckpt_dir, every_steps=1)
    saved = manager.restore_entries(["params", "batch_stats", "step"], step,  # default: newest intact
                                    placement=sharding.replicated(mesh or sharding.make_mesh()))
    manager.close()
    variables = jax.tree.map(jnp.asarray, {"params": saved["params"], "batch_stats": saved["batch_stats"]})
    return run, variables, int(saved["step"])


def load_transfer_sources(dirs: Sequence[str], target_run, target_variables, num_examples: int = 0,
                          mesh=None) -> list:
    """``attacks.Source`` of each trained workdir in ``dirs`` (named by its basename), each checked against the
    target run: the same data set, input shape and class count, else one ValueError line naming both."""
    names = [os.path.basename(os.path.normpath(d)) for d in dirs]
    for name in set(names):
        if names.count(name) > 1:
            raise ValueError(f"two transfer sources are named {name!r} "
                             f"({', '.join(d for d, n in zip(dirs, names) if n == name)}): the column is "
                             "Transfer-<basename of the workdir>, so give workdirs with different names")
    x = target_run.splits["test"][0][:1]
    sources = []
    for d, name in zip(dirs, names):
        src_run, src_vars, _ = load_run(d, None, num_examples, mesh)
        source = attacks.Source(name, attacks.model_logits_fn(src_run.model), src_vars,
                                dataset=src_run.config.dataset, input_shape=tuple(src_run.splits["test"][0].shape[1:]))
        attacks.transfer.check_source(source, attacks.model_logits_fn(target_run.model), target_variables,
                                      jnp.asarray(x), target_dataset=target_run.config.dataset)
        sources.append(source)
    return sources


def evaluate_suite(run, variables, suite, *, batch_size: int, draws: int, seed: int = 0,
                   progress: bool = True, label: str = "", per_example: bool = False, mesh=None):
    """Accuracy (%) of a model under each (name, attack) of ``suite`` on the run's test split.

    The batches are sharded over ``mesh`` (default: every device of every process), the last one
    padded (its padding rows come last and are dropped); ``variables`` should be replicated on the mesh
    (``load_run`` does that).

    Args:
      suite: sequence of (name, attack or None for clean) as made by ``attacks.paper_suite``.
      batch_size: global evaluation batch (rounded up to a multiple of the mesh's device count; the extra
        rows are masked padding).
      draws: noise draws per evaluation of a stochastic model (fresh noise; mean accuracy).
      progress: a bar on a terminal, and a line with each attack's seconds when done.
      label: names the suite in the progress output (e.g. the model and ε).
      per_example: also return each example's correctness per row (share of the draws, [N] arrays),
        from which the per-example worst case over rows follows.

    Returns:
      ``{name: accuracy %}``, or ``({name: accuracy %}, {name: correctness [N]})`` with ``per_example``.
    """
    logits_fn = attacks.model_logits_fn(run.model)
    stochastic = run.model.neuron.stochastic
    draws = draws if stochastic else 1
    images, labels = run.splits["test"]
    batches = list(feed.eval_batches(images, labels, batch_size, mesh or sharding.make_mesh()))
    jitted = {name: jax.jit(_correct_fn(attack, logits_fn, draws)) for name, attack in suite}
    progress = progress and distributed.is_primary()
    bar = Progress(len(batches) * len(suite), enabled=progress, desc=f"evaluate {label}".strip())
    hits = {name: [] for name, _ in suite}
    seconds = {name: 0.0 for name, _ in suite}  # per attack, compilation included
    key = jax.random.PRNGKey(seed)
    done = 0
    for batch in batches:
        for name, _ in suite:
            key, sub = jax.random.split(key)
            t0 = time.time()
            hits[name].append(distributed.host_array(
                jitted[name](variables, batch["image"], batch["label"], sub)))
            seconds[name] += time.time() - t0
            done += 1
            bar.update(done)
    bar.close()
    hits = {name: np.concatenate(h)[:len(labels)] for name, h in hits.items()}
    accuracy = {name: 100.0 * float(h.sum()) / len(labels) for name, h in hits.items()}
    if progress:  # where the time went: one line per suite, each attack's seconds and accuracy
        bar.write(f"evaluated {label} on {len(labels)} images: " + ", ".join(
            f"{name} {seconds[name]:.0f} s ({accuracy[name]:.1f}%)" for name, _ in suite))
    return (accuracy, hits) if per_example else accuracy


def evaluate_event_attack(run, variables, *, batch_size: int, draws: int, eot: int, steps: int,
                          seed: int = 0, progress: bool = True, mesh=None) -> dict:
    """Attack success rate (%) of the event attack (Yao et al. 2024; docs/FORMULAS.md §10) on event data:
    of the test examples classified correctly, the share misclassified after the attack. Batches are
    sharded over ``mesh`` (default: every device), padded and masked like ``evaluate_suite``'s."""
    logits_fn = attacks.model_logits_fn(run.model)
    unit = data.dvs.event_unit(run.config.dvs.mode, run.config.dvs.count_cap)

    def counts(v, batch, k):
        clean, fool = attacks.events.attack_success(logits_fn, v, batch["image"], batch["label"], k, draws=draws,
                                                    unit=unit, steps=steps, eot=eot)
        return jnp.sum(clean * batch["mask"]), jnp.sum(clean * fool * batch["mask"])

    fn = jax.jit(counts)
    images, labels = run.splits["test"]
    batches = list(feed.eval_batches(images, labels, batch_size, mesh or sharding.make_mesh()))
    bar = Progress(len(batches), enabled=progress and distributed.is_primary(), desc="event attack")
    clean_correct = fooled = 0.0
    key = jax.random.PRNGKey(seed)
    for i, batch in enumerate(batches):
        key, sub = jax.random.split(key)
        clean, fool = fn(variables, batch, sub)
        clean_correct += float(clean)
        fooled += float(fool)
        bar.update(i + 1)
    bar.close()
    asr = 100.0 * fooled / clean_correct if clean_correct else float("nan")
    return {"asr": asr, "clean_correct": clean_correct, "fooled": fooled, "steps": steps, "unit": unit}


def _correct_fn(attack, logits_fn, draws):
    """Per-example correctness [B] (share of the noise draws) after ``attack``."""

    def correct(variables, x, y, key):
        if attack:
            return attacks.robust_correct(attack, logits_fn, variables, x, y, key, draws=draws)
        return attacks.correct(logits_fn, variables, x, y, key, draws=draws)

    return correct


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
        records.write_json(os.path.join(workdir, "eval.json"), results)  # whole or not at all
        records.write_atomic(os.path.join(workdir, "eval.md"), render(results) + "\n")
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


def define_flags():
    """Command-line flags (defined on demand, so other programs can import this module)."""
    flags.DEFINE_multi_string("workdir", None, "training workdir(s); several give a comparison")
    flags.DEFINE_integer("step", None, "checkpoint step (default: latest)", lower_bound=0)
    flags.DEFINE_list("eps", ["8/255"], "attack budgets (L∞, pixel units)")
    flags.DEFINE_float("alpha", attacks.ALPHA, "PGD step size of the paper's rule (--pgd_step paper)",
                       lower_bound=0.0)
    flags.DEFINE_enum("pgd_step", "paper", list(attacks.PGD_STEP_RULES),
                      "PGD step rule: paper (fixed --alpha) or madry (alpha = 2.5*eps/k for k steps)")
    flags.DEFINE_list("extra", [], "extra attacks: apgd, mtpgd")
    flags.DEFINE_list("attacks", [], "these rows, by name: any of tgo_jax.attacks.names(), e.g. "
                      "Clean,PGD10,APGD-T,Square,ASSG (default: the paper's table)")
    flags.DEFINE_integer("eot", 10, "EoT noise draws per gradient for stochastic models", lower_bound=1)
    flags.DEFINE_integer("draws", 3, "noise draws per accuracy evaluation of stochastic models", lower_bound=1)
    flags.DEFINE_list("eps_sweep", [], "ε values for the sweep table and figure, e.g. 2/255,4/255,6/255,8/255 "
                      "(figure from ε = 0: <workdir>/eps_sweep.png; with several workdirs one figure of all, "
                      "<out without .md>_eps_sweep.png or <first workdir's parent>/eps_sweep.png)")
    flags.DEFINE_string("sweep_attack", "PGD10", "attack used in the ε sweep")
    flags.DEFINE_integer("num_examples", 0, "evaluate on the first N test images (0 = all)", lower_bound=0)
    flags.DEFINE_integer("batch_size", 512, "global evaluation batch size (rounded up to a multiple of the device count)",
                         lower_bound=1)
    flags.DEFINE_integer("num_devices", 0, "shard each batch over this many devices (0 = all of every process)",
                         lower_bound=0)
    flags.DEFINE_string("out", None, "write the comparison table (markdown) here")
    flags.DEFINE_integer("event_steps", 50, "steps of the event attack on DVS workdirs (0 = skip it)",
                         lower_bound=0)
    flags.DEFINE_bool("audit", False, "run the gradient-masking audit instead (writes audit.json, audit.md)")
    flags.DEFINE_enum("audit_size", "full", list(audit.SIZES), "audit attack sizes (tgo_train/audit.py)")
    flags.DEFINE_multi_string("transfer_from", [], "trained workdir of a transfer source (repeatable): a "
                              "Transfer-<basename> column, and the audit's transfer check")
    distributed.define_flags()


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    F = flags.FLAGS
    if not F.workdir:
        raise app.UsageError("--workdir is required")
    distributed.initialize_from_flags()
    with _locked_for_writing(F.workdir, F.out, distributed.is_primary()):
        _evaluate_all(F)


def _locked_for_writing(workdirs_: Sequence[str], out: Optional[str], primary: bool) -> contextlib.ExitStack:
    """Before any attack: each existing workdir's evaluation lock (so it is writable, and no other
    evaluation writes there; training may go on) and a writable folder for ``--out``. Process 0 only."""
    held = contextlib.ExitStack()
    if primary:
        with held:
            for workdir in workdirs_:
                workdirs.check_writable(workdir)
                if workdirs.as_path(workdir).is_dir():  # a missing one is reported by load_run
                    held.enter_context(workdirs.locked(workdir, workdirs.EVALUATOR))
            if out:
                workdirs.check_writable(os.path.dirname(os.path.abspath(out)))
            return held.pop_all()
    return held


def _evaluate_all(F) -> None:
    primary = distributed.is_primary()
    if F.audit:
        for workdir in F.workdir:
            result = audit.audit_workdir(workdir, eps=parse_eps(F.eps[0]), alpha=F.alpha, pgd_step=F.pgd_step,
                                         sizes=F.audit_size, num_examples=F.num_examples,
                                         batch_size=F.batch_size, step=F.step, transfer_from=F.transfer_from)
            print(audit.render(result, workdir), flush=True)
        return
    all_results = []
    for workdir in F.workdir:
        results = evaluate_workdir(
            workdir, eps_list=[parse_eps(e) for e in F.eps], alpha=F.alpha, extra=F.extra,
            eot=F.eot, draws=F.draws, eps_sweep=[parse_eps(e) for e in F.eps_sweep],
            sweep_attack=F.sweep_attack, num_examples=F.num_examples, batch_size=F.batch_size,
            step=F.step, attacks_subset=F.attacks or None, event_steps=F.event_steps,
            num_devices=F.num_devices, pgd_step=F.pgd_step, transfer_from=F.transfer_from,
            sweep_figure=len(F.workdir) == 1)
        if primary:
            print(render(results), flush=True)
        all_results.append(results)
    if len(all_results) > 1 and primary:
        table = comparison(all_results)
        print("\n" + table, flush=True)
        if F.out:
            records.write_atomic(F.out, table + "\n")
        if F.eps_sweep:
            print(f"ε-sweep figure: {plot_sweep(all_results, combined_sweep_path(F.workdir, F.out))}", flush=True)


def entry():
    """Console script ``tgo-evaluate``."""
    define_flags()
    cli.run(main)


if __name__ == "__main__":
    entry()
