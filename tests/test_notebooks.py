"""The notebooks run top to bottom at their small size, and each .ipynb is in step with its .py twin.

The notebooks are jupytext pairs: ``notebooks/NN_name.py`` (py:percent, the file to edit and review)
and ``NN_name.ipynb`` (the same cells with stored outputs), kept in step by ``jupytext --sync``.

Each notebook is executed with nbclient in a fresh ``python3`` kernel (this interpreter's ipykernel),
with the repository root as working directory and ``TGO_NOTEBOOK_SIZE=ci`` in the kernel's environment
(which also has the suite's XLA optimisation level, ``conftest.py``); any cell error fails the test. In
``ci`` size the notebooks train tiny nets in a temporary directory, so the run must leave the notebooks'
cache folders under runs/ untouched.
"""
from __future__ import annotations

import os
import pathlib

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
CELL_TIMEOUT_S = 300
# Folders the notebooks write to in "full" size only.
CACHE_DIRS = (ROOT / "runs" / "ablation", ROOT / "runs" / "notebooks")
# notebook -> (needs Fashion-MNIST, figures it shows at least)
NOTEBOOKS = {
    "01_theory.ipynb": (False, 4),
    "02_threshold_guarding.ipynb": (True, 2),
    "03_robustness.ipynb": (True, 4),
}


def _cache_snapshot() -> set:
    """(path, mtime) of every file under the cache folders."""
    return {(str(p), p.stat().st_mtime_ns) for d in CACHE_DIRS if d.is_dir() for p in d.rglob("*")
            if p.is_file()}


def _kernel_env(tmp_path: pathlib.Path) -> dict:
    env = dict(os.environ, TGO_NOTEBOOK_SIZE="ci", TMPDIR=str(tmp_path))
    env.pop("MPLBACKEND", None)  # keep the kernel's inline backend, so figures become outputs
    return env


def _outputs(nb, output_type: str):
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
            if o.output_type == output_type]


def _figures(nb) -> int:
    return sum("image/png" in o.get("data", {}) for o in _outputs(nb, "display_data"))


def _cells(nb):
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_pair_in_sync(name):
    """The .ipynb holds the cells of its py:percent twin (edit either, then `jupytext --sync`)."""
    script = jupytext.read(NOTEBOOK_DIR / name.replace(".ipynb", ".py"))
    saved = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    assert saved.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    assert _cells(saved) == _cells(script), f"run: jupytext --sync notebooks/{name}"
    # the size is a papermill-style parameter
    assert sum("parameters" in tags for _, _, tags in _cells(saved)) == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs_in_ci_size(name, tmp_path, request):
    needs_data, min_figures = NOTEBOOKS[name]
    if needs_data:
        request.getfixturevalue("fashion_mnist")  # skips without the data
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    before = _cache_snapshot()
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}})
    client.execute(env=_kernel_env(tmp_path))  # raises CellExecutionError on a failing cell

    assert not _outputs(nb, "error")
    assert _figures(nb) >= min_figures
    printed = "".join(o.text for o in _outputs(nb, "stream") if o.name == "stdout")
    assert "size=ci" in printed  # the kernel saw TGO_NOTEBOOK_SIZE=ci
    assert _cache_snapshot() == before  # ci size never writes under runs/
