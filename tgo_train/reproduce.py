r"""The paper's claims with error bars: trains and attacks a grid of small nets over several seeds.

    python -m tgo_train.reproduce --workdir runs/reproduce [--seeds 0,1,2] [--size small|full]

The grid (its models, attack columns, budgets and sizes) is ``tgo_train/configs/grid.py``.

Each (model, seed) trains in ``<workdir>/<size>/<model>/seed<k>`` with ``tgo_train.train`` (which resumes
from its checkpoints), is attacked with the attack columns of ``grid.ATTACKS`` at each ε of ``grid.EPS`` through
``tgo_train.evaluate`` (Noisy-LIF models with EoT, and again with their noise off), and is measured
(threshold-neighbour share, input-gradient L1 norm, input-Jacobian spectral norm, ``tgo_jax.analysis``).
After its strong suite each run gets the gradient-masking audit (``tgo_train/audit.py`` at the size's
``grid.AUDITS`` entry, with transfers from the vanilla model of its seed and from its next seed), its flags and
deciding numbers kept in the record (``--noaudit`` leaves it out: then a record without one counts as done).
Each finished cell is kept in ``reproduce.json`` next to the run, so a rerun skips what is done and
an interrupted run continues where it stopped; adding an attack name to ``grid.ATTACKS`` evaluates only the
new column. The report (``RESULTS.md``, ``results/results.json``, ``results/*.png``) is written after
every run, from whatever has finished (``--report_only`` writes it without training anything).

The workdir lives on one machine; the report, written into the repository with ``--report_dir .`` and
committed, is what a later session on a fresh machine finds: the runs it holds (their cells, measures and
per-example hits, ``results/per_example.json``) count as done and stay in the next report, and a run that
needs more columns is retrained and compared with its committed record (``repro_record.agreement``, a
table in ``RESULTS.md``). Training is deterministic for a given code, JAX and machine; on another machine
(XLA compiles for the CPU it runs on) a retrained model may differ; then the retrained record
(same seed and config) replaces the first one in every column, the first one's cells kept in
``committed_check``. ``--only`` works on some runs alone, e.g. to run two processes side by side on disjoint
runs.

Seeds are fixed on the command line before the run; no run is dropped or re-tuned (the report
aggregates every run it finds for the size and seeds asked for).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from absl import app, flags, logging

from tgo_jax import analysis, attacks
from tgo_train import (audit, cli, repro_claims, repro_committed, repro_record, reproduce_report, rundir,
                       tables, train, trained, workdir as workdirs)
from tgo_train.configs import grid
from tgo_train.configs.grid import Size
from tgo_train.evaluation import evaluate_suite, reduce_split, split_keys
from tgo_train.repro_record import RunRecord

def attack_suite(names: Sequence[str], *, eps: float, eot: int, size: Size) -> list:
    """(name, attack) pairs for the column names, resolved through the attack registry at the size's
    effort; an unknown name is an error listing the known ones."""
    spec = dataclasses.asdict(size)
    return [(attacks.canonical(n), attacks.make(n, eps=eps, alpha=attacks.ALPHA, eot=eot, **grid.attack_options(n, spec)))
            for n in names]


# ----------------------------------------------------------------------------- one run

@functools.lru_cache(maxsize=None)
def git_commit() -> str:
    """The commit of the code that runs (with '+dirty' for uncommitted changes), or 'unknown'.

    Read once per process: the code in memory is what was checked out when the program started."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        sha = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_one(workdir: str, model: str, seed: int, size_name: str, attack_names: Sequence[str],
            eps_list: Sequence[float]) -> RunRecord:
    """Trains (resuming), evaluates the missing cells and measures one (model, seed); returns its record."""
    size = grid.SIZES[size_name]
    config = grid.run_config(model, seed, size)
    path = rundir.file(workdir, rundir.REPRODUCE)
    record = read_record(workdir)
    if record is not None:
        changed, _ = rundir.config_changes(record.config, config)  # options added later keep defaults
        if changed:
            raise ValueError(f"{path} was made with another config ({', '.join(map(str, changed))}); "
                             f"move {workdir} away to retrain it")
    if record is None or not rundir.finished(workdir, config):
        t0, cpu0 = time.time(), _cpu_seconds()
        train.train_and_evaluate(config, workdir)
        record = RunRecord(model=model, seed=seed, size=size_name, size_spec=dataclasses.asdict(size),
                           config=rundir.plain(config), train_commit=git_commit(), train_cpu_model=cpu_model(),
                           train_wall_s=round(time.time() - t0, 1), train_cpu_s=round(_cpu_seconds() - cpu0, 1))
        rundir.write_json(path, record.to_json())
    record.metrics = rundir.read_metrics(workdir)
    run, variables, record.step = trained.load_run(workdir, num_examples=size.num_examples)
    for noise, model_obj in _variants(run.model).items():
        run_v = dataclasses.replace(run, model=model_obj)
        stochastic = model_obj.neuron.stochastic
        for eps_value in eps_list:
            eps = tables.eps_label(eps_value)
            _drop_stale(record, noise, eps, size, stochastic)
            todo = [n for n in attack_names if record.accuracy(noise, eps, n) is None]
            if not todo:
                continue
            t0, cpu0 = time.time(), _cpu_seconds()
            suite = attack_suite(todo, eps=eps_value, eot=size.eot if stochastic else 1, size=size)
            accuracy, hits = evaluate_suite(run_v, variables, suite, batch_size=size.eval_batch,
                                            draws=size.draws if stochastic else 1, seed=seed, progress=False,
                                            per_example=True)
            for name, value in accuracy.items():
                record.set_cell((noise, eps, name), value, [round(float(v), 4) for v in hits[name]],
                                grid.cell_spec(name, dataclasses.asdict(size), stochastic))
            for times, spent in ((record.eval_wall_s, time.time() - t0), (record.eval_cpu_s, _cpu_seconds() - cpu0)):
                cell = f"{noise} {eps}"  # summed: a cell evaluated again adds its time
                times[cell] = round(times.get(cell, 0.0) + spent, 1)
            record.eval_commit = git_commit()
            rundir.write_json(path, record.to_json())
        if noise not in record.analysis:
            record.analysis[noise] = measure(run_v, variables, size, seed)
            rundir.write_json(path, record.to_json())
    return record


