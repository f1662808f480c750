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
This program is flag parsing around ``tgo_train.robustness``; the gradient-masking audit is its own program,
``tgo-audit`` (``tgo_train/audit_main.py``).
"""
from __future__ import annotations

from absl import app, flags, logging

from tgo_jax import attacks
from tgo_train import cli, distributed, rundir, workdir as workdirs
from tgo_train.robustness import combined_sweep_path, comparison, evaluate_workdir, plot_sweep, render
from tgo_train.tables import parse_eps

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
flags.DEFINE_multi_string("transfer_from", [], "trained workdir of a transfer source (repeatable): a "
                          "Transfer-<basename> column")
distributed.define_flags()


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    F = flags.FLAGS
    if not F.workdir:
        raise app.UsageError("--workdir is required")
    distributed.initialize_from_flags()
    with workdirs.locked_for_evaluation(F.workdir, F.out, distributed.is_primary()):
        _evaluate_all(F)


def _evaluate_all(F) -> None:
    primary = distributed.is_primary()
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
            rundir.write_atomic(F.out, table + "\n")
        if F.eps_sweep:
            print(f"ε-sweep figure: {plot_sweep(all_results, combined_sweep_path(F.workdir, F.out))}", flush=True)


def entry():
    """Console script ``tgo-evaluate``."""
    cli.run(main)


if __name__ == "__main__":
    entry()
