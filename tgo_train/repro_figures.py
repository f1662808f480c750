"""The reproduction report's figures (``results/*.png``), drawn from the runs' records."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from tgo_train.repro_claims import accuracy_values, mean_std
from tgo_train.repro_record import RunRecord


def plot_accuracy(records: Sequence[RunRecord], models: dict, eps_labels, attack_names, path: str) -> None:
    """Grouped bars: mean accuracy per model and attack (one panel per ε), error bars = std over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(eps_labels), 1, figsize=(10, 3.2 * len(eps_labels)), squeeze=False)
    width = 0.8 / max(len(models), 1)
    for ax, eps in zip(axes[:, 0], eps_labels):
        for i, (m, label) in enumerate(models.items()):
            stats = [mean_std(accuracy_values(records, m, eps, a)) for a in attack_names]
            means = [s["mean"] if s["n"] else np.nan for s in stats]
            stds = [s["std"] or 0.0 for s in stats]
            ax.bar(np.arange(len(attack_names)) + i * width, means, width, yerr=stds, label=label, capsize=2)
        ax.set_xticks(np.arange(len(attack_names)) + 0.4 - width / 2)
        ax.set_xticklabels(attack_names)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"ε = {eps}")
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].legend(ncol=3, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_convergence(curve: list, path: str) -> None:
    """Test accuracy (%) after each epoch of the convergence run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    pts = [(r["epoch"], r["test_accuracy"]) for r in curve if r["test_accuracy"] is not None]
    ax.plot(*zip(*pts), marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("vanilla, Fashion-MNIST")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
