"""Data parallelism: a step with the batch sharded over 8 (fake CPU) devices equals the one-device step.

XLA_FLAGS must be set before JAX initialises, so the 8-device run is ``tests/sharding_check.py`` in a
subprocess; the tests below compare what it saved. The rest checks the helpers on this process's
devices.
"""
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

from tgo_jax import data, sharding
from tgo_train import feed

ROOT = pathlib.Path(__file__).resolve().parents[1]
# float32 sums reduced in another order (per-shard partial sums, then an all-reduce): a few ulps.
RTOL, ATOL = 1e-5, 1e-6  # ATOL: conv biases before BatchNorm get an exactly-zero gradient, so they are pure rounding


def _run_check(script: str, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("sharding") / "result.npz"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / script), str(out)], env=env,
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with np.load(out) as data:
        return dict(data)


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    return _run_check("sharding_check.py", tmp_path_factory)


@pytest.fixture(scope="module")
def sharded_attacks(tmp_path_factory):
    return _run_check("sharded_attacks_check.py", tmp_path_factory)


def _pairs(result, a, b):
    keys = sorted(k[len(a):] for k in result if k.startswith(a))
    assert keys and keys == sorted(k[len(b):] for k in result if k.startswith(b))
    return [(k, result[a + k], result[b + k]) for k in keys]


def test_batch_is_split_over_eight_devices_and_params_replicated(eight_devices):
    r = eight_devices
    assert int(r["mesh_size"]) == 8 and int(r["batch_devices"]) == 8
    assert int(r["batch_shard_rows"]) == 16 // 8
    assert bool(r["params_replicated"])
    assert int(r["eval_devices"]) == 8


def test_sharded_train_steps_equal_single_device(eight_devices):
    r = eight_devices
    np.testing.assert_allclose(r["sharded_losses"], r["single_losses"], rtol=RTOL)
    for name, sharded, single in _pairs(r, "sharded_params", "single_params"):
        np.testing.assert_allclose(sharded, single, rtol=RTOL, atol=ATOL, err_msg=name)
    for name, sharded, single in _pairs(r, "sharded_stats", "single_stats"):
        np.testing.assert_allclose(sharded, single, rtol=RTOL, atol=ATOL, err_msg=name)


def test_batchnorm_statistics_are_over_the_global_batch(eight_devices):
    r = eight_devices
    for name, sharded, full in _pairs(r, "sharded_fwd_stats", "full_fwd_stats"):
        np.testing.assert_allclose(sharded, full, rtol=RTOL, atol=ATOL, err_msg=name)
    # Control: statistics of one device's shard alone differ, so the comparison above can fail.
    gaps = [np.max(np.abs(shard - full)) for _, shard, full in _pairs(r, "shard_only_stats", "full_fwd_stats")]
    assert max(gaps) > 100 * ATOL


def test_eval_logits_equal_single_device(eight_devices):
    r = eight_devices
    assert r["sharded_eval"].shape == r["single_eval"].shape == (2, 16, 10)
    np.testing.assert_allclose(r["sharded_eval"], r["single_eval"], rtol=RTOL, atol=ATOL)


def test_indivisible_batch_is_refused(eight_devices):
    message = str(eight_devices["indivisible_error"])
    assert "batch size=12" in message and "8 devices" in message


def test_eval_batch_is_rounded_up_to_the_device_count(eight_devices):
    assert list(eight_devices["eval_batch_rows"]) == [16, 16]
    assert list(eight_devices["eval_batch_real"]) == [16, 4]  # all 20 examples once, padding masked


ATTACKS = ("fgsm", "rfgsm", "pgd", "apgd", "mtpgd", "pgd_eot")


