"""Tests for the reproduction program (tgo_train/reproduce.py) and its records, claims and report (repro_*.py,
reproduce_report.py).

The end-to-end test runs the ``ci`` size (tiny nets, 128 training images) for two models and two
seeds, stops mid-grid, reruns, and checks that finished runs are skipped, that each run's audit is in its
record and in the report, and that the report says what is missing. The verdict rule, the claims and their
exclusion of runs that failed an audit are checked on made-up numbers.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pytest

from tgo_jax import data
from tgo_train import repro_claims, repro_committed, repro_record, reproduce, reproduce_report, rundir
from tgo_train.configs import grid
from tgo_train.repro_record import RunRecord
from tgo_train.tables import eps_label, parse_eps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI_TIMEOUT_S = 300
MODELS = ("vanilla", "nlif")  # one LIF and one Noisy-LIF model (noise on and off)
# Two paper columns and one of the strong suite, the one that compiles fastest (the test is compile-bound).
ATTACKS = ("Clean", "FGSM", "Transfer-NoiseOff")
EPS = (8 / 255,)


def _record_path(workdir, model, seed):
    return os.path.join(workdir, "ci", model, f"seed{seed}", "reproduce.json")


def _cli(workdir, *extra):
    """The program in a subprocess (its compilation cache and the suite's XLA optimisation level,
    ``conftest.py``, keep the second seed and the reruns cheap)."""
    args = [sys.executable, "-m", "tgo_train.reproduce", f"--workdir={workdir}", "--size=ci", "--seeds=0,1",
            f"--models={','.join(MODELS)}", f"--attacks={','.join(ATTACKS)}", "--eps=8/255", *extra]
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_grid_end_to_end_with_resume(tmp_path, capsys):
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

    # Every run was audited after its strong suite; the ci size's transfer source is the vanilla model of the
    # run's seed (none for vanilla: c_transfer NOT RUN, saying why).
    for m in MODELS:
        for s in (0, 1):
            audit = json.load(open(_record_path(workdir, m, s)))["audit"]["8/255"]
            assert audit["spec"] == reproduce.audit_spec("ci") and set(audit["flags"]) == set(audit["checks"])
            assert set(audit["flags"].values()) <= {"PASS", "FAIL", "WARN", "NOT RUN"}
            assert audit["flags"]["a_unbounded"] != "NOT RUN" and audit["flags"]["b_single_step"] != "NOT RUN"
            assert audit["sources"] == ({} if m == "vanilla" else {f"vanilla-seed{s}": os.path.join(
                workdir, "ci", "vanilla", f"seed{s}")})
            assert (audit["flags"]["c_transfer"] == "NOT RUN") == (m == "vanilla")
            assert (f"Transfer-vanilla-seed{s}" in audit["accuracy"]) == (m != "vanilla")
            assert (audit["flags"]["e_noise_on_off"] == "NOT RUN") == (m == "vanilla")

    mtimes = {(m, s): os.path.getmtime(_record_path(workdir, m, s)) for m in MODELS for s in (0, 1)}
    # Everything finished, the audits included: 4 runs x (paper, all columns) are skipped. In this process:
    # nothing is compiled.
    reproduce.run_grid(workdir, [0, 1], "ci", MODELS, ATTACKS, EPS)
    assert capsys.readouterr().out.count("done, skipped") == 8
    assert mtimes == {(m, s): os.path.getmtime(_record_path(workdir, m, s)) for m in MODELS for s in (0, 1)}

    text = open(os.path.join(workdir, "RESULTS.md")).read()
    assert "Grid: complete" in text and "(noise off)" in text and "(a) TGO raises" in text
    assert "| audit |" in text and "Gradient-masking audit" in text and "has not been run" not in text
    records = [json.load(open(_record_path(workdir, m, s))) for m in MODELS for s in (0, 1)]
    vanilla_row = next(line for line in text.splitlines() if line.startswith("| vanilla (TET)"))
    assert vanilla_row.rstrip(" |").endswith(repro_claims.audit_text([RunRecord.from_json(r) for r in records[:2]]))
    results = json.load(open(os.path.join(workdir, "results", "results.json")))
    assert results["complete"] and results["size"] == "ci"
    assert {(r["model"], r["seed"]) for r in results["runs"]} == {(m, s) for m in MODELS for s in (0, 1)}
    for r in results["runs"]:
        assert r["config"]["seed"] == r["seed"] and r["train_commit"] and r["train_cpu_model"] == reproduce.cpu_model()
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
    config = grid.run_config("vanilla", 0, grid.SIZES["ci"]).to_dict()
    config["optim"]["lr"] = 1.0
    (run_dir / "reproduce.json").write_text(json.dumps({"model": "vanilla", "seed": 0, "config": config}))
    with pytest.raises(ValueError, match="optim.lr 1.0 → 0.05"):
        reproduce.run_one(str(run_dir), "vanilla", 0, "ci", ATTACKS, EPS)


def test_grid_configs():
    small = grid.SIZES["small"]
    configs = {m: grid.run_config(m, 3, small) for m in grid.MODELS}
    assert all(c.seed == 3 for c in configs.values())
    noisy = {m for m, c in configs.items() if c.neuron.kind == "noisy"}
    margin = {m for m, c in configs.items() if c.margin.enabled}
    assert noisy == {"nlif", "tgo", "at_tgo", "rat_tgo"} and margin == {"mc", "tgo", "at_tgo", "rat_tgo"}
    assert {m: c.strategy for m, c in configs.items() if c.strategy != "tet"} == {
        "at": "at", "at_tgo": "at", "rat": "rat", "rat_tgo": "rat"}
    assert [m for m, c in configs.items() if c.sr.enabled] == ["sr"]
    with pytest.raises(ValueError, match="model must be one of"):
        grid.run_config("vgg", 0, small)
    with pytest.raises(ValueError, match="unknown attack 'PGD7x'"):
        reproduce.attack_suite(["Clean", "PGD7x"], eps=0.1, eot=1, size=small)
    assert [n for n, _ in reproduce.attack_suite(grid.ATTACKS, eps=0.1, eot=1, size=small)] == list(
        grid.ATTACKS)


def test_cells_of_other_settings_are_stale():
    small = grid.SIZES["small"]
    old = dict(dataclasses.asdict(small), mtpgd_steps=4)  # a record evaluated with fewer MTPGD steps
    record = RunRecord.from_json({
        "model": "vanilla", "seed": 0, "size_spec": old,
        "accuracy": {"on": {"0.1": {"Clean": 88.0, "PGD10": 10.0, "MTPGD": 40.0}}},
        "cell_spec": {"on": {"0.1": {"PGD10": grid.cell_spec("PGD10", dataclasses.asdict(small), False)}}}})
    assert reproduce.stale_cells(record, "on", "0.1", small, stochastic=False) == ["MTPGD"]
    record.set_cell(("on", "0.1", "MTPGD"), 40.0, spec=grid.cell_spec("MTPGD", dataclasses.asdict(small), False))
    assert reproduce.stale_cells(record, "on", "0.1", small, stochastic=False) == []
    assert reproduce.stale_cells(record, "on", "0.1", small, stochastic=True) == ["PGD10", "MTPGD"]  # EoT


def test_the_strong_budget_size_leaves_the_small_records_as_they_are():
    """small_strong is a size of its own: a committed `small` record (made before ``strong_extra`` existed)
    keeps every cell under `small`; under small_strong only its strong cells would be evaluated again."""
    small, strong = grid.SIZES["small"], grid.SIZES["small_strong"]
    old = dataclasses.asdict(small)
    old.pop("strong_extra")
    record = RunRecord.from_json({"model": "tgo", "seed": 0, "size_spec": old, "accuracy": {"on": {"0.1": {
        "Clean": 88.0, "PGD40": 9.0, "APGD-T": 5.0, "Square": 30.0, "PGD100": 4.0}}}})
    assert reproduce.stale_cells(record, "on", "0.1", small, stochastic=True) == []
    assert reproduce.stale_cells(record, "on", "0.1", strong, stochastic=True) == ["APGD-T", "Square"]
    assert grid.run_config("tgo", 1, small).to_dict() == grid.run_config("tgo", 1, strong).to_dict()
    assert grid.attack_options("ASSG-search", dataclasses.asdict(strong))["steps"] == 100
    audit_small, audit_strong = grid.AUDITS["small"], grid.AUDITS["small_strong"]
    assert audit_small.steps == audit_strong.steps == 100 and audit_small.queries >= 1000
    assert "ASSG-search" in audit_strong.white_rows and "ASSG-search" not in audit_small.white_rows
    assert set(grid.AUDITS) == set(grid.SIZES)


def test_audit_transfer_sources_are_the_vanilla_model_and_the_next_seed_when_trained(tmp_path):
    workdir = str(tmp_path)
    for model, seed in (("vanilla", 2), ("tgo", 0), ("tgo", 2)):
        run_dir = repro_record.run_dir(workdir, "small", model, seed)
        os.makedirs(os.path.join(run_dir, "checkpoints", "100"))
        epochs = grid.SIZES["small"].epochs if (model, seed) != ("tgo", 0) else 1  # tgo/0 unfinished
        with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
            f.write(json.dumps({"epoch": epochs, "step": 100}) + "\n")
    sources = lambda model, seed: reproduce.transfer_sources(workdir, "small", model, seed, [0, 1, 2])
    # tgo/2: its next seed tgo/0 is unfinished.
    assert sources("tgo", 2) == {"vanilla-seed2": repro_record.run_dir(workdir, "small", "vanilla", 2)}
    assert list(sources("tgo", 1)) == ["tgo-seed2"]  # vanilla/1 not trained
    assert list(sources("vanilla", 1)) == ["vanilla-seed2"] and sources("vanilla", 2) == {}  # no vanilla/0
    assert sources("nlif", 1) == {}
    assert reproduce.transfer_sources(workdir, "ci", "tgo", 1, [1, 2]) == {}  # ci: the vanilla model only


def test_compare_rule():
    assert repro_claims.compare([50, 52, 51], [40, 41, 39])["verdict"] == "higher"
    assert repro_claims.compare([40, 41, 39], [50, 52, 51])["verdict"] == "lower"
    assert repro_claims.compare([50, 40, 60], [49, 51, 50])["verdict"] == "no clear difference"
    assert repro_claims.compare([50], [40, 41])["verdict"] == "undecided"
    assert repro_claims.compare([], [40])["verdict"] == "missing"
    c = repro_claims.compare([2.0, 4.0], [1.0, 1.0])  # d = 2, se = sqrt(2/2) = 1: exactly 2 se
    assert c["diff"] == pytest.approx(2.0) and c["se"] == pytest.approx(1.0) and c["verdict"] == "no clear difference"


def test_a_mixed_verdict_counts_the_losses_and_the_gains():
    higher, lower, unclear = ({"verdict": v} for v in ("higher", "lower", "no clear difference"))
    assert repro_claims.summarise([higher, lower, unclear]) == \
        "does not hold (1 of 3 comparisons significantly lower, 1 significantly higher)"
    assert repro_claims.summarise([lower, unclear]) == \
        "does not hold (1 of 2 comparisons significantly lower)"
    assert repro_claims.summarise([higher, unclear]).startswith("partly holds (1 of 2")


def _fake(model, seed, fgsm, share):
    cells = {a: fgsm for a in repro_claims.CLAIM_ATTACKS}
    return RunRecord.from_json({"model": model, "seed": seed, "accuracy": {"on": {"8/255": cells}},
                                "analysis": {"on": {"neighbour_share": share, "grad_l1": 1.0 + 0.01 * seed}}})


def test_claims_follow_the_rule():
    records = [_fake("vanilla", s, 40 + s, 0.30 + 0.001 * s) for s in range(3)]
    records += [_fake("tgo", s, 60 + s, 0.18 + 0.001 * s) for s in range(3)]  # drop 40 %
    records += [_fake("mc", s, 40 - s, 0.25) for s in range(3)]  # no better than vanilla
    out = repro_claims.claims(records, ["8/255"])
    assert out["a"]["verdict"] == "holds"
    assert out["c"]["verdict"].startswith("holds")
    assert out["b"]["parts"]["MC alone helps"].startswith("does not hold")
    assert out["b"]["parts"]["NLIF alone helps"] == "not decided: runs missing"
    assert out["d"]["verdict"] == "does not hold (no clear difference)"
    records = [r for r in records if r.model != "tgo"] + [_fake("tgo", s, 60 + s, 0.27) for s in range(3)]
    assert repro_claims.claims(records, ["8/255"])["c"]["verdict"].startswith("partly holds")
    # (f): SR ahead on the paper's columns, behind TGO in the worst case over all columns (masking-like).
    for r in records:
        r.set_cell(("on", "8/255", repro_claims.WORST_ALL), 50.0 + r.seed)
    records += [_fake("sr", s, 80 + s, 0.3) for s in range(3)]
    for r in records[-3:]:
        r.set_cell(("on", "8/255", repro_claims.WORST_ALL), 10.0 + r.seed)
    f = repro_claims.claims(records, ["8/255"])["f"]
    assert f["verdict"].startswith("does not hold")  # the verdict is the paper's columns'
    worst_part = [v for k, v in f["parts"].items() if "worst case" in k]
    assert worst_part == ["holds"]
    # (g): TGO over vanilla is decided (tgo 50+s vs vanilla 50+s: no gain) while AT/RAT runs are missing.
    g = repro_claims.claims(records, ["8/255"])["g"]
    assert g["parts"]["tgo over vanilla"] == "does not hold (no comparison significantly higher)"
    assert g["parts"]["at_tgo over at"] == "not decided: runs missing"
    assert g["verdict"] == "not decided: runs missing"


def test_load_needs_the_first_seed_of_every_model(tmp_path):
    cells = {a: 50.0 for a in ("Clean", "FGSM", "RFGSM", "PGD10")}
    runs = [{"model": m, "seed": 0, "metrics": [{"epoch": 2, "test_accuracy": 90.0}],
             "accuracy": {"on": {"8/255": dict(cells)}}} for m in ("vanilla", "tgo")]
    results = {"size": "small", "size_spec": {}, "seeds": [0, 1], "complete": False, "eps_labels": ["8/255"],
               "runs": runs, "aggregate": {m: {"accuracy": {"on": {"8/255": {}}}} for m in ("vanilla", "tgo")}}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "results.json").write_text(json.dumps(results))
    out = repro_committed.load(str(tmp_path), ["vanilla", "tgo"])
    assert out["workdirs"]["tgo"] == os.path.join(str(tmp_path), "small", "tgo", "seed0")
    assert out["final"]["vanilla"]["test_accuracy"] == 90.0
    assert repro_committed.load(str(tmp_path), ["vanilla", "mc"]) is None  # mc has no run
    del runs[1]["accuracy"]["on"]["8/255"]["PGD10"]
    (tmp_path / "results" / "results.json").write_text(json.dumps(results))
    assert repro_committed.load(str(tmp_path), ["vanilla", "tgo"]) is None  # a column missing
    assert repro_committed.load(str(tmp_path / "nowhere"), ["vanilla"]) is None


def test_grid_runs_the_ablation_over_every_seed_before_the_other_models(monkeypatch, tmp_path):
    order = []
    monkeypatch.setattr(reproduce, "_complete", lambda *a: False)
    monkeypatch.setattr(reproduce, "write_report", lambda *a, **k: None)
    monkeypatch.setattr(reproduce, "run_one", lambda run_dir, model, seed, size, names, eps:
                        order.append((len(names), model, seed)))
    monkeypatch.setattr(reproduce, "run_audits", lambda run_dir, seed, *a: order.append(("audit", run_dir)))
    reproduce.run_grid(str(tmp_path), [0, 1], "ci", ["at", "vanilla", "tgo"], ["Clean", "FGSM", "Square"], EPS)
    audits = [o[1] for o in order if o[0] == "audit"]
    order = [o for o in order if o[0] != "audit"]
    assert audits == [repro_record.run_dir(str(tmp_path), "ci", m, s) for m, s in (
        ("vanilla", 0), ("tgo", 0), ("vanilla", 1), ("tgo", 1), ("at", 0), ("at", 1))]  # after the strong suite
    paper, all_ = 2, 3
    assert order == [(paper, "vanilla", 0), (paper, "tgo", 0), (paper, "vanilla", 1), (paper, "tgo", 1),
                     (paper, "at", 0), (paper, "at", 1),
                     (all_, "vanilla", 0), (all_, "tgo", 0), (all_, "vanilla", 1), (all_, "tgo", 1),
                     (all_, "at", 0), (all_, "at", 1)]


def test_per_example_hits_round_trip_through_their_encoding():
    hits = {"on": {"8/255": {"FGSM": [1.0, 0.0, 1.0], "PGD10": [0.5, 1.0, 0.0]}},
            "off": {"0.1": {"Clean": [2 / 3, 1 / 3, 1.0]}}}
    encoded = repro_record.encode_per_example(RunRecord.from_json({"model": "tgo", "seed": 0, "per_example": hits}))
    assert encoded["on"]["8/255"] == {"FGSM": "1:101", "PGD10": "2:120"} and encoded["off"]["0.1"]["Clean"] == "3:213"
    decoded = repro_record.decode_per_example(encoded)
    assert decoded["off"]["0.1"]["Clean"] == pytest.approx(hits["off"]["0.1"]["Clean"])
    assert decoded["on"] == hits["on"]
    with pytest.raises(ValueError, match="shares of at most 9 draws"):
        repro_record.encode_per_example(RunRecord.from_json({"model": "tgo", "seed": 0,
                                                             "per_example": {"on": {"0.1": {"FGSM": [0.123]}}}}))


def _finished_record(model, seed, names, value=50.0):
    """A record of the ci size with every cell of ``names`` at both ε, as the program writes it."""
    size = dataclasses.asdict(grid.SIZES["ci"])
    config = json.loads(json.dumps(grid.run_config(model, seed, grid.SIZES["ci"]).to_dict(), default=str))
    noisy = config["neuron"]["kind"] == "noisy"
    noises = ("on", "off") if noisy else ("on",)
    eps = [eps_label(e) for e in grid.EPS]
    return {"model": model, "seed": seed, "size": "ci", "size_spec": size, "config": config, "train_commit": "abc",
            "metrics": [{"epoch": 1, "test_accuracy": 50.0}],
            "accuracy": {n: {e: {a: value for a in names} for e in eps} for n in noises},
            "per_example": {n: {e: {a: [1.0, 0.0] for a in names} for e in eps} for n in noises},
            "cell_spec": {n: {e: {a: grid.cell_spec(a, size, noisy and n == "on") for a in names} for e in eps}
                          for n in noises},
            "analysis": {n: {"neighbour_share": 0.3, "grad_l1": 1.0} for n in noises}}


def test_the_committed_report_resumes_the_grid_on_a_fresh_machine(monkeypatch, tmp_path):
    """The report in the repository is what survives a machine: its finished runs are skipped (with no
    workdir at all), are kept in the next report, and a run retrained for more columns is compared with it."""
    names = ["Clean", "FGSM", "Square"]
    repo, workdir = str(tmp_path / "repo"), str(tmp_path / "fresh")
    models = {m: grid.MODELS[m][0] for m in ("vanilla", "sr")}
    records = [RunRecord.from_json(r) for r in (_finished_record("vanilla", 0, names),
                                                _finished_record("sr", 0, names[:2]),
                                                _finished_record("sr", 1, names[:2]))]
    curve = [{"epoch": e, "test_accuracy": 80.0 + e, "elapsed_s": 10.0 * e, "epochs_total": 2} for e in (1, 2)]
    reproduce_report.write(repo, records, size_name="ci", size_spec=dataclasses.asdict(grid.SIZES["ci"]),
                           seeds=[0, 1], models=models, attack_names=names, paper_names=grid.PAPER_ATTACKS,
                           eps_labels=[eps_label(e) for e in grid.EPS], convergence=curve)
    committed = repro_committed.read_committed(repo, "ci")
    assert set(committed) == {("vanilla", 0), ("sr", 0), ("sr", 1)}
    assert committed[("vanilla", 0)].hits("on", "0.1")["Square"] == [1.0, 0.0]
    assert {k: v for k, v in committed[("vanilla", 0)].accuracy_cells() if not k[2].startswith("Worst")} == dict(
        records[0].accuracy_cells())  # the cells as written, read back
    assert repro_committed.read_committed(repo, "small") == {}  # another size's report is not this grid

    worked = []

    def fake_run_one(run_dir, model, seed, size, columns, eps):
        worked.append((len(columns), model, seed))
        record = RunRecord.from_json(_finished_record(model, seed, columns, value=60.0))
        os.makedirs(run_dir, exist_ok=True)
        rundir.write_json(rundir.file(run_dir, rundir.REPRODUCE), record.to_json())
        return record

    monkeypatch.setattr(reproduce, "run_one", fake_run_one)
    reproduce.run_grid(workdir, [0, 1], "ci", list(models), names, grid.EPS, report_dir=repo, only=["sr/0"],
                       audited=False)  # records without an audit count as done
    # vanilla/0 is complete in the report; sr/0 needs the strong column; sr/1 and vanilla/1 are not asked for.
    assert worked == [(3, "sr", 0)]
    results = json.load(open(os.path.join(repo, "results", "results.json")))
    runs = {(r["model"], r["seed"]): r for r in results["runs"]}
    assert set(runs) == {("vanilla", 0), ("sr", 0), ("sr", 1)}  # the committed runs stay in the report
    assert results["convergence"] == curve  # so does the convergence curve, its workdir gone
    check = runs[("sr", 0)]["committed_check"]  # the retrained run replaced its record, compared with it
    assert check["same_test_curve"] and check["cells_equal"] == 0 and len(check["cells_differ"]) == 4  # Clean, FGSM at 2 ε
    assert check["max_change"] == 10.0  # every shared cell went 50 -> 60
    assert runs[("sr", 0)]["accuracy"]["on"]["0.1"]["Square"] == 60.0
    text = open(os.path.join(repo, "RESULTS.md")).read()
    assert "Retrained runs against their first record" in text
    assert "| sr | 0 | equal | 0 | 4 | 10.00 | abc |" in text
    # what the retrained runs showed is read off them: the one retrained run, LIF, differed
    observed = next(line for line in text.splitlines() if line.startswith("A run whose workdir was lost"))
    assert "On another machine every LIF run has differed" in observed and "Noisy-LIF" not in observed


def test_every_committed_record_reads_unchanged():
    """The typed record reads each run of the committed report and writes it back as it was; the Noisy-LIF
    runs have their noise-off cells."""
    results = rundir.read_json(repro_committed.results_path(REPO))
    assert results["runs"]
    for stored in results["runs"]:
        record = RunRecord.from_json(stored)
        again = rundir.plain(record.to_json())
        assert again == stored
        assert record.noises() == (["on", "off"] if record.noisy else ["on"])
        assert record.n_cells == sum(len(c) for by_eps in stored["accuracy"].values() for c in by_eps.values())
    with pytest.raises(ValueError, match="unknown fields"):
        RunRecord.from_json(dict(results["runs"][0], accuracies={}))


def test_the_committed_report_is_what_its_records_render(tmp_path):
    """RESULTS.md is regenerated from the committed records (``--report_only``) byte for byte: its text is
    the code's rendering of the records, nothing edited by hand or left from an earlier rendering."""
    shutil.copytree(os.path.join(REPO, "results"), tmp_path / "results")
    results = rundir.read_json(repro_committed.results_path(str(tmp_path)))
    reproduce.write_report(str(tmp_path / "workdir"), results["size"], results["seeds"], list(results["models"]),
                           results["attack_names"], [parse_eps(e) for e in results["eps_labels"]], str(tmp_path))
    with open(os.path.join(REPO, "RESULTS.md")) as committed, open(tmp_path / "RESULTS.md") as rendered:
        assert rendered.read() == committed.read()


