"""Tests for the robustness evaluation (tgo_train/robustness.py) and its program (tgo_train/evaluate.py).

One tiny workdir is trained once per module (``tests/tiny.py``, 16 steps, Fashion-MNIST)
and attacked on 64 test images; the command line runs in a subprocess from the repository root.
Each attack compiles once per evaluation (a few seconds on CPU), so the in-process test runs a subset
of the rows and the command-line test the paper's full default table.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tgo_jax import attacks
from tgo_train import robustness, train, trained
from tests.conftest import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_EXAMPLES = 64
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, fashion_mnist) -> str:
    """A tiny LIF net trained for 2 epochs (16 steps, ~30 % test accuracy); its recorded test accuracy is
    measured on the first 64 test images."""
    config = tiny_config({"eval_subset": NUM_EXAMPLES})
    path = str(tmp_path_factory.mktemp("evaluate") / "tiny")
    train.train_and_evaluate(config, path)
    return path


def run_program(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def last_record(workdir: str) -> dict:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()][-1]


# ----------------------------------------------------------------------------------------------------
# evaluate_workdir
# ----------------------------------------------------------------------------------------------------

def test_evaluate_workdir_writes_the_tables_and_the_sweep(workdir):
    rows = ("Clean", "FGSM", "PGD7", "APGD", "MTPGD")  # the paper's order; APGD and MTPGD requested
    results = robustness.evaluate_workdir(
        workdir, eps_list=[8 / 255], alpha=0.01, extra=("apgd", "mtpgd"), eot=2, draws=2,
        eps_sweep=[2 / 255, 8 / 255], sweep_attack="FGSM", num_examples=NUM_EXAMPLES,
        batch_size=NUM_EXAMPLES, attacks_subset=("MTPGD", "APGD", "PGD7", "FGSM", "Clean"), progress=False)
    with open(os.path.join(workdir, "eval.json")) as f:
        assert json.load(f) == results
    assert results["step"] == 16 and results["num_examples"] == NUM_EXAMPLES
    assert results["eot"] == 1 and results["draws"] == 1  # a LIF model draws no noise: no EoT
    (eps, table), = results["tables"].items()
    assert eps == "8/255"
    assert tuple(table) == rows
    for name, accuracy in table.items():
        assert 0.0 <= accuracy <= 100.0, (name, accuracy)
        assert accuracy <= table["Clean"], (name, accuracy, table["Clean"])
        count = accuracy / 100.0 * NUM_EXAMPLES
        assert count == pytest.approx(round(count), abs=1e-6)  # whole images
    # Clean accuracy is the training program's test accuracy of the same checkpoint and images.
    assert table["Clean"] == pytest.approx(last_record(workdir)["test_accuracy"])  # both in %
    assert table["PGD7"] < table["Clean"] and table["APGD"] < table["Clean"]  # ε = 8/255 hurts this net

    sweep = results["eps_sweep"]
    assert sweep["attack"] == "FGSM" and list(sweep["accuracy"]) == ["2/255", "8/255"]
    assert sweep["accuracy"]["8/255"] == pytest.approx(table["FGSM"])  # FGSM on a LIF net is deterministic
    with open(os.path.join(workdir, "eps_sweep.png"), "rb") as f:
        assert f.read(8) == PNG_MAGIC

    with open(os.path.join(workdir, "eval.md")) as f:
        markdown = f.read()
    assert "**ε = 8/255**" in markdown and "**FGSM accuracy against ε**" in markdown
    assert "| model | " + " | ".join(rows) + " |" in markdown
    assert f"| tiny | {table['Clean']:.2f} | {table['FGSM']:.2f} |" in markdown
    assert markdown.strip() == robustness.render(results)


def test_load_run_restores_the_weights_without_an_optimizer(workdir, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("load_run must not build an optimiser, an objective or a train step")

    for name in ("build_optimizer", "build_objective", "make_train_step", "create_train_state"):
        monkeypatch.setattr(train, name, forbidden)
    run, variables, step = trained.load_run(workdir, num_examples=8)
    assert step == 16 and len(run.splits["test"][1]) == 8
    manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")))
    saved = manager.restore(16, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    manager.close()
    assert jax.tree.structure(variables) == jax.tree.structure(
        {"params": saved["params"], "batch_stats": saved["batch_stats"]})
    for name in ("params", "batch_stats"):
        for a, b in zip(jax.tree.leaves(variables[name]), jax.tree.leaves(saved[name])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_missing_workdir_is_a_clear_error(tmp_path):
    missing = tmp_path / "never_trained"
    with pytest.raises(FileNotFoundError, match="never_trained"):
        trained.load_run(str(missing))
    (missing / "checkpoints").mkdir(parents=True)  # a run that died before its first checkpoint
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        trained.load_run(str(missing))


# ----------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------

def test_cli_with_two_workdirs_prints_one_comparison_table(workdir, tmp_path):
    other = str(tmp_path / "tiny_copy")
    shutil.copytree(workdir, other, ignore=shutil.ignore_patterns("eval.*", "eps_sweep.png"))
    out_path = tmp_path / "comparison.md"
    columns = ("Clean", "FGSM", "PGD10")
    out = run_program("tgo_train.evaluate", "--workdir", workdir, "--workdir", other, "--eps", "8/255",
                      "--num_examples", "32", "--batch_size", "32", "--attacks", ",".join(columns),
                      "--out", str(out_path))
    assert out.returncode == 0, out.stderr[-3000:]
    table = out_path.read_text().strip()
    assert out.stdout.rstrip().endswith(table)  # printed last, after each workdir's own table
    lines = table.splitlines()
    assert lines[0] == "**ε = 8/255**"
    header = "| model | " + " | ".join(columns) + " |"
    assert lines[2] == header  # only the asked columns, in the paper's order
    rows = [line.split(" | ")[0].lstrip("| ") for line in lines[4:6]]
    assert rows == ["tiny", "tiny_copy"]
    assert lines[6:] == ["", "PGD step: paper, α = 0.01 for every k"]  # the rule beside the table
    # Same checkpoint, same images, same seeds: the two rows agree.
    assert lines[4].split(" | ")[1:] == lines[5].split(" | ")[1:]
    clean = float(lines[4].split(" | ")[1])
    assert all(0.0 <= float(cell) <= clean for cell in lines[4].strip(" |").split(" | ")[1:])
    for d in (workdir, other):  # each workdir also gets its own files
        with open(os.path.join(d, "eval.json")) as f:
            saved = json.load(f)
        assert saved["num_examples"] == 32 and tuple(saved["tables"]["8/255"]) == columns
        with open(os.path.join(d, "eval.md")) as f:
            assert header in f.read()


def test_unknown_attack_is_named_with_the_known_ones(workdir):
    with pytest.raises(ValueError, match=r"unknown attack 'CW'; known: Clean, FGSM.*Square.*ASSG"):
        robustness.evaluate_workdir(workdir, eps_list=[8 / 255], alpha=0.01, extra=(), eot=1, draws=1,
                                    eps_sweep=[], sweep_attack="FGSM", num_examples=8, batch_size=8,
                                    attacks_subset=("PGD9", "Clean", "CW"), progress=False)


def test_attacks_by_registry_name():
    suite = [("Clean", None), ("FGSM", None), ("PGD7", None)]
    rows = robustness.select_attacks(suite, ["square", "pgd7", "Clean", "pgd9"], eps=0.1, alpha=0.01, eot=1)
    assert [n for n, _ in rows] == ["Clean", "PGD7", "Square", "PGD9"]
    assert rows[2][1].keywords["queries"] == 5000 and rows[3][1].keywords["steps"] == 9


def test_cli_missing_workdir_names_it(tmp_path):
    missing = str(tmp_path / "no_such_run")
    out = run_program("tgo_train.evaluate", "--workdir", missing, timeout=120)
    assert out.returncode != 0
    assert "FileNotFoundError" in out.stderr and missing in out.stderr, out.stderr[-3000:]


# ----------------------------------------------------------------------------------------------------
# pure helpers
# ----------------------------------------------------------------------------------------------------

def test_comparison_has_one_table_per_eps_and_a_row_per_workdir():
    def result(name, clean, fgsm):
        return {"workdir": f"/runs/{name}/", "tables": {"8/255": {"Clean": clean, "FGSM": fgsm},
                                                       "0.1": {"Clean": clean}}}

    text = robustness.comparison([result("vanilla", 90.0, 10.0), result("tgo", 88.5, 40.25)])
    assert text.splitlines() == [
        "**ε = 8/255**", "",
        "| model | Clean | FGSM |", "|---|---|---|", "| vanilla | 90.00 | 10.00 |", "| tgo | 88.50 | 40.25 |", "",
        "**ε = 0.1**", "",
        "| model | Clean |", "|---|---|", "| vanilla | 90.00 |", "| tgo | 88.50 |"]
    # A workdir without a column shows '-'.
    assert "| b | 1.00 | - |" in robustness.markdown_table({"b": {"Clean": 1.0}}, ["Clean", "FGSM"])


@pytest.mark.slow
def test_audit_writes_flags_and_numbers(workdir):
    """The gradient-masking audit at CI size (one AutoAttack row and one surrogate of the sweep: 10 attacks,
    one compilation each): every check present with a flag, files written whole; without a transfer source
    and on a LIF model the checks that cannot run say why."""
    from tgo_train import audit

    sizes = dataclasses.replace(audit.SIZES["ci"], white_rows=("APGD-T",), sweep_rules=(("bptr", None),))
    result = audit.audit_workdir(workdir, eps=8 / 255, sizes=sizes, num_examples=16, batch_size=16,
                                 log=lambda *_: None)
    assert {"APGD-T", "Sweep", "Square", "Transfer (sigmoid surrogate)"} <= set(result["accuracy"])
    assert set(result["checks"]) == {"a_unbounded", "b_more_steps", "b_more_restarts", "b_more_eot", "b_single_step",
                                     "c_square", "c_transfer_twin", "c_transfer", "d_worst_case", "e_noise_on_off",
                                     "f_plateau"}
    assert result["flags"] == {name: check["flag"] for name, check in result["checks"].items()}
    assert set(result["flags"].values()) <= set(audit.FLAGS)
    acc = result["accuracy"]
    attacked = [n for n in acc if n != "Unbounded PGD"]
    assert result["worst_case_accuracy"] <= min(acc[n] for n in attacked) + 1e-9
    assert result["flags"]["a_unbounded"] == ("PASS" if acc["Unbounded PGD"] <= audit.UNBOUNDED_MAX else "FAIL")
    for name in ("b_more_eot", "e_noise_on_off"):  # LIF model: no noise
        assert result["checks"][name]["why"] == "not run: deterministic model" + (
            " (no noise draws to average)" if name == "b_more_eot" else " (no Noisy-LIF noise)")
    assert result["flags"]["c_transfer"] == "NOT RUN"
    assert result["checks"]["c_transfer"]["why"].startswith("not run: no independently trained transfer source")
    assert result["size"] == "custom" and result["pgd_step"] == "paper"
    with open(os.path.join(workdir, "audit.json")) as f:
        saved = json.load(f)
    assert saved["worst_case_accuracy"] == result["worst_case_accuracy"] and saved["flags"] == result["flags"]
    with open(os.path.join(workdir, "audit.md")) as f:
        text = f.read()
    assert "worst-case accuracy" in text and "| a_unbounded |" in text
    assert f"Size `custom`: {audit.describe(sizes)}." in text and "steps 100 → 3" in text
    assert "PGD step: paper, α = 0.01 for every k" in text


def test_transfer_columns_carry_the_source_name_and_the_step_rule_is_printed(workdir, tmp_path):
    source = str(tmp_path / "tiny_seed1")
    shutil.copytree(workdir, source, ignore=shutil.ignore_patterns("eval.*", "audit.*", "eps_sweep.png"))
    results = robustness.evaluate_workdir(
        workdir, eps_list=[0.1], alpha=0.01, extra=(), eot=1, draws=1, eps_sweep=[], sweep_attack="FGSM",
        num_examples=16, batch_size=16, attacks_subset=("Clean", "PGD10"), progress=False, pgd_step="madry",
        transfer_from=[source])
    table = results["tables"]["0.1"]
    assert list(table) == ["Clean", "PGD10", "Transfer-tiny_seed1"]
    # The source is the same checkpoint: PGD10 made on it is the white-box PGD10 (same step rule and steps).
    assert table["Transfer-tiny_seed1"] <= table["Clean"]
    assert results["pgd_step"] == "madry" and results["transfer_from"] == {"tiny_seed1": source}
    assert results["pgd_step_text"] == {"0.1": "PGD step: madry, α = 2.5·ε/k = 0.25/k"}
    with open(os.path.join(workdir, "eval.md")) as f:
        markdown = f.read()
    assert "PGD step rule madry" in markdown.splitlines()[0]
    assert "| model | Clean | PGD10 | Transfer-tiny_seed1 |\n|---|---|---|---|\n| tiny |" in markdown
    assert "\n\nPGD step: madry, α = 2.5·ε/k = 0.25/k" in markdown
    with pytest.raises(ValueError, match="unknown transfer source 'other' of 'Transfer-other'; transfer sources: "
                                         "tiny_seed1"):
        robustness.select_attacks([], ["Transfer-other"], eps=0.1, alpha=0.01, eot=1,
                                  sources=[attacks.Source("tiny_seed1", None, None)])


def test_two_transfer_sources_with_one_name_are_one_clear_error():
    with pytest.raises(ValueError, match=r"two transfer sources are named 'tgo' \(runs/a/tgo, runs/b/tgo/\)"):
        trained.load_transfer_sources(["runs/a/tgo", "runs/b/tgo/"], None, None)
