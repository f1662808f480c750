# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Threshold guarding: vanilla vs TGO small spiking nets on Fashion-MNIST
#
# Compares a vanilla (TET) small spiking net with a TGO one (TET + membrane margin penalty with
# dynamic λ + Noisy-LIF neurons, `tgo_train/configs/fmnist_tgo.py`) on the quantities of docs/FORMULAS.md §5:
#
# 1. membrane-potential (H) distributions per LIF layer;
# 2. the threshold-neighbour share `|H − θ| < δ` per layer and overall (the paper's Fig. 4);
# 3. input-gradient heatmaps (the paper's Fig. 5) and gradient norms / sparsity;
# 4. the input-Jacobian spectral norm (eq. 10);
# 5. activation regions met in an ε-ball and the spike flips a perturbation causes (Theorem 2).
#
# **Models.** In `full` size (default) the notebook loads `runs/fmnist/vanilla` and `runs/fmnist/tgo`
# when both are finished (`python -m tgo_train.experiment --workdir runs/fmnist`); otherwise it trains the
# same two configs at a reduced size (1 epoch on 20k images) under `runs/notebooks/02_threshold_guarding/`
# (reused on a rerun). `TGO_NOTEBOOK_SIZE=ci` trains tiny nets for a few dozen steps in a temporary
# directory (for the tests; its numbers mean nothing).
#
# All numbers on this page are computed here; the paper's are quoted only where stated.

# %%
import os
import sys

# Run from the repository root (the tests do; a Jupyter server started in notebooks/ works too).
if not os.path.isdir("tgo_jax") and os.path.isdir(os.path.join("..", "tgo_jax")):
    os.chdir("..")
sys.path.insert(0, os.getcwd())

# %% tags=["parameters"]
# "full" (default) or "ci" (tiny, for the tests): TGO_NOTEBOOK_SIZE, or papermill's `-p SIZE ci`.
SIZE = os.environ.get("TGO_NOTEBOOK_SIZE", "full")

# %%
import functools
import tempfile
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from absl import logging as absl_logging

from tgo_jax import analysis, attacks
from tgo_train import notebook_runs, rundir, train, trained
from tgo_train.tables import eps_label, print_table

notebook_runs.check_size(SIZE)

absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every checkpoint at INFO

S = {"ci": dict(n_eval=64, n_pot=64, draws=1, eot=2, n_heat=4, n_jac=16, jac_iters=5,
                n_region=4, region_samples=8),
     "full": dict(n_eval=1000, n_pot=512, draws=3, eot=8, n_heat=6, n_jac=256, jac_iters=20,
                  n_region=16, region_samples=64)}[SIZE]
SEED = 0
KEY = jax.random.PRNGKey(SEED)
print(f"size={SIZE}: {S}; jax {jax.__version__} on {jax.devices()[0].platform} "
      f"({os.cpu_count()} CPU cores visible)")

# %% [markdown]
# ## The two models

# %%
RUNS_DIR = os.path.join("runs", "fmnist")  # python -m tgo_train.experiment --workdir runs/fmnist
NAMES = ("vanilla", "tgo")

if SIZE == "full" and all(rundir.finished(os.path.join(RUNS_DIR, n)) for n in NAMES):
    ROOT, ORIGIN = RUNS_DIR, f"loaded from {RUNS_DIR} (made by python -m tgo_train.experiment)"
else:
    if SIZE == "ci":
        _tmp = tempfile.TemporaryDirectory(prefix="tgo_nb02_")  # removed when the kernel exits
        ROOT = _tmp.name
    else:
        ROOT = os.path.join("runs", "notebooks", "02_threshold_guarding")
    ORIGIN = f"trained in this notebook ({SIZE} size) under {ROOT}"
    for name in NAMES:
        t0 = time.time()
        train.train_and_evaluate(notebook_runs.reduced_config(name, SIZE), os.path.join(ROOT, name))
        print(f"{name}: training (or resuming a finished run) took {time.time() - t0:.0f} s")

RUNS = {}
for name in NAMES:
    workdir = os.path.join(ROOT, name)
    run, variables, step = trained.load_run(workdir, num_examples=S["n_eval"])
    RUNS[name] = (run, variables)
    c = rundir.read_config(workdir)
    last = rundir.read_metrics(workdir)[-1]
    margin = (f"margin penalty δ = {c['margin']['delta']}, λ_max = {c['margin']['lambda_max']} "
              f"({c['margin']['schedule']})" if c["margin"]["enabled"] else "no margin penalty")
    print(f"{name}: step {step}, {c['epochs']} epoch(s) on {c['train_subset'] or 60000} training images, "
          f"batch {c['batch_size']}, seed {c['seed']}, T = {c['model']['num_steps']}, "
          f"neuron {c['neuron']['kind']} (σ = {c['neuron']['sigma']}), {margin}; "
          f"test accuracy logged at the end of training: {last.get('test_accuracy', float('nan')):.2f}%")