def read_record(run_dir: str) -> Optional[RunRecord]:
    """The run's record in its workdir (``reproduce.json``), or None."""
    stored = rundir.read_json(rundir.file(run_dir, rundir.REPRODUCE))
    return RunRecord.from_json(stored) if stored is not None else None


def train_run(run_dir: str, model: str, seed: int, size_name: str) -> dict:
    """Trains one (model, seed) of the grid in ``run_dir`` (resuming; nothing when finished) without
    evaluating it, and returns its last metrics record: the model of a committed run, for a notebook on a
    fresh clone. The same config as ``run_one``; equal to the committed model when the code and JAX are
    the ones it was trained with (its ``train_commit``)."""
    config = grid.run_config(model, seed, grid.SIZES[size_name])
    if not rundir.finished(run_dir, config):
        train.train_and_evaluate(config, run_dir)
    return rundir.read_metrics(run_dir)[-1]


def stale_cells(record: RunRecord, noise: str, eps: str, size: Size, stochastic: bool) -> list:
    """The cells evaluated with other settings than the size's now; a cell without its own spec was
    evaluated with the record's ``size_spec``."""
    now = dataclasses.asdict(size)
    return [n for n in record.columns(noise, eps)
            if (record.cells[(noise, eps, n)].spec or grid.cell_spec(n, record.size_spec, stochastic))
            != grid.cell_spec(n, now, stochastic)]


def _drop_stale(record: RunRecord, noise: str, eps: str, size: Size, stochastic: bool) -> None:
    """Forgets the stale cells (``stale_cells``), so they are evaluated again."""
    for name in stale_cells(record, noise, eps, size, stochastic):
        print(f"   {name} at {eps} (noise {noise}) was evaluated with other settings: again", flush=True)
        record.drop_cell((noise, eps, name))


