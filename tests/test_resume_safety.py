"""Resume of a damaged or changed workdir: config comparison and drift, checkpoint fallback, torn metrics,
kill -9, preemption.

One finished tiny run (6 steps, checkpoints at 4 and 6) is made once and copied for each case. The
fault-injection tests kill real training processes (SIGKILL) while a checkpoint and while metrics.jsonl
are being written, damage the newest checkpoint, or preempt them (SIGTERM, SIGINT), resume, and compare
with an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import pytest

from tests.conftest import TINY_CONFIG, tiny_config
from tests.test_cli_errors import run_main
from tests.test_train import assert_trees_equal, read_records, saved_state
from tgo_train import checkpoint, cli, manifest, preemption, progress, resume, rundir, train, trained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = {"max_steps": 6, "checkpoint_every_steps": 2}  # 8 steps per epoch: checkpoints 4 and 6 are kept
RUN_ARGS = ["--config.max_steps=6", "--config.checkpoint_every_steps=2"]


def without_time(recs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in recs]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, fashion_mnist):
    """A finished 6-step tiny run (the reference for every case)."""
    workdir = str(tmp_path_factory.mktemp("finished") / "run")
    train.train_and_evaluate(tiny_config(RUN), workdir)
    return workdir


@pytest.fixture
def copy(finished, tmp_path):
    target = str(tmp_path / "run")
    shutil.copytree(finished, target)
    return target


def largest_array_file(step_dir: str) -> str:
    files = [os.path.join(root, n) for root, _, names in os.walk(os.path.join(step_dir, "state"))
             for n in names if len(n) == 32]  # orbax's content-addressed array chunks
    return max(files, key=os.path.getsize)


# ----------------------------------------------------------------------------------------------------
# a rerun with another config
# ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("override, change", [
    ("--config.batch_size=16", "batch_size 32 → 16"),
    ("--config.model_kwargs.hidden=32", "model_kwargs.hidden 16 → 32"),
])
def test_meaning_changes_are_refused_naming_each_field(copy, monkeypatch, capsys, override, change):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    before = {name: open(os.path.join(copy, name)).read() for name in ("config.json", "metrics.jsonl")}
    code, _, err = run_main(monkeypatch, capsys, "--config", TINY_CONFIG, "--workdir", copy, *RUN_ARGS,
                            override, "--config.seed=3")
    assert code != 0 and err.count("\n") == 1, err
    assert change in err and "seed 0 → 3" in err and "--fresh" in err, err
    assert {name: open(os.path.join(copy, name)).read() for name in before} == before


def test_harmless_changes_are_allowed_and_recorded(copy, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "--config", TINY_CONFIG, "--workdir", copy, *RUN_ARGS,
                              "--config.eval_batch_size=64", "--config.keep_checkpoints=3")
    assert code == 0, err
    assert "resuming with changed settings: eval_batch_size 128 → 64; keep_checkpoints 2 → 3" in out
    (entry,) = rundir.read_jsonl(os.path.join(copy, rundir.HISTORY))
    assert entry["step"] == 6 and entry["changed"] == {"eval_batch_size": [128, 64], "keep_checkpoints": [2, 3]}
    with open(os.path.join(copy, rundir.CONFIG)) as f:
        assert json.load(f)["eval_batch_size"] == 64


def test_fresh_moves_the_old_run_aside(copy, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "--config", TINY_CONFIG, "--workdir", copy,
                              "--config.batch_size=16", "--config.max_steps=1", "--fresh")
    assert code == 0, err
    (old,) = [p for p in os.listdir(os.path.dirname(copy)) if p.startswith("run.old-")]
    assert f"moved the old {copy}" in out
    assert rundir.checkpoint_steps(os.path.join(os.path.dirname(copy), old)) == [4, 6]
    assert rundir.checkpoint_steps(copy) == [1]
    assert [r["step"] for r in read_records(copy)] == [1]


# ----------------------------------------------------------------------------------------------------
# damaged checkpoints and metrics
# ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def abstract_state(finished):
    """Shapes and dtypes of the run's saved state (a restore target that needs no model)."""
    _, state = saved_state(finished)
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)


