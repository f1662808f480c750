"""orbax checkpoints of the train state and the run's config (FORMULAS-free bookkeeping).

Each finished checkpoint gets a checksum manifest (``tgo_train/manifest.py``). Restoring the latest
checkpoint skips damaged ones (a file missing, truncated or changed, or one orbax cannot read), says
which step and file, and falls back to the newest intact checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
from typing import Any, Callable, Optional, Sequence

import flax.serialization
import jax
import orbax.checkpoint as ocp

from tgo_train import distributed, manifest
from tgo_train.config_check import one_line
from tgo_train.workdir import ClosedOnExit, PathLike, as_path, naming


class CheckpointError(ValueError):
    """No usable checkpoint: the message names the step(s) and what is wrong with each."""


class Checkpoints(ClosedOnExit):
    """Saves every ``every_steps`` steps and on demand; restores the latest intact one into a target state.

    The state is stored as a plain pytree (``flax.serialization.to_state_dict``) next to a JSON
    record holding the config, so ``tgo_train.trained`` can rebuild the model from a workdir alone.
    Restores are partial: a target reads only the entries it names (an older checkpoint's extra
    entries are skipped), and ``restore_entries`` reads chosen top-level entries without any target.
    """

    def __init__(self, directory: PathLike, every_steps: int, keep: int = 2, writer: bool = False):
        """``writer``: the training run owning the folder; it removes saves a crash left unfinished (a
        reader must not: they may be the running training's saves in flight)."""
        if every_steps < 1:
            raise ValueError(f"checkpoint_every_steps must be >= 1, got {every_steps}")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=every_steps, create=True,
                                               cleanup_tmp_directories=writer)
        self.directory = str(as_path(directory))  # absolute; a gs:// URL stays one
        # The plain pytree handler (the format StandardSave writes) is the one that restores part of a tree.
        handlers = {"state": ocp.PyTreeCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)
        self._unsealed: list[int] = []  # saved steps whose manifest is not written yet
        self._closed = False

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def due(self, step: int) -> bool:
        """Whether ``save(step, ...)`` would save (so the caller builds the meta only then)."""
        return self.manager.should_save(step)

    def save(self, step: int, state: Any, meta: dict, force: bool = False) -> bool:
        """Saves when ``step`` is on the interval (or ``force``); returns whether it saved."""
        self._seal(block=False)
        args = ocp.args.Composite(state=ocp.args.PyTreeSave(flax.serialization.to_state_dict(state)),
                                  meta=ocp.args.JsonSave(meta))
        with self._writing():
            saved = self.manager.save(step, args=args, force=force)
        if saved:
            self._unsealed.append(step)
        return saved

    @contextlib.contextmanager
    def _writing(self):
        """A save's failure from the OS (a full disk, a read-only folder) as an ``OSError`` naming the checkpoint
        folder (it may surface at the next save: orbax writes in the background and reports it then, as another
        error with the OS error code in its text)."""
        try:
            with naming(self.directory):
                yield
        except Exception as e:  # noqa: BLE001 - re-raised, as an OSError where it is one
            error = os_error(e, self.directory)
            if error is None:
                raise
            raise error from e

    def _seal(self, block: bool) -> None:
        """Writes the manifests of finished saves (all of them, waiting, when ``block``)."""
        if not self._unsealed:
            return
        if block:
            with self._writing():
                self.manager.wait_until_finished()
        elif self.manager.is_saving_in_progress():
            return
        for step in self._unsealed:
            # Process 0 alone: orbax finalises a step only once every process has written its part.
            if distributed.is_primary() and as_path(self.step_dir(step)).is_dir():  # not removed by max_to_keep
                manifest.write(self.step_dir(step))
        self._unsealed = []

    def damage(self, step: int) -> Optional[str]:
        """None when checkpoint ``step`` looks intact (manifest, JSON record); else what is damaged."""
        folder = self.step_dir(step)
        if manifest.exists(folder):
            return manifest.verify(folder)
        try:
            with (as_path(folder) / "meta" / "metadata").open() as f:
                json.load(f)
        except (OSError, ValueError) as e:
            return f"meta/metadata cannot be read ({type(e).__name__})"
        return None

    def restore(self, target: Any, step: Optional[int] = None, set_aside: Optional[str] = None):
        """Restores ``(state, meta)`` with ``target``'s structure: at ``step``, or the newest intact one.

        Damaged newer checkpoints are reported on stderr and, with ``set_aside`` (a folder), moved there
        so the run can save those steps again.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, flax.serialization.to_state_dict(target))
        out = self._restore_intact(step, lambda s: abstract, set_aside, "the state built from the config")
        return flax.serialization.from_state_dict(target, out["state"]), out["meta"]

    def restore_entries(self, names: Sequence[str], step: Optional[int] = None,
                        placement: Optional[jax.sharding.Sharding] = None) -> dict:
        """The saved state's top-level entries ``names`` that exist (e.g. params and batch_stats), as arrays,
        at ``step`` or the newest intact checkpoint, without building the rest of the state: their
        shapes come from the checkpoint's metadata. ``placement``: where the arrays go (e.g. replicated
        on a mesh: any device count, any number of processes); default: this process's first device."""
        placement = placement or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

        def abstract(s):
            saved = self.manager.item_metadata(s)["state"]
            saved = getattr(saved, "tree", saved)
            return {name: jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=placement),
                                       saved[name])
                    for name in names if name in saved}

        return dict(self._restore_intact(step, abstract, None, f"the entries {list(names)}")["state"])

    def steps_to_try(self, step: Optional[int]) -> list[int]:
        """``[step]``, or every saved step newest first (the fallback order past damaged ones)."""
        steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return steps

    def _restore_intact(self, step: Optional[int], abstract_of: Callable[[int], Any], set_aside: Optional[str],
                        what: str) -> dict:
        """orbax's ``{'state', 'meta'}`` of ``step`` or of the newest intact checkpoint, ``abstract_of(step)``
        naming the part of the state to read (partial restore)."""
        steps = self.steps_to_try(step)
        problems = []
        for s in steps:
            problem = self.damage(s)
            if problem is None:
                try:
                    abstract = abstract_of(s)
                    out = self.manager.restore(s, args=ocp.args.Composite(
                        state=ocp.args.PyTreeRestore(abstract, partial_restore=True,
                                                     restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)),
                        meta=ocp.args.JsonRestore()))
                except Exception as e:  # noqa: BLE001 - orbax raises many kinds; reduced to one line
                    if manifest.exists(self.step_dir(s)):  # the files are intact: the state does not fit
                        raise CheckpointError(f"checkpoint step {s} in {self.directory} does not fit "
                                              f"{what}: {one_line(e)}") from e
                    problem = _unreadable(e)
                else:
                    self._set_aside([p[0] for p in problems], set_aside)
                    return out
            problems.append((s, problem))
            print(f"warning: checkpoint step {s} in {self.directory} is damaged: {problem}"
                  + ("; trying the previous one" if s != steps[-1] else ""), file=sys.stderr, flush=True)
        raise CheckpointError(f"no intact checkpoint in {self.directory}: "
                              + "; ".join(f"step {s}: {p}" for s, p in problems))

    def _set_aside(self, steps: list[int], folder: Optional[str]) -> None:
        if not steps or folder is None:
            return
        if distributed.is_primary():
            as_path(folder).mkdir(parents=True, exist_ok=True)
            for s in steps:
                target = os.path.join(folder, f"{s}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
                as_path(self.step_dir(s)).rename(target)
                print(f"moved damaged checkpoint step {s} to {target}", file=sys.stderr, flush=True)
        distributed.barrier("checkpoints set aside")
        self.manager.reload()

    def wait(self):
        self._seal(block=True)

    def close(self):
        """Waits for the saves in flight, writes their manifests and stops orbax's background threads
        (which would otherwise keep the process from exiting); closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            self._seal(block=True)
        finally:
            self.manager.close()


def os_error(error: BaseException, path: str) -> Optional[OSError]:
    """``error`` as an ``OSError`` naming ``path`` when it is one, or when its text carries the OS error code
    (tensorstore's ``[os_error_code='28']``); else None."""
    if isinstance(error, OSError):
        return error
    code = re.search(r"os_error_code='(\d+)'", str(error))
    if code is None:
        return None
    number = int(code.group(1))
    return OSError(number, os.strerror(number), path)


def _unreadable(error: BaseException) -> str:
    """What orbax could not read, naming the array file when its error does (it buries it deep)."""
    text, cause = "", error
    while cause is not None:
        text += str(cause)
        cause = cause.__cause__ or cause.__context__
    match = re.search(r"(?:[\w.]+/)*d/[0-9a-f]{32}", text)
    if match:
        return f"the array file {match.group(0)} cannot be read"
    detail = one_line(error).split(" See full TensorStore details")[0]
    return f"orbax cannot restore it ({detail[:200]})"


def read_meta(directory: PathLike, step: Optional[int] = None) -> dict:
    """The JSON record (config, epoch, ...) of a checkpoint (default: the newest intact one), without
    restoring arrays."""
    ckpt = Checkpoints(directory, every_steps=1)
    try:
        problems = []
        for s in ckpt.steps_to_try(step):
            problem = ckpt.damage(s)
            if problem is None:
                meta = ckpt.manager.restore(s, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
                return json.loads(json.dumps(meta))
            problems.append(f"step {s}: {problem}")
        raise CheckpointError(f"no intact checkpoint in {ckpt.directory}: " + "; ".join(problems))
    finally:
        ckpt.manager.close()
