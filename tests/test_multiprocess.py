"""Multi-process runs on this machine: 2 processes × 2 fake CPU devices against 1 process × 4 devices.

Both runs go through the real programs (``tgo_train.main``, ``tgo_train.evaluate``) on the tiny config,
joined by ``jax.distributed`` with the coordinator on 127.0.0.1 (CPU collectives: gloo). The same 4-device
mesh and the same global batches on both sides, so parameters, metrics and robust accuracies agree to
float rounding. The 2-process run stops at step 3 and resumes to step 6, so restore from all processes
is exercised too. Every process gets a deadline and is killed in ``finally``; the whole module takes
about a minute on 2 CPU cores.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tgo_train import distributed
from tests.conftest import TINY_CONFIG

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEADLINE_S = 240  # per phase; a phase takes well under a minute on 2 CPU cores
RTOL, ATOL = 1e-5, 1e-6  # sums reduced in another order; see tests/test_sharding.py
EVAL_FLAGS = ["--attacks", "Clean,FGSM", "--num_examples", "96", "--batch_size", "64"]  # every attack: test_sharding


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(module: str, args: list[str], devices: int, process: int | None = None, port: int | None = None,
            processes: int = 2) -> tuple[list[str], dict]:
    """argv and environment of one program process with ``devices`` fake CPU devices."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    env.pop("XLA_FLAGS", None)
    argv = [sys.executable, "-m", module, *args]
    if process is not None:
        argv += ["--coordinator_address", f"127.0.0.1:{port}", "--num_processes", str(processes),
                 "--process_id", str(process), "--distributed_timeout", "60"]
    return argv, env


def run_all(jobs: dict[str, tuple[list[str], dict]], tmp_path, deadline_s: float = DEADLINE_S) -> dict:
    """Starts every job at once, waits for all (bounded), kills what is left; name -> (rc, output)."""
    procs, logs = {}, {}
    try:
        for name, (argv, env) in jobs.items():
            logs[name] = open(tmp_path / f"{name}.log", "w+")
            procs[name] = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=logs[name], stderr=subprocess.STDOUT)
        end = time.monotonic() + deadline_s
        for proc in procs.values():
            proc.wait(timeout=max(1.0, end - time.monotonic()))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out = {}
    for name, f in logs.items():
        f.seek(0)
        out[name] = (procs[name].returncode, f.read())
        f.close()
    for name, (rc, text) in out.items():
        assert rc == 0, f"{name} exited with {rc}:\n{text[-4000:]}"
    return out


def train_jobs(workdir, max_steps: int, port: int) -> dict:
    args = ["--config", TINY_CONFIG, "--workdir", str(workdir), f"--config.max_steps={max_steps}"]
    return {f"train{p}": command("tgo_train.main", args, 2, p, port) for p in (0, 1)}


def eval_jobs(workdir, port: int) -> dict:
    args = ["--workdir", str(workdir), *EVAL_FLAGS]
    return {f"eval{p}": command("tgo_train.evaluate", args, 2, p, port) for p in (0, 1)}


def saved_params(workdir) -> tuple[int, dict]:
    """(latest step, params and batch_stats) of a checkpoint saved on 4 devices, read onto this one."""
    directory = os.path.join(workdir, "checkpoints")
    manager = ocp.CheckpointManager(directory)
    step = manager.latest_step()
    saved = ocp.StandardCheckpointer().metadata(os.path.join(directory, str(step), "state")).item_metadata
    here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here), dict(saved))
    state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
    manager.close()
    return step, jax.tree.map(np.asarray, {"params": state["params"], "batch_stats": state["batch_stats"]})


