"""TensorBoard event files in a workdir (tensorboardX: no TensorFlow needed).

``tensorboard --logdir runs/fmnist`` shows each workdir under it as one run. Every accuracy is in percent,
as in metrics.jsonl, eval.json and the tables. Tags:

* ``train/<name>`` every ``log_every_steps`` steps: the train step's metrics (``loss``, each loss term
  and its weight — ``margin_weight`` is the λ schedule —, ``accuracy``, ``spike_rate``,
  ``neighbour_share``) and ``train/learning_rate``;
* ``epoch/<name>`` once per epoch: the metrics.jsonl record (epoch means of the train metrics,
  ``test_accuracy``, ``elapsed_s``);
* ``eval/<attack>_<ε>`` (e.g. ``eval/PGD10_8/255``) and ``eval_sweep/<attack>_<ε>``: accuracy from
  ``tgo_train.evaluate``, at the evaluated checkpoint's step. (TensorBoard tags allow letters, digits and
  ``_./-`` only.)
* hyperparameters (TensorBoard's HPARAMS tab): the config's fields (``hparams_of``) once at the start of each
  training session (a resumed run writes the same values again), with ``epoch/test_accuracy`` and
  ``epoch/train_loss`` as the metrics to compare runs by.

Only process 0 writes (the others get a writer that drops everything). Events are written in the calling
thread and flushed with each call: a full disk or a read-only workdir is an ``OSError`` naming the event
file, raised where it happens (tensorboardX's own background writer would fail in its thread, and then
block the program when its queue fills up).
"""
from __future__ import annotations

import itertools
import numbers
import os
import time
from typing import Mapping, Optional

import jax
import numpy as np

from tgo_train.workdir import ClosedOnExit, naming


_OPENED = itertools.count()  # event files opened by this process
# Config fields that do not change what is trained (bookkeeping, paths, output), left out of the hyperparameters.
_NOT_HPARAMS = ("progress", "data_dir", "dvs.cache_dir", "log_every_steps", "checkpoint_every_steps",
                "keep_checkpoints", "eval_every_epochs", "eval_batch_size", "num_devices")
HPARAM_METRICS = ("epoch/test_accuracy", "epoch/train_loss")


def hparams_of(config: Mapping) -> dict:
    """The config's fields as hyperparameters: ``{"margin.lambda_max": 0.6, "neuron.kind": "noisy", ...}``,
    nested fields by dotted name; numbers, text and booleans (None and sequences left out, and the
    bookkeeping fields of ``_NOT_HPARAMS``)."""
    return {name: value for name, value in _fields(config) if name not in _NOT_HPARAMS}


def _fields(config: Mapping, prefix: str = ""):
    """(dotted name, value) of every number, text or boolean of ``config`` and its sub-configs."""
    for name, value in config.items():
        if hasattr(value, "items"):
            yield from _fields(value, f"{prefix}{name}.")
        elif isinstance(value, (str, bool, numbers.Number)):
            yield prefix + name, value


class Summaries(ClosedOnExit):
    """Scalar summaries of one workdir; a no-op on processes other than 0.

    Args:
      logdir: the workdir.
      purge_step: on a resumed run the restored step: TensorBoard drops the earlier session's events
        from this step on, so a redone stretch is shown once.
    """

    def __init__(self, logdir: str, purge_step: Optional[int] = None):
        self._writer = None
        self._path = str(logdir)
        if jax.process_index() == 0:
            from tensorboardX.event_file_writer import EventsWriter  # imported here: only writers need it
            from tensorboardX.proto.event_pb2 import Event, SessionLog

            with naming(os.path.join(logdir, "events.out.tfevents.*")):
                if "://" not in str(logdir):  # a bucket has no folders to make
                    os.makedirs(logdir, exist_ok=True)
                # The pid and a count in the name: an evaluation beside a training run gets a file of its own.
                self._writer = EventsWriter(os.path.join(logdir, "events"), f".{os.getpid()}.{next(_OPENED)}")
            self._path = self._writer._file_name
            if purge_step is not None:
                self._write([Event(step=purge_step, file_version="brain.Event:2"),
                             Event(step=purge_step, session_log=SessionLog(status=SessionLog.START))])

    def scalars(self, step: int, values: Mapping[str, object], prefix: str = "") -> None:
        """Writes every number of ``values`` as ``prefix + name`` at ``step``.

        Numbers are Python or numpy scalars and 0-d arrays (what ``jax.device_get`` returns); other
        values (text, booleans such as the ``partial`` mark) are left out.
        """
        if self._writer is None:
            return
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        events = []
        for name, value in values.items():
            value = np.asarray(value) if isinstance(value, (np.ndarray, np.generic)) else value
            if isinstance(value, np.ndarray):
                if value.ndim or value.dtype.kind not in "iuf":
                    continue
                value = value.item()
            if isinstance(value, numbers.Number) and not isinstance(value, bool):
                events.append(Event(wall_time=time.time(), step=int(step),
                                    summary=scalar(prefix + name, float(value))))
        self._write(events)

    def hparams(self, values: Mapping[str, object], metrics=HPARAM_METRICS) -> None:
        """Writes ``values`` (name -> number, text or boolean) as the run's hyperparameters, with the scalar
        tags ``metrics`` as the values TensorBoard's HPARAMS tab compares runs by."""
        if self._writer is None:
            return
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import hparams

        experiment, session_start, _ = hparams({k: _plain(v) for k, v in values.items()}, dict.fromkeys(metrics))
        self._write([Event(wall_time=time.time(), step=0, summary=experiment),
                     Event(wall_time=time.time(), step=0, summary=session_start)])

    def _write(self, events: list) -> None:
        with naming(self._path):
            for event in events:
                self._writer.write_event(event)
            self._writer.flush()

    def flush(self) -> None:
        if self._writer is not None:
            with naming(self._path):
                self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with naming(self._path):
                writer.close()


def _plain(value):
    """A numpy scalar as the Python number tensorboardX's hparams reads; other values unchanged."""
    return value.item() if isinstance(value, np.generic) else value
