"""The reproduction's committed report read back: its runs' records, its convergence curve, its tables.

A run's workdir (checkpoints, ``reproduce.json``) lives on one machine, the report (``RESULTS.md``,
``results/results.json``, ``results/per_example.json``) in the repository: a later session on a fresh
machine finds the finished runs here, so it neither repeats their columns nor loses them from the report
(``tgo_train.reproduce``); the notebooks read the ablation's numbers from it (``load``).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from tgo_train import rundir
from tgo_train.repro_record import RunRecord, decode_per_example, run_dir

RESULTS_DIR = "results"
RESULTS_FILE = "results.json"
PER_EXAMPLE_FILE = "per_example.json"


def results_path(report_dir: str, name: str = RESULTS_FILE) -> str:
    return os.path.join(report_dir, RESULTS_DIR, name)


def read_results(report_dir: str) -> Optional[dict]:
    """``results/results.json`` of the report under ``report_dir`` as stored, or None without one."""
    return rundir.read_json(results_path(report_dir))


def read_committed(report_dir: str, size_name: str) -> dict:
    """``{(model, seed): RunRecord}`` of the report under ``report_dir`` (the repository's, when the report is
    written there) for ``size_name``, per-example hits included; {} without one or for another size."""
    results = read_results(report_dir)
    if results is None or results.get("size") != size_name:
        return {}
    hits = rundir.read_json(results_path(report_dir, PER_EXAMPLE_FILE)) or {}
    out = {}
    for r in results["runs"]:
        key = f"{r['model']}/seed{r['seed']}"
        record = RunRecord.from_json(dict(r, per_example=decode_per_example(hits[key])) if key in hits else r)
        out[(record.model, record.seed)] = record
    return out


def committed_convergence(report_dir: str) -> Optional[list]:
    """The convergence curve of the report under ``report_dir``, or None: kept in the report when its
    workdir (``tgo_train.reproduce.convergence_dir``) is gone."""
    results = read_results(report_dir)
    return results.get("convergence") if results else None


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
    results = read_results(report_dir)
    if results is None:
        return None
    seed = results["seeds"][0]
    runs = {r.model: r for r in map(RunRecord.from_json, results["runs"]) if r.seed == seed}
    for m in models:
        if m not in runs or not runs[m].metrics or any(runs[m].accuracy(noise, e, c) is None
                                                         for e in results["eps_labels"] for c in columns):
            return None
    return {"size": results["size"], "size_spec": results["size_spec"], "seeds": results["seeds"],
            "complete": results["complete"],
            "workdirs": {m: run_dir(workdir, results["size"], m, seed) for m in models},
            "final": {m: runs[m].metrics[-1] for m in models},
            "accuracy": {m: results["aggregate"][m]["accuracy"][noise] for m in models}}
