"""Tests for the training program (tgo_train/train.py, tgo_train/main.py, tgo_train/configs).

Everything runs the tests' tiny config ``tests/tiny.py`` (a 4/8-channel net, T = 2, 256 training
images) on Fashion-MNIST from the Debian package; the paper's CIFAR networks are only traced
(``jax.eval_shape``). Command-line programs run in a subprocess from the repository root.
"""
from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import threading
import time
from typing import Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tgo_jax import data, losses, metrics, projections
from tgo_train import train
from tgo_train.checkpoint import Checkpoints
from tgo_train.configs import cifar
from tests.conftest import TINY_CONFIG, parse_config, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Hosts that cannot answer: a reserved TLD (fails at name lookup) and a TEST-NET address (times out).
UNREACHABLE_HOSTS = (("tgo-offline-test.invalid", 443), ("192.0.2.1", 443))
CLI_TIMEOUT_S = 180


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------

class Built(NamedTuple):
    run: train.Run
    state: train.TrainState  # freshly initialised from config.seed
    step: Callable  # jitted train_step(state, batch) -> (state, metrics), state not donated
    batch: dict  # the first training batch of epoch 0


def build(config: ml_collections.ConfigDict) -> Built:
    """What ``train_and_evaluate`` builds before its loop, with a jitted (not donating) step."""
    run = train.prepare(config)
    total = train.total_steps(config, run.steps_per_epoch)
    optimizer = train.build_optimizer(config, total)
    objective = train.build_objective(config, total, run.model)
    images, labels = run.splits["train"]
    batch = next(data.epoch_batches(images, labels, config.batch_size, seed=config.seed, epoch=0))
    # Jitted: XLA:CPU compiles the init faster than flax runs it op by op (same values).
    state = jax.jit(lambda x: train.create_train_state(config, run.model, optimizer, x))(batch["image"])
    step = jax.jit(train.make_train_step(config, run.model, objective, optimizer))
    return Built(run, state, step, batch)


def train_batches(run: train.Run, num_steps: int):
    """The first ``num_steps`` batches of the run's epochs, in training order."""
    images, labels = run.splits["train"]
    done, epoch = 0, 0
    while done < num_steps:
        for batch in data.epoch_batches(images, labels, run.config.batch_size, seed=run.config.seed,
                                        epoch=epoch):
            if done == num_steps:
                return
            yield batch
            done += 1
        epoch += 1


def neighbour_share(run: train.Run, state: train.TrainState, x: np.ndarray) -> float:
    """Share of |H − θ| < δ over every LIF layer, eval mode, on inputs x (docs/FORMULAS.md §5)."""
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    _, hs = run.model.apply(variables, x, train=False, return_h=True, rngs={"noise": jax.random.PRNGKey(0)})
    share = metrics.threshold_neighbour_share(hs, delta=run.config.margin.delta,
                                             threshold=run.config.neuron.threshold)
    return float(share.overall)


def saved_state(workdir: str) -> tuple[int, dict]:
    """(latest step, the train state as saved) read with orbax alone, without a target structure."""
    manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")))
    step = manager.latest_step()
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    manager.close()
    return step, jax.tree.map(np.asarray, state)