def cpu_model() -> str:
    """The CPU's model name (Linux), recorded with each training: a retrained run has differed from its first
    training on another machine (``repro_record.agreement``), and this names the machines compared."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else "unknown"


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (on a shared machine wall time overstates the cost)."""
    t = os.times()
    return t.user + t.system


def _variants(model) -> dict:
    """{'on': the model} and, for a Noisy-LIF model, {'off': the same weights with plain LIF neurons}."""
    out = {"on": model}
    if model.neuron.stochastic:
        out["off"] = model.clone(neuron=dataclasses.replace(model.neuron, kind="lif"))
    return out


def measure(run, variables, size: Size, seed: int) -> dict:
    """Threshold-neighbour share, input-gradient L1 norm and zero share, input-Jacobian spectral norm
    (docs/FORMULAS.md §5, eq. 10), means over the first ``analysis_examples`` test images, the batches
    sharded over every device (``evaluation.reduce_split``)."""
    images, labels = run.splits["test"]
    n = min(size.analysis_examples, len(labels))
    logits_fn = attacks.model_logits_fn(run.model)
    c = run.config

    @jax.jit
    def stats(variables, batch, key):
        x, y, real = batch["image"], batch["label"], batch["mask"]

        def real_rows(v, fill=0.0, axis=0):  # the padding's rows (those of the batch axis) set to ``fill``
            return jnp.where(real.reshape((1,) * axis + (-1,) + (1,) * (v.ndim - axis - 1)), v, fill)

        k_h, k_g, k_j = jax.random.split(key, 3)
        _, hs = analysis.forward_potentials(run.model, variables, x, k_h)
        # The padding's potentials (H [T, B, ...]) out of every neighbourhood: the share is then the real rows'
        # count over all B rows' entries, and times B the sum of the real rows' own shares.
        hs = [real_rows(h, jnp.inf, axis=1) for h in hs]
        share = analysis.threshold_neighbour_share(hs, delta=c.margin.delta, threshold=c.neuron.threshold)
        g = analysis.gradient_sparsity(real_rows(analysis.input_gradients(logits_fn, variables, x, y, k_g)))
        jac = analysis.jacobian_spectral_norm(logits_fn, variables, x, k_j, iters=size.jacobian_iters)
        return share.overall * x.shape[0], g["l1"].sum(), real_rows(g["zero_share"]).sum(), real_rows(jac).sum()

    sums = reduce_split([stats], variables, images[:n], labels[:n], batch_size=size.eval_batch,
                        keys=split_keys(jax.random.PRNGKey(seed + 7))).values[0]
    share, l1, zero, jac = (v / n for v in sums)
    return {"neighbour_share": share, "grad_l1": l1, "grad_zero_share": zero, "jacobian_norm": jac,
            "examples": n}


# ----------------------------------------------------------------------------- the grid

