"""Training: the train state, the jitted steps and the epoch loop with checkpoints and metrics.

Pure step functions (``make_train_step``, ``make_eval_step``) are built from the config and jitted
once here, at the program edge, with the train state donated.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import time
from typing import Any, Callable, Optional

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from tgo_jax import attacks, augment, data, losses, metrics, models, neurons, projections, sharding
from tgo_train import config_check, distributed, evaluation, feed, preemption, resume, rundir, workdir as workdirs
from tgo_train.checkpoint import Checkpoints
from tgo_train.progress import Progress
from tgo_train.summaries import Summaries, hparams_of


@flax.struct.dataclass
class TrainState:
    """What a resumed run needs, and nothing else (metric sums live in the loop and the checkpoint's meta)."""

    step: jax.Array  # [], int32: optimiser steps taken
    params: Any  # the model's 'params' collection
    batch_stats: Any  # BatchNorm running statistics
    opt_state: Any
    key: jax.Array  # [2], uint32: PRNG key for noise, attacks and augmentation


# ----------------------------------------------------------------------------- building blocks

def neuron_config(config: ml_collections.ConfigDict) -> neurons.NeuronConfig:
    return neurons.NeuronConfig(**config.neuron.to_dict())


def build_model(config: ml_collections.ConfigDict, info: data.DatasetInfo):
    """The flax model named by ``config.model.arch`` for the dataset's shape and classes."""
    arch, kwargs = config_check.model_arguments(config, info)
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
    """SGD (momentum 0.9) or Adam with ``learning_rate``; weight decay on kernels.

    Under RAT the projections follow the update as optax transforms chained last: the Parseval
    retraction (``rat.form == "retraction"``) and the WRN merge-simplex projection (docs/FORMULAS.md §3).
    """
    o = config.optim
    lr = learning_rate(config, steps)
    if o.name == "sgd":
        opt = optax.sgd(lr, momentum=o.momentum, nesterov=o.nesterov)
    elif o.name == "adam":
        opt = optax.adam(lr)
    else:
        raise ValueError(f"optim.name must be 'sgd' or 'adam', got {o.name!r}")
    if o.weight_decay:  # conv/dense kernels only (not biases, BN scales or merge coefficients)
        opt = optax.chain(optax.add_decayed_weights(o.weight_decay, mask=projections.kernel_mask), opt)
    if config.strategy == "rat":
        if config.rat.form == "retraction":
            opt = optax.chain(opt, projections.parseval_retraction(config.rat.beta))
        opt = optax.chain(opt, projections.merge_simplex_projection())
    return opt


def build_objective(config: ml_collections.ConfigDict, steps: int, model=None):
    """``losses.tgo_objective`` for the config: task term (TET or CE), TGO margin penalty (dynamic λ), RAT's
    Lipschitz term in loss form, and the SR term when ``config.sr.enabled`` (it needs the model)."""
    m = config.margin
    extra = []
    if config.sr.enabled:
        if model is None:
            raise ValueError("config.sr.enabled needs the model: build_objective(config, steps, model)")
        extra.append((losses.sr(losses.training_logits_fn(model), h=config.sr.h), config.sr.weight))
    return losses.tgo_objective(
        config.strategy, tet_lambda=config.tet_lambda,
        margin_weight=losses.schedule_by_name(m.schedule, m.lambda_max, steps) if m.enabled else None,
        delta=m.delta, p=m.p, threshold=config.neuron.threshold,
        lipschitz_beta=config.rat.beta if config.strategy == "rat" and config.rat.form == "loss" else None,
        extra_terms=extra)


def create_train_state(config, model, optimizer, sample_x) -> TrainState:
    key = jax.random.PRNGKey(config.seed)
    key, init_key, noise_key = jax.random.split(key, 3)
    # Jitted: an eager init compiles every initializer separately (seconds on CPU).
    variables = jax.jit(functools.partial(model.init, train=False))(
        {"params": init_key, "noise": noise_key}, sample_x)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables["batch_stats"],
                      opt_state=optimizer.init(params), key=key)


# ----------------------------------------------------------------------------- steps

