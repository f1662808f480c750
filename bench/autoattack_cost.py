"""Cost of AutoAttack "standard", staged (each component on the still-robust examples) against whole-batch.

    python bench/autoattack_cost.py [--images 200] [--reps 1] [--eps 8/255]

A small net (channels 8, 16, hidden 32, T = 2, LIF) trained for 300 Adam steps (batch 64, lr 3e-3) on the
first 4096 Fashion-MNIST training images, attacked on the first ``--images`` test images at ε = ``--eps``
with AutoAttack's reference sizes (APGD 100 iterations, 9 targets, FAB-T 100 iterations, Square 5000
queries). ``chunks=8`` is the library's staging; ``chunks=None`` runs every component on the whole batch
(the library's earlier rule). Each is compiled once (warm-up, its seconds reported), then timed rep by rep,
interleaved, in one process; one JSON line with the median wall seconds, the ratio staged / whole, the
robust accuracy of each and the number of examples on which the two disagree (their random starts
differ: same in distribution, not per draw). Seeds: training 0, attack 4.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tgo_jax import attacks, data, models


def train_small(x: np.ndarray, y: np.ndarray, steps: int = 300, batch: int = 64, lr: float = 3e-3, seed: int = 0):
    model = models.create("small", channels=(8, 16), hidden=32, num_steps=2)
    variables = model.init(jax.random.key(seed), jnp.asarray(x[:2]))
    tx = optax.adam(lr)
    opt_state = tx.init(variables["params"])

    @jax.jit
    def step(params, batch_stats, opt_state, xb, yb):
        def loss_fn(p):
            logits_tb, upd = model.apply({"params": p, "batch_stats": batch_stats}, xb, train=True,
                                         mutable=["batch_stats"])
            loss = optax.softmax_cross_entropy_with_integer_labels(models.mean_over_time(logits_tb), yb)
            return loss.mean(), upd["batch_stats"]
        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state

    params, stats = variables["params"], variables["batch_stats"]
    order = np.random.default_rng(seed).permutation(len(y))
    per_epoch = len(order) // batch
    for i in range(steps):
        idx = order[(i % per_epoch) * batch:((i % per_epoch) + 1) * batch]
        params, stats, opt_state = step(params, stats, opt_state, x[idx], y[idx])
    return model, {"params": params, "batch_stats": stats}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--eps", default="8/255")
    args = parser.parse_args()
    eps = float(Fraction(args.eps))
    ds = data.load_fashion_mnist()
    (xtr, ytr), (xte, yte) = ds["train"], ds["test"]
    model, variables = train_small(xtr[:4096], ytr[:4096])
    logits_fn = attacks.model_logits_fn(model)
    x, y = jnp.asarray(xte[:args.images]), jnp.asarray(yte[:args.images])
    key = jax.random.key(4)
    correct = jax.jit(lambda v, xa: jnp.argmax(logits_fn(v, xa, None), -1) == y)

    variants = {"staged": attacks.auto_attack.STAGE_CHUNKS, "whole": None}
    compiled, compile_s, robust = {}, {}, {}
    for name, chunks in variants.items():
        run = jax.jit(lambda v, x, y, k, chunks=chunks: attacks.autoattack(logits_fn, v, x, y, k, eps=eps,
                                                                          chunks=chunks))
        t0 = time.perf_counter()
        x_adv = jax.block_until_ready(run(variables, x, y, key))
        compile_s[name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: first call (compile and run) {compile_s[name]} s", file=sys.stderr, flush=True)
        assert float(jnp.max(jnp.abs(x_adv - x))) <= eps + 1e-6
        robust[name] = np.asarray(correct(variables, x_adv))
        compiled[name] = run
    samples = {name: [] for name in variants}
    for _ in range(args.reps):
        for name, run in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(run(variables, x, y, key))
            samples[name].append(time.perf_counter() - t0)
            print(f"{name}: {samples[name][-1]:.1f} s", file=sys.stderr, flush=True)
    seconds = {name: statistics.median(v) for name, v in samples.items()}
    record = {"bench": "autoattack_standard", "images": args.images, "eps": args.eps, "reps": args.reps,
              "chunks": variants["staged"],
              "clean_acc": float(np.asarray(correct(variables, x)).mean()),
              **{f"{name}_s": round(s, 1) for name, s in seconds.items()},
              **{f"{name}_first_call_s": s for name, s in compile_s.items()},
              "ratio": round(seconds["staged"] / seconds["whole"], 3),
              **{f"{name}_robust_acc": float(r.mean()) for name, r in robust.items()},
              "disagree": int((robust["staged"] != robust["whole"]).sum()),
              "backend": jax.default_backend(), "jax": jax.__version__, "machine": platform.machine()}
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
