"""Draws ``docs/figures/main_job_eps.png`` (shown in the README) from the committed record of the main job's
models: the table of ``docs/robustness.md``'s section "Measured: the default experiment", its rows Clean,
FGSM and PGD10, with the figure function of ``tgo_train.experiment`` and ``tgo-evaluate``.

    .venv/bin/python docs/figures/main_job_eps.py
"""
from __future__ import annotations

import pathlib

from tgo_train import figures

HERE = pathlib.Path(__file__).resolve().parent
RECORD = HERE.parent / "robustness.md"
SECTION = "## Measured: the default experiment"
ATTACKS = ("Clean", "FGSM", "PGD10")
MODELS = {"vanilla": "vanilla", "TGO": "tgo"}  # column prefix in the record -> model name of the main job


def recorded_results(text: str) -> dict:
    """``{model: {"tables": {ε: {attack: accuracy %}}}}`` (what ``figures.eps_curves`` reads) from the first
    table after ``SECTION`` in ``text``, whose columns are "<model> <ε>" and "s" (seconds, left out)."""
    lines = text[text.index(SECTION):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| attack |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    results = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] not in ATTACKS:
            continue
        for column, value in zip(header[1:], cells[1:]):
            if column == "s":
                continue
            prefix, eps = column.split(" ")
            tables = results.setdefault(MODELS[prefix], {"tables": {}})["tables"]
            tables.setdefault(eps, {})[cells[0]] = float(value)
    return results


def main() -> None:
    results = recorded_results(RECORD.read_text())
    path = figures.plot_eps_curves(figures.eps_curves(results), HERE / "main_job_eps.png",
                                   title="Main job's models (record: docs/robustness.md)")
    print(path)


if __name__ == "__main__":
    main()
