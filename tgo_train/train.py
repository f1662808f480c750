"""Training: the train state, the jitted steps and the epoch loop with checkpoints and metrics.

Pure step functions (``make_train_step``, ``make_eval_step``) are built from the config and jitted
once here, at the program edge, with the train state donated.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from tgo_jax import attacks, augment, data, losses, models, neurons, sharding
from tgo_train import config_check, records, resume
from tgo_train.checkpoint import Checkpoints
from tgo_train.config_check import STRATEGIES
from tgo_train.progress import Progress
from tgo_train.summaries import Summaries


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # [], int32: optimiser steps taken
    params: Any  # the model's 'params' collection
    batch_stats: Any  # BatchNorm running statistics
    opt_state: Any
    key: jax.Array  # [2], uint32: PRNG key for noise, attacks and augmentation
    sums: Any  # dict of running sums of this epoch's train metrics (reset each epoch)


# ----------------------------------------------------------------------------- building blocks

def neuron_config(config: ml_collections.ConfigDict) -> neurons.NeuronConfig:
    return neurons.NeuronConfig(**config.neuron.to_dict())


def build_model(config: ml_collections.ConfigDict, info: data.DatasetInfo):
    """The flax model named by ``config.model.arch`` for the dataset's shape and classes."""
    kwargs = dict(config.model.to_dict())
    kwargs.update(config.model_kwargs.to_dict())
    arch = kwargs.pop("arch")
    kwargs.setdefault("num_classes", info.num_classes)
    kwargs.setdefault("in_channels", info.shape[-1])
    kwargs.setdefault("mean", tuple(info.mean))
    kwargs.setdefault("std", tuple(info.std))
    kwargs["dtype"] = jnp.dtype(config.dtype)  # one of config_check.DTYPES
    return models.create(arch, neuron=neuron_config(config), **kwargs)


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """Steps the schedules span: all epochs (``max_steps`` may stop the run earlier)."""
    return config.epochs * steps_per_epoch


def learning_rate(config: ml_collections.ConfigDict, steps: int) -> optax.Schedule:
    """The learning rate against the step: cosine annealing over the whole run (paper) or constant."""
    o = config.optim
    return optax.cosine_decay_schedule(o.lr, steps) if o.schedule == "cosine" else optax.constant_schedule(o.lr)


def build_optimizer(config: ml_collections.ConfigDict, steps: int) -> optax.GradientTransformation:
    """SGD (momentum 0.9) or Adam with ``learning_rate``; weight decay."""
    o = config.optim
    lr = learning_rate(config, steps)
    if o.name == "sgd":
        opt = optax.sgd(lr, momentum=o.momentum, nesterov=o.nesterov)
    elif o.name == "adam":
        opt = optax.adam(lr)
    else:
        raise ValueError(f"optim.name must be 'sgd' or 'adam', got {o.name!r}")
    if o.weight_decay:
        opt = optax.chain(optax.add_decayed_weights(o.weight_decay, mask=_decay_mask), opt)
    return opt


def _decay_mask(params):
    """Weight decay on conv/dense kernels only (not biases, BN scales or merge coefficients)."""
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def build_objective(config: ml_collections.ConfigDict, steps: int, model=None):
    """The composed loss: task term (TET or CE) + TGO margin penalty (dynamic λ) + RAT Lipschitz term
    (+ the SR gradient-sparsity term when ``config.sr.enabled``; it needs the model)."""
    if config.strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {config.strategy!r}")
    terms = [losses.ce() if config.strategy == "ce" else losses.tet(lam=config.tet_lambda)]
    m = config.margin
    if m.enabled:
        weight = losses.schedule_by_name(m.schedule, m.lambda_max, steps)
        terms.append((losses.margin(delta=m.delta, p=m.p, threshold=config.neuron.threshold), weight))
    if config.strategy == "rat" and config.rat.form == "loss":
        terms.append(losses.lipschitz(beta=config.rat.beta))
    if config.sr.enabled:
        if model is None:
            raise ValueError("config.sr.enabled needs the model: build_objective(config, steps, model)")
        terms.append((losses.sr(losses.training_logits_fn(model), h=config.sr.h), config.sr.weight))
    return losses.compose(*terms)


