"""Train one experiment: ``tgo-train --config NAME --workdir DIR`` (or ``python -m tgo_train.main``).

``--config`` takes a config name (``fmnist_tgo``, ``cifar:cifar10,wrn16_4,rat,tgo``; see
``tgo_train/configs``) or a config file path (``tgo_train/configs/fmnist_tgo.py``).

Any config field can be overridden, e.g. ``--config.epochs=10 --config.margin.enabled=True``. A rerun
with the same workdir resumes from the latest intact checkpoint; it refuses a config that changes the
run's meaning (``--fresh`` moves the old workdir aside and starts again). Errors are one line on stderr
(``--verbose`` or ``TGO_DEBUG=1`` for the traceback). ``--distributed`` joins a multi-process run (one
process per host or GPU; see ``tgo_train.distributed`` and the README).

The run holds the workdir's lock (``tgo_train.workdir``): a second training of it is refused at once. SIGTERM
or Ctrl-C saves a checkpoint at the next step boundary and exits with status 75; rerun to resume (exit
statuses: ``tgo_train.cli``).
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from tgo_train import cli, config_check, configs, distributed, resume, train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "config name (fmnist_tgo, cifar:cifar10,wrn16_4,rat,tgo, ...) or config file path",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints and metrics.jsonl")
_FRESH = flags.DEFINE_bool("fresh", False, "move an existing workdir aside (to WORKDIR.old-TIME) and start anew")
flags.mark_flags_as_required(["config", "workdir"])
distributed.define_flags()


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    distributed.initialize_from_flags()  # before any other JAX call
    config = config_check.check(_CONFIG.value)
    if _FRESH.value and distributed.is_primary() and (moved := resume.move_aside(_WORKDIR.value)):
        print(f"--fresh: moved the old {_WORKDIR.value} to {moved}", flush=True)
    distributed.barrier("fresh")  # the others look at the workdir only once it is moved
    record = train.train_and_evaluate(config, _WORKDIR.value)
    if distributed.is_primary():
        print("final:", record, flush=True)


def entry():
    """Console script ``tgo-train``: a config name becomes its packaged file before the flags are read."""
    try:
        argv = configs.resolve_config_flag(sys.argv)
    except ValueError as e:
        cli.fail(str(e))
    cli.run(main, argv=argv, help_epilog=configs.describe_fields(configs.base.get_base_config()))


if __name__ == "__main__":
    entry()
