"""A trained run rebuilt from its workdir: model, test data and weights, for evaluating and attacking it.

Only what evaluation needs is read: the config saved with the newest intact checkpoint (or the chosen
step) and its ``params`` and ``batch_stats``; no optimiser, objective or train step is built. It sits
above ``tgo_train.train`` (whose ``prepare`` builds the model and data from a config), while the run
directory's files (``tgo_train.rundir``) sit below it, since training writes them.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from tgo_jax import attacks, sharding
from tgo_train import rundir, train
from tgo_train.checkpoint import Checkpoints, read_meta
from tgo_train.configs.base import get_base_config
from tgo_train.workdir import PathLike, as_path


def load_run(workdir: PathLike, step: Optional[int] = None, num_examples: int = 0, mesh=None):
    """``(run, variables, step)``: the model and data of a training workdir (``train.Run``) and its weights
    (params, batch_stats) at ``step`` (default: the newest intact checkpoint), replicated on ``mesh``
    (default: every device of every process). ``num_examples``: the first N test images (0: the config's).
    """
    ckpt_dir = as_path(rundir.checkpoint_dir(workdir))
    if not ckpt_dir.is_dir():
        raise FileNotFoundError(f"no checkpoints in {workdir} (expected {ckpt_dir})")
    config = get_base_config()  # options added since the run was made keep their defaults
    config.update(read_meta(ckpt_dir, step)["config"])
    if num_examples:
        config.eval_subset = num_examples
    config.train_subset = config.batch_size  # evaluation needs the test split only
    run = train.prepare(config)
    manager = Checkpoints(ckpt_dir, every_steps=1)
    saved = manager.restore_entries(["params", "batch_stats", "step"], step,  # default: newest intact
                                    placement=sharding.replicated(mesh or sharding.make_mesh()))
    manager.close()
    variables = jax.tree.map(jnp.asarray, {"params": saved["params"], "batch_stats": saved["batch_stats"]})
    return run, variables, int(saved["step"])


def load_transfer_sources(dirs: Sequence[str], target_run, target_variables, num_examples: int = 0,
                          mesh=None) -> list:
    """``attacks.Source`` of each trained workdir in ``dirs`` (named by its basename), each checked against the
    target run: the same data set, input shape and class count, else one ValueError line naming both."""
    names = [os.path.basename(os.path.normpath(d)) for d in dirs]
    for name in set(names):
        if names.count(name) > 1:
            raise ValueError(f"two transfer sources are named {name!r} "
                             f"({', '.join(d for d, n in zip(dirs, names) if n == name)}): the column is "
                             "Transfer-<basename of the workdir>, so give workdirs with different names")
    x = target_run.splits["test"][0][:1]
    sources = []
    for d, name in zip(dirs, names):
        src_run, src_vars, _ = load_run(d, None, num_examples, mesh)
        source = attacks.Source(name, attacks.model_logits_fn(src_run.model), src_vars,
                                dataset=src_run.config.dataset, input_shape=tuple(src_run.splits["test"][0].shape[1:]))
        attacks.transfer.check_source(source, attacks.model_logits_fn(target_run.model), target_variables,
                                      jnp.asarray(x), target_dataset=target_run.config.dataset)
        sources.append(source)
    return sources
