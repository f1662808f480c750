"""Cost of Noisy-LIF noise: forward, input gradient and PGD-10 with EoT, LIF against Noisy-LIF.

    python bench/noise_cost.py [--batch 500] [--steps 4] [--pgd-batch 100] [--eot 4] [--reps 5]

Small net (28×28×1, random weights with eval-mode BatchNorm, 10 classes), random pixels; one JSON line per
neuron kind with the median wall milliseconds (after one warm-up call) of the jitted forward pass
(``logits``), the input gradient of the summed cross-entropy (``grad``, what every attack step computes)
and PGD-10 with ``--eot`` noise draws per gradient (``pgd10_eot``). Seeds: parameters 0, pixels 1, labels 2,
noise 3, attack 4. Only public tgo_jax API is used, so the same script times any revision of the library.

A last line times the noise draws alone for the net's three Noisy-LIF layers over T steps (the sum of ξ², so
nothing is stored): ``tgo_jax.noise`` (Philox-4x32 bits) against ``jax.random.normal`` with one split key per
step (what the layers drew before), interleaved rep by rep in one process.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics

import jax
import jax.numpy as jnp
import optax

from tgo_jax import attacks, models
from tgo_train.bench import median_ms


def bench_kind(kind: str, args) -> dict:
    model = models.create("small", kind=kind, num_classes=10, num_steps=args.steps)
    x = jax.random.uniform(jax.random.key(1), (args.batch, 28, 28, 1))
    y = jax.random.randint(jax.random.key(2), (args.batch,), 0, 10)
    noise, attack_key = jax.random.key(3), jax.random.key(4)
    variables = jax.jit(model.init)({"params": jax.random.key(0), "noise": noise}, x[:1])
    logits_fn = attacks.model_logits_fn(model)

    forward = jax.jit(logits_fn)

    @jax.jit
    def grad(variables, x, key):
        return jax.grad(lambda x: optax.softmax_cross_entropy_with_integer_labels(
            logits_fn(variables, x, key), y).sum())(x)

    pgd = jax.jit(lambda variables, x, y, key: attacks.pgd(logits_fn, variables, x, y, key, steps=10,
                                                           eot=args.eot))
    xp, yp = x[:args.pgd_batch], y[:args.pgd_batch]
    record = {"kind": kind, "batch": args.batch, "T": args.steps, "pgd_batch": args.pgd_batch, "eot": args.eot}
    record["logits_ms"] = round(median_ms(lambda: jax.block_until_ready(forward(variables, x, noise)),
                                          args.reps), 1)
    record["grad_ms"] = round(median_ms(lambda: jax.block_until_ready(grad(variables, x, noise)), args.reps), 1)
    record["pgd10_eot_ms"] = round(median_ms(lambda: jax.block_until_ready(pgd(variables, xp, yp, attack_key)),
                                             args.reps), 1)
    return record


def bench_draws(args) -> dict:
    """Median ms of drawing the small net's Noisy-LIF noise, tgo_jax.noise against jax.random.normal."""
    from tgo_jax import noise  # the draw itself; the model timings above use the public API only
    shapes = [(args.batch, 28, 28, 16), (args.batch, 14, 14, 32), (args.batch, 128)]
    keys = jax.random.split(jax.random.key(3), len(shapes))

    @jax.jit
    def philox(keys):
        return sum(jnp.sum(jnp.square(noise.gaussian(noise.layer_key(k), t, shape, jnp.float32, 0.4)))
                   for k, shape in zip(keys, shapes) for t in range(args.steps))

    @jax.jit
    def threefry(keys):
        return sum(jnp.sum(jnp.square(0.4 * jax.random.normal(step_key, shape)))
                   for k, shape in zip(keys, shapes) for step_key in jax.random.split(k, args.steps))

    fns = {"philox_ms": philox, "jax_random_normal_ms": threefry}
    for fn in fns.values():
        jax.block_until_ready(fn(keys))
    samples = {name: [] for name in fns}
    for _ in range(args.reps):
        for name, fn in fns.items():
            samples[name].append(median_ms(lambda fn=fn: jax.block_until_ready(fn(keys)), 1, warmup=0))
    return {"draws": sum(math.prod(s) for s in shapes) * args.steps,
            **{name: round(statistics.median(v), 1) for name, v in samples.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--steps", type=int, default=4, help="time steps T")
    parser.add_argument("--pgd-batch", type=int, default=100)
    parser.add_argument("--eot", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--kinds", default="lif,noisy")
    args = parser.parse_args()
    for kind in args.kinds.split(","):
        record = bench_kind(kind, args)
        record.update(backend=jax.default_backend(), jax=jax.__version__, machine=platform.machine())
        print(json.dumps(record), flush=True)
    print(json.dumps(bench_draws(args)), flush=True)


if __name__ == "__main__":
    main()
