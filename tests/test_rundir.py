"""The run directory (tgo_train/rundir.py): names, whole-file writes, metrics, config, finished, same config."""
from __future__ import annotations

import os

import pytest

from tgo_train import rundir
from tgo_train.configs import fmnist_tgo


def make_run(tmp_path, config, records, steps=()):
    """A workdir holding ``config``, ``records`` as metrics.jsonl and empty checkpoint folders ``steps``."""
    os.makedirs(tmp_path, exist_ok=True)
    rundir.write_json(rundir.file(tmp_path, rundir.CONFIG), rundir.plain(config))
    rundir.write_jsonl(rundir.file(tmp_path, rundir.METRICS), records)
    for step in steps:
        os.makedirs(os.path.join(rundir.checkpoint_dir(tmp_path), str(step)))
    return str(tmp_path)


def test_write_atomic_replaces_whole_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "eval.md"
    rundir.write_atomic(path, "one\n")
    rundir.write_atomic(path, "two\n")
    assert path.read_text() == "two\n" and os.listdir(tmp_path) == ["eval.md"]


def test_read_json_of_a_missing_and_a_damaged_file(tmp_path):
    assert rundir.read_json(tmp_path / "none.json") is None
    rundir.write_json(tmp_path / "a.json", {"x": (1, 2)})
    assert rundir.read_json(tmp_path / "a.json") == {"x": [1, 2]}
    (tmp_path / "bad.json").write_text('{"x": ')
    with pytest.raises(ValueError, match="bad.json cannot be read"):
        rundir.read_json(tmp_path / "bad.json")
    (tmp_path / rundir.CONFIG).write_text("{")
    with pytest.raises(ValueError, match=f"{rundir.CONFIG} cannot be read"):
        rundir.read_config(tmp_path)


def test_read_metrics_drops_a_torn_final_line_only(tmp_path):
    assert rundir.read_metrics(tmp_path) == []
    path = rundir.file(tmp_path, rundir.METRICS)
    with open(path, "w") as f:
        f.write('{"epoch": 1}\n{"epoch": 2, "st')
    warnings = []
    assert rundir.read_metrics(tmp_path, warn=warnings.append) == [{"epoch": 1}]
    assert "torn final record at line 2" in warnings[0]
    with open(path, "w") as f:
        f.write('{"epoch": 1, "st\n{"epoch": 2}\n')
    with pytest.raises(ValueError, match="line 1 is not a JSON record"):
        rundir.read_metrics(tmp_path)


def test_finished_needs_the_last_epoch_whole_and_its_checkpoint(tmp_path):
    config = fmnist_tgo.get_config()
    config.epochs = 2
    one, two = {"epoch": 1, "step": 20}, {"epoch": 2, "step": 40}
    assert not rundir.finished(tmp_path / "none", config)
    assert not rundir.finished(make_run(tmp_path / "a", config, [one], steps=[20]))
    assert rundir.finished(make_run(tmp_path / "b", config, [one, two], steps=[20, 40]))
    assert rundir.finished(tmp_path / "b", config)
    # a crash after the last record, before its checkpoint: the last steps are trained again
    assert not rundir.finished(make_run(tmp_path / "c", config, [one, two], steps=[20]))
    # a preempted last epoch (partial record)
    assert not rundir.finished(make_run(tmp_path / "d", config, [one, dict(two, step=30, partial=True)], steps=[30]))
    # another config: more epochs to train
    config.epochs = 3
    assert not rundir.finished(tmp_path / "b", config)


def test_finished_at_max_steps_also_within_an_epoch(tmp_path):
    config = fmnist_tgo.get_config()
    config.epochs, config.max_steps = 2, 30
    partial = {"epoch": 2, "step": 30, "partial": True}
    assert rundir.finished(make_run(tmp_path, config, [{"epoch": 1, "step": 20}, partial], steps=[30]))
    config.max_steps = 35
    assert not rundir.finished(tmp_path, config)


def test_config_changes_allow_harmless_fields_and_name_the_others():
    stored = rundir.plain(fmnist_tgo.get_config())
    new = fmnist_tgo.get_config()
    new.progress, new.eval_subset = not new.progress, 123
    refused, allowed = rundir.config_changes(stored, new)
    assert not refused and {c.field for c in allowed} == {"progress", "eval_subset"}
    new.epochs += 1
    new.neuron.kind = "lif"
    refused, _ = rundir.config_changes(stored, new)
    assert [str(c) for c in refused] == [f"epochs {stored['epochs']} → {new.epochs}", "neuron.kind 'noisy' → 'lif'"]
    del stored["dtype"]  # written before the option existed: its default (the same here)
    assert rundir.config_changes(stored, fmnist_tgo.get_config()) == ([], [])
