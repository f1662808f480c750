"""Data-parallel checks on 8 fake CPU devices, run by tests/test_sharding.py in a subprocess.

XLA reads the device count once, when JAX initialises, so this runs as its own process:
``python tests/sharding_check.py OUT.npz``. It trains the tiny small SNN for two SGD steps (train-mode
BatchNorm, CE on the time-mean logits) once on one device and once with the batch sharded over 8
devices, then writes both results and facts about the placement to OUT.npz for the test to compare.
"""
import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import numpy as np  # noqa: E402
import optax  # noqa: E402

from tgo_jax import models, sharding  # noqa: E402
from tgo_train import feed  # noqa: E402

NUM_DEVICES, BATCH, HW = 8, 16, 12


def make_model():
    return models.create("small", channels=(4, 8), hidden=16, num_steps=2)


def init_variables(model, x):
    """LeCun-normal kernels, zero biases, unit BN scales and variances, drawn with numpy.

    Compiling ``model.init`` costs seconds on CPU (one threefry + truncated-normal program per layer).
    """
    rng = np.random.default_rng(1)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path[-1:])
        if "kernel" in name:
            return (rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))).astype(leaf.dtype)
        return (np.ones if ("scale" in name or "var" in name) else np.zeros)(leaf.shape, leaf.dtype)

    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    return jax.tree_util.tree_map_with_path(draw, {k: shapes[k] for k in ("params", "batch_stats")})


def make_train_step(model, tx):
    def loss_fn(params, batch_stats, x, y):
        logits_tb, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                         mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(models.mean_over_time(logits_tb), y).mean()
        return loss, updates["batch_stats"]

    def train_step(state, batch):
        params, batch_stats, opt_state = state
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

    return train_step


def batches(num):
    rng = np.random.default_rng(0)
    return [(rng.uniform(size=(BATCH, HW, HW, 1)).astype(np.float32), rng.integers(0, 10, BATCH).astype(np.int32))
            for _ in range(num)]


def run(state, data, step, place):
    losses = []
    for batch in data:
        state, loss = step(state, place(batch))
        losses.append(loss)
    return state, np.asarray(losses)


def flat(prefix, tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {prefix + jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def main(out_path):
    assert jax.device_count() == NUM_DEVICES, jax.devices()
    mesh = sharding.make_mesh()
    model, tx = make_model(), optax.sgd(0.1, momentum=0.9)
    data = batches(2)
    variables = init_variables(model, data[0][0])
    state0 = (variables["params"], variables["batch_stats"], jax.jit(tx.init)(variables["params"]))
    step = jax.jit(make_train_step(model, tx))

    single, single_losses = run(state0, data, step, lambda b: jax.device_put(b, jax.devices()[0]))
    sharded, sharded_losses = run(sharding.replicate(state0, mesh), data, step, lambda b: sharding.shard_batch(b, mesh))

    x_sharded = sharding.shard_batch(data[0], mesh)[0]
    evaluate = jax.jit(lambda params, stats, x: model.apply({"params": params, "batch_stats": stats}, x))
    single_eval = evaluate(single[0], single[1], data[0][0])
    sharded_eval = evaluate(sharded[0], sharded[1], x_sharded)
    # One train-mode forward from the initial state: BatchNorm statistics of the sharded batch, of
    # the whole batch on one device, and (the control) of one device's shard alone.
    forward = jax.jit(lambda x: model.apply({"params": state0[0], "batch_stats": state0[1]}, x, train=True,
                                            mutable=["batch_stats"])[1]["batch_stats"])
    sharded_fwd, full_fwd = forward(x_sharded), forward(data[0][0])
    shard_only = forward(data[0][0][:BATCH // NUM_DEVICES])
    try:
        sharding.shard_batch((data[0][0][:12],), mesh)
        indivisible_error = ""
    except ValueError as e:
        indivisible_error = str(e)
    # An evaluation batch of 12 on 8 devices is rounded up to 16; the padding is masked.
    labels20 = np.arange(20) % 10
    eval_masks = [np.asarray(b["mask"]) for b in feed.eval_batches(data[0][0][:1].repeat(20, 0), labels20, 12, mesh)]

    np.savez(
        out_path,
        mesh_size=mesh.size,
        batch_devices=len(x_sharded.sharding.device_set),
        batch_shard_rows=x_sharded.addressable_shards[0].data.shape[0],
        params_replicated=all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(sharded[0])),
        eval_devices=len(sharded_eval.sharding.device_set),
        indivisible_error=indivisible_error,
        eval_batch_rows=[len(m) for m in eval_masks], eval_batch_real=[int(m.sum()) for m in eval_masks],
        single_losses=single_losses, sharded_losses=sharded_losses,
        single_eval=np.asarray(single_eval), sharded_eval=np.asarray(sharded_eval),
        **flat("single_params", single[0]), **flat("sharded_params", sharded[0]),
        **flat("single_stats", single[1]), **flat("sharded_stats", sharded[1]),
        **flat("sharded_fwd_stats", sharded_fwd), **flat("full_fwd_stats", full_fwd),
        **flat("shard_only_stats", shard_only),
    )


if __name__ == "__main__":
    main(sys.argv[1])