def make_train_step(config, model, objective, optimizer) -> Callable:
    """``train_step(state, batch) -> (state, metrics)``: one SGD step of the configured strategy.

    AT / RAT replace the batch by PGD examples made on the fly with the model in eval mode
    (docs/FORMULAS.md §3); RAT's projections are in the optimiser (``build_optimizer``).
    """
    adversarial = config.strategy in losses.ADVERSARIAL
    logits_fn = attacks.model_logits_fn(model)
    threshold, delta = config.neuron.threshold, config.margin.delta

    def loss_fn(params, batch_stats, batch, step, noise_key):
        (logits_tb, hs), updated = model.apply(
            {"params": params, "batch_stats": batch_stats}, batch["image"], train=True, return_h=True,
            rngs={"noise": noise_key}, mutable=["batch_stats", "intermediates"])
        rates = models.sown_spike_rates(updated["intermediates"])
        # The noise key also feeds terms that run the model again (SR).
        total, terms = objective(losses.Outputs(logits_tb, hs, rates), batch, params, step, key=noise_key)
        # Reduced inside the loss, so the step keeps no H tensor as an output.
        share = metrics.threshold_neighbour_share(hs, delta=delta, threshold=threshold).overall
        extra = dict(loss=total, neighbour_share=share, spike_rate=metrics.mean_spike_rate(rates))
        return total, (dict(terms, **extra), updated["batch_stats"], logits_tb)

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
        grads, (step_metrics, batch_stats, logits_tb) = jax.grad(loss_fn, has_aux=True)(
            state.params, state.batch_stats, dict(batch, image=x), state.step, k_noise)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        step_metrics["accuracy"] = 100.0 * jnp.mean(jnp.argmax(models.mean_over_time(logits_tb), -1) == y)  # %
        step_metrics = {k: jnp.asarray(v, jnp.float32) for k, v in step_metrics.items()}
        new_state = TrainState(step=state.step + 1, params=params, batch_stats=batch_stats,
                               opt_state=opt_state, key=key)
        return new_state, step_metrics

    return train_step


def accumulate(sums: Optional[dict], step_metrics: dict) -> dict:
    """Running sums of the train metrics over an epoch, with ``count`` the steps summed (jit it)."""
    if sums is None:
        sums = {k: jnp.zeros((), jnp.float32) for k in [*step_metrics, "count"]}
    return {k: sums[k] + (1.0 if k == "count" else step_metrics[k]) for k in sums}


def make_eval_step(model) -> Callable:
    """``eval_step(variables, batch, key) -> []``: correctly classified real examples of the batch
    (its ``mask`` drops the padding), a sum over the whole sharded batch."""

    def eval_step(variables, batch, key):
        logits = models.mean_over_time(model.apply(variables, batch["image"], train=False,
                                                   rngs={"noise": key}))
        return jnp.sum((jnp.argmax(logits, -1) == batch["label"]) & batch["mask"])

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