print("models:", ORIGIN)

X, Y = (jnp.asarray(a) for a in RUNS["vanilla"][0].splits["test"])
THETA = RUNS["tgo"][0].config.neuron.threshold
DELTA = RUNS["tgo"][0].config.margin.delta
print(f"analysis images: the first {len(Y)} Fashion-MNIST test images; θ = {THETA}, δ = {DELTA}")


# %% [markdown]
# Clean accuracy on the analysis images (for the Noisy-LIF model: mean over fresh noise draws).

# %%
def is_noisy(name):
    return RUNS[name][0].model.neuron.stochastic


def noise_draws(name, n):
    return n if is_noisy(name) else 1


LOGITS = {name: attacks.model_logits_fn(RUNS[name][0].model) for name in NAMES}
clean = {}
for name in NAMES:
    acc = jax.jit(functools.partial(attacks.accuracy, LOGITS[name], draws=noise_draws(name, S["draws"])))
    clean[name] = 100 * float(acc(RUNS[name][1], X, Y, KEY))
    print(f"{name}: clean accuracy {clean[name]:.2f}% on {len(Y)} images "
          f"({noise_draws(name, S['draws'])} noise draw(s))")

# %% [markdown]
# ## Membrane-potential distributions and the threshold-neighbour share
#
# Pre-spike potentials H of every LIF layer on the first `n_pot` analysis images, all time steps. The
# shaded band is θ ± δ; the threshold-neighbour share is the fraction of (neuron, t, example) entries
# inside it (`analysis.threshold_neighbour_share`). For the Noisy-LIF model H is the potential before
# the noise is added; the layers after the first depend on earlier layers' noise, so its shares are
# averaged over `draws` noise draws.

# %%
FORWARD = {name: jax.jit(functools.partial(analysis.forward_potentials, RUNS[name][0].model)) for name in NAMES}
XP = X[:S["n_pot"]]
HS, SHARES = {}, {}
for name in NAMES:
    per_draw = []
    for i in range(noise_draws(name, S["draws"])):
        _, hs = FORWARD[name](RUNS[name][1], XP, jax.random.fold_in(KEY, i))
        if i == 0:
            HS[name] = hs
        share = analysis.threshold_neighbour_share(hs, delta=DELTA, threshold=THETA)
        per_draw.append(np.concatenate([np.asarray(share.per_layer), [float(share.overall)]]))
    SHARES[name] = np.mean(per_draw, axis=0)

LAYERS = [f"L{i + 1} {tuple(h.shape[2:])}" for i, h in enumerate(HS["vanilla"])] + ["overall"]
rows = {layer: {"vanilla": 100 * SHARES["vanilla"][i], "TGO": 100 * SHARES["tgo"][i],
                "change %": 100 * (SHARES["tgo"][i] / SHARES["vanilla"][i] - 1)}
        for i, layer in enumerate(LAYERS)}
print(f"threshold-neighbour share (%) of |H − θ| < δ = {DELTA}; change = TGO / vanilla − 1")
print_table(rows, ["vanilla", "TGO", "change %"], first="layer", width=11)

print("\noverall share (%) for other δ:")
delta_rows = {}
for d in (0.1, 0.2, 0.3, 0.5):
    v = float(analysis.threshold_neighbour_share(HS["vanilla"], delta=d, threshold=THETA).overall)
    t = float(analysis.threshold_neighbour_share(HS["tgo"], delta=d, threshold=THETA).overall)
    delta_rows[f"δ = {d}"] = {"vanilla": 100 * v, "TGO": 100 * t, "change %": 100 * (t / v - 1)}
print_table(delta_rows, ["vanilla", "TGO", "change %"], first="(first draw)", width=11)

# %%
n_layers = len(HS["vanilla"])
fig, axes = plt.subplots(1, n_layers, figsize=(4.2 * n_layers, 3.2))
for i, ax in enumerate(np.atleast_1d(axes)):
    pooled = np.concatenate([np.asarray(HS[n][i]).ravel()[::7] for n in NAMES])
    lo, hi = np.percentile(pooled, [0.5, 99.5])
    lo, hi = min(lo, THETA - 2 * DELTA), max(hi, THETA + 2 * DELTA)
    for name in NAMES:
        (counts, edges), = analysis.potential_histograms([HS[name][i]], bins=80, range=(float(lo), float(hi)))
        ax.stairs(np.asarray(counts) / HS[name][i].size, np.asarray(edges), label=name)
    ax.axvspan(THETA - DELTA, THETA + DELTA, color="grey", alpha=0.2, label="θ ± δ")
    ax.axvline(THETA, color="k", lw=0.8)
    ax.set_title(f"{LAYERS[i]}: share {100 * SHARES['vanilla'][i]:.1f}% → {100 * SHARES['tgo'][i]:.1f}%",
                 fontsize=9)
    ax.set_xlabel("H")