def run_grid(workdir: str, seeds: Sequence[int], size_name: str, models: Sequence[str],
             attack_names: Sequence[str] = grid.ATTACKS, eps_list: Sequence[float] = grid.EPS,
             report_dir: Optional[str] = None, stop_after: Optional[int] = None,
             only: Optional[Sequence[str]] = None, audited: bool = True) -> None:
    """Runs every (seed, model): first with the paper's columns only, then with the rest (the strong
    suite) and (``audited``) the gradient-masking audit (``run_audits``); within each, the Table 4 ablation
    over every seed before the other models, seed-major. A partial grid thus has the paper's table of the
    ablation with error bars first.

    A run that the report in ``report_dir`` (the committed one) already has with the columns asked for is
    skipped, even when its workdir is gone (a fresh machine); one that needs more columns is retrained (deterministic
    on the same machine) and compared with the committed record (``repro_record.agreement``).
    ``only``: work on these runs alone (``model`` or ``model/seed``), the report still covers the grid.
    Writes the report after each run; ``stop_after`` stops after that many runs were worked on (tests)."""
    committed = repro_committed.read_committed(report_dir or workdir, size_name)
    paper = [n for n in attack_names if n in grid.PAPER_ATTACKS]
    phases = [paper, list(attack_names)] if paper and len(paper) < len(attack_names) else [list(attack_names)]
    ablation = [m for m in models if m in grid.ABLATION]
    groups = [g for g in (ablation, [m for m in models if m not in ablation]) if g]
    worked = 0
    for names, group in ((n, g) for n in phases for g in groups):
        audit_now = audited and names is phases[-1]  # the audit belongs to the last (strong) phase
        for seed in seeds:
            for model in group:
                run_dir = repro_record.run_dir(workdir, size_name, model, seed)
                old = committed.get((model, seed))
                if _complete(_best_record(run_dir, old), names, eps_list, size_name, audit_now):
                    print(f"== {model} seed {seed} ({len(names)} columns): done, skipped", flush=True)
                    continue
                if only and model not in only and f"{model}/{seed}" not in only:
                    continue
                if stop_after is not None and worked >= stop_after:
                    return
                print(f"== {model} seed {seed} ({len(names)} columns) -> {run_dir}", flush=True)
                t0 = time.time()
                record = run_one(run_dir, model, seed, size_name, names, eps_list)
                if old is not None:
                    check = record.committed_check = repro_record.agreement(record, old)
                    rundir.write_json(rundir.file(run_dir, rundir.REPRODUCE), record.to_json())
                    print(f"   against the committed record: test curve "
                          f"{'equal' if check.same_test_curve else 'DIFFERENT'}, {check.cells_equal} cells "
                          f"equal, {len(check.cells_differ)} differ {check.cells_differ[:4]}", flush=True)
                if audit_now:
                    run_audits(run_dir, seed, size_name, eps_list,
                               transfer_sources(workdir, size_name, model, seed, seeds))
                print(f"== {model} seed {seed}: {time.time() - t0:.0f} s", flush=True)
                worked += 1
                write_report(workdir, size_name, seeds, models, attack_names, eps_list, report_dir)


def _best_record(run_dir: str, committed: Optional[RunRecord]) -> Optional[RunRecord]:
    """The run's record in its workdir; the committed one when the workdir has none (a fresh machine) or
    holds another training of the run with fewer cells (retrained, its evaluation under way)."""
    record = read_record(run_dir)
    if record is None or committed is None or repro_record.same_training(record, committed):
        return record or committed
    return committed if committed.n_cells > record.n_cells else record


def _complete(record: Optional[RunRecord], attack_names, eps_list, size_name: str, audited: bool = False) -> bool:
    """Every cell is there with the size's settings, and (``audited``) the audit at every ε."""
    labels = [tables.eps_label(e) for e in eps_list]
    if record is None or not record.is_complete(attack_names, labels):
        return False
    if audited and audit_todo(record, eps_list, size_name):
        return False
    return not any(stale_cells(record, noise, e, grid.SIZES[size_name], record.noisy and noise == "on")
                   for noise in record.noises() for e in labels)


# ----------------------------------------------------------------------------- the audit

# What a run's record keeps of each audit (tgo_train/audit.py's result without the per-example correctness).
AUDIT_KEPT = ("eps", "size", "size_cuts", "pgd_step_text", "num_examples", "draws", "flags", "checks",
              "worst_case_accuracy", "accuracy", "seconds")


def audit_spec(size_name: str) -> dict:
    """Everything a run's audit depends on besides the model (as JSON stores it): a changed spec runs it again.
    The transfer sources are not part of it: an audit that found none keeps its NOT RUN."""
    size = grid.SIZES[size_name]
    spec = {"sizes": dataclasses.asdict(grid.AUDITS[size_name]), "num_examples": size.num_examples,
            "eval_batch": size.eval_batch}
    return rundir.plain(spec)


def audit_todo(record: RunRecord, eps_list: Sequence[float], size_name: str) -> list:
    """The ε of ``eps_list`` without a finished audit of the size's spec in ``record``."""
    spec = audit_spec(size_name)
    return [e for e in eps_list if record.audit.get(tables.eps_label(e), {}).get("spec") != spec]


