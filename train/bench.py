"""Benchmark: jitted train step, eval step, PGD-10 and APGD of a spiking net; prints one JSON line per config.

    python -m train.bench --arch vgg11 --batch 128 --T 4 [--dtype bfloat16] [--remat] [--reps 20]
    python -m train.bench --arch small --batch 64 --T 4 --image 28,28,1

Timings are medians over ``--reps`` runs after warm-up, each ended with ``block_until_ready``. Peak device
memory comes from the device's memory statistics (GPU/TPU; null on CPU, which has none).
"""
from __future__ import annotations

import json
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags, logging

from tgo_jax import attacks, data
from train import train
from train.configs.base import get_base_config


def bench_config(arch: str, batch: int, num_steps: int, dtype: str, remat: bool, strategy: str = "tet",
                 tgo: bool = False, image=(32, 32, 3), num_classes: int = 10) -> ml_collections.ConfigDict:
    c = get_base_config()
    c.model.arch = arch
    c.model.num_steps = num_steps
    c.model.num_classes = num_classes
    c.model_kwargs.in_channels = image[-1]
    c.batch_size = batch
    c.epochs = 1
    c.dtype = dtype
    c.neuron.remat = remat
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


def run_bench(config, image, reps: int, apgd: bool = True) -> dict:
    """Times one config on random data; returns the JSON record."""
    info = data.DatasetInfo(name="bench", num_classes=config.model.num_classes, shape=tuple(image),
                            mean=(0.5,) * image[-1], std=(0.25,) * image[-1], num_train=0, num_test=0)
    model = train.build_model(config, info)
    steps = 1000
    optimizer = train.build_optimizer(config, steps)
    objective = train.build_objective(config, steps, model)
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.random((config.batch_size,) + tuple(image), np.float32)),
             "label": jnp.asarray(rng.integers(0, config.model.num_classes, config.batch_size), jnp.int32)}
    names = train.metric_names(config, model, objective, optimizer, batch)
    state = train.create_train_state(config, model, optimizer, batch["image"],
                                     {k: jnp.zeros(()) for k in names + ["count"]})
    step_fn = jax.jit(train.make_train_step(config, model, objective, optimizer), donate_argnums=0)
    eval_fn = jax.jit(train.make_eval_step(model))
    logits_fn = attacks.model_logits_fn(model)
    pgd_fn = jax.jit(lambda v, x, y, k: attacks.pgd(logits_fn, v, x, y, k, eps=8 / 255, alpha=0.01, steps=10))
    apgd_fn = jax.jit(lambda v, x, y, k: attacks.apgd(logits_fn, v, x, y, k, eps=8 / 255, steps=10))
    key = jax.random.PRNGKey(0)

    holder = {"state": state}

    def train_once():
        holder["state"], m = step_fn(holder["state"], batch)
        jax.block_until_ready(m)

    record = {"arch": config.model.arch, "batch": config.batch_size, "T": config.model.num_steps,
              "dtype": config.dtype, "remat": bool(config.neuron.remat), "strategy": config.strategy,
              "device": jax.devices()[0].device_kind, "backend": jax.default_backend()}
    record["train_ms"] = round(median_ms(train_once, reps), 2)
    variables = {"params": holder["state"].params, "batch_stats": holder["state"].batch_stats}
    record["eval_ms"] = round(median_ms(lambda: jax.block_until_ready(eval_fn(variables, batch, key)),
                                        reps), 2)
    record["pgd10_ms"] = round(median_ms(lambda: jax.block_until_ready(
        pgd_fn(variables, batch["image"], batch["label"], key)), reps), 2)
    if apgd:
        record["apgd10_ms"] = round(median_ms(lambda: jax.block_until_ready(
            apgd_fn(variables, batch["image"], batch["label"], key)), reps), 2)
    record["peak_mib"] = peak_mib()
    return record


_ARCH = flags.DEFINE_list("arch", ["small"], "architectures: small, vgg11, wrn16_4")
_BATCH = flags.DEFINE_integer("batch", 64, "batch size")
_T = flags.DEFINE_list("T", ["4"], "time steps (several give the cost against T)")
_DTYPE = flags.DEFINE_list("dtype", ["float32"], "compute dtypes: float32, bfloat16")
_REMAT = flags.DEFINE_list("remat", ["false"], "remat options: false, true")
_IMAGE = flags.DEFINE_list("image", ["28", "28", "1"], "input shape H,W,C (32,32,3 for vgg11/wrn16_4)")
_REPS = flags.DEFINE_integer("reps", 20, "timed repetitions (median reported)")
_STRATEGY = flags.DEFINE_string("strategy", "tet", "training strategy: tet, at, rat")
_NO_APGD = flags.DEFINE_bool("no_apgd", False, "skip the APGD timing")


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    image = tuple(int(v) for v in _IMAGE.value)
    for arch in _ARCH.value:
        for t in _T.value:
            for dtype in _DTYPE.value:
                for remat in _REMAT.value:
                    config = bench_config(arch, _BATCH.value, int(t), dtype, remat.lower() == "true",
                                          _STRATEGY.value, image=image)
                    print(json.dumps(run_bench(config, image, _REPS.value, apgd=not _NO_APGD.value)), flush=True)


if __name__ == "__main__":
    app.run(main)
