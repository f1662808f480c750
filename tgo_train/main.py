"""Train one experiment: ``python -m tgo_train.main --config tgo_train/configs/<name>.py --workdir DIR``.

Any config field can be overridden, e.g. ``--config.epochs=10 --config.margin.enabled=True``. A rerun
with the same workdir resumes from the latest checkpoint.
"""
from absl import app, flags, logging
from ml_collections import config_flags

from tgo_train import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "directory for checkpoints and metrics.jsonl")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    record = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    print("final:", record, flush=True)


if __name__ == "__main__":
    app.run(main)