def evaluate_clean(run: Run, variables, key, eval_step, mesh, draws: int = 1) -> float:
    """Clean test accuracy (%) over the mesh; for a stochastic model the mean over ``draws`` noise draws (each
    batch ``draws`` times, the keys split from ``key`` one per call: ``evaluation.split_keys``)."""
    images, labels = run.splits["test"]
    draws = draws if run.model.neuron.stochastic else 1
    counts = evaluation.reduce_split([eval_step] * draws, variables, images, labels,
                                     batch_size=run.config.eval_batch_size, keys=evaluation.split_keys(key),
                                     mesh=mesh).values
    return 100.0 * sum(counts) / (len(labels) * draws)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains per ``config`` in ``workdir``, resuming from its latest checkpoint; returns the final metrics.

    Writes ``workdir/metrics.jsonl`` (one record per epoch), ``workdir/config.json``, orbax
    checkpoints under ``workdir/checkpoints`` (every ``checkpoint_every_steps`` and at the end) and
    TensorBoard event files (``tgo_train.summaries``: train metrics every ``log_every_steps`` steps,
    the epoch records).
    The config is checked, the workdir locked (``tgo_train.workdir``: a second training of it is refused)
    and a resume's stored config compared with it, before anything is written. A SIGTERM or SIGINT
    stops the run at the next step boundary with a checkpoint and the epoch-so-far record, then raises
    ``preemption.Preempted`` (``tgo_train.preemption``). Background writers are closed on every way out.
    In a multi-process run every process calls this; each feeds its rows of every global batch, all
    save and restore the checkpoints together, and process 0 alone writes the other files, holds the
    lock and shows progress.
    """
    config_check.check(config)
    workdir = str(workdirs.as_path(workdir))  # absolute; a gs:// URL stays one
    with workdirs.locked(workdir, enabled=distributed.is_primary()):
        return _train_locked(config, workdir)


def _train_locked(config: ml_collections.ConfigDict, workdir: str) -> dict:
    primary = distributed.is_primary()
    allowed_changes = resume.check_resume(workdir, config)
    run = prepare(config)
    mesh = sharding.make_mesh(config.num_devices)
    sharding.check_batch_size(config.batch_size, mesh)  # before anything is written
    steps = total_steps(config, run.steps_per_epoch)
    last_step = min(steps, config.max_steps) if config.max_steps else steps
    optimizer = build_optimizer(config, steps)
    objective = build_objective(config, steps, run.model)
    images, labels = run.splits["train"]
    sample = next(data.epoch_batches(images, labels, config.batch_size, seed=config.seed, epoch=0))
    # Replicated before a restore, so orbax restores onto the mesh (every process its part).
    state = sharding.replicate(create_train_state(config, run.model, optimizer, sample["image"]), mesh)
    sums = None  # running sums of this epoch's train metrics (``accumulate``)

    with Checkpoints(rundir.checkpoint_dir(workdir), config.checkpoint_every_steps,
                     config.keep_checkpoints, writer=True) as ckpt:
        meta = {"config": config.to_dict()}
        elapsed_before = 0.0  # training seconds of earlier sessions of this run (checkpoint meta)
        if ckpt.latest_step() is not None:
            state, restored_meta = ckpt.restore(state, set_aside=rundir.file(workdir, rundir.DAMAGED))
            elapsed_before = float(restored_meta.get("elapsed_s", 0.0))
            sums = _restored_sums(restored_meta)
            if primary:
                rundir.keep_records_until(rundir.file(workdir, rundir.METRICS), int(state.step),
                                          drop_partial=int(state.step) < last_step)
                print(f"resumed from step {int(state.step)} in {workdir}", flush=True)
        if primary:
            resume.record_start(workdir, config, allowed_changes, int(state.step))

        train_step = jax.jit(make_train_step(config, run.model, objective, optimizer), donate_argnums=0)
        accumulate_step = jax.jit(accumulate)
        eval_step = jax.jit(make_eval_step(run.model))
        eval_key = jax.random.PRNGKey(config.seed + 1)

        record = {}
        step = int(state.step)
        lr = learning_rate(config, steps)
        t0 = time.time() - elapsed_before  # elapsed_s counts this run's training time across resumes
        t_epoch = time.time()
        with Summaries(workdir, purge_step=step or None) as summaries, \
                contextlib.closing(Progress(last_step, initial=step, enabled=config.progress and primary,
                                            desc=os.path.basename(workdir))) as progress, \
                preemption.StopSignals() as stop:
            summaries.hparams(hparams_of(config))  # TensorBoard's HPARAMS tab, once per training session
            stopping = False  # a signal asked to stop (agreed by every process)
            while step < last_step and not stopping:
                epoch, start = divmod(step, run.steps_per_epoch)
                for batch in feed.train_batches(images, labels, config.batch_size, mesh, seed=config.seed,
                                                epoch=epoch, start_step=start):
                    state, step_metrics = train_step(state, batch)
                    sums = accumulate_step(sums, step_metrics)
                    step += 1
                    progress.update(step)
                    if config.log_every_steps and step % config.log_every_steps == 0:  # the only per-step transfer
                        summaries.scalars(step, dict(jax.device_get(step_metrics),
                                                     learning_rate=float(lr(step - 1))), prefix="train/")
                    epoch_done = step % run.steps_per_epoch == 0
                    stopping = step < last_step and _stop_agreed(stop, step)
                    if epoch_done or step >= last_step:  # before saving: sums reset at an epoch's end
                        t_eval = time.time()
                        record = _end_epoch(run, state, sums, epoch, step, eval_step, eval_key, workdir, mesh,
                                            time.time() - t0, partial=not epoch_done)
                        sums = None if epoch_done else sums  # a partial epoch's sums carry over a resume
                        summaries.scalars(step, {k: v for k, v in record.items() if k not in ("step", "epoch")},
                                          prefix="epoch/")
                        if primary:
                            progress.write(f"{_format_record(record)}  time: train {t_eval - t_epoch:.0f} s, "
                                           f"clean eval {time.time() - t_eval:.0f} s")
                        t_epoch = time.time()
                    elif stopping:  # preempted: the epoch so far, without evaluating
                        _end_epoch(run, state, sums, epoch, step, eval_step, eval_key, workdir, mesh,
                                   time.time() - t0, partial=True, evaluate=False)
                    if ckpt.due(step):
                        ckpt.save(step, state, _checkpoint_meta(meta, epoch, time.time() - t0, sums))
                    if step >= last_step or stopping:
                        break
        if ckpt.latest_step() != step:
            ckpt.save(step, state, _checkpoint_meta(meta, step // run.steps_per_epoch, time.time() - t0, sums),
                      force=True)
    if step < last_step:  # stopped by a signal, its checkpoint saved and sealed
        raise preemption.Preempted(f"stopped by {stop.name} at step {step} of {last_step}: checkpoint saved in "
                                   f"{rundir.checkpoint_dir(workdir)}; rerun the same command to resume")
    if not record:  # resumed an already finished run: evaluate once more
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        record = {"step": step, "test_accuracy": evaluate_clean(run, variables, eval_key, eval_step, mesh,
                                                                config.eval_noise_draws)}
    return record


PREEMPTION_SYNC_STEPS = 10  # a multi-process run agrees on stopping every this many steps (a host sync)


def _stop_agreed(stop: preemption.StopSignals, step: int) -> bool:
    """Whether to stop after ``step``: a signal arrived here (one process), or on some process (several, which
    must stop at the same step: they compare every ``PREEMPTION_SYNC_STEPS`` steps). Leaves ``stop`` set
    on every process that stops."""
    if jax.process_count() == 1:
        return stop.requested
    if step % PREEMPTION_SYNC_STEPS:
        return False
    if distributed.any_process(stop.requested):
        stop.signal = stop.signal or signal.SIGTERM
        return True
    return False


def _checkpoint_meta(meta: dict, epoch: int, elapsed: float, sums: Optional[dict]) -> dict:
    """The JSON record saved with a checkpoint; it carries the epoch's metric sums so far (exact floats)."""
    metric_sums = None if sums is None else {k: float(v) for k, v in jax.device_get(sums).items()}
    return dict(meta, epoch=epoch, elapsed_s=elapsed, metric_sums=metric_sums)


