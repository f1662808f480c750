"""Shared test fixtures.

``fmnist_small``: a few thousand Fashion-MNIST images (train) and a small held-out batch (test).
``trained_small``: a tiny spiking net trained on them for a few hundred Adam steps, well above chance,
for tests that need a model with meaningful gradients (attacks, analyses).
"""
from __future__ import annotations

import gzip
import importlib.util
import os
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tgo_jax import models

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
NUM_TRAIN, NUM_TEST = 4096, 256
TRAIN_STEPS, TRAIN_BATCH, TRAIN_LR = 300, 64, 3e-3


def _read_idx(path: str) -> np.ndarray:
    """Reads a (gzipped) IDX file: magic (2 zero bytes, dtype 0x08 = uint8, rank), big-endian dims, data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    rank = raw[3]
    dims = np.frombuffer(raw, ">u4", count=rank, offset=4).astype(int)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(dims)


def _read_split(prefix: str):
    images = _read_idx(os.path.join(FMNIST_DIR, f"{prefix}-images-idx3-ubyte.gz"))
    labels = _read_idx(os.path.join(FMNIST_DIR, f"{prefix}-labels-idx1-ubyte.gz"))
    return (images[..., None].astype(np.float32) / 255.0, labels.astype(np.int32))


def _load_fashion_mnist():
    """The project's loader when it exists (tgo_jax.data), else a minimal IDX reader."""
    if importlib.util.find_spec("tgo_jax.data") is not None:
        from tgo_jax import data
        if hasattr(data, "load_fashion_mnist"):
            return data.load_fashion_mnist()
    return {"train": _read_split("train"), "test": _read_split("t10k")}


class Split(NamedTuple):
    x: np.ndarray  # [N, 28, 28, 1], float32 in [0, 1]
    y: np.ndarray  # [N], int32


class FmnistSmall(NamedTuple):
    train: Split
    test: Split


@pytest.fixture(scope="session")
def fmnist_small() -> FmnistSmall:
    if not os.path.isdir(FMNIST_DIR):
        pytest.skip(f"Fashion-MNIST IDX files not found in {FMNIST_DIR}")
    ds = _load_fashion_mnist()
    (xtr, ytr), (xte, yte) = ds["train"], ds["test"]
    return FmnistSmall(Split(np.asarray(xtr[:NUM_TRAIN]), np.asarray(ytr[:NUM_TRAIN])),
                       Split(np.asarray(xte[:NUM_TEST]), np.asarray(yte[:NUM_TEST])))


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
