"""Faults that clusters produce: a second program on a workdir, a dead lock holder, a full disk, a read-only
workdir, Ctrl-C, a too large evaluation batch, a seed that overflows, a coordinator whose peers never come.

Most cases run the programs in this process (``tests.test_cli_errors.run_main``); the ones that need a real
exit (a hang, SIGABRT) or a second process holding a lock start subprocesses. The preemption test (SIGTERM,
SIGINT, then a bit-identical resume) is in tests/test_resume_safety.py, beside the kill -9 one.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import TINY_CONFIG
from tests.test_cli_errors import REPO, run_main
from tgo_train import checkpoint, cli, distributed, feed, resume, robustness, rundir, train
from tgo_train import workdir as workdirs

SHORT_RUN = ["--config.max_steps=2", "--config.checkpoint_every_steps=1"]  # a checkpoint in flight at step 2


@pytest.fixture(autouse=True)
def no_debug(monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)


def one_error_line(err: str) -> str:
    """The stderr of a failed program: exactly one line, ``error: ...``; returns it."""
    assert err.startswith("error: ") and err.count("\n") == 1, err[-3000:]
    return err.strip()


# ----------------------------------------------------------------------------------------------------
# the workdir lock
# ----------------------------------------------------------------------------------------------------

HOLDER = r"""
import sys, time
from tgo_train import workdir
lock = workdir.acquire(sys.argv[1])
print("held", flush=True)
time.sleep(120)
"""


@contextlib.contextmanager
def lock_held_by_another_process(workdir: str):
    """A real second process holding ``workdir``'s lock; yields it (killed with SIGKILL on leaving)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, workdir], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO))
    try:
        assert proc.stdout.readline() == "held\n"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_second_training_is_refused_at_once_naming_the_holder(tmp_path, monkeypatch, capsys):
    workdir = str(tmp_path / "run")
    with lock_held_by_another_process(workdir) as holder:
        t0 = time.monotonic()
        code, out, err = run_main(monkeypatch, capsys, "--config", TINY_CONFIG, "--workdir", workdir)
        assert time.monotonic() - t0 < 5  # before data, model or compilation
    assert code == 1 and out == ""
    line = one_error_line(err)
    assert line.startswith(f"error: {workdir} is in use by pid {holder.pid} on {socket.gethostname()} ("), line
    assert ", started 20" in line and f"(lock file {workdir}/{workdirs.WRITER})" in line, line
    assert os.listdir(workdir) == [workdirs.WRITER]  # nothing written but the holder's lock file


