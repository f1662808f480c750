"""TensorBoard event files in a workdir (tensorboardX: no TensorFlow needed).

``tensorboard --logdir runs/fmnist`` shows each workdir under it as one run. Tags:

* ``train/<name>`` every ``log_every_steps`` steps: the train step's metrics (``loss``, each loss term
  and its weight — ``margin_weight`` is the λ schedule —, ``accuracy``, ``spike_rate``,
  ``neighbour_share``) and ``train/learning_rate``;
* ``epoch/<name>`` once per epoch: the metrics.jsonl record (epoch means of the train metrics,
  ``test_accuracy``, ``elapsed_s``);
* ``eval/<attack>_<ε>`` (e.g. ``eval/PGD10_8/255``) and ``eval_sweep/<attack>_<ε>``: accuracy (%) from
  ``tgo_train.evaluate``, at the evaluated checkpoint's step. (TensorBoard tags allow letters, digits and
  ``_./-`` only.)

Only process 0 writes (the others get a writer that drops everything).
"""
from __future__ import annotations

import numbers
from typing import Mapping, Optional

import jax
import numpy as np


class Summaries:
    """Scalar summaries of one workdir; a no-op on processes other than 0.

    Args:
      logdir: the workdir.
      purge_step: on a resumed run the restored step: TensorBoard drops the earlier session's events
        from this step on, so a redone stretch is shown once.
    """

    def __init__(self, logdir: str, purge_step: Optional[int] = None):
        self._writer = None
        if jax.process_index() == 0:
            from tensorboardX import SummaryWriter  # imported here: only writers need it

            self._writer = SummaryWriter(logdir=logdir, purge_step=purge_step, flush_secs=30)

    def scalars(self, step: int, values: Mapping[str, object], prefix: str = "") -> None:
        """Writes every number of ``values`` as ``prefix + name`` at ``step``.

        Numbers are Python or numpy scalars and 0-d arrays (what ``jax.device_get`` returns); other
        values (text, booleans such as the ``partial`` mark) are left out.
        """
        if self._writer is None:
            return
        for name, value in values.items():
            value = np.asarray(value) if isinstance(value, (np.ndarray, np.generic)) else value
            if isinstance(value, np.ndarray):
                if value.ndim or value.dtype.kind not in "iuf":
                    continue
                value = value.item()
            if isinstance(value, numbers.Number) and not isinstance(value, bool):
                self._writer.add_scalar(prefix + name, float(value), global_step=int(step))

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "Summaries":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
