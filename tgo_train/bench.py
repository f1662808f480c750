"""Benchmark: jitted train step, eval step, PGD-10 and APGD of a spiking net; prints one JSON line per config.

    python -m tgo_train.bench --arch vgg11,wrn16_4 --batch 128 --T 4 --image 32,32,3 \
        [--dtype float32,bfloat16] [--remat none,block] [--fused true,false] [--reps 20]
    python -m tgo_train.bench --arch small --batch 64 --T 4 --image 28,28,1

Each flag takes a comma-separated list; every combination is timed. ``--devices 1,2,4,8`` shards the
(global) batch over that many devices each time: train-step, eval and attack throughput against device
count (``images_per_s``; on fake CPU devices this proves the sharding runs, not that it is fast).
``--remat``: none, step
(``NeuronConfig.remat``, per time step, plain path) or block (``remat_blocks``, per conv/BN/LIF or
residual block). ``--fused``: the fused LIF layer with a hand-written backward (default) or autodiff.

Timings are medians over ``--reps`` runs after warm-up, each ended with ``block_until_ready``. Peak device
memory (``peak_mib``) comes from the device's memory statistics (GPU/TPU; null on CPU, which has none);
``step_estimate_mib`` is the compiler's buffer-assignment estimate for the train step alone (every backend).
Run one configuration per process for per-configuration peaks: the device's peak is process-wide.
"""
from __future__ import annotations

import itertools
import json
import statistics
import time

import jax
import ml_collections
import numpy as np
from absl import app, flags, logging

from tgo_jax import attacks, data, sharding
from tgo_train import cli, train
from tgo_train.configs.base import get_base_config


REMATS = ("none", "step", "block")


def bench_config(arch: str, batch: int, num_steps: int, dtype: str, remat: str = "none", strategy: str = "tet",
                 tgo: bool = False, image=(32, 32, 3), num_classes: int = 10,
                 fused: bool = True, surrogate: str = "triangle") -> ml_collections.ConfigDict:
    c = get_base_config()
    c.model.arch = arch
    c.model.num_steps = num_steps
    c.model.num_classes = num_classes
    c.model_kwargs.in_channels = image[-1]
    c.batch_size = batch
    c.epochs = 1
    c.dtype = dtype
    if remat not in REMATS:
        raise ValueError(f"remat must be one of {REMATS}, got {remat!r}")
    c.neuron.remat = remat == "step"
    c.model_kwargs.remat_blocks = remat == "block"
    c.neuron.fused = fused
    c.neuron.surrogate = surrogate
    c.strategy = strategy
    if tgo:
        c.margin.enabled = True
        c.neuron.kind = "noisy"
    return c