def test_two_records_are_one_training_when_config_commit_and_test_curve_agree():
    a = RunRecord(model="tgo", seed=0, config={"seed": 0}, train_commit="abc", train_wall_s=10.0,
                  metrics=[{"epoch": 1, "test_accuracy": 80.0}])
    assert repro_record.same_training(a, dataclasses.replace(a, train_wall_s=99.0))  # timings are no identity
    assert not repro_record.same_training(a, dataclasses.replace(a, metrics=[{"epoch": 1, "test_accuracy": 81.0}]))
    assert not repro_record.same_training(a, dataclasses.replace(a, train_commit="def"))
    assert not repro_record.same_training(a, dataclasses.replace(a, config={"seed": 1}))


def test_convergence_lines_say_what_the_later_epochs_add():
    curve = [{"epoch": e, "test_accuracy": a, "elapsed_s": 10.0 * e, "epochs_total": 4}
             for e, a in ((1, 80.0), (2, 85.0), (3, 86.0), (4, 85.5))]
    text = "\n".join(reproduce_report._convergence_lines(curve))
    assert "Epochs 3–4 add +0.50 points (85.00 → 85.50 %); the best epoch is 3." in text
    assert "Not measured yet" in "\n".join(reproduce_report._convergence_lines(None))


def _audited(record, **flags):
    """``record`` with an audit at 8/255 whose checks are PASS except ``flags`` ({check: flag})."""
    checks = dict.fromkeys(("a_unbounded", "b_single_step", "c_square", "d_worst_case"), "PASS")
    checks = record.audit.get("8/255", {}).get("flags", checks)
    return dataclasses.replace(record, audit={"8/255": {"flags": dict(checks, **flags)}})