def transfer_sources(workdir: str, size_name: str, model: str, seed: int, seeds: Sequence[int]) -> dict:
    """{name: run dir} of the audit's independently trained transfer sources (``grid.AUDIT_SOURCES``): the vanilla
    model of the same seed and this model's next seed (seed + 1 mod the number of seeds), those whose training
    has finished."""
    seeds, kinds = list(seeds), grid.AUDIT_SOURCES.get(size_name, grid.SOURCE_KINDS)
    candidates = [("vanilla", seed)] if model != "vanilla" and "vanilla" in kinds else []
    if len(seeds) > 1 and "next seed" in kinds:
        candidates.append((model, seeds[(seeds.index(seed) + 1) % len(seeds)]))
    out = {}
    for m, s in candidates:
        run_dir = repro_record.run_dir(workdir, size_name, m, s)
        if rundir.finished(run_dir, grid.run_config(m, s, grid.SIZES[size_name])):
            out[f"{m}-seed{s}"] = run_dir
    return out


def run_audits(run_dir: str, seed: int, size_name: str, eps_list: Sequence[float], sources: dict) -> RunRecord:
    """The gradient-masking audit (``grid.AUDITS[size_name]``) of one trained run at each ε, kept in its record
    under ``audit`` (flags and deciding numbers): a finished audit is not run again, an interrupted one (never
    written) is. ``sources``: {name: run dir} of ``transfer_sources``. Returns the record."""
    path = rundir.file(run_dir, rundir.REPRODUCE)
    record = read_record(run_dir)
    todo = audit_todo(record, eps_list, size_name)
    if not todo:
        return record
    size = grid.SIZES[size_name]
    run, variables, _ = trained.load_run(run_dir, num_examples=size.num_examples)
    loaded = [source._replace(name=name) for name, d in sources.items()
              for source in trained.load_transfer_sources([d], run, variables, size.num_examples)]
    for eps in todo:
        t0, cpu0 = time.time(), _cpu_seconds()
        result = audit.run_audit(run, variables, eps=eps, sizes=grid.AUDITS[size_name], batch_size=size.eval_batch,
                                 seed=seed, sources=loaded, log=lambda line: print("   " + line, flush=True))
        record.audit[tables.eps_label(eps)] = dict(
            {k: result[k] for k in AUDIT_KEPT}, sources=sources, spec=audit_spec(size_name),
            wall_s=round(time.time() - t0, 1), cpu_s=round(_cpu_seconds() - cpu0, 1), commit=git_commit())
        rundir.write_json(path, record.to_json())
        print(f"   audit at ε = {tables.eps_label(eps)}: {repro_claims.audit_text([record])}", flush=True)
    return record


def write_report(workdir: str, size_name: str, seeds, models, attack_names=grid.ATTACKS, eps_list=grid.EPS,
                 report_dir: Optional[str] = None) -> str:
    """Collects the runs found for (size, seeds, models), in the workdir or the report already in
    ``report_dir`` (``_best_record``), and writes RESULTS.md, results.json, figures."""
    committed = repro_committed.read_committed(report_dir or workdir, size_name)
    records = []
    for seed in seeds:
        for model in models:
            r = _best_record(repro_record.run_dir(workdir, size_name, model, seed), committed.get((model, seed)))
            if r is not None:
                records.append(r)
    convergence = _read_convergence(workdir) or repro_committed.committed_convergence(report_dir or workdir)
    return reproduce_report.write(report_dir or workdir, records, size_name=size_name,
                                  size_spec=dataclasses.asdict(grid.SIZES[size_name]), seeds=list(seeds),
                                  models={m: grid.MODELS[m][0] for m in models},
                                  attack_names=list(attack_names), paper_names=list(grid.PAPER_ATTACKS),
                                  eps_labels=[tables.eps_label(e) for e in eps_list],
                                  convergence=convergence)


# ----------------------------------------------------------------------------- convergence

def convergence_dir(workdir: str) -> str:
    return os.path.join(workdir, "convergence", "vanilla_seed0")