def create_train_state(config, model, optimizer, sample_x, sums) -> TrainState:
    key = jax.random.PRNGKey(config.seed)
    key, init_key, noise_key = jax.random.split(key, 3)
    # Jitted: an eager init compiles every initializer separately (seconds on CPU).
    variables = jax.jit(functools.partial(model.init, train=False))(
        {"params": init_key, "noise": noise_key}, sample_x)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables["batch_stats"],
                      opt_state=optimizer.init(params), key=key, sums=sums)


# ----------------------------------------------------------------------------- steps

def make_train_step(config, model, objective, optimizer) -> Callable:
    """``train_step(state, batch) -> (state, metrics)``: one SGD step of the configured strategy.

    AT / RAT replace the batch by PGD examples made on the fly with the model in eval mode
    (docs/FORMULAS.md §3); RAT's Parseval retraction and the WRN merge projection follow the update.
    """
    adversarial = config.strategy in ("at", "rat")
    logits_fn = attacks.model_logits_fn(model)
    threshold, delta = config.neuron.threshold, config.margin.delta

    def loss_fn(params, batch_stats, x, batch, step, noise_key):
        (logits_tb, hs), updated = model.apply(
            {"params": params, "batch_stats": batch_stats}, x, train=True, return_h=True,
            rngs={"noise": noise_key}, mutable=["batch_stats", "intermediates"])
        total, terms = objective(losses.Outputs(logits_tb, hs), batch, params, step)
        # Reduced inside the loss, so the step keeps no H tensor as an output.
        share = losses.threshold_neighbour_share(hs, delta=delta, threshold=threshold).overall
        return total, (dict(terms, loss=total, neighbour_share=share), updated, logits_tb)

    def train_step(state: TrainState, batch):
        key, k_aug, k_attack, k_noise = jax.random.split(state.key, 4)
        x, y = batch["image"], batch["label"]
        if config.augment:
            x = augment.augment(k_aug, x, roll=config.dvs.roll if x.ndim == 5 else 0)
        if adversarial:
            variables = {"params": state.params, "batch_stats": state.batch_stats}
            x = attacks.pgd(logits_fn, variables, x, y, k_attack, eps=config.at.eps, alpha=config.at.alpha,
                            steps=config.at.steps)
            x = jax.lax.stop_gradient(x)
        batch = dict(batch, image=x, key=k_noise)  # the key feeds the SR term's noise
        grads, (terms, updated, logits_tb) = jax.grad(loss_fn, has_aux=True)(
            state.params, state.batch_stats, x, batch, state.step, k_noise)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if config.strategy == "rat":
            if config.rat.form == "retraction":
                params = losses.apply_retraction(params, config.rat.beta)
            params = losses.project_merge_simplex(params)
        metrics = dict(terms)
        metrics["accuracy"] = jnp.mean(jnp.argmax(models.mean_over_time(logits_tb), -1) == y)
        metrics["spike_rate"] = _mean_spike_rate(updated["intermediates"])
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        sums = {k: state.sums[k] + (1.0 if k == "count" else metrics[k]) for k in state.sums}
        new_state = TrainState(step=state.step + 1, params=params, batch_stats=updated["batch_stats"],
                               opt_state=opt_state, key=key, sums=sums)
        return new_state, metrics

    return train_step


def _mean_spike_rate(intermediates) -> jax.Array:
    rates = [r for path, r in jax.tree_util.tree_leaves_with_path(intermediates)
             if "spike_rate" in jax.tree_util.keystr(path)]
    return jnp.mean(jnp.stack(rates)) if rates else jnp.zeros(())


def metric_names(config, model, objective, optimizer, sample_batch) -> list[str]:
    """The train-step metric names, found by tracing the step once without running it."""
    dummy_sums = {"count": jnp.zeros(())}
    state = jax.eval_shape(lambda: create_train_state(config, model, optimizer, sample_batch["image"],
                                                      dummy_sums))
    step = make_train_step(config, model, objective, optimizer)
    _, metrics = jax.eval_shape(step, state, sample_batch)
    return sorted(metrics)