def test_a_run_that_fails_its_audit_is_excluded_from_the_claims():
    vanilla = [_audited(_fake("vanilla", s, 40 + s, 0.3)) for s in range(3)]
    tgo = [_audited(_fake("tgo", s, 60 + s, 0.18), f_plateau="WARN") for s in range(3)]
    assert repro_claims.claims(vanilla + tgo, ["8/255"])["a"]["verdict"] == "holds"  # a WARN is no FAIL
    tgo[1] = _audited(tgo[1], c_square="FAIL")
    out = repro_claims.claims(vanilla + tgo, ["8/255"])
    assert out["a"]["excluded"] == ["tgo/seed1"] and "tgo/seed1: audit FAIL" in out["a"]["verdict"]
    assert out["a"]["verdict"].startswith("holds")  # decided on the two other seeds
    assert out["a"]["rows"][0]["diff"] == pytest.approx(20.0)  # (60 + 62) / 2 - 41: seed 1 left out
    tgo = [_audited(r, c_square="FAIL") for r in tgo]
    out = repro_claims.claims(vanilla + tgo, ["8/255"])
    assert not out["a"]["verdict"].startswith("holds") and "excluded" not in out["e"]  # (e) has no tgo run
    note = repro_claims.audit_note(vanilla + tgo + [_fake("mc", 0, 40, 0.3)])
    assert list(note["excluded"]) == ["tgo/seed0", "tgo/seed1", "tgo/seed2"] and note["not_audited"] == ["mc/seed0"]
    assert note["excluded"]["tgo/seed0"] == ["c_square @ 8/255"]
    assert repro_claims.audit_text(tgo) == "FAIL c_square (seed 0,1,2); WARN f_plateau (seed 0,1,2)"
    assert repro_claims.audit_text(vanilla) == "pass" and repro_claims.audit_text([]) == "not run"
    assert repro_claims.audit_text(vanilla[:1] + [_fake("vanilla", 1, 40, 0.3)]) == "not run (seed 1)"
    text = _audit_paragraph(vanilla + tgo + [_fake("mc", 0, 40, 0.3)])
    assert "Excluded: tgo/seed0 (c_square @ 8/255)" in text and "has not been run for 1 run(s) (mc/seed0)" in text
    assert "| TGO (MC + NLIF) † |" in _rendered(vanilla + tgo)  # its tables mark the model
    text = _audit_paragraph([_fake("mc", 0, 40, 0.3)])
    assert "has not been run for any of the 1 runs yet" in text and "failed a check." not in text


def _rendered(records):
    """RESULTS.md of ``records`` (the ci size, ε = 8/255, the claims' columns)."""
    summary, records = reproduce_report.summary_of(
        records, size_name="ci", size_spec=dataclasses.asdict(grid.SIZES["ci"]), seeds=[0, 1, 2],
        models={m: grid.MODELS[m][0] for m in grid.MODELS if any(r.model == m for r in records)},
        attack_names=list(repro_claims.CLAIM_ATTACKS), paper_names=grid.PAPER_ATTACKS, eps_labels=["8/255"])
    return reproduce_report.render(summary, records)


def _audit_paragraph(records) -> str:
    return next(line for line in _rendered(records).splitlines() if line.startswith("Gradient-masking audit"))