@pytest.mark.parametrize("name", ATTACKS)
def test_sharded_attack_equals_single_device(sharded_attacks, name):
    r = sharded_attacks
    assert int(r[f"sharded_{name}_devices"]) == 8 and int(r[f"single_{name}_devices"]) == 1
    # The attack moved the images, so equal outputs are not two unchanged inputs.
    assert np.max(np.abs(r[f"single_{name}_x"] - r["clean_x"])) > 1e-3
    np.testing.assert_allclose(r[f"sharded_{name}_x"], r[f"single_{name}_x"], rtol=0, atol=ATOL)
    np.testing.assert_array_equal(r[f"sharded_{name}_correct"], r[f"single_{name}_correct"])


def test_sharded_surrogate_ensemble_equals_single_device(sharded_attacks):
    np.testing.assert_allclose(sharded_attacks["sharded_ensemble"], sharded_attacks["single_ensemble"],
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["Clean", "PGD"])
def test_sharded_evaluation_loop_equals_single_device(sharded_attacks, name):
    """tgo_train.evaluation over 8 devices: per-example correctness (share of 2 noise draws) of 20 images, the
    last batch padded, equal to one device's."""
    single, sharded = sharded_attacks[f"single_suite_{name}"], sharded_attacks[f"sharded_suite_{name}"]
    assert single.shape == (20,) and 0 < single.mean() < 1
    np.testing.assert_array_equal(sharded, single)


# --- on this process's devices (one CPU device in CI) ---

def test_make_mesh_defaults_to_all_devices():
    mesh = sharding.make_mesh()
    assert isinstance(mesh, Mesh)
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    assert sharding.make_mesh(0).size == sharding.make_mesh(None).size == jax.device_count()
    assert sharding.make_mesh(1, axis="batch").axis_names == ("batch",)
    assert sharding.batch_sharding(mesh).spec == PartitionSpec("data")
    assert sharding.replicated(mesh).spec == PartitionSpec()


@pytest.mark.parametrize("num_devices", [-1, jax.device_count() + 1, 1.5, True])
def test_make_mesh_rejects_bad_device_counts(num_devices):
    with pytest.raises(ValueError, match="num_devices"):
        sharding.make_mesh(num_devices)


def test_shard_batch_and_replicate_place_arrays():
    mesh = sharding.make_mesh()
    n = mesh.size
    images, labels = np.ones((2 * n, 3, 3, 1), np.float32), np.arange(2 * n)
    placed = sharding.shard_batch({"x": images, "y": labels}, mesh)
    assert placed["x"].sharding == sharding.batch_sharding(mesh)
    np.testing.assert_array_equal(np.asarray(placed["y"]), labels)
    tree = sharding.replicate({"w": np.zeros((2, 2), np.float32)}, mesh)
    assert tree["w"].sharding.is_fully_replicated and len(tree["w"].sharding.device_set) == n


def test_one_process_feeds_every_row():
    mesh = sharding.make_mesh()
    assert sharding.process_rows(mesh, 4 * mesh.size) == slice(0, 4 * mesh.size)


def test_fed_batches_are_the_global_batches_in_order():
    mesh = sharding.make_mesh()
    n, b = 11, 4 * mesh.size
    images, labels = np.arange(n * b, dtype=np.float32).reshape(n * b, 1) / (n * b), np.arange(n * b) % 10
    want = list(data.epoch_batches(images, labels, b, seed=3, epoch=2, start_step=1))
    got = list(feed.train_batches(images, labels, b, mesh, seed=3, epoch=2, start_step=1))
    assert len(got) == len(want) == n - 1
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g["image"]), w["image"])
        assert g["image"].sharding == sharding.batch_sharding(mesh)
    evals = list(feed.eval_batches(images[:b + 1], labels[:b + 1], b, mesh))  # one full, one padded
    assert [int(np.asarray(e["mask"]).sum()) for e in evals] == [b, 1]
    assert all(e["image"].shape == (b, 1) for e in evals)


def test_shard_batch_rejects_scalars():
    with pytest.raises(ValueError, match="leading batch axis"):
        sharding.shard_batch({"x": np.ones((4, 2)), "step": np.float32(3.0)}, sharding.make_mesh())
