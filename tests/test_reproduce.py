"""Tests for the reproduction program (tgo_train/reproduce.py, tgo_train/reproduce_report.py).

The end-to-end test runs the ``ci`` size (tiny nets, 128 training images) for two models and two
seeds, stops mid-grid, reruns, and checks that finished runs are skipped and the report says what is
missing. The verdict rule and the claims are checked on made-up numbers.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from tgo_jax import data
from tgo_train import reproduce, reproduce_report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI_TIMEOUT_S = 300
MODELS = ("vanilla", "nlif")  # one LIF and one Noisy-LIF model (noise on and off)
ATTACKS = ("Clean", "FGSM", "Square")  # two paper columns, one of the strong suite
EPS = (8 / 255,)


def _record_path(workdir, model, seed):
    return os.path.join(workdir, "ci", model, f"seed{seed}", "reproduce.json")


def _cli(workdir, *extra):
    """The program in a subprocess (its compilation cache and XLA's lowest CPU optimisation level keep
    the second seed and the reruns cheap)."""
    args = [sys.executable, "-m", "tgo_train.reproduce", f"--workdir={workdir}", "--size=ci", "--seeds=0,1",
            f"--models={','.join(MODELS)}", f"--attacks={','.join(ATTACKS)}", "--eps=8/255", *extra]
    env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS="--xla_backend_optimization_level=0")
    out = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_grid_end_to_end_with_resume(tmp_path):
    try:
        data.load("fashion_mnist")
    except data.DataUnavailableError as e:
        pytest.skip(f"Fashion-MNIST is not available: {e}")
    workdir = str(tmp_path)
    _cli(workdir, "--stop_after=1")  # stopped after the first run
    assert os.path.exists(_record_path(workdir, "vanilla", 0))
    assert not os.path.exists(os.path.join(workdir, "ci", "nlif"))
    text = open(os.path.join(workdir, "RESULTS.md")).read()
    assert "INCOMPLETE: 0 of 4 runs finished" in text and "nlif/seed0" in text and "size ci" in text
    assert "missing" in text

    # An evaluation cut short: a cell lost from the record is recomputed, nothing else.
    path = _record_path(workdir, "vanilla", 0)
    record = json.load(open(path))
    kept = record["accuracy"]["on"]["8/255"]["Clean"]
    del record["accuracy"]["on"]["8/255"]["FGSM"]
    json.dump(record, open(path, "w"))
    out = _cli(workdir)
    assert "vanilla seed 0 (2 columns) ->" in out  # resumed for its missing cell ...
    record = json.load(open(path))
    assert record["accuracy"]["on"]["8/255"]["Clean"] == kept and "FGSM" in record["accuracy"]["on"]["8/255"]
    assert int(record["metrics"][-1]["step"]) == record["step"]  # ... without training again

    mtimes = {(m, s): os.path.getmtime(_record_path(workdir, m, s)) for m in MODELS for s in (0, 1)}
    assert _cli(workdir).count("done, skipped") == 8  # everything finished: 4 runs x (paper, all columns)
    assert mtimes == {(m, s): os.path.getmtime(_record_path(workdir, m, s)) for m in MODELS for s in (0, 1)}

    text = open(os.path.join(workdir, "RESULTS.md")).read()
    assert "Grid: complete" in text and "(noise off)" in text and "(a) TGO raises" in text
    results = json.load(open(os.path.join(workdir, "results", "results.json")))
    assert results["complete"] and results["size"] == "ci"
    assert {(r["model"], r["seed"]) for r in results["runs"]} == {(m, s) for m in MODELS for s in (0, 1)}
    for r in results["runs"]:
        assert r["config"]["seed"] == r["seed"] and r["train_commit"]
        assert set(r["accuracy"]) == ({"on", "off"} if r["model"] == "nlif" else {"on"})
        assert 0 <= r["analysis"]["on"]["neighbour_share"] <= 1 and r["analysis"]["on"]["jacobian_norm"] >= 0
    agg = results["aggregate"]["nlif"]["accuracy"]["off"]["8/255"]["FGSM"]
    assert agg["n"] == 2 and len(agg["values"]) == 2 and agg["std"] is not None
    assert os.path.exists(os.path.join(workdir, "results", "accuracy.png"))
    worst = results["aggregate"]["nlif"]["accuracy"]["on"]["8/255"]
    for r in results["runs"]:  # the worst case is at most every column it is taken over
        cells = r["accuracy"]["on"]["8/255"]
        assert cells["Worst (all)"] <= min(cells[a] for a in ATTACKS) + 1e-9
        assert cells["Worst (all)"] <= cells["Worst (paper)"] <= min(cells["Clean"], cells["FGSM"]) + 1e-9
    assert worst["Worst (all)"]["n"] == 2


def test_other_config_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = reproduce.run_config("vanilla", 0, reproduce.SIZES["ci"]).to_dict()
    config["optim"]["lr"] = 1.0
    (run_dir / "reproduce.json").write_text(json.dumps({"config": config}))
    with pytest.raises(ValueError, match="optim.lr 1.0 → 0.05"):
        reproduce.run_one(str(run_dir), "vanilla", 0, "ci", ATTACKS, EPS)


def test_grid_configs():
    small = reproduce.SIZES["small"]
    configs = {m: reproduce.run_config(m, 3, small) for m in reproduce.MODELS}
    assert all(c.seed == 3 for c in configs.values())
    noisy = {m for m, c in configs.items() if c.neuron.kind == "noisy"}
    margin = {m for m, c in configs.items() if c.margin.enabled}
    assert noisy == {"nlif", "tgo", "at_tgo", "rat_tgo"} and margin == {"mc", "tgo", "at_tgo", "rat_tgo"}
    assert {m: c.strategy for m, c in configs.items() if c.strategy != "tet"} == {
        "at": "at", "at_tgo": "at", "rat": "rat", "rat_tgo": "rat"}
    assert [m for m, c in configs.items() if c.sr.enabled] == ["sr"]
    with pytest.raises(ValueError, match="model must be one of"):
        reproduce.run_config("vgg", 0, small)
    with pytest.raises(ValueError, match="unknown attack 'PGD7x'"):
        reproduce.attack_suite(["Clean", "PGD7x"], eps=0.1, eot=1, size=small)
    assert [n for n, _ in reproduce.attack_suite(reproduce.ATTACKS, eps=0.1, eot=1, size=small)] == list(
        reproduce.ATTACKS)


def test_cells_of_other_settings_are_stale():
    small = reproduce.SIZES["small"]
    old = dict(dataclasses.asdict(small), mtpgd_steps=4)
    old.pop("mtpgd_targets")  # a record from before the field existed: 9 targets
    record = {"size_spec": old, "accuracy": {"on": {"0.1": {"Clean": 88.0, "PGD10": 10.0, "MTPGD": 40.0}}},
              "cell_spec": {"on": {"0.1": {"PGD10": reproduce.cell_spec("PGD10", dataclasses.asdict(small), False)}}}}
    assert reproduce.stale_cells(record, "on", "0.1", small, stochastic=False) == ["MTPGD"]
    record["cell_spec"]["on"]["0.1"]["MTPGD"] = reproduce.cell_spec("MTPGD", dataclasses.asdict(small), False)
    assert reproduce.stale_cells(record, "on", "0.1", small, stochastic=False) == []
    assert reproduce.stale_cells(record, "on", "0.1", small, stochastic=True) == ["PGD10", "MTPGD"]  # EoT


def test_compare_rule():
    assert reproduce_report.compare([50, 52, 51], [40, 41, 39])["verdict"] == "higher"
    assert reproduce_report.compare([40, 41, 39], [50, 52, 51])["verdict"] == "lower"
    assert reproduce_report.compare([50, 40, 60], [49, 51, 50])["verdict"] == "no clear difference"
    assert reproduce_report.compare([50], [40, 41])["verdict"] == "undecided"
    assert reproduce_report.compare([], [40])["verdict"] == "missing"
    c = reproduce_report.compare([2.0, 4.0], [1.0, 1.0])  # d = 2, se = sqrt(2/2) = 1: exactly 2 se
    assert c["diff"] == pytest.approx(2.0) and c["se"] == pytest.approx(1.0) and c["verdict"] == "no clear difference"


def _fake(model, seed, fgsm, share):
    cells = {a: fgsm for a in reproduce_report.CLAIM_ATTACKS}
    return {"model": model, "seed": seed, "accuracy": {"on": {"8/255": cells}},
            "analysis": {"on": {"neighbour_share": share, "grad_l1": 1.0 + 0.01 * seed}}}


def test_claims_follow_the_rule():
    records = [_fake("vanilla", s, 40 + s, 0.30 + 0.001 * s) for s in range(3)]
    records += [_fake("tgo", s, 60 + s, 0.18 + 0.001 * s) for s in range(3)]  # drop 40 %
    records += [_fake("mc", s, 40 - s, 0.25) for s in range(3)]  # no better than vanilla
    out = reproduce_report.claims(records, ["8/255"])
    assert out["a"]["verdict"] == "holds"
    assert out["c"]["verdict"].startswith("holds")
    assert out["b"]["parts"]["MC alone helps"].startswith("does not hold")
    assert out["b"]["parts"]["NLIF alone helps"] == "not decided: runs missing"
    assert out["d"]["verdict"] == "does not hold (no clear difference)"
    records = [r for r in records if r["model"] != "tgo"] + [_fake("tgo", s, 60 + s, 0.27) for s in range(3)]
    assert reproduce_report.claims(records, ["8/255"])["c"]["verdict"].startswith("partly holds")


def test_load_needs_the_first_seed_of_every_model(tmp_path):
    cells = {a: 50.0 for a in ("Clean", "FGSM", "RFGSM", "PGD10")}
    runs = [{"model": m, "seed": 0, "metrics": [{"epoch": 2, "test_accuracy": 0.9}],
             "accuracy": {"on": {"8/255": dict(cells)}}} for m in ("vanilla", "tgo")]
    results = {"size": "small", "size_spec": {}, "seeds": [0, 1], "complete": False, "eps_labels": ["8/255"],
               "runs": runs, "aggregate": {m: {"accuracy": {"on": {"8/255": {}}}} for m in ("vanilla", "tgo")}}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "results.json").write_text(json.dumps(results))
    out = reproduce_report.load(str(tmp_path), ["vanilla", "tgo"])
    assert out["workdirs"]["tgo"] == os.path.join(str(tmp_path), "small", "tgo", "seed0")
    assert out["final"]["vanilla"]["test_accuracy"] == 0.9
    assert reproduce_report.load(str(tmp_path), ["vanilla", "mc"]) is None  # mc has no run
    del runs[1]["accuracy"]["on"]["8/255"]["PGD10"]
    (tmp_path / "results" / "results.json").write_text(json.dumps(results))
    assert reproduce_report.load(str(tmp_path), ["vanilla", "tgo"]) is None  # a column missing
    assert reproduce_report.load(str(tmp_path / "nowhere"), ["vanilla"]) is None


def test_grid_runs_the_ablation_over_every_seed_before_the_other_models(monkeypatch, tmp_path):
    order = []
    monkeypatch.setattr(reproduce, "_complete", lambda *a: False)
    monkeypatch.setattr(reproduce, "write_report", lambda *a, **k: None)
    monkeypatch.setattr(reproduce, "run_one", lambda run_dir, model, seed, size, names, eps:
                        order.append((len(names), model, seed)))
    reproduce.run_grid(str(tmp_path), [0, 1], "ci", ["at", "vanilla", "tgo"], ["Clean", "FGSM", "Square"], EPS)
    paper, all_ = 2, 3
    assert order == [(paper, "vanilla", 0), (paper, "tgo", 0), (paper, "vanilla", 1), (paper, "tgo", 1),
                     (paper, "at", 0), (paper, "at", 1),
                     (all_, "vanilla", 0), (all_, "tgo", 0), (all_, "vanilla", 1), (all_, "tgo", 1),
                     (all_, "at", 0), (all_, "at", 1)]