def records(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, fashion_mnist):
    tmp = tmp_path_factory.mktemp("multiprocess")
    ref, multi = tmp / "ref", tmp / "multi"
    # Phase 1: the 1-process reference (6 steps) beside the first 3 steps of the 2-process run.
    ref_job = command("tgo_train.main", ["--config", TINY_CONFIG, "--workdir", str(ref), "--config.max_steps=6"], 4)
    first = run_all({"ref": ref_job, **train_jobs(multi, 3, free_port())}, tmp)
    # Phase 2: the 2-process run resumes to step 6; both evaluations read copies of the reference.
    shutil.copytree(ref, tmp / "eval1")
    shutil.copytree(ref, tmp / "eval2")
    jobs = {**train_jobs(multi, 6, free_port()), **eval_jobs(tmp / "eval2", free_port()),
            "eval_ref": command("tgo_train.evaluate", ["--workdir", str(tmp / "eval1"), *EVAL_FLAGS], 4)}
    second = run_all(jobs, tmp)
    return {"tmp": tmp, "ref": ref, "multi": multi, "first": first, "second": second}


def test_two_processes_train_like_one_with_the_same_devices(runs):
    ref_step, ref = saved_params(runs["ref"])
    multi_step, multi = saved_params(runs["multi"])
    assert ref_step == multi_step == 6
    assert jax.tree.structure(multi) == jax.tree.structure(ref)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(multi), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=jax.tree_util.keystr(path))
    assert "resumed from step 3" in runs["second"]["train0"][1]  # the second session restored, not restarted


def test_metrics_match_and_only_process_zero_writes_them(runs):
    (ref,), (multi,) = records(runs["ref"]), records(runs["multi"])  # one record each: no double writes
    assert multi.keys() == ref.keys() and multi["step"] == 6 and "test_accuracy" in multi
    for key in ref:
        if key != "elapsed_s":
            assert multi[key] == pytest.approx(ref[key], rel=RTOL, abs=ATOL), key
    for phase in ("first", "second"):
        assert "final:" in runs[phase]["train0"][1]
        assert "final:" not in runs[phase]["train1"][1] and "epoch=" not in runs[phase]["train1"][1]


def test_two_process_evaluation_equals_one_process(runs):
    one = json.loads((runs["tmp"] / "eval1" / "eval.json").read_text())
    two = json.loads((runs["tmp"] / "eval2" / "eval.json").read_text())
    assert two["num_examples"] == one["num_examples"] == 96  # 96 = 64 + 32 real rows of a padded batch
    assert one["tables"].keys() == two["tables"].keys()
    for eps, table in one["tables"].items():
        assert list(table) == ["Clean", "FGSM"]
        for column, accuracy in table.items():
            assert two["tables"][eps][column] == pytest.approx(accuracy, abs=1e-4), (eps, column)
    assert (runs["tmp"] / "eval2" / "eval.md").exists()
    assert "Robustness of" not in runs["second"]["eval1"][1]  # process 1 prints no table
    assert "Robustness of" in runs["second"]["eval0"][1]


# ---------------------------------------------------------------------------------------------- bad input

def test_unreachable_coordinator_fails_fast_with_a_clear_error(tmp_path):
    argv, env = command("tgo_train.main", ["--config", TINY_CONFIG, "--workdir", str(tmp_path / "run")], 2, 1,
                        free_port())
    argv[argv.index("--distributed_timeout") + 1] = "2"
    t0 = time.monotonic()
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and time.monotonic() - t0 < 30
    assert "did not answer within 2 s" in proc.stderr and "process 1 of 2" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()


def test_indivisible_global_batch_names_both_numbers_and_writes_nothing(tmp_path):
    argv, env = command("tgo_train.main", ["--config", TINY_CONFIG, "--workdir", str(tmp_path / "run"),
                                           "--config.batch_size=30"], 4)
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "batch_size=30 is not divisible by the 4 devices" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("settings", [(None, 2, 1), ("127.0.0.1:1234", 2, None), ("127.0.0.1:1234", 2, 2)])
def test_incomplete_or_impossible_settings_are_refused_before_joining(settings):
    with pytest.raises(ValueError, match="process_id|coordinator_address"):
        distributed.initialize(*settings, timeout_s=1)
    assert not jax.distributed.is_initialized()


def test_coordinator_address_must_be_host_and_port():
    with pytest.raises(ValueError, match="host:port"):
        distributed.wait_for_coordinator("localhost", 1)