@pytest.mark.parametrize("damage, named", [
    (lambda d: os.truncate(largest_array_file(d), 10), "has 10 bytes"),
    (lambda d: os.remove(largest_array_file(d)), "is missing"),
    (lambda d: os.remove(os.path.join(d, "meta", "metadata")), "meta/metadata is missing"),
])
def test_damaged_file_is_named_and_the_previous_step_restored(copy, abstract_state, capsys, damage, named):
    damage(os.path.join(copy, "checkpoints", "6"))
    ckpt = checkpoint.Checkpoints(os.path.join(copy, "checkpoints"), every_steps=1)
    state, meta = ckpt.restore(abstract_state, set_aside=os.path.join(copy, "damaged_checkpoints"))
    ckpt.close()
    err = capsys.readouterr().err
    assert f"checkpoint step 6 in {os.path.join(copy, 'checkpoints')} is damaged" in err and named in err, err
    assert int(state["step"]) == 4 and meta["config"]["max_steps"] == 6
    assert os.listdir(os.path.join(copy, "damaged_checkpoints"))[0].startswith("6-")
    assert rundir.checkpoint_steps(copy) == [4]  # step 6 can be saved again


def test_unmanifested_truncated_array_is_found_by_orbax(copy, abstract_state, capsys):
    step_dir = os.path.join(copy, "checkpoints", "6")
    os.remove(os.path.join(step_dir, manifest.NAME))  # as when killed between orbax's commit and the manifest
    os.truncate(largest_array_file(step_dir), 100)
    ckpt = checkpoint.Checkpoints(os.path.join(copy, "checkpoints"), every_steps=1)
    state, _ = ckpt.restore(abstract_state)
    ckpt.close()
    err = capsys.readouterr().err
    assert int(state["step"]) == 4 and "checkpoint step 6" in err and "orbax cannot restore it" in err, err
    assert os.path.isdir(step_dir)  # without set_aside (evaluation) nothing is moved


def test_damaged_checkpoint_and_torn_metrics_line_resume_like_an_intact_run(finished, copy, capsys):
    open(os.path.join(copy, "checkpoints", "6", "meta", "metadata"), "w").close()  # truncated to 0 bytes
    with open(os.path.join(copy, rundir.METRICS), "a") as f:
        f.write('{"epoch": 2, "step": 1')  # a torn final line
    record = train.train_and_evaluate(tiny_config(RUN), copy)
    err = capsys.readouterr().err
    assert "checkpoint step 6" in err and "meta/metadata has 0 bytes" in err, err
    assert "dropped a torn final record" in err, err
    assert record["step"] == 6
    # Steps 5 and 6 redone from step 4: the same state and records as the undamaged run.
    (step_a, state_a), (step_b, state_b) = saved_state(copy), saved_state(finished)
    assert step_a == step_b == 6
    assert_trees_equal(state_a, state_b)
    assert without_time(read_records(copy)) == without_time(read_records(finished))
    assert manifest.verify(os.path.join(copy, "checkpoints", "6")) is None


def test_no_intact_checkpoint_is_one_clear_error(copy, monkeypatch, capsys):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    for step in (4, 6):
        os.truncate(largest_array_file(os.path.join(copy, "checkpoints", str(step))), 10)
    code, _, err = run_main(monkeypatch, capsys, "--config", TINY_CONFIG, "--workdir", copy, *RUN_ARGS)
    assert code != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: no intact checkpoint in") and "step 6:" in last and "step 4:" in last, err
    assert "Traceback" not in err


def test_evaluate_reads_the_newest_intact_checkpoint(copy, capsys):
    os.truncate(largest_array_file(os.path.join(copy, "checkpoints", "6")), 10)
    _, _, step = trained.load_run(copy)
    assert step == 4 and "checkpoint step 6" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------
# fault injection: kill -9 during writes, then a damaged newest checkpoint
# ----------------------------------------------------------------------------------------------------

_CHILD = r"""
import os, signal, sys
from tgo_train import checkpoint, cli, main, rundir
fault, at = os.environ.get("FAULT", ""), int(os.environ.get("FAULT_AT", "0"))
if fault == "checkpoint":  # killed while orbax writes step `at` in the background
    save = checkpoint.Checkpoints.save
    def killing_save(self, step, *args, **kwargs):
        saved = save(self, step, *args, **kwargs)
        if saved and step == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return saved
    checkpoint.Checkpoints.save = killing_save
elif fault == "metrics":  # killed half-way through writing the record of the epoch ending at step `at`
    write = rundir.write_atomic
    def killing_write(path, text):
        if path.endswith(rundir.METRICS) and f'"step": {at},' in text:
            with open(f"{path}.tmp-{os.getpid()}", "w") as f:
                f.write(text[: len(text) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        write(path, text)
    rundir.write_atomic = killing_write
cli.run(main.main, sys.argv)
"""


