"""The default experiment: vanilla vs TGO small spiking nets on Fashion-MNIST, trained and attacked.

    tgo-experiment --workdir runs/fmnist      # or: python -m tgo_train.experiment --workdir runs/fmnist

Trains ``tgo_train/configs/fmnist_vanilla.py`` and ``fmnist_tgo.py`` (resuming if interrupted), evaluates
both under Clean / FGSM / RFGSM / PGD at ε = 8/255 and ε = 0.1 (EoT for the noisy TGO model) and
prints a side-by-side table, also written to ``<workdir>/results.md``, and draws both models' accuracy
against ε (from ε = 0, clean) in ``<workdir>/robustness_eps.png`` (``tgo_train.figures``; its path is
printed). Sized for 2 CPU cores; uses every device, and several processes with ``--distributed`` (see
``tgo_train.distributed``).
"""
from __future__ import annotations

import time

from absl import app, flags, logging

from tgo_jax import attacks
from tgo_train import cli, config_check, distributed, figures, robustness, rundir, train, workdir as workdirs
from tgo_train.configs import fmnist_tgo, fmnist_vanilla

_WORKDIR = flags.DEFINE_string("workdir", "runs/fmnist", "directory for both runs and the results table")
_EPOCHS = flags.DEFINE_integer("epochs", None, "override the configs' epochs", lower_bound=1)
_TRAIN_SUBSET = flags.DEFINE_integer("train_subset", None, "train on the first N images only", lower_bound=1)
_NUM = flags.DEFINE_integer("num_examples", 1000, "test images for the attack evaluation (0 = all)", lower_bound=0)
_EOT = flags.DEFINE_integer("eot", 10, "EoT draws per gradient for the noisy model", lower_bound=1)
_ATTACKS = ("Clean", "FGSM", "RFGSM", "PGD10")
distributed.define_flags()


def configs():
    out = {"vanilla": fmnist_vanilla.get_config(), "tgo": fmnist_tgo.get_config()}
    for c in out.values():
        if _EPOCHS.value:
            c.epochs = _EPOCHS.value
        if _TRAIN_SUBSET.value:
            c.train_subset = _TRAIN_SUBSET.value
    return out


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    distributed.initialize_from_flags()
    with workdirs.locked(_WORKDIR.value, enabled=distributed.is_primary()):  # a second experiment here is refused
        _experiment()


def _experiment() -> None:
    say = print if distributed.is_primary() else (lambda *a, **k: None)
    t0 = time.time()
    root = workdirs.as_path(_WORKDIR.value)
    results, minutes = [], {}  # minutes: where the time went, per phase
    runs = {name: config_check.check(config) for name, config in configs().items()}  # both, before training
    for name, config in runs.items():
        workdir = root / name
        say(f"== training {name} -> {workdir}", flush=True)
        t = time.time()
        train.train_and_evaluate(config, workdir)
        minutes[f"training {name}"] = (time.time() - t) / 60
    for name in ("vanilla", "tgo"):
        workdir = root / name
        say(f"== attacking {name}", flush=True)
        t = time.time()
        r = robustness.evaluate_workdir(workdir, eps_list=[8 / 255, 0.1], alpha=attacks.ALPHA, extra=(),
                                        eot=_EOT.value, draws=3, eps_sweep=(), sweep_attack="PGD10",
                                        num_examples=_NUM.value, batch_size=512, attacks_subset=_ATTACKS)
        minutes[f"attacking {name}"] = (time.time() - t) / 60
        results.append(r)
    table = robustness.comparison(results)
    phases = ", ".join(f"{phase} {m:.1f}" for phase, m in minutes.items())
    text = f"{table}\n\nwall time {(time.time() - t0) / 60:.1f} min ({phases})"
    if distributed.is_primary():
        rundir.write_atomic(root / "results.md", text + "\n")
        curves = figures.eps_curves(dict(zip(("vanilla", "tgo"), results)))
        text += f"\nfigure: {figures.plot_eps_curves(curves, root / 'robustness_eps.png')}"
    say("\n" + text, flush=True)


def entry():
    """Console script ``tgo-experiment``."""
    cli.run(main)


if __name__ == "__main__":
    entry()
