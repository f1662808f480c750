"""The robustness-against-ε figure, drawn by ``tgo-evaluate``, the main job (``tgo_train.experiment``) and
``docs/figures/main_job_eps.py`` alike.

One line per model and attack: accuracy (%) at ε = 0 (the clean accuracy) and at every evaluated ε, the
y axis fixed at 0–100 %, ε on a linear x axis (L∞ budgets on images scaled to [0, 1]), ticked at the
evaluated values (8/255, 0.1, ...).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from tgo_train import workdir as workdirs
from tgo_train.tables import eps_label, parse_eps

Curves = Mapping[tuple, Mapping[float, float]]  # (model, attack) -> {ε: accuracy %}


def eps_curves(results_by_model: Mapping[str, dict], attacks: Optional[Sequence[str]] = None) -> dict:
    """``{(model, attack): {ε: accuracy %}}`` from evaluation results (``tgo_train.robustness``: their
    per-ε ``tables`` and ``eps_sweep``), each curve starting at ε = 0 with the model's Clean accuracy.

    ``attacks``: the attacks to draw (default: every attack of the tables and the sweep, Clean aside).
    Where a table and the sweep both measured an attack at one ε, the sweep's accuracy is drawn. A model without
    a Clean accuracy (an evaluation of other rows only) starts at its smallest ε.
    """
    curves = {}
    for model, results in results_by_model.items():
        points = {}  # attack -> {ε: accuracy}
        for eps, table in results.get("tables", {}).items():
            for attack, accuracy in table.items():
                points.setdefault(attack, {})[parse_eps(eps)] = accuracy
        sweep = results.get("eps_sweep")
        if sweep:
            points.setdefault(sweep["attack"], {}).update(
                {parse_eps(eps): accuracy for eps, accuracy in sweep["accuracy"].items()})
            if sweep.get("clean") is not None:
                points.setdefault("Clean", {})[0.0] = sweep["clean"]
        clean = next(iter(points.pop("Clean", {}).values()), None)
        for attack in (attacks if attacks is not None else points):
            if attack in points:
                curve = ({0.0: clean} if clean is not None else {}) | points[attack]
                curves[(model, attack)] = dict(sorted(curve.items()))
    return curves


def plot_eps_curves(curves: Curves, path: workdirs.PathLike, title: str = "") -> str:
    """Draws ``curves`` (``eps_curves``, ``eps_figure``) into the PNG ``path`` (a local or bucket path);
    returns its text."""
    import matplotlib.pyplot as plt

    fig = eps_figure(curves, title)
    with workdirs.as_path(path).open("wb") as f:  # epath: also a bucket path
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)
    return str(path)


def eps_figure(curves: Curves, title: str = ""):
    """The matplotlib figure of ``curves``: colour the model, marker and line style the attack, the legend
    naming both; the title names the attacks and ε's units (after ``title``, when given)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(m for m, _ in curves))
    attacks = list(dict.fromkeys(a for _, a in curves))
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", (0, (5, 1))), ("P", (0, (1, 2)))]
    fig, ax = plt.subplots(figsize=(6, 4))
    for (model, attack), curve in curves.items():
        marker, line = styles[attacks.index(attack) % len(styles)]
        ax.plot(list(curve), list(curve.values()), marker=marker, linestyle=line,
                color=f"C{models.index(model) % 10}", label=f"{model}, {attack}")
    ticks = sorted({eps for curve in curves.values() for eps in curve})
    ax.set_xticks(ticks, [eps_label(eps) for eps in ticks], rotation=45 if len(ticks) > 6 else 0)
    ax.set_ylim(0, 100)
    ax.set_xlabel("ε")
    ax.set_ylabel("accuracy (%)")
    ax.set_title((f"{title}\n" if title else "") +
                 f"{', '.join(attacks)} accuracy against L∞ ε (pixels in [0, 1]; ε = 0: clean)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