def make_eval_step(model) -> Callable:
    """``eval_step(variables, batch, key) -> (correct [B] bool, per-step logits mean [B, K])``."""

    def eval_step(variables, batch, key):
        logits = models.mean_over_time(model.apply(variables, batch["image"], train=False,
                                                   rngs={"noise": key}))
        return jnp.argmax(logits, -1) == batch["label"], logits

    return eval_step


# ----------------------------------------------------------------------------- loop

@dataclasses.dataclass
class Run:
    """Everything a training run builds from its config (shared with evaluation)."""

    config: ml_collections.ConfigDict
    info: data.DatasetInfo
    splits: dict
    model: Any
    steps_per_epoch: int


def data_options(config: ml_collections.ConfigDict) -> dict:
    """The loader options of the config's dataset: the ``config.dvs`` frame settings for event data."""
    if config.dataset != "dvs_cifar10":
        return {}
    d = config.dvs
    return dict(frames=d.frames, size=d.size, mode=d.mode, count_cap=d.count_cap, cache_dir=d.cache_dir or None)


def prepare(config: ml_collections.ConfigDict) -> Run:
    """Loads the data and builds the model for a config."""
    options = data_options(config)
    info = data.dataset_info(config.dataset, **options)
    splits = dict(data.load(config.dataset, data_dir=config.data_dir or None, **options))  # the loader caches
    if config.train_subset:
        splits["train"] = tuple(a[:config.train_subset] for a in splits["train"])
    if config.eval_subset:
        splits["test"] = tuple(a[:config.eval_subset] for a in splits["test"])
    n_train = len(splits["train"][1])
    if config.batch_size < 1 or config.batch_size > n_train:
        raise ValueError(f"config.batch_size must be in [1, {n_train}] (training images), got {config.batch_size}")
    steps_per_epoch = data.num_batches(n_train, config.batch_size, drop_remainder=True)
    return Run(config, info, splits, build_model(config, info), steps_per_epoch)