def test_lock_of_a_dead_holder_is_taken_over_with_a_line(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    with lock_held_by_another_process(workdir) as holder:
        pass  # killed with SIGKILL: its lock file stays, naming it
    lock = workdirs.acquire(workdir)
    err = capsys.readouterr().err
    assert f"took over the lock of {workdir} from pid {holder.pid} on {socket.gethostname()}" in err, err
    with open(os.path.join(workdir, workdirs.WRITER)) as f:
        assert json.load(f)["pid"] == os.getpid()
    lock.release()
    assert os.listdir(workdir) == []  # released: the lock file removed


def test_evaluation_runs_beside_training_but_not_beside_another_evaluation(tmp_path):
    workdir = str(tmp_path / "run")
    with workdirs.locked(workdir):  # training holds the workdir
        with workdirs.locked_for_evaluation([workdir]):
            with pytest.raises(workdirs.WorkdirBusyError, match=f"pid {os.getpid()}"):
                workdirs.locked_for_evaluation([workdir])
        assert sorted(os.listdir(workdir)) == [workdirs.WRITER]  # the evaluation lock went with it


def test_fresh_refuses_a_file_and_a_folder_that_is_no_workdir(tmp_path, monkeypatch, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_text("jpg")
    for path, why in ((notes, "is not a folder"), (tmp_path / "photos", "holds no training run")):
        code, _, err = run_main(monkeypatch, capsys, "--config", TINY_CONFIG, "--workdir", str(path), "--fresh")
        assert code == 1 and why in one_error_line(err), err
    assert notes.read_text() == "mine" and os.listdir(tmp_path / "photos") == ["a.jpg"]
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "photos"]  # nothing renamed


def test_fresh_does_not_move_a_workdir_in_use(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    with workdirs.locked(workdir):
        rundir.write_json(os.path.join(workdir, rundir.CONFIG), {})
        with pytest.raises(workdirs.WorkdirBusyError, match="is in use by"):
            resume.move_aside(workdir)
    assert os.listdir(tmp_path) == ["run"]


# ----------------------------------------------------------------------------------------------------
# write errors: one line naming the path, nothing half-written, no background writer left running
# ----------------------------------------------------------------------------------------------------

def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() raises it: no file named


@pytest.mark.usefixtures("fashion_mnist")
def test_full_disk_in_the_event_file_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    from tensorboardX.event_file_writer import EventsWriter

    workdir = str(tmp_path / "run")
    monkeypatch.setattr(EventsWriter, "_write_serialized_event", full_disk)
    code, _, err = run_main(monkeypatch, capsys, "--config", TINY_CONFIG, "--workdir", workdir, *SHORT_RUN)
    assert code == 1
    line = one_error_line(err)
    assert "No space left on device" in line and f"{workdir}/events.out.tfevents." in line, line
    assert not os.path.exists(os.path.join(workdir, workdirs.WRITER))


def test_checkpoint_write_failure_ends_the_process_with_one_line(tmp_path):
    """A real write failure in orbax's background writers (files limited to 8 KB: EFBIG, as a full disk gives
    ENOSPC) in a real process, so a writer left running would hang it (the timeout fails the test) and their
    logged tracebacks would show."""
    child = r"""
import resource, signal, sys
from tgo_train import cli, main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
cli.run(main.main, sys.argv)
"""
    workdir = str(tmp_path / "run")
    env = dict(os.environ, PYTHONPATH=REPO)
    for name in (cli.DEBUG_ENV, "JAX_COMPILATION_CACHE_DIR"):  # its files would meet the limit too
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-c", child, "--config", TINY_CONFIG, "--workdir", workdir, *SHORT_RUN],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr == f"error: OSError: [Errno {errno.EFBIG}] File too large: '{workdir}/checkpoints'\n", \
        proc.stderr[-3000:]
    assert not os.path.exists(os.path.join(workdir, workdirs.WRITER))  # released on the way out


def test_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    path = str(tmp_path / rundir.METRICS)
    rundir.write_jsonl(path, [{"epoch": 1}])
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match=f"No space left on device: '{path}'"):
        rundir.append_jsonl(path, {"epoch": 2})
    assert os.listdir(tmp_path) == [rundir.METRICS] and rundir.read_jsonl(path) == [{"epoch": 1}]


def test_orbax_error_with_an_os_error_code_becomes_an_os_error_naming_the_folder():
    error = ValueError('RESOURCE_EXHAUSTED: Error writing "params.Dense_1.bias/0" in OCDBT database: Failed to '
                       "write 409 bytes to file 16: No space left on device [os_error_code='28']")
    assert str(checkpoint.os_error(error, "/w/checkpoints")) == \
        "[Errno 28] No space left on device: '/w/checkpoints'"
    assert checkpoint.os_error(ValueError("shapes differ"), "/w/checkpoints") is None


def test_ctrl_c_outside_training_is_one_line(tmp_path, monkeypatch, capsys):
    def interrupted(config, workdir):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_and_evaluate", interrupted)
    code, _, err = run_main(monkeypatch, capsys, "--config", TINY_CONFIG, "--workdir", str(tmp_path / "run"))
    assert code == 130 and err == "interrupted (Ctrl-C): stopped without saving\n"


# ----------------------------------------------------------------------------------------------------
# checked before the long work
# ----------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def read_only(folder: str):
    """``folder`` made read-only for this process (root ignores modes: the immutable attribute then)."""
    os.chmod(folder, 0o555)
    immutable = os.access(folder, os.W_OK) and subprocess.run(["chattr", "+i", folder],
                                                               capture_output=True).returncode == 0
    try:
        if os.access(folder, os.W_OK) and not immutable:
            pytest.skip("cannot make a folder read-only here")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", folder], check=True)
        os.chmod(folder, 0o755)


def test_evaluation_of_a_read_only_workdir_is_refused_before_attacking(tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    os.makedirs(os.path.join(workdir, "checkpoints"))
    monkeypatch.setattr(robustness, "load_run", lambda *a, **k: pytest.fail("attacked a workdir it cannot write"))
    with read_only(workdir):
        with pytest.raises(OSError, match=f"cannot write in {workdir}"):
            workdirs.locked_for_evaluation([workdir])
        with pytest.raises(OSError, match=f"cannot write in {workdir}"):
            robustness.evaluate_workdir(workdir, eps_list=[8 / 255], alpha=0.01, extra=(), eot=1, draws=1,
                                        eps_sweep=(), sweep_attack="PGD10", num_examples=8, batch_size=8)


def test_evaluation_table_is_printed_when_writing_it_fails(tmp_path, monkeypatch, capsys):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    results = {"workdir": workdir, "step": 6, "eot": 1, "draws": 1, "num_examples": 8, "alpha": 0.01,
               "tables": {"8/255": {"Clean": 62.5, "PGD10": 12.5}}}
    monkeypatch.setattr(rundir, "_write_then_rename", full_disk)
    with pytest.raises(OSError, match=f"{workdir}/eval.json"):
        robustness.write_results(workdir, results)
    out = capsys.readouterr().out
    assert "| run | 62.50 | 12.50 |" in out, out
    assert os.listdir(workdir) == []


@pytest.mark.usefixtures("fashion_mnist")
def test_huge_eval_batch_size_is_capped_at_the_test_set(tmp_path, monkeypatch, capsys):
    sizes = []
    batches = feed.eval_batches

    def recorded(images, labels, batch_size, mesh):
        for batch in batches(images, labels, batch_size, mesh):
            sizes.append(len(batch["label"]))
            yield batch

    monkeypatch.setattr(feed, "eval_batches", recorded)
    code, out, err = run_main(monkeypatch, capsys, "--config", TINY_CONFIG, "--workdir", str(tmp_path / "run"),
                              "--config.max_steps=1", "--config.eval_batch_size=10000000")
    assert code == 0, err
    assert sizes == [128]  # the test subset: one batch, nothing padded
    assert "test_accuracy" in out


@pytest.mark.parametrize("seed", [2**32 - 1, 2**70])
def test_overflowing_seed_names_the_field(tmp_path, monkeypatch, capsys, seed):
    code, _, err = run_main(monkeypatch, capsys, "--config", TINY_CONFIG, "--workdir", str(tmp_path / "w"),
                            f"--config.seed={seed}")
    assert code == 1
    assert one_error_line(err) == f"error: config.seed must be an int in [0, {2**32 - 2}], got {seed}"
    assert not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------------------------------
# a multi-process run that does not come together: one line and status 1, not SIGABRT
# ----------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("process_id", [0, 1])
def test_coordinator_timeout_is_one_line_and_status_1(tmp_path, process_id):
    """Process 0 whose peer never comes; process 1 whose coordinator address is a port that is no JAX's."""
    with socket.socket() as server:
        if process_id:  # something else listens there: the TCP check passes, JAX's handshake never does
            server.bind(("127.0.0.1", 0))
            server.listen()
        port = server.getsockname()[1] if process_id else free_port()
        env = dict(os.environ, PYTHONPATH=REPO)
        env.pop(cli.DEBUG_ENV, None)
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "tgo_train.main", "--config", TINY_CONFIG, "--workdir", str(tmp_path / "run"),
             "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2", "--process_id", str(process_id),
             "--distributed_timeout", "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert time.monotonic() - t0 < 60
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith(f"process {process_id} of 2: joining the run") and len(lines) == 2, proc.stderr[-3000:]
    assert lines[1].startswith(f"error: process {process_id} of 2: the run did not come together within 2 s")
    assert not (tmp_path / "run").exists()


def test_coordinator_port_served_by_another_program_is_named_at_once():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        with pytest.raises(ValueError, match=f"the coordinator port .* of {address} cannot be served on this host"):
            distributed.check_port_free(address, "process 0 of 2")
    distributed.check_port_free(address)  # free again once closed


@pytest.mark.parametrize("program", ["tgo_train.experiment", "tgo_train.reproduce"])
def test_drivers_refuse_a_workdir_in_use(tmp_path, program):
    workdir = str(tmp_path / "runs")
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop(cli.DEBUG_ENV, None)
    with lock_held_by_another_process(workdir) as holder:
        proc = subprocess.run([sys.executable, "-m", program, "--workdir", workdir], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.startswith(f"error: {workdir} is in use by pid {holder.pid} on "), proc.stderr[-3000:]
    assert proc.stderr.count("\n") == 1 and os.listdir(workdir) == [workdirs.WRITER]