def run_convergence(workdir: str, epochs: int) -> None:
    """Vanilla (seed 0) on all 60k images for ``epochs`` epochs, test accuracy on all 10k after each:
    the curve that sets the ``full`` size."""
    c = grid.run_config("vanilla", 0, grid.SIZES["full"])
    c.epochs, c.train_subset, c.eval_subset = epochs, 0, 0
    train.train_and_evaluate(c, convergence_dir(workdir))


def _read_convergence(workdir: str) -> Optional[list]:
    config = rundir.read_config(convergence_dir(workdir))
    if config is None:
        return None
    return [{"epoch": r["epoch"], "test_accuracy": r.get("test_accuracy"), "elapsed_s": r.get("elapsed_s"),
             "epochs_total": config["epochs"]}
            for r in rundir.read_metrics(convergence_dir(workdir)) if not r.get("partial")]


# ----------------------------------------------------------------------------- command line

def define_flags():
    """Command-line flags (defined on demand, so other programs and tests can import this module)."""
    flags.DEFINE_string("workdir", "runs/reproduce", "folder for every run and the report")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "seeds, fixed before the run")
    flags.DEFINE_enum("size", "small", list(grid.SIZES), "training length and evaluation effort")
    flags.DEFINE_list("models", list(grid.MODELS), f"grid rows, among {list(grid.MODELS)}")
    flags.DEFINE_list("attacks", list(grid.ATTACKS), "attack columns, by registry name "
                      "(tgo_jax.attacks.names()); default: the paper's columns, then the strong suite")
    flags.DEFINE_list("eps", [tables.eps_label(e) for e in grid.EPS], "attack budgets")
    flags.DEFINE_string("report_dir", None, "where RESULTS.md and results/ go (default: workdir)")
    flags.DEFINE_bool("report_only", False, "only write the report from the finished runs")
    flags.DEFINE_integer("convergence_epochs", 0,
                         "first train vanilla this many epochs on all images (the curve)")
    flags.DEFINE_integer("stop_after", None, "stop after working on this many runs")
    flags.DEFINE_list("only", [], "work on these runs alone ('model' or 'model/seed'); the report covers the grid")
    flags.DEFINE_bool("audit", True, "run the gradient-masking audit of each run after its strong suite "
                      "(--noaudit: records without one count as done)")


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    F = flags.FLAGS
    try:
        seeds = [int(s) for s in F.seeds]
    except ValueError as e:
        raise app.UsageError(f"--seeds must be integers, got {F.seeds}") from e
    unknown = sorted(set(F.models) - set(grid.MODELS))
    if unknown:
        raise app.UsageError(f"unknown --models {unknown}; known: {list(grid.MODELS)}")
    bad = [o for o in F.only if o.split("/")[0] not in F.models or
           (o.count("/") == 1 and not o.split("/")[1].lstrip("-").isdigit()) or o.count("/") > 1]
    if bad:
        raise app.UsageError(f"--only {bad}: each must be 'model' or 'model/seed' with a model of --models")
    size = grid.SIZES[F.size]
    eps_list = [tables.parse_eps(e) for e in F.eps]
    attack_names = list(F.attacks) + [n for n in size.strong_extra if n not in F.attacks]
    attack_suite(attack_names, eps=eps_list[0], eot=1, size=size)  # unknown names fail before training
    # Same model structure and attack across seeds -> the compiled code is reused from disk.
    jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.abspath(F.workdir), ".jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    git_commit()
    with workdirs.locked(F.workdir):  # a second reproduction of this workdir is refused at once
        if F.convergence_epochs and not F.report_only:
            run_convergence(F.workdir, F.convergence_epochs)
        if not F.report_only:
            run_grid(F.workdir, seeds, F.size, F.models, attack_names, eps_list,
                     F.report_dir, F.stop_after, F.only, F.audit)
        path = write_report(F.workdir, F.size, seeds, F.models, attack_names, eps_list,
                            F.report_dir)
    print(f"report: {path}", flush=True)


def entry():
    """Console script ``tgo-reproduce``."""
    define_flags()
    cli.run(main)


if __name__ == "__main__":
    entry()
