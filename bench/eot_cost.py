"""Cost of EoT draws: PGD-10 with EoT on a Noisy-LIF net, the draws batched against a loop over them.

    python bench/eot_cost.py [--batch 100] [--steps 4] [--eot 4] [--reps 5]

Small net (28×28×1, random weights with eval-mode BatchNorm, 10 classes, T = ``--steps``), random pixels;
PGD-10 with ``--eot`` noise draws per gradient. Variants of ``core.loss_and_grad`` (the only thing that
differs): ``loop`` (the library's: one draw after another in a ``lax.fori_loop``), ``vmap`` (the draws
batched, ``jax.vmap`` over the draw keys) and ``map2`` (``lax.map`` over the keys in chunks of 2 draws,
half the memory of ``vmap``). Each variant is compiled once (warm-up), then the variants are timed rep
by rep, interleaved, in one process; one JSON line with the median wall milliseconds and the largest
difference of each variant's x_adv from ``loop``'s (the draws use the same keys; the sum over draws can
round differently in the last bit, which can flip a sign step).
Seeds: parameters 0, pixels 1, labels 2, attack 4.
"""
from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
from jax import lax

from tgo_jax import attacks, models
from tgo_jax.attacks import core, gradient


def _in_draw_order(stacked):
    """Mean over the leading (draw) axis, summed in draw order as the loop does."""
    def mean(a):
        total = a[0]
        for i in range(1, a.shape[0]):
            total = total + a[i]
        return total / a.shape[0]
    return jax.tree.map(mean, stacked)


def vmap_loss_and_grad(objective, logits_fn, params, x, y, key, *, eot=1, grad_clip=None):
    """The draws batched: ``jax.vmap`` over the draw keys (one pass on eot times the batch)."""
    once = functools.partial(core._loss_grad_once, objective, logits_fn, params, x, y, grad_clip=grad_clip)
    if eot == 1:
        return once(key)
    return _in_draw_order(jax.vmap(once)(jax.random.split(key, eot)))


def map2_loss_and_grad(objective, logits_fn, params, x, y, key, *, eot=1, grad_clip=None):
    """``lax.map`` over the draw keys, 2 draws batched per iteration."""
    once = functools.partial(core._loss_grad_once, objective, logits_fn, params, x, y, grad_clip=grad_clip)
    if eot == 1:
        return once(key)
    return _in_draw_order(lax.map(once, jax.random.split(key, eot), batch_size=2))


VARIANTS = {"loop": core.loss_and_grad, "vmap": vmap_loss_and_grad, "map2": map2_loss_and_grad}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=4, help="time steps T")
    parser.add_argument("--eot", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    model = models.create("small", kind="noisy", num_classes=10, num_steps=args.steps)
    x = jax.random.uniform(jax.random.key(1), (args.batch, 28, 28, 1))
    y = jax.random.randint(jax.random.key(2), (args.batch,), 0, 10)
    variables = jax.jit(model.init)({"params": jax.random.key(0), "noise": jax.random.key(3)}, x[:1])
    logits_fn = attacks.model_logits_fn(model)
    key = jax.random.key(4)

    compiled, results = {}, {}
    for name, fn in VARIANTS.items():
        gradient.loss_and_grad = fn  # read by pgd_run while it is traced (the compile below)
        try:
            run = jax.jit(lambda v, x, y, k: attacks.pgd(logits_fn, v, x, y, k, steps=10, eot=args.eot))
            results[name] = jax.block_until_ready(run(variables, x, y, key))
            compiled[name] = run
        finally:
            gradient.loss_and_grad = core.loss_and_grad
    samples = {name: [] for name in VARIANTS}
    for _ in range(args.reps):
        for name, run in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(run(variables, x, y, key))
            samples[name].append((time.perf_counter() - t0) * 1e3)
    record = {"bench": "pgd10_eot", "kind": "noisy", "batch": args.batch, "T": args.steps, "eot": args.eot,
              "reps": args.reps}
    record.update({f"{name}_ms": round(statistics.median(v), 1) for name, v in samples.items()})
    record.update({f"{name}_max_diff_from_loop": float(jnp.max(jnp.abs(results[name] - results["loop"])))
                   for name in VARIANTS if name != "loop"})
    record.update(backend=jax.default_backend(), jax=jax.__version__, machine=platform.machine(),
                  devices=jax.device_count())
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