np.atleast_1d(axes)[0].set_ylabel("fraction of entries per bin")
np.atleast_1d(axes)[0].legend(fontsize=8)
fig.suptitle("membrane potentials before firing, vanilla vs TGO", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Input gradients: norms, sparsity and heatmaps (App. F, Fig. 5)
#
# `g = ∇_x CE(f(x), y)` per example (surrogate-gradient BPTT, `analysis.input_gradients`). For the
# Noisy-LIF model the gradient of one noise draw and the EoT mean over `eot` draws (what an EoT
# attacker follows) are both shown. Reported: mean ‖g‖₁, ‖g‖₂, the share of exactly-zero entries
# (|g| ≤ 1e-6; the triangle surrogate is zero for |H − θ| ≥ 1), and the scale-free Hoyer sparsity
# `(√n − ‖g‖₁/‖g‖₂)/(√n − 1)` ∈ [0, 1] (higher is sparser).

# %%
GRAD = {name: jax.jit(lambda v, x, y, k, lf=LOGITS[name]: analysis.input_gradients(lf, v, x, y, k))
        for name in NAMES}


def gradient_row(g):
    st = analysis.gradient_sparsity(g, tol=1e-6)
    n = g[0].size
    hoyer = (np.sqrt(n) - np.asarray(st["l1"]) / np.maximum(np.asarray(st["l2"]), 1e-30)) / (np.sqrt(n) - 1)
    return {"‖g‖₁": float(st["mean_l1"]), "‖g‖₂": float(st["mean_l2"]),
            "zero %": 100 * float(st["mean_zero_share"]), "Hoyer": float(np.mean(hoyer))}


def gradients(name, key, chunk=250):
    """Input gradients of all analysis images, in chunks to bound memory."""
    v = RUNS[name][1]
    return jnp.concatenate([GRAD[name](v, X[i:i + chunk], Y[i:i + chunk], key)
                            for i in range(0, len(Y), chunk)])


G = {}
for name in NAMES:
    G[name] = gradients(name, KEY)
    if is_noisy(name):
        draws = [gradients(name, jax.random.fold_in(KEY, 1000 + i)) for i in range(S["eot"])]
        G[name + " (EoT mean)"] = sum(draws) / len(draws)
grad_rows = {k: gradient_row(g) for k, g in G.items()}
print(f"input-gradient statistics on {len(Y)} test images (EoT mean over {S['eot']} draws)")
print_table(grad_rows, ["‖g‖₁", "‖g‖₂", "zero %", "Hoyer"], fmt="{:.4g}", width=11)

# %%
n = S["n_heat"]
panels = [("image", None)] + [(k, np.asarray(analysis.gradient_heatmap(g[:n]))) for k, g in G.items()]
fig, axes = plt.subplots(len(panels), n, figsize=(1.7 * n, 1.8 * len(panels)))
for j in range(n):
    vmax = max(p[j].max() for _, p in panels[1:])  # one colour scale per image, shared by the models
    for i, (label, maps) in enumerate(panels):
        ax = axes[i, j]
        if maps is None:
            ax.imshow(np.asarray(X[j, ..., 0]), cmap="gray")
        else:
            ax.imshow(maps[j], cmap="inferno", vmin=0, vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        if j == 0:
            ax.set_ylabel(label, fontsize=8)
fig.suptitle("|∇ₓ CE| summed over channels (shared scale per column)", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Input-Jacobian spectral norm (eq. 10)
#
# ‖J_f(x)‖₂ of the mean-over-T logits by power iteration (`analysis.jacobian_spectral_norm`); to first
# order an ε-bounded L2 perturbation moves the logits by at most ε·‖J‖. For the Noisy-LIF model it is
# the Jacobian of one noise realisation.

# %%
XJ, JAC = X[:S["n_jac"]], {}
for name in NAMES:
    fn = jax.jit(lambda v, x, k, lf=LOGITS[name]: analysis.jacobian_spectral_norm(
        lf, v, x, k, iters=S["jac_iters"]))
    JAC[name] = np.asarray(fn(RUNS[name][1], XJ, KEY))
jac_rows = {name: {"mean": JAC[name].mean(), "median": np.median(JAC[name]), "max": JAC[name].max(),
                   "ε·mean, ε=8/255": 8 / 255 * JAC[name].mean()} for name in NAMES}
print(f"‖J_f(x)‖₂ on {len(XJ)} images, {S['jac_iters']} power iterations")
print_table(jac_rows, ["mean", "median", "max", "ε·mean, ε=8/255"], fmt="{:.4g}", width=17)

# %% [markdown]
# ## Activation regions in the ε-ball (Theorem 2)
#
# `region_samples` points are drawn uniformly in the L∞ ball around each of the first `n_region` images
# (`analysis.sample_linf_ball`) and their spike patterns (every layer, every step;
# `analysis.model_spike_pattern_fn`) compared exactly (`analysis.count_distinct_rows`):
#
# * **regions** — the number of distinct patterns, a lower bound on the activation regions the ball meets
#   (the all-layer count is what `analysis.activation_region_count` returns), for all layers and for the
#   last LIF layer alone; it cannot exceed the number of samples, so a count equal to it only says that
#   every sample met its own region;
# * **flip %** — the share of a layer's spikes (neuron × step) that differ from the clean image's pattern,
#   averaged over the samples: how many state flips the perturbation causes.
#
# For the Noisy-LIF model the clean image and all its samples see the same noise draw, so both numbers
# are those of one frozen noise realisation (flips come from the input change only).

# %%
XR = X[:S["n_region"]]
SPIKES_PER_LAYER = [h.shape[0] * int(np.prod(h.shape[2:])) for h in HS["vanilla"]]  # T·N_l per example
REGIONS, FLIPS = {}, {}
for name in NAMES:
    fn = jax.jit(functools.partial(analysis.ball_statistics, analysis.model_spike_pattern_fn(RUNS[name][0].model)),
                 static_argnames=("num_samples", "layer_sizes"))
    for eps in (2 / 255, 8 / 255, 0.1):
        counts, flips = fn(RUNS[name][1], XR, KEY, eps, num_samples=S["region_samples"],
                           layer_sizes=tuple(SPIKES_PER_LAYER))
        REGIONS[(name, eps)], FLIPS[(name, eps)] = np.asarray(counts), np.asarray(flips)
layer_names = [f"L{i + 1}" for i in range(len(SPIKES_PER_LAYER))]
region_rows = {}
for (name, eps), counts in REGIONS.items():
    row = {"regions all": counts[:, 0].mean(), f"regions {layer_names[-1]}": counts[:, 1].mean()}
    row.update({f"flip % {l}": 100 * FLIPS[(name, eps)][:, i].mean() for i, l in enumerate(layer_names)})
    region_rows[f"{name}, ε = {eps_label(eps)}"] = row
print(f"means over {len(XR)} images of {S['region_samples']} ball samples each "
      f"(spikes per example and layer: {SPIKES_PER_LAYER})")
print_table(region_rows, list(row), fmt="{:.3g}", first="model, ball", width=11)

# %% [markdown]
# ## Summary
#
# Side by side, with the relative change TGO / vanilla − 1. The paper (CIFAR, its Fig. 4) reports that
# TGO lowers the threshold-neighbour share by about 40%; the row below gives the change measured here.

# %%
summary = {
    "clean accuracy %": (clean["vanilla"], clean["tgo"]),
    "neighbour share % (overall)": (100 * SHARES["vanilla"][-1], 100 * SHARES["tgo"][-1]),
    "mean ‖g‖₂ (one draw)": (grad_rows["vanilla"]["‖g‖₂"], grad_rows["tgo"]["‖g‖₂"]),
    "mean ‖g‖₂ (EoT mean)": (grad_rows["vanilla"]["‖g‖₂"], grad_rows["tgo (EoT mean)"]["‖g‖₂"]),
    "zero-gradient share %": (grad_rows["vanilla"]["zero %"], grad_rows["tgo"]["zero %"]),
    "Hoyer sparsity": (grad_rows["vanilla"]["Hoyer"], grad_rows["tgo"]["Hoyer"]),
    "mean ‖J‖₂": (JAC["vanilla"].mean(), JAC["tgo"].mean()),
}
for eps in (8 / 255, 0.1):
    label = eps_label(eps)
    summary[f"last-layer regions, ε = {label}"] = tuple(REGIONS[(n, eps)][:, -1].mean() for n in NAMES)
    summary[f"spike flips % (all layers), ε = {label}"] = tuple(
        100 * np.sum(FLIPS[(n, eps)].mean(axis=0) * SPIKES_PER_LAYER) / sum(SPIKES_PER_LAYER) for n in NAMES)
rows = {k: {"vanilla": a, "TGO": b, "change %": 100 * (b / a - 1) if a else float("nan")}
        for k, (a, b) in summary.items()}
print(f"models {ORIGIN}")
print_table(rows, ["vanilla", "TGO", "change %"], fmt="{:.4g}", first="quantity", width=11)
print(f"\nthreshold-neighbour share change here: {rows['neighbour share % (overall)']['change %']:+.1f}% "
      "(paper, Fig. 4 on CIFAR: about -40%)")