def _restored_sums(meta: dict) -> Optional[dict]:
    """The metric sums of a checkpoint's unfinished epoch (its meta's ``metric_sums``); None at an epoch's end."""
    saved = meta.get("metric_sums")
    if not saved or not float(saved.get("count", 0.0)):
        return None
    return {k: jnp.asarray(v, jnp.float32) for k, v in saved.items()}


def _end_epoch(run, state, sums, epoch, step, eval_step, eval_key, workdir, mesh, elapsed, partial=False,
               evaluate=True):
    """Averages the epoch's train metrics, evaluates, appends to metrics.jsonl; returns the record.

    A ``max_steps`` stop or a preemption inside an epoch (``partial``) writes a record marked partial; the
    caller keeps the sums, so a resumed run finishes the epoch's averages and replaces that record. Every
    process computes the record (the evaluation is sharded; none when not ``evaluate``); process 0 writes it.
    """
    sums = jax.device_get(sums)
    count = max(float(sums["count"]), 1.0)
    record = {"epoch": epoch + 1, "step": step, "elapsed_s": round(elapsed, 2)}
    if partial:
        record["partial"] = True
    record.update({f"train_{k}": float(v) / count for k, v in sums.items() if k != "count"})
    due = (epoch + 1) % run.config.eval_every_epochs == 0 or step >= run.config.epochs * run.steps_per_epoch
    if evaluate and due:
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        record["test_accuracy"] = evaluate_clean(run, variables, eval_key, eval_step, mesh,
                                                 run.config.eval_noise_draws)
    if distributed.is_primary():
        rundir.append_jsonl(rundir.file(workdir, rundir.METRICS), record)
    return record


def _format_record(record: dict) -> str:
    keys = ("epoch", "train_loss", "train_accuracy", "test_accuracy", "train_spike_rate",
            "train_neighbour_share")
    return "  ".join(f"{k}={record[k]:.4g}" if isinstance(record[k], float) else f"{k}={record[k]}"
                     for k in keys if k in record)
