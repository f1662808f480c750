"""orbax checkpoints of the train state and the run's config (FORMULAS-free bookkeeping)."""
from __future__ import annotations

import json
import os
from typing import Any, Optional

import flax.serialization
import jax
import orbax.checkpoint as ocp


class Checkpoints:
    """Saves every ``every_steps`` steps and on demand; restores the latest into a target state.

    The state is stored as a plain pytree (``flax.serialization.to_state_dict``) next to a JSON
    record holding the config, so ``tgo_train.evaluate`` can rebuild the model from a workdir alone.
    """

    def __init__(self, directory: str, every_steps: int, keep: int = 2):
        if every_steps < 1:
            raise ValueError(f"checkpoint_every_steps must be >= 1, got {every_steps}")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=every_steps, create=True)
        self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, meta: dict, force: bool = False) -> bool:
        """Saves when ``step`` is on the interval (or ``force``); returns whether it saved."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
                                  meta=ocp.args.JsonSave(meta))
        return self.manager.save(step, args=args, force=force)

    def restore(self, target: Any, step: Optional[int] = None):
        """Restores ``(state, meta)`` at ``step`` (default: latest) with ``target``'s structure."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.manager.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, flax.serialization.to_state_dict(target))
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                 meta=ocp.args.JsonRestore()))
        return flax.serialization.from_state_dict(target, out["state"]), out["meta"]

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def read_meta(directory: str, step: Optional[int] = None) -> dict:
    """The JSON record (config, epoch, ...) of a checkpoint, without restoring arrays."""
    manager = ocp.CheckpointManager(os.path.abspath(directory))
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    manager.close()
    return json.loads(json.dumps(meta))