def evaluate_clean(run: Run, variables, key, eval_step, draws: int = 1) -> float:
    """Clean test accuracy; for a stochastic model the mean over ``draws`` fresh noise draws."""
    images, labels = run.splits["test"]
    draws = draws if run.model.neuron.stochastic else 1
    correct = 0
    for batch in data.eval_batches(images, labels, run.config.eval_batch_size):
        for _ in range(draws):
            key, sub = jax.random.split(key)
            ok, _ = eval_step(variables, batch, sub)
            correct += int(np.sum(ok))
    return correct / (len(labels) * draws)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains per ``config`` in ``workdir``, resuming from its latest checkpoint; returns the final metrics.

    Writes ``workdir/metrics.jsonl`` (one record per epoch), ``workdir/config.json``, orbax
    checkpoints under ``workdir/checkpoints`` (every ``checkpoint_every_steps`` and at the end) and
    TensorBoard event files (``tgo_train.summaries``: train metrics every ``log_every_steps`` steps,
    the epoch records).
    The config is checked, and a resume's stored config compared with it, before anything is written.
    """
    config_check.check(config)
    allowed_changes = resume.check_resume(workdir, config)
    run = prepare(config)
    steps = total_steps(config, run.steps_per_epoch)
    last_step = min(steps, config.max_steps) if config.max_steps else steps
    optimizer = build_optimizer(config, steps)
    objective = build_objective(config, steps, run.model)
    images, labels = run.splits["train"]
    sample = next(data.epoch_batches(images, labels, config.batch_size, seed=config.seed, epoch=0))
    names = metric_names(config, run.model, objective, optimizer, sample)
    sums = {k: jnp.zeros(()) for k in names + ["count"]}
    state = create_train_state(config, run.model, optimizer, sample["image"], sums)

    os.makedirs(workdir, exist_ok=True)
    ckpt = Checkpoints(os.path.join(workdir, "checkpoints"), config.checkpoint_every_steps,
                       config.keep_checkpoints, writer=True)
    meta = {"config": config.to_dict()}
    elapsed_before = 0.0  # training seconds of earlier sessions of this run (checkpoint meta)
    if ckpt.latest_step() is not None:
        state, restored_meta = ckpt.restore(state, set_aside=os.path.join(workdir, "damaged_checkpoints"))
        elapsed_before = float(restored_meta.get("elapsed_s", 0.0))
        records.keep_records_until(os.path.join(workdir, records.METRICS), int(state.step),
                                   drop_partial=int(state.step) < last_step)
        print(f"resumed from step {int(state.step)} in {workdir}", flush=True)
    resume.record_start(workdir, config, allowed_changes, int(state.step))

    mesh = sharding.make_mesh(config.num_devices or None)
    state = sharding.replicate(state, mesh)
    train_step = jax.jit(make_train_step(config, run.model, objective, optimizer), donate_argnums=0)
    eval_step = jax.jit(make_eval_step(run.model))
    eval_key = jax.random.PRNGKey(config.seed + 1)

    record = {}
    step = int(state.step)
    summaries = Summaries(workdir, purge_step=step or None)
    lr = learning_rate(config, steps)
    progress = Progress(last_step, initial=step, enabled=config.progress, desc=os.path.basename(workdir))
    t0 = time.time() - elapsed_before  # elapsed_s counts this run's training time across resumes
    t_epoch = time.time()
    while step < last_step:
        epoch, start = divmod(step, run.steps_per_epoch)
        for batch in data.epoch_batches(images, labels, config.batch_size, seed=config.seed, epoch=epoch,
                                        start_step=start):
            state, metrics = train_step(state, sharding.shard_batch(batch, mesh))
            step += 1
            progress.update(step)
            if config.log_every_steps and step % config.log_every_steps == 0:  # the only per-step transfer
                summaries.scalars(step, dict(jax.device_get(metrics), learning_rate=float(lr(step - 1))),
                                  prefix="train/")
            epoch_done = step % run.steps_per_epoch == 0
            if epoch_done or step >= last_step:  # before saving: sums reset at an epoch's end
                t_eval = time.time()
                state, record = _end_epoch(run, state, epoch, step, eval_step, eval_key, workdir,
                                           time.time() - t0, partial=not epoch_done)
                summaries.scalars(step, {k: v for k, v in record.items() if k not in ("step", "epoch")},
                                  prefix="epoch/")
                progress.write(f"{_format_record(record)}  time: train {t_eval - t_epoch:.0f} s, "
                               f"clean eval {time.time() - t_eval:.0f} s")
                t_epoch = time.time()
            ckpt.save(step, state, dict(meta, epoch=epoch, elapsed_s=time.time() - t0))
            if step >= last_step:
                break
    progress.close()
    summaries.close()
    ckpt.save(step, state, dict(meta, epoch=step // run.steps_per_epoch, elapsed_s=time.time() - t0),
              force=ckpt.latest_step() != step)
    ckpt.close()
    if not record:  # resumed an already finished run: evaluate once more
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        record = {"step": step, "test_accuracy": evaluate_clean(run, variables, eval_key, eval_step,
                                                                config.eval_noise_draws)}
    return record


def _end_epoch(run, state, epoch, step, eval_step, eval_key, workdir, elapsed, partial=False):
    """Averages the epoch's train metrics, evaluates, appends to metrics.jsonl, resets the sums.

    A ``max_steps`` stop inside an epoch (``partial``) writes a record marked partial and keeps the
    sums, so a resumed run finishes the epoch's averages and replaces that record.
    """
    sums = jax.device_get(state.sums)
    count = max(float(sums["count"]), 1.0)
    record = {"epoch": epoch + 1, "step": step, "elapsed_s": round(elapsed, 2)}
    if partial:
        record["partial"] = True
    record.update({f"train_{k}": float(v) / count for k, v in sums.items() if k != "count"})
    if (epoch + 1) % run.config.eval_every_epochs == 0 or step >= run.config.epochs * run.steps_per_epoch:
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        record["test_accuracy"] = evaluate_clean(run, variables, eval_key, eval_step,
                                                 run.config.eval_noise_draws)
    records.append_jsonl(os.path.join(workdir, records.METRICS), record)
    if not partial:
        state = state.replace(sums=jax.tree.map(jnp.zeros_like, state.sums))
    return state, record


def _format_record(record: dict) -> str:
    keys = ("epoch", "train_loss", "train_accuracy", "test_accuracy", "train_spike_rate",
            "train_neighbour_share")
    return "  ".join(f"{k}={record[k]:.4g}" if isinstance(record[k], float) else f"{k}={record[k]}"
                     for k in keys if k in record)
