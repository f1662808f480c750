r"""The robustness table of docs/robustness.md: every attack of the strong evaluation on trained workdirs.

    python bench/robustness_table.py --workdir runs/fmnist/vanilla --workdir runs/fmnist/tgo \
        --num_examples 500 --eps 8/255,0.1 --eot 4 --steps 20 --queries 300 --num_targets 3 --out table.json

Per (model, ε, attack): accuracy (per-example correctness, noisy models: share of ``--draws`` fresh noise draws)
and wall time (compile included, once per attack and model: ε is a traced argument); per (model, ε): the
per-example worst case over every attack. The batches are sharded over every device (``tgo_train.evaluation``;
batch i draws with ``jax.random.key(i)``). Sizes are flags so that the table fits the machine; the reference sizes
are --steps 100 --queries 5000 --num_targets 9 --eot 20.
"""
from __future__ import annotations

import functools
import itertools
import json
import os
import sys
import time

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tgo_jax import attacks  # noqa: E402
from tgo_train import evaluation, tables, trained  # noqa: E402

ROWS = ("Clean", "FGSM", "PGD10", "PGD40", "APGD-CE", "APGD-DLR", "APGD-T", "FAB-T", "Square", "SA-PGD", "ASSG",
        "Sweep", "Transfer-NoiseOff")
SWEEP = (("triangle", 0.25), ("triangle", 4.0), ("rectangle", 0.5), ("rectangle", 2.0), ("exponential", None),
         ("sigmoid", None), ("straight_through", None), ("bptr", None))

F = flags.FLAGS
flags.DEFINE_multi_string("workdir", None, "trained workdirs")
flags.DEFINE_list("eps", ["8/255", "0.1"], "budgets")
flags.DEFINE_list("rows", list(ROWS), "attacks (registry names)")
flags.DEFINE_integer("num_examples", 500, "test images")
flags.DEFINE_integer("batch_size", 500, "batch size")
flags.DEFINE_integer("eot", 4, "EoT draws per gradient for a noisy model")
flags.DEFINE_integer("draws", 3, "evaluation noise draws for a noisy model")
flags.DEFINE_integer("steps", 20, "APGD / APGD-T / FAB-T / SA-PGD / ASSG iterations")
flags.DEFINE_integer("sweep_steps", 5, "PGD steps per surrogate of the sweep")
flags.DEFINE_integer("queries", 300, "Square queries")
flags.DEFINE_integer("num_targets", 3, "APGD-T / FAB-T targets")
flags.DEFINE_string("out", "robustness_table.json", "output JSON")


def table(workdir: str) -> dict:
    run, variables, step = trained.load_run(workdir, None, F.num_examples)
    stochastic = bool(run.model.neuron.stochastic)
    eot, draws = (F.eot, F.draws) if stochastic else (1, 1)
    fn = attacks.model_logits_fn(run.model)
    images, labels = run.splits["test"]
    eps_values = [tables.parse_eps(e) for e in F.eps]
    out = {"workdir": workdir, "step": step, "eot": eot, "draws": draws, "num_examples": int(len(labels)),
           "accuracy": {e: {} for e in F.eps}, "seconds": {e: {} for e in F.eps}, "worst_case": {}}
    correct = {e: {} for e in F.eps}
    for name in F.rows:
        def attack_at(eps, name=name):
            a = attacks.make(name, eps=eps, alpha=attacks.ALPHA, eot=eot,
                             steps=F.sweep_steps if name == "Sweep" else F.steps,
                             queries=F.queries, num_targets=F.num_targets)
            return a if name != "Sweep" else (lambda *args, a=a: a(*args, rules=SWEEP))

        jitted = jax.jit(lambda v, b, k, eps: attacks.robust_correct(attack_at(eps), fn, v, b["image"], b["label"],
                                                                     k, draws=draws))
        for e_text, eps in zip(F.eps, eps_values):
            t0 = time.time()
            c, = evaluation.reduce_split([functools.partial(jitted, eps=eps)], variables, images, labels,
                                         batch_size=F.batch_size, keys=map(jax.random.key, itertools.count()),
                                         gather=True).values  # batch i: key(i)
            correct[e_text][name] = c
            out["accuracy"][e_text][name] = 100 * float(c.mean())
            out["seconds"][e_text][name] = round(time.time() - t0, 1)
            print(f"{os.path.basename(workdir)} eps={e_text} {name:18s} {100 * c.mean():6.2f} % "
                  f"{out['seconds'][e_text][name]:7.1f} s", flush=True)
    for e_text in F.eps:
        out["worst_case"][e_text] = 100 * float(np.min(np.stack(list(correct[e_text].values())), axis=0).mean())
    return out


def main(argv):
    del argv
    results = [table(w) for w in F.workdir]
    sizes = {k: getattr(F, k) for k in ("num_examples", "eot", "draws", "steps", "sweep_steps", "queries",
                                        "num_targets")}
    with open(F.out, "w") as f:
        json.dump({"sizes": sizes, "results": results}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
