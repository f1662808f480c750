"""The runs the notebooks train or load (tgo_train/notebook_runs.py)."""
from __future__ import annotations

import json

import pytest

from tgo_train import notebook_runs
from tgo_train.configs import fmnist_tgo, fmnist_vanilla, grid


def test_check_size():
    assert notebook_runs.check_size("ci") == "ci"
    with pytest.raises(ValueError, match="TGO_NOTEBOOK_SIZE.*'huge'"):
        notebook_runs.check_size("huge")


@pytest.mark.parametrize("size", ["ci", "full"])
def test_ablation_grid_switches_only_its_parts(size):
    configs = {n: notebook_runs.ablation_config(n, size, train_subset=640, batch_size=32)
               for n in grid.ABLATION}
    for name, (margin, kind) in grid.ABLATION.items():
        c = configs[name]
        assert (c.margin.enabled, c.neuron.kind, c.epochs, c.train_subset) == (margin, kind, 1, 640)
    # vanilla is fmnist_vanilla at the same size, except the margin strength that is switched off anyway
    vanilla = configs["vanilla"].to_dict()
    reference = notebook_runs.reduced_config("vanilla", size).to_dict()
    reference.update(train_subset=640, batch_size=32)
    for d in (vanilla, reference):
        d["margin"].pop("lambda_max")
    assert vanilla == reference
    assert (configs["tgo"].model_kwargs.get("hidden") == 16) == (size == "ci")


def test_reduced_config_keeps_the_experiment_model():
    full = notebook_runs.reduced_config("tgo", "full")
    base = fmnist_tgo.get_config()
    assert (full.epochs, full.train_subset) == (1, 20_000)
    assert full.model.to_dict() == base.model.to_dict() and full.neuron.to_dict() == base.neuron.to_dict()
    assert notebook_runs.reduced_config("vanilla", "full").margin.enabled == fmnist_vanilla.get_config().margin.enabled


def _workdir(tmp_path, config, records):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict(), default=str))
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(tmp_path)


def test_check_cached_names_the_differing_fields(tmp_path):
    config = notebook_runs.reduced_config("tgo", "ci")
    notebook_runs.check_cached(config, str(tmp_path))  # nothing there yet
    workdir = _workdir(tmp_path, config, [])
    notebook_runs.check_cached(config, workdir)  # the same config
    harmless = notebook_runs.reduced_config("tgo", "ci")
    harmless.eval_subset = 32
    notebook_runs.check_cached(harmless, workdir)  # how it is evaluated does not change the run
    other = notebook_runs.reduced_config("tgo", "ci")
    other.epochs = 2
    with pytest.raises(ValueError, match="epochs 1 → 2"):
        notebook_runs.check_cached(other, workdir)
