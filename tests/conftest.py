"""Shared test fixtures and helpers.

``fashion_mnist``: the dataset, or the test skipped when it is not installed.
``fmnist_small``: a few thousand Fashion-MNIST images (train) and a small held-out batch (test).
``trained_small``: a tiny spiking net trained on them for a few hundred Adam steps, well above chance,
for tests that need a model with meaningful gradients (attacks, analyses).
``tiny_model``: the small net at the tests' smallest size, untrained.
``TINY_CONFIG`` / ``tiny_config``: the tests' training config (``tests/tiny.py``), as a path for ``--config``
and as a ``ConfigDict``.
"""
from __future__ import annotations

import os
from typing import NamedTuple

# The suite's time goes mostly to compiling many small programs, which XLA's lowest CPU optimisation level
# about halves (the programs run slower, which the tests' small sizes barely notice). Set before JAX starts
# its backend; the subprocesses and notebook kernels the tests start inherit it. An explicit level wins.
XLA_TEST_FLAGS = "--xla_backend_optimization_level=0"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + XLA_TEST_FLAGS).strip()

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tgo_jax import attacks, data, models
from tests import tiny

TINY_CONFIG = os.path.abspath(tiny.__file__)
TINY_NET = dict(channels=(4, 8), hidden=16, num_steps=2)  # the small net's size in most tests
NUM_TRAIN, NUM_TEST = 4096, 256
TRAIN_STEPS, TRAIN_BATCH, TRAIN_LR = 300, 64, 3e-3


class Split(NamedTuple):
    x: np.ndarray  # [N, 28, 28, 1], float32 in [0, 1]
    y: np.ndarray  # [N], int32


class FmnistSmall(NamedTuple):
    train: Split
    test: Split


@pytest.fixture(scope="session")
def fashion_mnist() -> dict:
    """Fashion-MNIST as ``data.load`` returns it; a test that asks for it is skipped when it is not installed
    (the others still run)."""
    try:
        return data.load("fashion_mnist")
    except data.DataUnavailableError as e:
        pytest.skip(f"Fashion-MNIST is not available: {e}")


@pytest.fixture(scope="session")
def fmnist_small(fashion_mnist) -> FmnistSmall:
    (xtr, ytr), (xte, yte) = fashion_mnist["train"], fashion_mnist["test"]
    return FmnistSmall(Split(xtr[:NUM_TRAIN], ytr[:NUM_TRAIN]), Split(xte[:NUM_TEST], yte[:NUM_TEST]))


class TrainedModel(NamedTuple):
    model: nn.Module
    variables: dict  # {'params': ..., 'batch_stats': ...}
    test: Split


def _train(model: nn.Module, train: Split, seed: int = 0) -> dict:
    """Adam on CE(mean_t logits, y) with train-mode BatchNorm; returns the variables."""
    key = jax.random.key(seed)
    variables = model.init(key, jnp.asarray(train.x[:2]))
    tx = optax.adam(TRAIN_LR)
    opt_state = tx.init(variables["params"])

    @jax.jit
    def step(params, batch_stats, opt_state, x, y):
        def loss_fn(p):
            logits_tb, upd = model.apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                         mutable=["batch_stats"])
            loss = optax.softmax_cross_entropy_with_integer_labels(models.mean_over_time(logits_tb), y)
            return loss.mean(), upd["batch_stats"]
        (_, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state

    params, batch_stats = variables["params"], variables["batch_stats"]
    order = np.random.default_rng(seed).permutation(len(train.y))
    per_epoch = len(order) // TRAIN_BATCH
    for i in range(TRAIN_STEPS):
        j = i % per_epoch
        idx = order[j * TRAIN_BATCH:(j + 1) * TRAIN_BATCH]
        params, batch_stats, opt_state = step(params, batch_stats, opt_state, train.x[idx], train.y[idx])
    return {"params": params, "batch_stats": batch_stats}


@pytest.fixture(scope="session")
def trained_small(fmnist_small) -> TrainedModel:
    """``small`` net, channels (8, 16), hidden 32, T = 2, LIF, trained to well above chance."""
    model = models.create("small", channels=(8, 16), hidden=32, num_steps=2)
    variables = _train(model, fmnist_small.train)
    return TrainedModel(model, variables, fmnist_small.test)


def tiny_model(**overrides) -> nn.Module:
    """The ``small`` net at ``TINY_NET``'s size, untrained; keyword arguments override its size or set any other
    argument of ``models.create``."""
    return models.create("small", **{**TINY_NET, **overrides})


def tiny_config(overrides: dict | None = None):
    """The tests' training config (``tests/tiny.py``) with dotted-key overrides, e.g. ``{"margin.enabled": True}``."""
    config = tiny.get_config()
    config.update_from_flattened_dict(overrides or {})
    return config


def attack_setup(trained: TrainedModel, batch: int):
    """(model, logits_fn, variables, x, y): the first ``batch`` test images of a trained model, for attacks."""
    return (trained.model, attacks.model_logits_fn(trained.model), trained.variables,
            jnp.asarray(trained.test.x[:batch]), jnp.asarray(trained.test.y[:batch]))


def parse_config(spec: str, *overrides: str):
    """A config (a name ``tgo_train.configs.config_path`` knows, or a path) loaded and overridden as a
    program's ``--config`` flag does it, with fresh flags."""
    from absl import flags
    from ml_collections import config_flags

    from tgo_train import configs
    argv = ["prog", f"--config={configs.config_path(spec)}", *overrides]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, flag_values=flag_values, lock_config=True, sys_argv=argv)
    flag_values(argv)
    return flag_values.config
