"""Train one experiment: ``python -m tgo_train.main --config tgo_train/configs/<name>.py --workdir DIR``.

Any config field can be overridden, e.g. ``--config.epochs=10 --config.margin.enabled=True``. A rerun
with the same workdir resumes from the latest intact checkpoint; it refuses a config that changes the
run's meaning (``--fresh`` moves the old workdir aside and starts again). Errors are one line on stderr
(``--verbose`` or ``TGO_DEBUG=1`` for the traceback).
"""
from absl import app, flags, logging
from ml_collections import config_flags

from tgo_train import cli, config_check, resume, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints and metrics.jsonl")
_FRESH = flags.DEFINE_bool("fresh", False, "move an existing workdir aside (to WORKDIR.old-TIME) and start anew")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = config_check.check(_CONFIG.value)
    if _FRESH.value and (moved := resume.move_aside(_WORKDIR.value)):
        print(f"--fresh: moved the old {_WORKDIR.value} to {moved}", flush=True)
    record = train.train_and_evaluate(config, _WORKDIR.value)
    print("final:", record, flush=True)


if __name__ == "__main__":
    cli.run(main)
