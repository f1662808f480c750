"""Evaluation over a test split: one sharded loop that reduces jitted statistics over its batches.

``reduce_split`` feeds the split through ``feed.eval_batches`` (data-parallel over the mesh of
``tgo_jax.sharding``, the last batch padded and masked) and calls each statistic on every batch with a key of
its own. Clean accuracy (``train.evaluate_clean``), the attack suite (``evaluate_suite``), the event attack
(``evaluate_event_attack``), the reproduction's analysis measures (``reproduce.measure``) and the strong
robustness table (``bench/robustness_table.py``) are statistics reduced by it.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from tgo_jax import attacks, data, sharding
from tgo_train import distributed, feed
from tgo_train.progress import Progress

# statistic(variables, batch, key) -> a pytree of arrays: sums over the batch's real rows ([]; its ``mask`` [B]
# drops the padding) or, gathered, per-example values ([B]). Jitted by the caller, once.
Statistic = Callable[[Any, dict, jax.Array], Any]


def split_keys(key: jax.Array) -> Iterator[jax.Array]:
    """The keys ``sub_0, sub_1, ...`` of ``key, sub_i = jax.random.split(key)`` repeated: one per call."""
    while True:
        key, sub = jax.random.split(key)
        yield sub


@dataclasses.dataclass(frozen=True)
class Reduction:
    """What ``reduce_split`` returns, one entry per statistic."""

    values: list  # the statistic's pytree: floats summed over the batches, or gathered [N] numpy arrays
    seconds: list  # wall seconds of its calls, compilation and transfer to the host included


def reduce_split(statistics: Sequence[Statistic], variables, images, labels, *, batch_size: int,
                 keys: Iterator[jax.Array], mesh: Optional[Mesh] = None, gather: bool = False,
                 progress: Optional[Callable[[int], None]] = None) -> Reduction:
    """Reduces each statistic over every example of ``(images, labels)`` once, in dataset order.

    Args:
      statistics: jitted ``Statistic`` functions; on each batch they are called in this order.
      variables: the model's variables, replicated on ``mesh``.
      batch_size: global batch (``feed.eval_batches``: capped at the split, rounded up to the device count).
      keys: one key per call, taken batch by batch and statistic by statistic (``split_keys(key)``, or any
        iterator: the key of a call is the caller's choice, so results do not depend on the mesh).
      mesh: the devices the batches are sharded over (default: every device of every process).
      gather: the statistics return per-example values [B], gathered from every process and concatenated
        to [N] (the padding dropped); else they return sums over the batch, added up here in float64.
      progress: called with the number of calls done after each call (``Progress.update``).
    """
    mesh = mesh or sharding.make_mesh()
    to_host = distributed.host_array if gather else float
    parts = [[] for _ in statistics]
    seconds = [0.0 for _ in statistics]
    done = 0
    for batch in feed.eval_batches(images, labels, batch_size, mesh):
        for i, statistic in enumerate(statistics):
            t0 = time.time()
            parts[i].append(jax.tree.map(to_host, statistic(variables, batch, next(keys))))
            seconds[i] += time.time() - t0
            done += 1
            if progress:
                progress(done)
    n = len(labels)
    reduce = (lambda *xs: np.concatenate(xs)[:n]) if gather else (lambda *xs: sum(xs, 0.0))
    return Reduction([jax.tree.map(reduce, *p) for p in parts], seconds)


def num_calls(num_examples: int, batch_size: int, statistics: int, mesh: Optional[Mesh] = None) -> int:
    """The calls ``reduce_split`` makes: the total of its progress count."""
    return feed.num_eval_batches(num_examples, batch_size, mesh or sharding.make_mesh()) * statistics


# ----------------------------------------------------------------------------- the attack suite


def evaluate_suite(run, variables, suite, *, batch_size: int, draws: int, seed: int = 0,
                   progress: bool = True, label: str = "", per_example: bool = False, mesh=None):
    """Accuracy (%) of a model under each (name, attack) of ``suite`` on the run's test split.

    The batches are sharded over ``mesh`` (default: every device of every process), the last one
    padded (its padding rows come last and are dropped); ``variables`` should be replicated on the mesh
    (``load_run`` does that).

    Args:
      suite: sequence of (name, attack or None for clean) as made by ``attacks.paper_suite``.
      batch_size: global evaluation batch (rounded up to a multiple of the mesh's device count; the extra
        rows are masked padding).
      draws: noise draws per evaluation of a stochastic model (fresh noise; mean accuracy).
      seed: the keys, split from ``PRNGKey(seed)`` batch by batch and attack by attack.
      progress: a bar on a terminal, and a line with each attack's seconds when done.
      label: names the suite in the progress output (e.g. the model and ε).
      per_example: also return each example's correctness per row (share of the draws, [N] arrays),
        from which the per-example worst case over rows follows.

    Returns:
      ``{name: accuracy %}``, or ``({name: accuracy %}, {name: correctness [N]})`` with ``per_example``.
    """
    logits_fn = attacks.model_logits_fn(run.model)
    draws = draws if run.model.neuron.stochastic else 1
    images, labels = run.splits["test"]
    mesh = mesh or sharding.make_mesh()
    statistics = [jax.jit(_correct_fn(attack, logits_fn, draws)) for _, attack in suite]
    progress = progress and distributed.is_primary()
    bar = Progress(num_calls(len(labels), batch_size, len(suite), mesh), enabled=progress,
                   desc=f"evaluate {label}".strip())
    reduced = reduce_split(statistics, variables, images, labels, batch_size=batch_size,
                           keys=split_keys(jax.random.PRNGKey(seed)), mesh=mesh, gather=True, progress=bar.update)
    bar.close()
    hits = {name: h for (name, _), h in zip(suite, reduced.values)}
    accuracy = {name: 100.0 * float(h.sum()) / len(labels) for name, h in hits.items()}
    if progress:  # where the time went: one line per suite, each attack's seconds and accuracy
        bar.write(f"evaluated {label} on {len(labels)} images: " + ", ".join(
            f"{name} {s:.0f} s ({accuracy[name]:.1f}%)" for (name, _), s in zip(suite, reduced.seconds)))
    return (accuracy, hits) if per_example else accuracy


def _correct_fn(attack, logits_fn, draws) -> Statistic:
    """Per-example correctness [B] (share of the noise draws) after ``attack`` (None: clean)."""

    def correct(variables, batch, key):
        x, y = batch["image"], batch["label"]
        if attack:
            return attacks.robust_correct(attack, logits_fn, variables, x, y, key, draws=draws)
        return attacks.correct(logits_fn, variables, x, y, key, draws=draws)

    return correct


# ----------------------------------------------------------------------------- the event attack


def evaluate_event_attack(run, variables, *, batch_size: int, draws: int, eot: int, steps: int,
                          seed: int = 0, progress: bool = True, mesh=None) -> dict:
    """Attack success rate (%) of the event attack (Yao et al. 2024; docs/FORMULAS.md §10) on event data:
    of the test examples classified correctly, the share misclassified after the attack. Batches are
    sharded over ``mesh`` (default: every device), padded and masked like ``evaluate_suite``'s; the keys are
    split from ``PRNGKey(seed)``, one per batch."""
    logits_fn = attacks.model_logits_fn(run.model)
    unit = data.dvs.event_unit(run.config.dvs.mode, run.config.dvs.count_cap)

    def counts(v, batch, k):
        clean, fool = attacks.events.attack_success(logits_fn, v, batch["image"], batch["label"], k, draws=draws,
                                                    unit=unit, steps=steps, eot=eot)
        return jnp.sum(clean * batch["mask"]), jnp.sum(clean * fool * batch["mask"])

    images, labels = run.splits["test"]
    mesh = mesh or sharding.make_mesh()
    bar = Progress(num_calls(len(labels), batch_size, 1, mesh), enabled=progress and distributed.is_primary(),
                   desc="event attack")
    (clean_correct, fooled), = reduce_split([jax.jit(counts)], variables, images, labels, batch_size=batch_size,
                                            keys=split_keys(jax.random.PRNGKey(seed)), mesh=mesh,
                                            progress=bar.update).values
    bar.close()
    asr = 100.0 * fooled / clean_correct if clean_correct else float("nan")
    return {"asr": asr, "clean_correct": clean_correct, "fooled": fooled, "steps": steps, "unit": unit}
