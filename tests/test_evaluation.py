"""Tests for the evaluation loop (tgo_train/evaluation.py) and a measure reduced by it."""
from __future__ import annotations

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import tiny_config, tiny_model
from tgo_train import evaluation, reproduce
from tgo_train.configs import grid

N, BATCH = 10, 4  # three batches, the last one with two rows of padding


def _split():
    images = np.arange(2 * N, dtype=np.float32).reshape(N, 2)
    return images, np.arange(N, dtype=np.int32) % 3


def test_sums_skip_the_padding_and_gathered_rows_come_in_dataset_order():
    images, labels = _split()

    def sums(v, batch, key):
        return {"labels": jnp.sum(batch["label"] * batch["mask"]), "rows": jnp.sum(batch["mask"])}

    def first_pixel(v, batch, key):
        return batch["image"][:, 0]

    reduced = evaluation.reduce_split([jax.jit(sums)], None, images, labels, batch_size=BATCH,
                                      keys=evaluation.split_keys(jax.random.PRNGKey(0)))
    assert reduced.values == [{"labels": float(labels.sum()), "rows": float(N)}] and len(reduced.seconds) == 1
    gathered, = evaluation.reduce_split([jax.jit(first_pixel)], None, images, labels, batch_size=BATCH,
                                        keys=evaluation.split_keys(jax.random.PRNGKey(0)), gather=True).values
    np.testing.assert_array_equal(gathered, images[:, 0])


def test_keys_go_batch_by_batch_then_statistic_by_statistic_and_progress_counts_the_calls():
    images, labels = _split()

    def draw(v, batch, key):  # one uniform number per call, on every row of the batch
        return jnp.full(batch["label"].shape, jax.random.uniform(key))

    done = []
    a, b = evaluation.reduce_split([jax.jit(draw), jax.jit(draw)], None, images, labels, batch_size=BATCH,
                                   keys=evaluation.split_keys(jax.random.PRNGKey(3)), gather=True,
                                   progress=done.append).values
    calls = evaluation.num_calls(N, BATCH, 2)
    assert done == list(range(1, calls + 1)) and calls == 6
    key, expected = jax.random.PRNGKey(3), []
    for _ in range(calls):
        key, sub = jax.random.split(key)
        expected.append(float(jax.random.uniform(sub)))
    rows = [min(BATCH, N - i * BATCH) for i in range(3)]
    np.testing.assert_array_equal(a, np.repeat(expected[0::2], rows))
    np.testing.assert_array_equal(b, np.repeat(expected[1::2], rows))


def test_measure_masks_the_padding():
    """The share and the input-gradient measures of a LIF net do not depend on the key, so a padded last batch
    (40 images in batches of 32) gives the one-batch numbers, up to the order of the sums."""
    model = tiny_model()
    x = np.random.default_rng(0).uniform(size=(40, 28, 28, 1)).astype(np.float32)
    y = np.arange(40, dtype=np.int32) % 10
    run = types.SimpleNamespace(model=model, splits={"test": (x, y)}, config=tiny_config())
    variables = model.init(jax.random.PRNGKey(0), x[:2])
    one, padded = (reproduce.measure(run, variables, dataclasses.replace(grid.SIZES["ci"], analysis_examples=40,
                                                                         eval_batch=b), seed=0) for b in (40, 32))
    assert one["examples"] == padded["examples"] == 40 and 0 < one["neighbour_share"] < 1
    for name in ("neighbour_share", "grad_l1", "grad_zero_share"):
        assert padded[name] == pytest.approx(one[name], rel=1e-5), name
