"""The training runs the notebooks make or load: reduced configs, the ablation grid, the cache check.

``size`` is the notebooks' size switch: ``"full"`` (the default, minutes on 2 CPU cores) or ``"ci"``
(tiny nets, for the tests; their numbers only show that the code runs).
"""
from __future__ import annotations

import ml_collections

from tgo_train import rundir
from tgo_train.configs import fmnist_tgo, fmnist_vanilla, grid

SIZES = ("ci", "full")
# The experiment's two configs (python -m tgo_train.experiment), by name.
EXPERIMENT_CONFIGS = {"vanilla": fmnist_vanilla.get_config, "tgo": fmnist_tgo.get_config}


def check_size(size: str) -> str:
    """Returns ``size`` if it is one of SIZES, else raises naming the allowed values."""
    if size not in SIZES:
        raise ValueError(f"TGO_NOTEBOOK_SIZE must be one of {SIZES}, got {size!r}")
    return size


def _quiet(c: ml_collections.ConfigDict) -> None:
    c.progress = False
    c.checkpoint_every_steps = 100_000  # only the final checkpoint


def _shrink_for_ci(c: ml_collections.ConfigDict) -> None:
    """Tiny net and data: a few dozen steps, 64 evaluation images, one noise draw."""
    c.model.num_steps = 2
    c.model_kwargs.channels = (4, 8)
    c.model_kwargs.hidden = 16
    c.eval_subset, c.eval_batch_size, c.eval_noise_draws = 64, 64, 1


def reduced_config(name: str, size: str) -> ml_collections.ConfigDict:
    """The experiment's config ``name`` ('vanilla' or 'tgo') trained for 1 epoch on a subset.

    ``full``: 20k training images, 2k evaluation images; ``ci``: 640 images in batches of 32.
    """
    c = EXPERIMENT_CONFIGS[name]()
    _quiet(c)
    c.epochs = 1
    if check_size(size) == "ci":
        _shrink_for_ci(c)
        c.train_subset, c.batch_size = 640, 32
    else:
        c.train_subset, c.eval_subset = 20_000, 2_000
    return c


def ablation_config(name: str, size: str, *, train_subset: int, batch_size: int) -> ml_collections.ConfigDict:
    """``fmnist_vanilla`` with the overrides of the ablation's row ``name`` (``grid.ABLATION``), 1 epoch; a
    Noisy-LIF row evaluated with ``fmnist_tgo``'s noise draws.
    """
    c = fmnist_vanilla.get_config()
    c.update_from_flattened_dict(grid.ablation_overrides(name))
    if c.neuron.kind == "noisy":
        c.eval_noise_draws = fmnist_tgo.get_config().eval_noise_draws
    _quiet(c)
    c.train_subset, c.batch_size, c.epochs = train_subset, batch_size, 1
    if check_size(size) == "ci":
        _shrink_for_ci(c)
    else:
        c.eval_subset = 2_000
    return c


def check_cached(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Raises ValueError if ``workdir`` holds a run that ``config`` would not resume (``rundir.config_changes``
    refuses a change). A workdir without ``config.json`` (nothing trained yet) passes.
    """
    stored = rundir.read_config(workdir)
    refused = rundir.config_changes(stored, config)[0] if stored is not None else []
    if refused:
        raise ValueError(f"{workdir} holds a run with another config ({', '.join(map(str, refused))}); "
                         "delete it to retrain")
