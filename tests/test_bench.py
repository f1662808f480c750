"""The benchmark program (tgo_train/bench.py): records, flags and errors. No timing is asserted."""
import json
import os
import subprocess
import sys

import pytest

from tgo_train import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_cli_prints_one_record_per_configuration():
    cmd = [sys.executable, "-m", "tgo_train.bench", "--arch", "small", "--batch", "4", "--T", "2",
           "--remat", "none,block", "--fused", "false", "--reps", "1", "--no_apgd",
           "--surrogate", "rectangle", "--devices", "2"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="2")  # the batch sharded over 2 devices
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(r["remat"], r["fused"]) for r in records] == [("none", False), ("block", False)]
    for r in records:
        assert (r["arch"], r["batch"], r["T"], r["dtype"], r["surrogate"]) == ("small", 4, 2, "float32", "rectangle")
        assert r["train_ms"] > 0 and r["eval_ms"] > 0 and r["pgd10_ms"] > 0 and "apgd10_ms" not in r
        assert r["devices"] == 2 and r["train_images_per_s"] == pytest.approx(4e3 / r["train_ms"], rel=0.01)
        assert r["step_estimate_mib"] > 0  # the compiler's estimate exists on CPU too
        assert r["peak_mib"] is None or r["peak_mib"] > 0


def test_bench_rejects_unknown_remat_and_bool_flags():
    with pytest.raises(ValueError, match="remat must be one of"):
        bench.bench_config("small", 4, 2, "float32", remat="yes")
    for flags, message in ((["--fused", "maybe"], "expected true or false"),
                           (["--remat", "none,all"], "--remat takes none, step, block"),
                           (["--remat", "step"], "use it with --fused false")):
        cmd = [sys.executable, "-m", "tgo_train.bench", *flags, "--reps", "1"]
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode != 0 and message in result.stderr, result.stderr[-1000:]
