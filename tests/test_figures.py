"""The robustness-against-ε figure (tgo_train/figures.py), as tgo-evaluate, the main job and the README draw it,
and the charts' places in RESULTS.md (tgo_train/reproduce_report.py)."""
from __future__ import annotations

import pathlib
import re
import runpy

import matplotlib.pyplot as plt

from tgo_train import figures, reproduce_report, robustness

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _results(workdir: str, clean: float, pgd: dict, sweep: dict = None) -> dict:
    """Evaluation results as tgo_train.robustness writes them: a table per ε, optionally a PGD10 sweep."""
    out = {"workdir": workdir, "tables": {eps: {"Clean": clean, "FGSM": acc + 5, "PGD10": acc}
                                          for eps, acc in pgd.items()}}
    if sweep:
        out["eps_sweep"] = {"attack": "PGD10", "accuracy": sweep, "clean": clean}
    return out


def test_curves_start_at_clean_accuracy_and_merge_the_sweep():
    results = _results("runs/x/tgo", 90.0, {"8/255": 60.0}, sweep={"2/255": 80.0, "8/255": 60.0})
    curves = figures.eps_curves({"tgo": results})
    assert list(curves) == [("tgo", "FGSM"), ("tgo", "PGD10")]  # Clean is the ε = 0 point, not a line
    assert curves[("tgo", "PGD10")] == {0.0: 90.0, 2 / 255: 80.0, 8 / 255: 60.0}
    assert curves[("tgo", "FGSM")] == {0.0: 90.0, 8 / 255: 65.0}
    assert list(figures.eps_curves({"tgo": results}, ["PGD10"])) == [("tgo", "PGD10")]


def test_figure_has_a_fixed_axis_a_line_per_model_and_attack_and_names_the_attacks():
    curves = figures.eps_curves({"vanilla": _results("v", 90.0, {"8/255": 12.0, "0.1": 2.0}),
                                 "tgo": _results("t", 91.0, {"8/255": 13.0, "0.1": 3.0})})
    fig = figures.eps_figure(curves)
    ax = fig.axes[0]
    assert ax.get_ylim() == (0, 100)  # not auto-scaled to the data (12-13 % here)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "vanilla, FGSM", "vanilla, PGD10", "tgo, FGSM", "tgo, PGD10"]
    assert all(line.get_xdata()[0] == 0 for line in ax.get_lines())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "8/255", "0.1"]
    assert "FGSM, PGD10" in ax.get_title() and "L∞ ε" in ax.get_title()
    plt.close(fig)


def test_several_workdirs_give_one_figure_with_every_model(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(figures, "plot_eps_curves", lambda curves, path: drawn.append((curves, path)) or path)
    sweep = {"2/255": 50.0, "4/255": 30.0}
    all_results = [_results(str(tmp_path / name), 90.0, {"8/255": 10.0}, sweep) for name in ("vanilla", "tgo")]
    path = robustness.combined_sweep_path([r["workdir"] for r in all_results], None)
    assert path == str(tmp_path / "eps_sweep.png")
    assert robustness.combined_sweep_path(["a/b"], "out/compare.md") == "out/compare_eps_sweep.png"
    robustness.plot_sweep(all_results, path)
    (curves, _), = drawn
    assert list(curves) == [("vanilla", "PGD10"), ("tgo", "PGD10")]  # the sweep attack only
    assert curves[("tgo", "PGD10")] == {0.0: 90.0, 2 / 255: 50.0, 4 / 255: 30.0, 8 / 255: 10.0}


def test_plot_writes_a_png(tmp_path):
    path = figures.plot_eps_curves({("tgo", "PGD10"): {0.0: 90.0, 8 / 255: 60.0}}, tmp_path / "f.png")
    assert pathlib.Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_figure_is_drawn_from_the_numbers_the_readme_quotes():
    script = runpy.run_path(str(ROOT / "docs" / "figures" / "main_job_eps.py"))
    recorded = script["recorded_results"]((ROOT / "docs" / "robustness.md").read_text())
    readme = (ROOT / "README.md").read_text()
    # the record's table (model | ε | Clean | FGSM | PGD10), not the job's own output quoted after it
    rows = re.findall(r"^\| (vanilla|tgo) \| (8/255|0\.1) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", readme, re.M)
    assert len(rows) == 4
    for model, eps, clean, fgsm, pgd in rows:
        assert recorded[model]["tables"][eps] == {"Clean": float(clean), "FGSM": float(fgsm), "PGD10": float(pgd)}
    assert "docs/figures/main_job_eps.png" in readme and (ROOT / "docs" / "figures" / "main_job_eps.png").exists()


def test_convergence_chart_follows_its_table():
    curve = [{"epoch": e, "test_accuracy": 80.0, "elapsed_s": 1.0, "epochs_total": 2} for e in (1, 2)]
    lines = reproduce_report._convergence_lines(curve)
    table = next(i for i, part in enumerate(lines) if part.startswith("| epoch |"))  # the table: one string
    assert lines[table + 1:table + 3] == ["", "![convergence](results/convergence.png)"]
    assert "![convergence]" not in "\n".join(reproduce_report._convergence_lines(None))


def test_results_md_shows_each_chart_after_its_tables():
    text = (ROOT / "RESULTS.md").read_text()
    assert "## Figures" not in text
    # after the last accuracy tables (the SR baseline's), before the next section
    assert text.index("## SR baseline") < text.index("![accuracy](results/accuracy.png)") < text.index(
        "## Noisy-LIF models")
    assert text.index("## Convergence of vanilla") < text.index("![convergence]") < text.index("## Runs and")


def test_a_model_without_clean_accuracy_starts_at_its_smallest_eps():
    results = {"tables": {"8/255": {"PGD10": 10.0}}}
    assert figures.eps_curves({"m": results}) == {("m", "PGD10"): {8 / 255: 10.0}}