def median_ms(fn, reps: int, warmup: int = 1) -> float:
    """Median wall milliseconds of ``fn()`` (which must block) after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def peak_mib():
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else round(peak / 2**20, 1)


def footprint_mib(compiled) -> float | None:
    """The compiler's estimate of a compiled step's device memory: arguments + temporaries + outputs
    not aliased to (donated) arguments. Available on every backend, CPU included; None if not reported."""
    mem = compiled.memory_analysis()
    if mem is None:
        return None
    total = (mem.argument_size_in_bytes + mem.temp_size_in_bytes + mem.output_size_in_bytes
             - mem.alias_size_in_bytes)
    return round(total / 2**20, 1)


def run_bench(config, image, reps: int, apgd: bool = True, num_devices: int = 1) -> dict:
    """Times one config on random data, the batch sharded over ``num_devices`` devices; returns the JSON record."""
    mesh = sharding.make_mesh(num_devices)
    sharding.check_batch_size(config.batch_size, mesh)
    info = data.DatasetInfo(name="bench", num_classes=config.model.num_classes, shape=tuple(image),
                            mean=(0.5,) * image[-1], std=(0.25,) * image[-1], num_train=0, num_test=0)
    model = train.build_model(config, info)
    steps = 1000
    optimizer = train.build_optimizer(config, steps)
    objective = train.build_objective(config, steps, model)
    rng = np.random.default_rng(0)
    batch = sharding.shard_batch({
        "image": rng.random((config.batch_size,) + tuple(image), np.float32),
        "label": rng.integers(0, config.model.num_classes, config.batch_size).astype(np.int32),
        "mask": np.ones((config.batch_size,), bool)}, mesh)
    state = sharding.replicate(train.create_train_state(config, model, optimizer, batch["image"]), mesh)
    step_fn = jax.jit(train.make_train_step(config, model, objective, optimizer), donate_argnums=0)
    step_fn = step_fn.lower(state, batch).compile()  # compiled once: timed below, and its memory read
    eval_fn = jax.jit(train.make_eval_step(model))
    logits_fn = attacks.model_logits_fn(model)
    pgd_fn = jax.jit(lambda v, x, y, k: attacks.pgd(logits_fn, v, x, y, k, eps=8 / 255, alpha=attacks.ALPHA, steps=10))
    apgd_fn = jax.jit(lambda v, x, y, k: attacks.apgd(logits_fn, v, x, y, k, eps=8 / 255, steps=10))
    key = jax.random.PRNGKey(0)

    holder = {"state": state}

    def train_once():
        holder["state"], m = step_fn(holder["state"], batch)
        jax.block_until_ready(m)

    record = {"arch": config.model.arch, "batch": config.batch_size, "T": config.model.num_steps,
              "dtype": config.dtype, "remat": _remat_name(config), "fused": bool(config.neuron.fused),
              "surrogate": config.neuron.surrogate, "strategy": config.strategy,
              "device": jax.devices()[0].device_kind, "backend": jax.default_backend(), "devices": mesh.size}
    record["train_ms"] = round(median_ms(train_once, reps), 2)
    variables = {"params": holder["state"].params, "batch_stats": holder["state"].batch_stats}
    record["eval_ms"] = round(median_ms(lambda: jax.block_until_ready(eval_fn(variables, batch, key)),
                                        reps), 2)
    record["pgd10_ms"] = round(median_ms(lambda: jax.block_until_ready(
        pgd_fn(variables, batch["image"], batch["label"], key)), reps), 2)
    if apgd:
        record["apgd10_ms"] = round(median_ms(lambda: jax.block_until_ready(
            apgd_fn(variables, batch["image"], batch["label"], key)), reps), 2)
    for name in ("train", "eval", "pgd10", "apgd10"):
        if f"{name}_ms" in record:
            record[f"{name}_images_per_s"] = round(config.batch_size / record[f"{name}_ms"] * 1e3, 1)
    record["peak_mib"] = peak_mib()
    record["step_estimate_mib"] = footprint_mib(step_fn)
    return record


def _remat_name(config) -> str:
    if config.model_kwargs.get("remat_blocks", False):
        return "block"
    return "step" if config.neuron.remat else "none"


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise app.UsageError(f"expected true or false, got {text!r}")
    return text.lower() == "true"


_ARCH = flags.DEFINE_list("arch", ["small"], "architectures: small, vgg11, wrn16_4")
_BATCH = flags.DEFINE_integer("batch", 64, "batch size")
_T = flags.DEFINE_list("T", ["4"], "time steps (several give the cost against T)")
_DTYPE = flags.DEFINE_list("dtype", ["float32"], "compute dtypes: float32, bfloat16")
_REMAT = flags.DEFINE_list("remat", ["none"], "remat options: none, step, block")
_FUSED = flags.DEFINE_list("fused", ["true"], "LIF layer: fused custom_vjp (true) or autodiff of the scan (false)")
_IMAGE = flags.DEFINE_list("image", ["28", "28", "1"], "input shape H,W,C (32,32,3 for vgg11/wrn16_4)")
_REPS = flags.DEFINE_integer("reps", 20, "timed repetitions (median reported)")
_STRATEGY = flags.DEFINE_string("strategy", "tet", "training strategy: tet, at, rat")
_SURROGATE = flags.DEFINE_string("surrogate", "triangle", "surrogate gradient (rectangle matches the PyTorch peer)")
_NO_APGD = flags.DEFINE_bool("no_apgd", False, "skip the APGD timing")
_DEVICES = flags.DEFINE_list("devices", ["1"], "device counts to shard the batch over (0 = all), e.g. 1,2,4,8")


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    image = tuple(int(v) for v in _IMAGE.value)
    fused_values = [_bool(f) for f in _FUSED.value]  # every flag checked before anything runs
    if set(_REMAT.value) - set(REMATS):
        raise app.UsageError(f"--remat takes {', '.join(REMATS)}, got {','.join(_REMAT.value)}")
    if "step" in _REMAT.value and True in fused_values:
        raise app.UsageError("--remat step applies to the plain LIF path: use it with --fused false")
    devices = [int(d) for d in _DEVICES.value]
    for n in devices:
        sharding.check_batch_size(_BATCH.value, sharding.make_mesh(n), field="--batch")
    grid = itertools.product(_ARCH.value, _T.value, _DTYPE.value, _REMAT.value, fused_values, devices)
    for arch, t, dtype, remat, fused, n in grid:
        config = bench_config(arch, _BATCH.value, int(t), dtype, remat, _STRATEGY.value, image=image,
                              fused=fused, surrogate=_SURROGATE.value)
        print(json.dumps(run_bench(config, image, _REPS.value, apgd=not _NO_APGD.value, num_devices=n)),
              flush=True)


def entry():
    """Console script ``tgo-bench``."""
    cli.run(main)


if __name__ == "__main__":
    entry()