@pytest.mark.slow
def test_kill_during_writes_and_damage_resume_bit_for_bit(finished, tmp_path):
    workdir = str(tmp_path / "faulty")
    env = dict(os.environ, PYTHONPATH=REPO, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # the three processes compile once
    env.pop(cli.DEBUG_ENV, None)

    def child(fault: str = "", at: int = 0) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", _CHILD, "--config", TINY_CONFIG, "--workdir", workdir,
                               *RUN_ARGS], cwd=REPO, capture_output=True, text=True,
                              env=dict(env, FAULT=fault, FAULT_AT=str(at)), timeout=300)

    killed = child("checkpoint", 4)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert 2 in rundir.checkpoint_steps(workdir)  # step 4 is committed only if orbax beat the kill
    killed = child("metrics", 6)  # resumes; saves step 4 (again); dies writing the record of step 6
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "resumed from step" in killed.stdout
    assert rundir.read_jsonl(os.path.join(workdir, rundir.METRICS)) == []  # the old file, whole
    assert rundir.checkpoint_steps(workdir) == [2, 4]  # step 6 comes after its record
    os.truncate(largest_array_file(os.path.join(workdir, "checkpoints", "4")), 10)
    done = child()
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checkpoint step 4" in done.stderr and "resumed from step 2" in done.stdout, done.stderr[-3000:]
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4", "6"]  # no unfinished saves left
    (step_a, state_a), (step_b, state_b) = saved_state(workdir), saved_state(finished)
    assert step_a == step_b == 6
    assert_trees_equal(state_a, state_b)  # params, BN statistics, optimiser state, key, running sums
    assert without_time(read_records(workdir)) == without_time(read_records(finished))


UPDATE = progress.Progress.update


def signal_during_step(monkeypatch, sig: signal.Signals, at: int) -> None:
    """The signal arrives while training step ``at`` runs (sent from the progress update after it)."""
    def signalling_update(self, step):
        UPDATE(self, step)
        if step == at:
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(progress.Progress, "update", signalling_update)


def test_preempted_twice_then_resumed_is_bit_identical(finished, tmp_path, monkeypatch, capsys):
    """SIGTERM during step 3, SIGINT (Ctrl-C) during step 5: each saves its step and exits 75 with one line; the
    third run finishes with the state and records of the uninterrupted run."""
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    workdir = str(tmp_path / "preempted")
    checkpoints = os.path.join(workdir, "checkpoints")
    args = ("--config", TINY_CONFIG, "--workdir", workdir, *RUN_ARGS)
    signal_during_step(monkeypatch, signal.SIGTERM, 3)
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == preemption.EXIT_PREEMPTED and err == (
        f"stopped by SIGTERM at step 3 of 6: checkpoint saved in {checkpoints}; rerun the same command to resume\n")
    assert rundir.checkpoint_steps(workdir) == [2, 3]  # 3: the preemption's own
    (partial,) = read_records(workdir)  # the epoch so far, not evaluated
    assert partial["step"] == 3 and partial["partial"] and "test_accuracy" not in partial
    signal_during_step(monkeypatch, signal.SIGINT, 5)
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert code == preemption.EXIT_PREEMPTED and "stopped by SIGINT at step 5 of 6" in err, err
    assert "resumed from step 3" in out and rundir.checkpoint_steps(workdir) == [4, 5]
    monkeypatch.setattr(progress.Progress, "update", UPDATE)  # no signal
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert code == 0 and "resumed from step 5" in out, err
    (step_a, state_a), (step_b, state_b) = saved_state(workdir), saved_state(finished)
    assert step_a == step_b == 6
    assert_trees_equal(state_a, state_b)  # params, BN statistics, optimiser state, key, running sums
    assert without_time(read_records(workdir)) == without_time(read_records(finished))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers in place before are back


# ----------------------------------------------------------------------------------------------------
# a config.json written by another version of the code
# ----------------------------------------------------------------------------------------------------

def edit_stored_config(workdir: str, edit) -> None:
    path = os.path.join(workdir, rundir.CONFIG)
    with open(path) as f:
        stored = json.load(f)
    edit(stored)
    rundir.write_json(path, stored)


def test_field_the_code_no_longer_knows_is_dropped_with_a_warning(copy, capsys):
    edit_stored_config(copy, lambda c: c.update(retired_option=3, optim=dict(c["optim"], retired_too="x")))
    assert resume.check_resume(copy, tiny_config(RUN)) == []
    err = capsys.readouterr().err
    assert f"{copy}/config.json: ignoring optim.retired_too='x', retired_option=3 (" in err, err


def test_missing_field_is_completed_from_the_checkpoint_not_the_defaults(copy):
    edit_stored_config(copy, lambda c: c["optim"].pop("lr"))  # the run used 0.05; the base default is 0.1
    assert resume.check_resume(copy, tiny_config(RUN)) == []
    changed = tiny_config(RUN)
    changed.optim.lr = 0.2
    with pytest.raises(resume.ResumeError, match="optim.lr 0.05 → 0.2"):
        resume.check_resume(copy, changed)
