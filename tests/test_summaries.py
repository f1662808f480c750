"""TensorBoard event files (tgo_train/summaries.py) and progress output (tgo_train/progress.py)."""
from __future__ import annotations

import contextlib
import io
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from tgo_train import robustness, train
from tgo_train.progress import Progress
from tests.conftest import tiny_config


def read_scalars(logdir: str) -> dict:
    """tag -> [(step, value)] from every event file of ``logdir``, as TensorBoard reads them."""
    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, fashion_mnist):
    """One epoch of 8 steps of the tiny net with the margin penalty, train scalars every 3 steps."""
    config = tiny_config({"epochs": 1, "log_every_steps": 3, "eval_subset": 64, "margin.enabled": True})
    workdir = str(tmp_path_factory.mktemp("summaries") / "tiny")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        record = train.train_and_evaluate(config, workdir)
    return config, workdir, record, buffer.getvalue()


def test_training_event_file_reads_back(tiny_run):
    config, workdir, record, _ = tiny_run
    assert any(f.startswith("events.out.tfevents.") for f in os.listdir(workdir))
    scalars = read_scalars(workdir)
    for name in ("loss", "tet", "margin", "margin_weight", "learning_rate", "spike_rate", "neighbour_share",
                 "accuracy"):
        assert [s for s, _ in scalars[f"train/{name}"]] == [3, 6], name
    steps = train.total_steps(config, 8)
    lr = train.learning_rate(config, steps)
    np.testing.assert_allclose([v for _, v in scalars["train/learning_rate"]], [lr(2), lr(5)], rtol=1e-6)
    # λ follows its schedule (cosine warm-up from 0) and the per-epoch record matches metrics.jsonl
    lam = [v for _, v in scalars["train/margin_weight"]]
    assert 0 <= lam[0] < lam[1] <= config.margin.lambda_max
    assert scalars["epoch/test_accuracy"] == [(8, pytest.approx(record["test_accuracy"]))]
    # Percent, as eval.json: a count of the 64 test images times 100 / 64 (a fraction would be below 1).
    assert 1 < record["test_accuracy"] <= 100 and 1 < record["train_accuracy"] <= 100
    correct = record["test_accuracy"] * config.eval_subset / 100
    assert correct == pytest.approx(round(correct))
    assert [s for s, _ in scalars["epoch/train_loss"]] == [8]


def read_hparams(logdir: str) -> tuple:
    """(hyperparameters {name: value}, metric tags) of ``logdir``'s event files, as TensorBoard's HPARAMS tab
    reads them."""
    acc = event_accumulator.EventAccumulator(logdir)
    acc.Reload()
    content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
    start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
    experiment = hparams_metadata.parse_experiment_plugin_data(content[hparams_metadata.EXPERIMENT_TAG])
    values = {name: getattr(v, v.WhichOneof("kind")) for name, v in start.hparams.items()}
    return values, [m.name.tag for m in experiment.metric_infos]


def test_training_logs_its_config_as_hyperparameters(tiny_run):
    config, workdir, _, _ = tiny_run
    values, metrics = read_hparams(workdir)
    assert values["margin.lambda_max"] == pytest.approx(config.margin.lambda_max)
    assert values["margin.enabled"] is True and values["neuron.kind"] == config.neuron.kind
    assert values["optim.lr"] == pytest.approx(config.optim.lr) and values["epochs"] == 1
    assert "progress" not in values and "log_every_steps" not in values  # bookkeeping, not hyperparameters
    assert metrics == ["epoch/test_accuracy", "epoch/train_loss"]  # tags the training run writes
    assert all(tag in read_scalars(workdir) for tag in metrics)


def test_evaluation_results_read_back(tiny_run):
    _, workdir, _, _ = tiny_run
    results = {"step": 8, "tables": {"8/255": {"Clean": 31.0, "PGD10": 2.5}},
               "eps_sweep": {"attack": "PGD10", "accuracy": {"2/255": 20.0, "8/255": 2.5}}}
    robustness.write_summaries(workdir, results)
    scalars = read_scalars(workdir)
    assert scalars["eval/Clean_8/255"] == [(8, 31.0)]
    assert scalars["eval/PGD10_8/255"] == [(8, 2.5)]
    assert scalars["eval_sweep/PGD10_2/255"] == [(8, 20.0)]
    assert "train/loss" in scalars  # the training events are still there


def test_epoch_line_says_where_the_time_went(tiny_run):
    *_, printed = tiny_run
    lines = [line for line in printed.splitlines() if line.startswith("epoch=")]
    assert len(lines) == 1 and "time: train" in lines[0] and "clean eval" in lines[0]
    assert "\r" not in printed


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal(capsys):
    log = io.StringIO()
    bar = Progress(10, stream=log)
    for n in range(1, 11):
        bar.update(n)
    bar.write("epoch=1 done")
    bar.close()
    assert log.getvalue() == ""  # nothing redrawn into a redirected log
    assert capsys.readouterr().out == "epoch=1 done\n"

    terminal = _Terminal()
    bar = Progress(10, stream=terminal, desc="run")
    bar.update(10)
    bar.close()
    assert "\r" in terminal.getvalue() and "10/10" in terminal.getvalue()