def read_records(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def assert_trees_equal(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


def max_abs_diff(a, b) -> float:
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def run_program(*args: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def tiny_tet(fashion_mnist) -> Built:
    """The tiny vanilla (TET) setup, shared by the tests that only read it."""
    return build(tiny_config())


# ----------------------------------------------------------------------------------------------------
# train steps
# ----------------------------------------------------------------------------------------------------

def test_train_step_lowers_the_loss_on_a_fixed_batch(tiny_tet):
    state, losses_seen, sums = tiny_tet.state, [], None
    for _ in range(6):
        state, step_metrics = tiny_tet.step(state, tiny_tet.batch)
        sums = train.accumulate(sums, step_metrics)
        losses_seen.append(float(step_metrics["loss"]))
    assert np.all(np.isfinite(losses_seen))
    assert losses_seen[-1] < losses_seen[0], losses_seen
    assert int(state.step) == 6
    assert float(sums["count"]) == 6.0
    # The running sums are the sums of the per-step metrics.
    np.testing.assert_allclose(float(sums["loss"]), sum(losses_seen), rtol=1e-5)
    # The train state holds what a resume needs, and no metric.
    assert set(flax.serialization.to_state_dict(state)) == {"step", "params", "batch_stats", "opt_state", "key"}


def test_margin_penalty_lowers_the_threshold_neighbour_share(tiny_tet):
    num_steps = 12
    margin = build(tiny_config({"margin.enabled": True, "margin.schedule": "constant",
                                "margin.lambda_max": 20.0}))
    x_test = tiny_tet.run.splits["test"][0][:64]
    # Same seed: both start from the same parameters.
    assert_trees_equal(margin.state.params, tiny_tet.state.params)
    shares = {}
    for name, built in (("vanilla", tiny_tet), ("margin", margin)):
        state = built.state
        for batch in train_batches(built.run, num_steps):
            state, step_metrics = built.step(state, batch)
        shares[name] = neighbour_share(built.run, state, x_test)
    assert float(step_metrics["margin_weight"]) == 20.0  # the constant schedule
    assert shares["margin"] < 0.75 * shares["vanilla"], shares


@pytest.mark.usefixtures("fashion_mnist")
def test_tgo_step_reports_margin_metrics_and_is_deterministic_per_seed():
    config = tiny_config({"neuron.kind": "noisy", "margin.enabled": True, "margin.schedule": "linear"})
    built = build(config)
    assert built.run.model.neuron.stochastic
    total = train.total_steps(config, built.run.steps_per_epoch)
    optimizer = train.build_optimizer(config, total)

    def train_from(state, num_steps=3):
        history = []
        for batch in train_batches(built.run, num_steps):
            state, step_metrics = built.step(state, batch)
            history.append({k: float(v) for k, v in step_metrics.items()})
        return state, history

    state_a, history = train_from(built.state)
    expected = {"accuracy", "loss", "tet", "tet_weight", "margin", "margin_weight", "neighbour_share",
                "spike_rate"}
    assert expected <= set(history[0]), sorted(history[0])
    for i, m in enumerate(history):
        assert all(np.isfinite(v) for v in m.values()), m
        assert m["margin"] > 0.0 and 0.0 <= m["neighbour_share"] <= 1.0
        np.testing.assert_allclose(m["margin_weight"], config.margin.lambda_max * i / total, rtol=1e-6)
        np.testing.assert_allclose(m["loss"], m["tet"] + m["margin_weight"] * m["margin"], rtol=1e-5)
    # The program's own (un-jitted) init with the same seed gives the same state and the same training.
    state = train.create_train_state(config, built.run.model, optimizer, built.batch["image"])
    assert_trees_equal(state, built.state)
    trained, _ = train_from(state)
    assert_trees_equal(trained.params, state_a.params)
    assert_trees_equal(trained.batch_stats, state_a.batch_stats)
    # The noise comes from the state's key alone: another key, other spikes, other parameters.
    other_key, _ = train_from(state.replace(key=jax.random.PRNGKey(config.seed + 1)))
    assert max_abs_diff(other_key.params, state_a.params) > 1e-4


@pytest.mark.usefixtures("fashion_mnist")
def test_at_and_rat_steps_run_and_rat_retracts():
    beta = 0.05  # large enough for the retraction to move every kernel visibly
    at = build(tiny_config({"strategy": "at", "rat.beta": beta, "at.steps": 1}))
    rat_config = tiny_config({"strategy": "rat", "rat.beta": beta, "at.steps": 1})
    total = train.total_steps(rat_config, at.run.steps_per_epoch)
    optimizer = train.build_optimizer(rat_config, total)
    rat_step = jax.jit(train.make_train_step(rat_config, at.run.model,
                                             train.build_objective(rat_config, total, at.run.model), optimizer))
    at_state, at_metrics = at.step(at.state, at.batch)
    # RAT's optimiser chains the projections (their states are empty): same SGD state, more transforms.
    rat_start = at.state.replace(opt_state=optimizer.init(at.state.params))
    rat_state, rat_metrics = rat_step(rat_start, at.batch)
    for step_metrics in (at_metrics, rat_metrics):
        assert all(np.isfinite(float(v)) for v in step_metrics.values()), step_metrics
    assert max_abs_diff(at_state.params, at.state.params) > 0.0
    # Same key, same PGD examples, same loss: RAT is the AT update followed by the Parseval retraction.
    retracted = projections.project_merge_simplex(projections.apply_retraction(at_state.params, beta))
    assert max_abs_diff(rat_state.params, retracted) < 1e-6
    assert max_abs_diff(rat_state.params, at_state.params) > 1e-3


def test_rat_loss_form_adds_the_lipschitz_term(tiny_tet):
    config = tiny_config({"strategy": "rat", "rat.form": "loss"})
    objective = train.build_objective(config, 16, tiny_tet.run.model)
    params = tiny_tet.state.params
    logits_tb = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 10))
    batch = {"label": jnp.arange(4) % 10}
    total, terms = objective(losses.Outputs(logits_tb, ()), batch, params, jnp.zeros((), jnp.int32))
    assert set(terms) == {"tet", "tet_weight", "lipschitz", "lipschitz_weight"}
    np.testing.assert_allclose(float(terms["lipschitz"]),
                               float(losses.lipschitz_penalty(params, config.rat.beta)), rtol=1e-6)
    np.testing.assert_allclose(float(total), float(terms["tet"] + terms["lipschitz"]), rtol=1e-6)
    # The default RAT form retracts after the step instead of adding the term.
    assert "lipschitz" not in train.build_objective(tiny_config({"strategy": "rat"}), 16)(
        losses.Outputs(logits_tb, ()), batch, params, jnp.zeros((), jnp.int32))[1]


@pytest.mark.usefixtures("fashion_mnist")
def test_rat_step_keeps_wrn_merge_coefficients_on_the_simplex():
    config = tiny_config({"strategy": "rat", "batch_size": 8, "at.steps": 1, "model.arch": "wrn16_4"})
    config.model_kwargs = ml_collections.ConfigDict(dict(widths=(4, 8, 8), stem=4))
    built = build(config)
    # Start off the simplex (sum 1.6): only the projection can bring the sum back to 1.
    off = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.array([0.9, 0.7], leaf.dtype) if projections.is_merge_param(path, leaf) else leaf,
        built.state.params)
    state, step_metrics = built.step(built.state.replace(params=off), built.batch)
    assert np.isfinite(float(step_metrics["loss"]))
    merges = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(state.params)
              if projections.is_merge_param(path, leaf)]
    assert len(merges) == 6  # WRN-16: three groups of two blocks
    for c in merges:
        assert c.shape == (2,) and float(jnp.min(c)) >= 0.0
        np.testing.assert_allclose(float(jnp.sum(c)), 1.0, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# the training loop: checkpoints, resume, metrics
# ----------------------------------------------------------------------------------------------------

@pytest.mark.usefixtures("fashion_mnist")
def test_resumed_run_matches_an_uninterrupted_one(tmp_path, capsys):
    overrides = {"checkpoint_every_steps": 2}
    interrupted, whole = str(tmp_path / "interrupted"), str(tmp_path / "whole")
    first = train.train_and_evaluate(tiny_config(dict(overrides, max_steps=5)), interrupted)
    # Stopped mid-epoch (8 steps per epoch): the latest checkpoint is step 5 and the record is partial.
    assert first["step"] == 5 and first.get("partial") is True
    assert saved_state(interrupted)[0] == 5
    assert [r["step"] for r in read_records(interrupted)] == [5]
    # A rerun with the same max_steps has nothing to train and keeps the record.
    again = train.train_and_evaluate(tiny_config(dict(overrides, max_steps=5)), interrupted)
    assert "resumed from step 5" in capsys.readouterr().out
    assert again["step"] == 5 and again["test_accuracy"] == first["test_accuracy"]
    assert saved_state(interrupted)[0] == 5 and [r["step"] for r in read_records(interrupted)] == [5]

    resumed = train.train_and_evaluate(tiny_config(overrides), interrupted)
    assert "resumed from step 5" in capsys.readouterr().out
    reference = train.train_and_evaluate(tiny_config(overrides), whole)

    def without_time(record):
        return {k: v for k, v in record.items() if k != "elapsed_s"}

    assert resumed["step"] == reference["step"] == 16
    assert without_time(resumed) == without_time(reference)
    records = {d: read_records(d) for d in (interrupted, whole)}
    for d, recs in records.items():
        assert [(r["epoch"], r["step"]) for r in recs] == [(1, 8), (2, 16)], d  # one record per epoch
        assert not any(r.get("partial") for r in recs)
    # The resumed epoch's averages cover all its steps, before and after the restart.
    assert [without_time(r) for r in records[interrupted]] == [without_time(r) for r in records[whole]]
    # Training time carries over the restart (kept in the checkpoint), it does not start again at 0.
    assert records[interrupted][0]["elapsed_s"] >= first["elapsed_s"] > 0
    (step_a, state_a), (step_b, state_b) = saved_state(interrupted), saved_state(whole)
    assert step_a == step_b == 16
    assert_trees_equal(state_a, state_b)  # params, BN statistics, optimiser state, key


def test_a_checkpoint_with_more_entries_than_the_state_restores_partially(tmp_path):
    """A checkpoint holding entries the train state lacks (here 'sums'): the state restores from it (only the
    entries it names are read), and the weights alone can be read without any target."""
    params = {"Dense_0": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    batch_stats = {"BatchNorm_0": {"mean": np.full((3,), 0.5, np.float32)}}
    opt_state = {"0": {"trace": {"Dense_0": {"kernel": np.ones((2, 3), np.float32)}}}}
    old = {"step": np.asarray(5, np.int32), "params": params, "batch_stats": batch_stats, "opt_state": opt_state,
           "key": np.asarray([0, 7], np.uint32),
           "sums": {"count": np.asarray(5.0, np.float32), "loss": np.asarray(11.5, np.float32)}}
    ckpt = Checkpoints(str(tmp_path / "checkpoints"), every_steps=1)
    ckpt.save(5, old, {"config": {}})
    ckpt.wait()
    zeros = functools.partial(jax.tree.map, jnp.zeros_like)
    target = train.TrainState(step=jnp.zeros((), jnp.int32), params=zeros(params), batch_stats=zeros(batch_stats),
                              opt_state=zeros(opt_state), key=jnp.zeros((2,), jnp.uint32))
    state, _ = ckpt.restore(target)
    assert int(state.step) == 5
    assert_trees_equal(state.params, params)
    assert_trees_equal(state.opt_state, opt_state)
    np.testing.assert_array_equal(state.key, [0, 7])
    weights = ckpt.restore_entries(["params", "batch_stats", "absent"])
    assert set(weights) == {"params", "batch_stats"}
    assert_trees_equal(weights["batch_stats"], batch_stats)
    ckpt.close()


def parse_main_flags(*overrides: str) -> ml_collections.ConfigDict:
    """The config ``tgo_train.main`` gets from ``--config <tiny> *overrides``."""
    return parse_config(TINY_CONFIG, *overrides)


def test_every_config_flag_the_readme_names_parses_with_the_tiny_config():
    with open(os.path.join(REPO, "README.md")) as f:
        names = sorted({name.rstrip(".") for name in re.findall(r"--config\.([\w.]+)", f.read())})
    assert {"model_kwargs.remat_blocks", "model_kwargs.conv_impl", "neuron.fused"} <= set(names), names
    defaults = tiny_config()
    for name in names:
        default = functools.reduce(getattr, name.split("."), defaults)  # AttributeError: not declared
        value = (not default) if isinstance(default, bool) else default  # a bool flips, to see it applied
        config = parse_main_flags(f"--config.{name}={value}")
        assert functools.reduce(getattr, name.split("."), config) == value, name
    # The speed options reach the model.
    config = parse_main_flags("--config.model_kwargs.remat_blocks=True", "--config.model_kwargs.conv_impl=xla")
    model = train.build_model(config, data.dataset_info("fashion_mnist"))
    assert model.remat_blocks is True and model.conv_impl == "xla"


# ----------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------

@pytest.mark.usefixtures("fashion_mnist")
def test_cli_trains_and_writes_checkpoints_and_config(tmp_path):
    workdir = tmp_path / "cli"
    out = run_program("tgo_train.main", "--config", TINY_CONFIG, "--workdir", str(workdir), "--config.max_steps=2")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "final:" in out.stdout
    with open(workdir / "config.json") as f:
        saved = json.load(f)
    assert saved["max_steps"] == 2 and saved["model"]["arch"] == "small"
    assert saved_state(str(workdir))[0] == 2
    assert [r["step"] for r in read_records(str(workdir))] == [2]


@pytest.mark.usefixtures("fashion_mnist")
def test_cli_rejects_a_bad_strategy_naming_it(tmp_path):
    out = run_program("tgo_train.main", "--config", TINY_CONFIG, "--workdir", str(tmp_path / "bad"),
                      "--config.strategy=bogus")
    assert out.returncode != 0
    assert "strategy" in out.stderr and "'bogus'" in out.stderr, out.stderr[-3000:]
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_experiment_help_lists_its_flags():
    out = run_program("tgo_train.experiment", "--help", timeout=60)
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    assert "vanilla vs TGO" in text
    for flag in ("--workdir", "--epochs", "--train_subset", "--num_examples", "--eot"):
        assert flag in text, (flag, text)


# ----------------------------------------------------------------------------------------------------
# CIFAR configs and data
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", sorted(cifar.DATASETS))
@pytest.mark.parametrize("arch", cifar.ARCHS)
@pytest.mark.parametrize("strategy", cifar.STRATEGIES)
@pytest.mark.parametrize("method", cifar.METHODS)
def test_cifar_config_parses_every_combination(dataset, arch, strategy, method):
    c = cifar.get_config(f"{dataset},{arch},{strategy},{method}")
    assert (c.dataset, c.model.arch, c.strategy) == (dataset, arch, strategy)
    assert c.model.num_classes == cifar.DATASETS[dataset] == data.dataset_info(dataset).num_classes
    tgo = method == "tgo"
    assert c.margin.enabled == tgo and (c.neuron.kind == "noisy") == tgo
    if tgo:
        assert c.margin.lambda_max == cifar.LAMBDA_MAX[arch]
    assert (c.optim.weight_decay == 0.0) == (strategy == "rat")
    assert c.model.num_steps == 4 and c.optim.lr == 0.1 and c.epochs == 300 and c.augment
    train.build_objective(c, 10)  # the strategy and margin options are accepted


@pytest.mark.parametrize("arg, field", [
    ("cifar10,wrn16_4,tet", "dataset,arch,strategy,method"),
    ("cifar10,wrn16_4,tet,vanilla,extra", "dataset,arch,strategy,method"),
    ("mnist,wrn16_4,tet,vanilla", "dataset"),
    ("cifar10,resnet18,tet,vanilla", "arch"),
    ("cifar10,vgg11,ce,vanilla", "strategy"),
    ("cifar100,vgg11,rat,tgo2", "method"),
])
def test_cifar_config_rejects_a_bad_argument(arg, field):
    with pytest.raises(ValueError, match=field):
        cifar.get_config(arg)


@pytest.mark.parametrize("arch", cifar.ARCHS)
def test_cifar_tgo_rat_train_step_traces(arch):
    config = cifar.get_config(f"cifar10,{arch},rat,tgo")
    info = data.dataset_info("cifar10")
    model = train.build_model(config, info)
    total = train.total_steps(config, 390)
    optimizer = train.build_optimizer(config, total)
    objective = train.build_objective(config, total, model)
    batch = {"image": jax.ShapeDtypeStruct((2, *info.shape), jnp.float32),
             "label": jax.ShapeDtypeStruct((2,), jnp.int32)}
    state = jax.eval_shape(lambda x: train.create_train_state(config, model, optimizer, x), batch["image"])
    new_state, step_metrics = jax.eval_shape(train.make_train_step(config, model, objective, optimizer), state, batch)
    assert jax.tree.map(lambda s: (s.shape, s.dtype), new_state) == jax.tree.map(lambda s: (s.shape, s.dtype),
                                                                                  state)
    assert {"loss", "tet", "margin", "margin_weight", "accuracy", "neighbour_share"} <= set(step_metrics)
    assert all(m.shape == () for m in step_metrics.values())
    if arch == "wrn16_4":
        assert any(projections.is_merge_param(p, leaf)
                   for p, leaf in jax.tree_util.tree_leaves_with_path(state.params))


def test_prepare_cifar_offline_fails_fast_naming_data_dir(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    monkeypatch.setitem(data.tfds._DOWNLOAD_HOSTS, "cifar10", UNREACHABLE_HOSTS)
    config = cifar.get_config("cifar10,vgg11,tet,vanilla")
    config.data_dir = str(tmp_path)
    outcome = {}

    def attempt():
        try:
            train.prepare(config)
        except Exception as e:  # noqa: BLE001 - the outcome is checked below
            outcome["error"] = e

    start = time.monotonic()
    thread = threading.Thread(target=attempt, daemon=True)  # a hang fails the test instead of blocking it
    thread.start()
    thread.join(60.0)
    elapsed = time.monotonic() - start
    assert not thread.is_alive(), "train.prepare still waiting for CIFAR-10 after 60 s offline"
    assert elapsed < 15.0, f"offline failure took {elapsed:.1f} s"
    error = outcome.get("error")
    assert isinstance(error, data.DataUnavailableError), repr(error)
    assert f"data_dir={tmp_path}" in str(error)


def test_cifar_mock_data_through_prepare_and_train_step(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(data.tfds, "_download_reachable", lambda name: True)  # mock_data replaces the download
    config = cifar.get_config("cifar10,wrn16_4,tet,vanilla")
    config.data_dir = str(tmp_path)
    config.model.arch = "small"
    config.model.num_steps = 2
    config.model_kwargs = ml_collections.ConfigDict(dict(channels=(4, 8), hidden=16, in_channels=3))
    config.batch_size = 4
    try:
        with tfds.testing.mock_data(num_examples=8):
            built = build(config)
    finally:
        data.clear_cache()
    images, labels = built.run.splits["train"]
    assert images.shape == (8, 32, 32, 3) and built.run.steps_per_epoch == 2
    assert built.run.model.in_channels == 3 and built.run.config.augment
    state = built.state
    for batch in train_batches(built.run, 2):
        state, step_metrics = built.step(state, batch)
        assert all(np.isfinite(float(v)) for v in step_metrics.values()), step_metrics
    assert int(state.step) == 2
    assert max_abs_diff(state.params, built.state.params) > 0.0
