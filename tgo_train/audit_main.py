r"""Gradient-masking audit of trained workdirs (``tgo_train/audit.py``; docs/robustness.md).

    tgo-audit --workdir DIR [--workdir DIR2 ...] [--size full|quick|small|ci] [--eps 8/255] \
        [--num_examples 1000] [--pgd_step paper|madry] [--transfer_from OTHER_DIR [--transfer_from DIR3]]

(or ``python -m tgo_train.audit_main``). Writes ``audit.json`` and ``audit.md`` in each workdir and prints
the latter: each check with a flag (PASS, FAIL, WARN or NOT RUN), the numbers that decided it and the
worst-case accuracy. ``--size`` cuts the attacks from the reference (``full``) for a CPU; ``audit.md``
states what it cut. ``--transfer_from`` (repeatable) adds transfers from independently trained models
(check (c)); without one that check is NOT RUN. Like ``tgo-evaluate`` it holds each workdir's evaluation
lock, so it runs beside the training of that workdir but not beside another evaluation of it.
"""
from __future__ import annotations

from absl import app, flags, logging

from tgo_jax import attacks
from tgo_train import audit, cli, distributed, workdir as workdirs
from tgo_train.tables import parse_eps

_WORKDIR = flags.DEFINE_multi_string("workdir", None, "trained workdir(s) to audit")
_SIZE = flags.DEFINE_enum("size", "full", list(audit.SIZES), "attack sizes (tgo_train/audit.py SIZES)")
_EPS = flags.DEFINE_string("eps", "8/255", "attack budget (L∞, pixel units)")
_ALPHA = flags.DEFINE_float("alpha", attacks.ALPHA, "PGD step size of the paper's rule (--pgd_step paper)",
                            lower_bound=0.0)
_PGD_STEP = flags.DEFINE_enum("pgd_step", "paper", list(attacks.PGD_STEP_RULES),
                              "PGD step rule: paper (fixed --alpha) or madry (alpha = 2.5*eps/k for k steps)")
_NUM = flags.DEFINE_integer("num_examples", 0, "audit the first N test images (0 = all)", lower_bound=0)
_BATCH = flags.DEFINE_integer("batch_size", 512, "global evaluation batch size", lower_bound=1)
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: latest)", lower_bound=0)
_TRANSFER = flags.DEFINE_multi_string("transfer_from", [], "trained workdir of an independently trained "
                                      "transfer source (repeatable): check (c)")
flags.mark_flags_as_required(["workdir"])
distributed.define_flags()


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    distributed.initialize_from_flags()
    eps = parse_eps(_EPS.value)
    with workdirs.locked_for_evaluation(_WORKDIR.value, primary=distributed.is_primary()):
        for workdir in _WORKDIR.value:
            result = audit.audit_workdir(workdir, eps=eps, alpha=_ALPHA.value, pgd_step=_PGD_STEP.value,
                                         sizes=_SIZE.value, num_examples=_NUM.value, batch_size=_BATCH.value,
                                         step=_STEP.value, transfer_from=_TRANSFER.value)
            print(audit.render(result, workdir), flush=True)


def entry():
    """Console script ``tgo-audit``."""
    cli.run(main)


if __name__ == "__main__":
    entry()
