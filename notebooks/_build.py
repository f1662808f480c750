"""Writes the notebooks (without outputs) from the cell sources below.

    .venv/bin/python notebooks/_build.py            # rewrite all three .ipynb files
    .venv/bin/python notebooks/_build.py --execute  # ... and run them in place, saving outputs

Each notebook is a list of ``md(...)`` / ``code(...)`` cells; edit them here rather than in the
.ipynb JSON. ``--execute`` runs every notebook with nbclient from the repository root at the size
given by ``TGO_NOTEBOOK_SIZE`` (``full`` when unset), so the saved outputs are that size's numbers.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time

import nbformat
from nbformat import v4

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def md(text: str):
    return v4.new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str):
    return v4.new_code_cell(textwrap.dedent(text).strip())


# Every notebook starts here: repository root as the working directory, the size switch.
SETUP = '''
import os
import sys

# Run from the repository root (the tests do; a Jupyter server started in notebooks/ works too).
if not os.path.isdir("tgo_jax") and os.path.isdir(os.path.join("..", "tgo_jax")):
    os.chdir("..")
sys.path.insert(0, os.getcwd())

SIZE = os.environ.get("TGO_NOTEBOOK_SIZE", "full")
if SIZE not in ("ci", "full"):
    raise ValueError(f"TGO_NOTEBOOK_SIZE must be 'ci' or 'full', got {SIZE!r}")
'''

PRINT_TABLE = '''
import numbers


def print_table(rows, columns, fmt="{:.2f}", first="", width=10):
    """rows: name -> {column: value}; prints a fixed-width text table (numbers with ``fmt``)."""
    head = max([len(first)] + [len(str(n)) for n in rows]) + 2
    print(first.ljust(head) + "".join(str(c).rjust(width) for c in columns))
    for name, row in rows.items():
        cells = [fmt.format(float(row[c])) if isinstance(row.get(c), numbers.Number) else str(row.get(c, "-"))
                 for c in columns]
        print(str(name).ljust(head) + "".join(c.rjust(width) for c in cells))
'''


# =============================================================================================
# 01 — theory
# =============================================================================================

def theory():
    return [
        md('''
        # 01 · Noisy-LIF theory: flip probability, firing probability and its sensitivity

        Checks the closed forms of the TGO paper against a Monte-Carlo simulation of Noisy-LIF neurons
        (`tgo_jax.neurons.noisy_lif_step`), following docs/FORMULAS.md §1:

        * **Theorem 1** — under noise ξ ~ N(0, σ²) the spike `Θ(H + ξ − θ)` differs from the noise-free
          `Θ(H − θ)` with probability `P_flip(H) = Φ(−|H − θ| / σ)`.
        * **Eq. 16** — firing probability `P(H) = Φ((H − θ) / σ)`.
        * **Eq. 17** — sensitivity `ΔP ≈ φ(z)·ΔH / σ`, `z = (H − θ) / σ`, and
          `∂/∂σ [φ(z)/σ] = φ(z)(z² − 1)/σ²`: for `|H − θ| < σ` more noise means *less* sensitivity.

        σ here is the noise standard deviation (the library default 0.4; the paper's "variance 0.4" is
        σ = √0.4 ≈ 0.63, `NeuronConfig(sigma_is_variance=True)`). θ = 1.

        Size switch: `TGO_NOTEBOOK_SIZE=ci` (few Monte-Carlo draws, for the tests) or `full` (default).
        Every number printed below is computed in this notebook.
        '''),
        code(SETUP + '''
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from tgo_jax import analysis, neurons

THETA = 1.0
SIGMAS = (0.2, 0.4, 0.6)
N_DRAWS = {"ci": 2_000, "full": 100_000}[SIZE]  # Monte-Carlo noise draws per potential
SEED = 0
KEY = jax.random.PRNGKey(SEED)
print(f"size={SIZE}, Monte-Carlo draws per potential = {N_DRAWS}, seed = {SEED}, "
      f"jax {jax.__version__} on {jax.devices()[0].platform}")
        '''),
        md('''
        ## Theorem 1: state-flip probability

        For a grid of potentials H ∈ [0, 2], `analysis.simulate_flip_rate` runs `N_DRAWS` single
        Noisy-LIF steps from V = 0 with input current H and counts how often the noisy spike differs
        from the noise-free one. The binomial standard error of a rate p is `sqrt(p(1 − p)/n)`; the
        z-score is the Monte-Carlo minus the closed form in units of that error, reported where
        `n·p(1 − p) ≥ 10` (where the normal approximation of the count holds; far in the tails a single
        event is many "standard errors").
        '''),
        code('''
h = jnp.linspace(0.0, 2.0, 81)
flip = {}


def z_scores(mc, closed):
    """(MC − closed) / binomial s.e., only where N_DRAWS·p(1 − p) >= 10."""
    var = closed * (1 - closed)
    z = (mc - closed) / jnp.sqrt(jnp.clip(var, 1e-12) / N_DRAWS)
    return z[N_DRAWS * var >= 10]


print(f"{'σ':>5} {'max |MC − closed|':>19} {'max |z|':>9} {'|z| > 4':>8}   P_flip at H = θ, θ ± σ (closed / MC)")
for i, sigma in enumerate(SIGMAS):
    closed = analysis.flip_probability(h, THETA, sigma)
    mc = analysis.simulate_flip_rate(jax.random.fold_in(KEY, i), h, sigma, N_DRAWS, threshold=THETA)
    z = z_scores(mc, closed)
    flip[sigma] = (np.asarray(closed), np.asarray(mc))
    probe = analysis.flip_probability(jnp.array([THETA, THETA + sigma, THETA - sigma]), THETA, sigma)
    probe_mc = analysis.simulate_flip_rate(jax.random.fold_in(KEY, 10 + i),
                                           jnp.array([THETA, THETA + sigma, THETA - sigma]), sigma, N_DRAWS,
                                           threshold=THETA)
    pairs = ", ".join(f"{float(a):.4f}/{float(b):.4f}" for a, b in zip(probe, probe_mc))
    print(f"{sigma:5.2f} {float(jnp.max(jnp.abs(mc - closed))):19.4f} {float(jnp.max(jnp.abs(z))):9.2f} "
          f"{int(jnp.sum(jnp.abs(z) > 4)):8d}   {pairs}")

fig, ax = plt.subplots(figsize=(6, 3.5))
for sigma, (closed, mc) in flip.items():
    line, = ax.plot(h, closed, label=f"Φ(−|H−θ|/σ), σ = {sigma}")
    ax.plot(h[::2], mc[::2], "o", ms=3, color=line.get_color(), label=f"Monte-Carlo, σ = {sigma}")
ax.axvline(THETA, color="k", lw=0.8, ls=":")
ax.set_xlabel("membrane potential H")
ax.set_ylabel("P(state flip)")
ax.set_title(f"Theorem 1: flip probability ({N_DRAWS} draws per point)")
ax.legend(fontsize=7, ncol=2)
fig.tight_layout()
plt.show()
        '''),
        md('''
        ## Eq. 16: firing probability

        The share of noisy steps that fire, simulated directly with `neurons.noisy_lif_step`, against
        `analysis.firing_probability` = Φ((H − θ)/σ).
        '''),
        code('''
def simulate_firing_rate(key, h, sigma, n):
    """Share of n independent Noisy-LIF steps (V = 0, input current h) that fire: Monte-Carlo P(H)."""
    v0 = jnp.zeros_like(h)

    def fire(k):
        _, (spike, _) = neurons.noisy_lif_step(v0, h, k, threshold=THETA, sigma=sigma)
        return spike

    return jax.vmap(fire)(jax.random.split(key, n)).mean(axis=0)


fire = {}
print(f"{'σ':>5} {'max |MC − Φ((H−θ)/σ)|':>24} {'max |z|':>9}")
for i, sigma in enumerate(SIGMAS):
    closed = analysis.firing_probability(h, THETA, sigma)
    mc = simulate_firing_rate(jax.random.fold_in(KEY, 100 + i), h, sigma, N_DRAWS)
    fire[sigma] = (np.asarray(closed), np.asarray(mc))
    print(f"{sigma:5.2f} {float(jnp.max(jnp.abs(mc - closed))):24.4f} "
          f"{float(jnp.max(jnp.abs(z_scores(mc, closed)))):9.2f}")

fig, ax = plt.subplots(figsize=(6, 3.5))
for sigma, (closed, mc) in fire.items():
    line, = ax.plot(h, closed, label=f"Φ((H−θ)/σ), σ = {sigma}")
    ax.plot(h[::2], mc[::2], "o", ms=3, color=line.get_color())
ax.step(h, (h >= THETA).astype(float), where="post", color="k", lw=0.8, label="LIF (no noise)")
ax.set_xlabel("membrane potential H")
ax.set_ylabel("P(spike)")
ax.set_title("Eq. 16: firing probability (dots: Monte-Carlo)")
ax.legend(fontsize=7)
fig.tight_layout()
plt.show()
        '''),
        md('''
        ## Eq. 17: first-order change of the firing probability

        A small shift ΔH moves the firing probability by `ΔP ≈ φ(z)·ΔH/σ`. The Monte-Carlo ΔP uses the same
        noise draws at H and H + ΔH (common random numbers), so its error is that of counting the draws
        that fall in the shifted interval.
        '''),
        code('''
DH = 0.05
h0 = jnp.array([0.4, 0.7, 0.9, 1.0, 1.1, 1.3, 1.6])
for i, sigma in enumerate(SIGMAS):
    k = jax.random.fold_in(KEY, 200 + i)
    dp_mc = simulate_firing_rate(k, h0 + DH, sigma, N_DRAWS) - simulate_firing_rate(k, h0, sigma, N_DRAWS)
    dp_exact = analysis.firing_probability(h0 + DH, THETA, sigma) - analysis.firing_probability(h0, THETA, sigma)
    dp_linear = analysis.firing_sensitivity(h0, THETA, sigma) * DH
    print(f"σ = {sigma}, ΔH = {DH}")
    print("   H      " + "".join(f"{float(v):8.2f}" for v in h0))
    print("   exact  " + "".join(f"{float(v):8.4f}" for v in dp_exact))
    print("   φ·ΔH/σ " + "".join(f"{float(v):8.4f}" for v in dp_linear))
    print("   MC     " + "".join(f"{float(v):8.4f}" for v in dp_mc))
        '''),
        md('''
        ## Sensitivity φ(z)/σ against σ

        For a fixed distance d = |H − θ|, the sensitivity `φ(d/σ)/σ` as a function of σ. Its derivative
        `φ(z)(z² − 1)/σ²` vanishes at σ = d: for σ > d (the neuron sits within one σ of the threshold)
        it is negative, so more noise lowers the sensitivity; for σ < d it is positive.
        '''),
        code('''
sig = jnp.linspace(0.02, 1.5, 297)
DISTANCES = (0.05, 0.2, 0.4, 0.8)
fig, ax = plt.subplots(figsize=(6, 3.5))
print(f"{'d = |H−θ|':>10} {'argmax_σ φ(d/σ)/σ':>20} {'peak value':>11} {'at σ = 0.4':>11} {'at σ = 0.6':>11}")
for d in DISTANCES:
    s = analysis.firing_sensitivity(THETA + d, THETA, sig)
    ax.plot(sig, s, label=f"d = {d}")
    ax.axvline(d, color=ax.lines[-1].get_color(), lw=0.6, ls=":")
    at = {v: float(analysis.firing_sensitivity(THETA + d, THETA, v)) for v in (0.4, 0.6)}
    print(f"{d:10.2f} {float(sig[jnp.argmax(s)]):20.3f} {float(s.max()):11.3f} {at[0.4]:11.3f} {at[0.6]:11.3f}")
ax.set_xlabel("noise σ")
ax.set_ylabel("dP/dH = φ(z)/σ")
ax.set_yscale("log")
ax.set_ylim(1e-3, 25)
ax.set_title("Sensitivity against σ (dotted: σ = d, the maximum)")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
        '''),
        md('''
        ## Sign of ∂/∂σ [φ(z)/σ]

        The closed form `analysis.sensitivity_dsigma` against `jax.grad` of `analysis.firing_sensitivity`
        with respect to σ, on a grid of (d, σ); then the share of grid points where the sign is the one
        the paper states (negative for d < σ, positive for d > σ). Points within 0.02 of d = σ are left
        out, and so are those with z = d/σ > 10, where φ(z) underflows float32 and the derivative is 0.
        '''),
        code('''
d_grid = jnp.linspace(0.0, 1.0, 51)
s_grid = jnp.linspace(0.05, 1.0, 39)
D, S = jnp.meshgrid(d_grid, s_grid, indexing="ij")
closed = analysis.sensitivity_dsigma(THETA + D, THETA, S)
auto = jax.vmap(jax.grad(lambda d, s: analysis.firing_sensitivity(THETA + d, THETA, s), argnums=1))(
    D.ravel(), S.ravel()).reshape(D.shape)
rel = jnp.max(jnp.abs(closed - auto)) / jnp.max(jnp.abs(auto))
inside = D < S - 0.02   # |H − θ| < σ
outside = (D > S + 0.02) & (D / S < 10)  # |H − θ| > σ, φ(z) representable
print(f"max |closed − autodiff| / max |autodiff| = {float(rel):.2e} over {D.size} grid points")
print(f"d < σ: {int(inside.sum())} points, share with ∂/∂σ < 0: {float(jnp.mean(closed[inside] < 0)):.3f}")
print(f"d > σ: {int(outside.sum())} points, share with ∂/∂σ > 0: {float(jnp.mean(closed[outside] > 0)):.3f}")

fig, ax = plt.subplots(figsize=(5, 3.6))
im = ax.pcolormesh(np.asarray(s_grid), np.asarray(d_grid), np.sign(np.asarray(closed)), cmap="coolwarm",
                   shading="nearest", vmin=-1, vmax=1)
ax.plot([0.05, 1.0], [0.05, 1.0], "k--", lw=1, label="d = σ")
ax.set_xlabel("noise σ")
ax.set_ylabel("d = |H − θ|")
ax.set_title("sign of ∂/∂σ [φ(z)/σ]  (blue < 0, red > 0)")
ax.legend(fontsize=8, loc="upper left")
fig.tight_layout()
plt.show()
        '''),
        md('''
        ## Summary

        The cell below restates the computed checks in one place. At the library's default σ = 0.4 it also
        gives the flip probability and sensitivity of a neuron at a few distances from θ: a membrane
        margin penalty with δ = 0.5 pushes potentials to d ≥ δ, where both are small.
        '''),
        code('''
for d in (0.0, 0.1, 0.25, 0.5, 1.0):
    pf = float(analysis.flip_probability(THETA + d, THETA, 0.4))
    se = float(analysis.firing_sensitivity(THETA + d, THETA, 0.4))
    ds = float(analysis.sensitivity_dsigma(THETA + d, THETA, 0.4))
    print(f"σ = 0.4, d = {d:4.2f}: P_flip = {pf:.4f}, dP/dH = {se:.4f}, ∂/∂σ(dP/dH) = {ds:+.4f}")
worst = max(float(np.max(np.abs(mc - c))) for c, mc in flip.values())
print(f"Theorem 1: largest |Monte-Carlo − closed form| over σ ∈ {SIGMAS}: {worst:.4f} ({N_DRAWS} draws)")
print(f"Eq. 17 sign: negative on {float(jnp.mean(closed[inside] < 0)):.1%} of the d < σ grid points, "
      f"positive on {float(jnp.mean(closed[outside] > 0)):.1%} of the d > σ points")
        '''),
    ]


# =============================================================================================
# 02 — threshold guarding on trained nets
# =============================================================================================

def threshold_guarding():
    return [
        md('''
        # 02 · Threshold guarding: vanilla vs TGO small spiking nets on Fashion-MNIST

        Compares a vanilla (TET) small spiking net with a TGO one (TET + membrane margin penalty with
        dynamic λ + Noisy-LIF neurons, `tgo_train/configs/fmnist_tgo.py`) on the quantities of docs/FORMULAS.md §5:

        1. membrane-potential (H) distributions per LIF layer;
        2. the threshold-neighbour share `|H − θ| < δ` per layer and overall (the paper's Fig. 4);
        3. input-gradient heatmaps (the paper's Fig. 5) and gradient norms / sparsity;
        4. the input-Jacobian spectral norm (eq. 10);
        5. activation regions met in an ε-ball and the spike flips a perturbation causes (Theorem 2).

        **Models.** In `full` size (default) the notebook loads `runs/fmnist/vanilla` and `runs/fmnist/tgo`
        when both are finished (`python -m tgo_train.experiment --workdir runs/fmnist`); otherwise it trains the
        same two configs at a reduced size (1 epoch on 20k images) under `runs/notebooks/02_threshold_guarding/`
        (reused on a rerun). `TGO_NOTEBOOK_SIZE=ci` trains tiny nets for a few dozen steps in a temporary
        directory (for the tests; its numbers mean nothing).

        All numbers on this page are computed here; the paper's are quoted only where stated.
        '''),
        code(SETUP + '''
import functools
import itertools
import json
import tempfile
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from absl import logging as absl_logging

from tgo_jax import analysis, attacks
from tgo_train import evaluate, train
from tgo_train.configs import fmnist_tgo, fmnist_vanilla

absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every checkpoint at INFO

S = {"ci": dict(n_eval=64, n_pot=64, draws=1, eot=2, n_heat=4, n_jac=16, jac_iters=5,
                n_region=4, region_samples=8),
     "full": dict(n_eval=1000, n_pot=512, draws=3, eot=8, n_heat=6, n_jac=256, jac_iters=20,
                  n_region=16, region_samples=64)}[SIZE]
SEED = 0
KEY = jax.random.PRNGKey(SEED)
print(f"size={SIZE}: {S}; jax {jax.__version__} on {jax.devices()[0].platform} "
      f"({os.cpu_count()} CPU cores visible)")
        '''),
        md('''
        ## The two models
        '''),
        code(PRINT_TABLE + '''

RUNS_DIR = os.path.join("runs", "fmnist")  # python -m tgo_train.experiment --workdir runs/fmnist
NAMES = ("vanilla", "tgo")
CONFIGS = {"vanilla": fmnist_vanilla.get_config, "tgo": fmnist_tgo.get_config}


def read_records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def finished(workdir):
    """Whether a training workdir has checkpoints and reached its config's last epoch (or max_steps)."""
    paths = [os.path.join(workdir, p) for p in ("checkpoints", "metrics.jsonl", "config.json")]
    if not all(os.path.exists(p) for p in paths):
        return False
    with open(paths[2]) as f:
        config = json.load(f)
    records = read_records(workdir)
    if not records:
        return False
    return records[-1]["epoch"] >= config["epochs"] or bool(
        config.get("max_steps") and records[-1]["step"] >= config["max_steps"])


def reduced_config(name):
    """The experiment's config at this notebook's size (seed 0, as in the configs)."""
    c = CONFIGS[name]()
    c.progress = False
    c.checkpoint_every_steps = 100_000  # only the final checkpoint
    if SIZE == "ci":
        c.model.num_steps = 2
        c.model_kwargs.channels = (4, 8)
        c.model_kwargs.hidden = 16
        c.train_subset, c.batch_size, c.epochs = 640, 32, 1
        c.eval_subset, c.eval_batch_size, c.eval_noise_draws = 64, 64, 1
    else:
        c.train_subset, c.epochs = 20_000, 1
        c.eval_subset = 2_000
    return c


if SIZE == "full" and all(finished(os.path.join(RUNS_DIR, n)) for n in NAMES):
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
        train.train_and_evaluate(reduced_config(name), os.path.join(ROOT, name))
        print(f"{name}: training (or resuming a finished run) took {time.time() - t0:.0f} s")

RUNS = {}
for name in NAMES:
    workdir = os.path.join(ROOT, name)
    run, variables, step = evaluate.load_run(workdir, num_examples=S["n_eval"])
    RUNS[name] = (run, variables)
    with open(os.path.join(workdir, "config.json")) as f:
        c = json.load(f)
    last = read_records(workdir)[-1]
    margin = (f"margin penalty δ = {c['margin']['delta']}, λ_max = {c['margin']['lambda_max']} "
              f"({c['margin']['schedule']})" if c["margin"]["enabled"] else "no margin penalty")
    print(f"{name}: step {step}, {c['epochs']} epoch(s) on {c['train_subset'] or 60000} training images, "
          f"batch {c['batch_size']}, seed {c['seed']}, T = {c['model']['num_steps']}, "
          f"neuron {c['neuron']['kind']} (σ = {c['neuron']['sigma']}), {margin}; "
          f"test accuracy logged at the end of training: {100 * last.get('test_accuracy', float('nan')):.2f}%")
print("models:", ORIGIN)

X, Y = (jnp.asarray(a) for a in RUNS["vanilla"][0].splits["test"])
THETA = RUNS["tgo"][0].config.neuron.threshold
DELTA = RUNS["tgo"][0].config.margin.delta
print(f"analysis images: the first {len(Y)} Fashion-MNIST test images; θ = {THETA}, δ = {DELTA}")
        '''),
        md('''
        Clean accuracy on the analysis images (for the Noisy-LIF model: mean over fresh noise draws).
        '''),
        code('''
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
        '''),
        md('''
        ## Membrane-potential distributions and the threshold-neighbour share

        Pre-spike potentials H of every LIF layer on the first `n_pot` analysis images, all time steps. The
        shaded band is θ ± δ; the threshold-neighbour share is the fraction of (neuron, t, example) entries
        inside it (`analysis.threshold_neighbour_share`). For the Noisy-LIF model H is the potential before
        the noise is added; the layers after the first depend on earlier layers' noise, so its shares are
        averaged over `draws` noise draws.
        '''),
        code('''
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

print("\\noverall share (%) for other δ:")
delta_rows = {}
for d in (0.1, 0.2, 0.3, 0.5):
    v = float(analysis.threshold_neighbour_share(HS["vanilla"], delta=d, threshold=THETA).overall)
    t = float(analysis.threshold_neighbour_share(HS["tgo"], delta=d, threshold=THETA).overall)
    delta_rows[f"δ = {d}"] = {"vanilla": 100 * v, "TGO": 100 * t, "change %": 100 * (t / v - 1)}
print_table(delta_rows, ["vanilla", "TGO", "change %"], first="(first draw)", width=11)
        '''),
        code('''
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
        '''),
        md('''
        ## Input gradients: norms, sparsity and heatmaps (App. F, Fig. 5)

        `g = ∇_x CE(f(x), y)` per example (surrogate-gradient BPTT, `analysis.input_gradients`). For the
        Noisy-LIF model the gradient of one noise draw and the EoT mean over `eot` draws (what an EoT
        attacker follows) are both shown. Reported: mean ‖g‖₁, ‖g‖₂, the share of exactly-zero entries
        (|g| ≤ 1e-6; the triangle surrogate is zero for |H − θ| ≥ 1), and the scale-free Hoyer sparsity
        `(√n − ‖g‖₁/‖g‖₂)/(√n − 1)` ∈ [0, 1] (higher is sparser).
        '''),
        code('''
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
        '''),
        code('''
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
        '''),
        md('''
        ## Input-Jacobian spectral norm (eq. 10)

        ‖J_f(x)‖₂ of the mean-over-T logits by power iteration (`analysis.jacobian_spectral_norm`); to first
        order an ε-bounded L2 perturbation moves the logits by at most ε·‖J‖. For the Noisy-LIF model it is
        the Jacobian of one noise realisation.
        '''),
        code('''
XJ, JAC = X[:S["n_jac"]], {}
for name in NAMES:
    fn = jax.jit(lambda v, x, k, lf=LOGITS[name]: analysis.jacobian_spectral_norm(
        lf, v, x, k, iters=S["jac_iters"]))
    JAC[name] = np.asarray(fn(RUNS[name][1], XJ, KEY))
jac_rows = {name: {"mean": JAC[name].mean(), "median": np.median(JAC[name]), "max": JAC[name].max(),
                   "ε·mean, ε=8/255": 8 / 255 * JAC[name].mean()} for name in NAMES}
print(f"‖J_f(x)‖₂ on {len(XJ)} images, {S['jac_iters']} power iterations")
print_table(jac_rows, ["mean", "median", "max", "ε·mean, ε=8/255"], fmt="{:.4g}", width=17)
        '''),
        md('''
        ## Activation regions in the ε-ball (Theorem 2)

        `region_samples` points are drawn uniformly in the L∞ ball around each of the first `n_region` images
        (`analysis.sample_linf_ball`) and their spike patterns (every layer, every step;
        `analysis.model_spike_pattern_fn`) compared exactly (`analysis.count_distinct_rows`):

        * **regions** — the number of distinct patterns, a lower bound on the activation regions the ball meets
          (the all-layer count is what `analysis.activation_region_count` returns), for all layers and for the
          last LIF layer alone; it cannot exceed the number of samples, so a count equal to it only says that
          every sample met its own region;
        * **flip %** — the share of a layer's spikes (neuron × step) that differ from the clean image's pattern,
          averaged over the samples: how many state flips the perturbation causes.

        For the Noisy-LIF model the clean image and all its samples see the same noise draw, so both numbers
        are those of one frozen noise realisation (flips come from the input change only).
        '''),
        code('''
XR = X[:S["n_region"]]
SPIKES_PER_LAYER = [h.shape[0] * int(np.prod(h.shape[2:])) for h in HS["vanilla"]]  # T·N_l per example
BOUNDS = np.cumsum([0] + SPIKES_PER_LAYER)
LAYER_SLICES = list(itertools.pairwise(BOUNDS))


def ball_statistics(pattern_fn, variables, x, key, eps):
    """Per image: distinct patterns [all layers, last layer] and per-layer flip shares of the ball samples."""

    def one(inputs):
        x_b, key_b = inputs
        sample_key, noise_key = jax.random.split(key_b)
        points = analysis.sample_linf_ball(sample_key, x_b, eps, S["region_samples"])
        patterns = jax.vmap(lambda p: pattern_fn(variables, p[None], noise_key)[0])(points)  # [N, P]
        clean_pattern = pattern_fn(variables, x_b[None], noise_key)[0]  # [P]
        last = LAYER_SLICES[-1]
        counts = [analysis.count_distinct_rows(patterns), analysis.count_distinct_rows(patterns[:, last[0]:])]
        flips = [jnp.mean(patterns[:, a:b] != clean_pattern[a:b]) for a, b in LAYER_SLICES]
        return jnp.stack(counts), jnp.stack(flips)

    return jax.lax.map(one, (x, jax.random.split(key, x.shape[0])))


REGIONS, FLIPS = {}, {}
for name in NAMES:
    fn = jax.jit(functools.partial(ball_statistics, analysis.model_spike_pattern_fn(RUNS[name][0].model)))
    for eps in (2 / 255, 8 / 255, 0.1):
        counts, flips = fn(RUNS[name][1], XR, KEY, eps)
        REGIONS[(name, eps)], FLIPS[(name, eps)] = np.asarray(counts), np.asarray(flips)
layer_names = [f"L{i + 1}" for i in range(len(LAYER_SLICES))]
region_rows = {}
for (name, eps), counts in REGIONS.items():
    row = {"regions all": counts[:, 0].mean(), f"regions {layer_names[-1]}": counts[:, 1].mean()}
    row.update({f"flip % {l}": 100 * FLIPS[(name, eps)][:, i].mean() for i, l in enumerate(layer_names)})
    region_rows[f"{name}, ε = {evaluate.eps_label(eps)}"] = row
print(f"means over {len(XR)} images of {S['region_samples']} ball samples each "
      f"(spikes per example and layer: {SPIKES_PER_LAYER})")
print_table(region_rows, list(row), fmt="{:.3g}", first="model, ball", width=11)
        '''),
        md('''
        ## Summary

        Side by side, with the relative change TGO / vanilla − 1. The paper (CIFAR, its Fig. 4) reports that
        TGO lowers the threshold-neighbour share by about 40%; the row below gives the change measured here.
        '''),
        code('''
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
    label = evaluate.eps_label(eps)
    summary[f"last-layer regions, ε = {label}"] = tuple(REGIONS[(n, eps)][:, -1].mean() for n in NAMES)
    summary[f"spike flips % (all layers), ε = {label}"] = tuple(
        100 * np.sum(FLIPS[(n, eps)].mean(axis=0) * SPIKES_PER_LAYER) / sum(SPIKES_PER_LAYER) for n in NAMES)
rows = {k: {"vanilla": a, "TGO": b, "change %": 100 * (b / a - 1) if a else float("nan")}
        for k, (a, b) in summary.items()}
print(f"models {ORIGIN}")
print_table(rows, ["vanilla", "TGO", "change %"], fmt="{:.4g}", first="quantity", width=11)
print(f"\\nthreshold-neighbour share change here: {rows['neighbour share % (overall)']['change %']:+.1f}% "
      "(paper, Fig. 4 on CIFAR: about -40%)")
        '''),
    ]


# =============================================================================================
# 03 — robustness: ablation grid, ε and σ sweeps, loss landscapes
# =============================================================================================

def robustness():
    return [
        md('''
        # 03 · Robustness: the MC × NLIF ablation on Fashion-MNIST

        The paper's ablation (its Table 4) in small: four small spiking nets trained with TET on
        Fashion-MNIST, with and without each TGO part —

        | name | MC (membrane margin penalty, dynamic λ) | NLIF (Noisy-LIF neurons) |
        |---|---|---|
        | vanilla | ✗ | ✗ |
        | mc | ✓ | ✗ |
        | nlif | ✗ | ✓ |
        | tgo | ✓ | ✓ |

        — evaluated under Clean, FGSM, RFGSM and PGD at ε = 8/255 and ε = 0.1 (white-box, surrogate-gradient
        BPTT; Noisy-LIF models are attacked with EoT and their accuracy is the mean over fresh noise draws),
        then an ε sweep, a sweep of the Noisy-LIF σ used at evaluation for the TGO model, and loss landscapes
        (`analysis.landscape_directions` + `analysis.loss_landscape`) on clean and PGD inputs.

        Trained models are cached under `runs/ablation/<name>` (`full` size, default), so a rerun only
        evaluates. `TGO_NOTEBOOK_SIZE=ci` trains tiny nets for a few dozen steps in a temporary directory (for
        the tests; its numbers mean nothing). All numbers on this page are computed here; the paper's are
        quoted only in the comparison at the end.
        '''),
        code(SETUP + '''
import dataclasses
import functools
import json
import tempfile
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from absl import logging as absl_logging

from tgo_jax import analysis, attacks, models
from tgo_train import evaluate, train
from tgo_train.configs import fmnist_tgo

absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every checkpoint at INFO

S = {"ci": dict(train_subset=640, batch_size=32, n_eval=64, eval_batch=64, eot=2, draws=1, pgd_steps=5,
                n_land=32, grid=5),
     "full": dict(train_subset=20_000, batch_size=64, n_eval=500, eval_batch=250, eot=5, draws=2,
                  pgd_steps=10, n_land=128, grid=11)}[SIZE]
PGD = f"PGD{S['pgd_steps']}"


def eps_label(eps):
    """'8/255' for multiples of 1/255, else the number."""
    k = eps * 255
    return f"{round(k)}/255" if eps and abs(k - round(k)) < 1e-6 else f"{eps:g}"


ATTACKS = ("Clean", "FGSM", "RFGSM", PGD)
EPS_TABLE = (8 / 255, 0.1)
ALPHA = 0.01  # PGD step (docs/FORMULAS.md §4)
SEED = 0
print(f"size={SIZE}: {S}; jax {jax.__version__} on {jax.devices()[0].platform} "
      f"({os.cpu_count()} CPU cores visible)")
        '''),
        md('''
        ## Training the ablation grid

        Each config is `tgo_train/configs/fmnist_tgo.py` with the margin penalty and the neuron kind switched
        (`vanilla` is then exactly `fmnist_vanilla.py`), at the size above: 1 epoch on the first
        `train_subset` training images in `full` size. A finished run in the cache is reused; a cached run whose
        config differs from the one asked for is an error (delete its folder to retrain).
        '''),
        code(PRINT_TABLE + '''

GRID = {"vanilla": (False, "lif"), "mc": (True, "lif"), "nlif": (False, "noisy"), "tgo": (True, "noisy")}
NAMES = tuple(GRID)


def ablation_config(name):
    margin, kind = GRID[name]
    c = fmnist_tgo.get_config()
    c.margin.enabled = margin
    c.neuron.kind = kind
    c.eval_noise_draws = 3 if kind == "noisy" else 1
    c.progress = False
    c.checkpoint_every_steps = 100_000  # only the final checkpoint
    c.train_subset, c.batch_size, c.epochs = S["train_subset"], S["batch_size"], 1
    if SIZE == "ci":
        c.model.num_steps = 2
        c.model_kwargs.channels = (4, 8)
        c.model_kwargs.hidden = 16
        c.eval_subset, c.eval_batch_size, c.eval_noise_draws = 64, 64, 1
    else:
        c.eval_subset = 2_000
    return c


def check_cached(config, workdir):
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    wanted = json.loads(json.dumps(config.to_dict(), default=str))
    if saved != wanted:
        diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        raise ValueError(f"{workdir} holds a run with another config (fields {diff}); delete it to retrain")


if SIZE == "ci":
    _tmp = tempfile.TemporaryDirectory(prefix="tgo_nb03_")  # removed when the kernel exits
    ROOT = _tmp.name
else:
    ROOT = os.path.join("runs", "ablation")
RUNS, TRAIN_INFO = {}, {}
for name in NAMES:
    config, workdir = ablation_config(name), os.path.join(ROOT, name)
    check_cached(config, workdir)
    t0 = time.time()
    record = train.train_and_evaluate(config, workdir)
    run, variables, step = evaluate.load_run(workdir, num_examples=S["n_eval"])
    RUNS[name] = (run, variables)
    TRAIN_INFO[name] = record
    print(f"{name}: {time.time() - t0:.0f} s (training or reuse + loading), step {step}, "
          f"test accuracy at the end of training {100 * record['test_accuracy']:.2f}% "
          f"on {config.eval_subset} images")
c = ablation_config("tgo")
print(f"all: seed {c.seed}, {c.epochs} epoch on {c.train_subset} images, batch {c.batch_size}, SGD lr {c.optim.lr}, "
      f"T = {c.model.num_steps}, small net {c.model_kwargs.to_dict() or 'channels (16, 32), hidden 128'}, "
      f"MC: δ = {c.margin.delta}, λ_max = {c.margin.lambda_max} ({c.margin.schedule}); NLIF: σ = {c.neuron.sigma}")
print(f"runs under {ROOT}")

MODELS = {name: (run.model, variables) for name, (run, variables) in RUNS.items()}
X, Y = (jnp.asarray(a) for a in RUNS["vanilla"][0].splits["test"])
print(f"evaluation: the first {len(Y)} test images; EoT {S['eot']} draws per gradient and "
      f"{S['draws']} evaluation draws for Noisy-LIF models")
        '''),
        md('''
        ## Robust accuracy in the Table-4 layout

        One jitted evaluator per (model structure, attack) with ε as an argument, so the ε values and the
        four trained models reuse the compiled code. PGD: uniform random start, α = 0.01, `pgd_steps` steps.
        The numbers in brackets are the change against the `vanilla` row, in accuracy points.
        '''),
        code('''
def attack_fn(name, eps, eot):
    if name == "Clean":
        return attacks.no_attack
    if name == "FGSM":
        return functools.partial(attacks.fgsm, eps=eps, eot=eot)
    if name == "RFGSM":
        return functools.partial(attacks.rfgsm, eps=eps, eot=eot)
    return functools.partial(attacks.pgd, eps=eps, alpha=ALPHA, steps=S["pgd_steps"], eot=eot)


_EVALUATORS = {}


def evaluator(model, attack):
    """jit(n_correct(variables, x, y, key, eps)), shared by models with the same structure."""
    cache_key = (repr(model), attack)
    if cache_key not in _EVALUATORS:
        logits_fn = attacks.model_logits_fn(model)
        eot, draws = (S["eot"], S["draws"]) if model.neuron.stochastic else (1, 1)

        def n_correct(variables, x, y, key, eps):
            return attacks.robust_correct(attack_fn(attack, eps, eot), logits_fn, variables, x, y, key,
                                          draws=draws).sum()

        _EVALUATORS[cache_key] = jax.jit(n_correct)
    return _EVALUATORS[cache_key]


def robust_accuracy(model, variables, attack, eps, seed=SEED):
    """Accuracy (%) on the evaluation images under ``attack`` at ``eps``."""
    fn, correct = evaluator(model, attack), 0.0
    for i in range(0, len(Y), S["eval_batch"]):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), i)
        correct += float(fn(variables, X[i:i + S["eval_batch"]], Y[i:i + S["eval_batch"]], key, eps))
    return 100 * correct / len(Y)


t0 = time.time()
TABLE = {eps: {name: {a: robust_accuracy(*MODELS[name], a, eps) for a in ATTACKS} for name in NAMES}
         for eps in EPS_TABLE}
print(f"evaluated in {time.time() - t0:.0f} s\\n")


def table4_rows(table):
    rows = {}
    for name in NAMES:
        margin, kind = GRID[name]
        row = {"MC": "✓" if margin else "✗", "NLIF": "✓" if kind == "noisy" else "✗"}
        for a in ATTACKS:
            diff = table[name][a] - table["vanilla"][a]
            row[a] = f"{table[name][a]:.1f}" + ("" if name == "vanilla" else f" ({diff:+.1f})")
        rows[name] = row
    return rows


for eps, table in TABLE.items():
    print(f"ε = {eps_label(eps)}  (accuracy %, {len(Y)} test images)")
    print_table(table4_rows(table), ["MC", "NLIF", *ATTACKS], first="model", width=14)
    print()
        '''),
        md('''
        Threshold-neighbour share (|H − θ| < δ, all layers, first noise draw) of each model on the
        evaluation images, next to its clean accuracy, to see which part moves the potentials.
        '''),
        code('''
share_rows, _forward = {}, {}
for name in NAMES:
    run, variables = RUNS[name]
    if repr(run.model) not in _forward:  # one compile per model structure
        _forward[repr(run.model)] = jax.jit(functools.partial(analysis.forward_potentials, run.model))
    _, hs = _forward[repr(run.model)](variables, X, jax.random.PRNGKey(SEED))
    share = analysis.threshold_neighbour_share(hs, delta=run.config.margin.delta,
                                               threshold=run.config.neuron.threshold)
    share_rows[name] = {"share %": 100 * float(share.overall),
                        **{f"L{i + 1} %": 100 * float(s) for i, s in enumerate(share.per_layer)},
                        "clean %": TABLE[EPS_TABLE[0]][name]["Clean"]}
print_table(share_rows, list(share_rows["vanilla"]), first="model", width=10)
        '''),
        md('''
        ## Does the gain depend on the attack's backward rule?

        The attacks above differentiate through the triangle surrogate the models were trained with, whose
        gradient is zero for |H − θ| ≥ 1. A margin penalty that moves potentials away from θ could therefore
        weaken the attacker's gradient rather than the model (gradient masking). Here every model is attacked
        with PGD at ε = 8/255 through the triangle surrogate and through the sigmoid surrogate (k = 4, non-zero
        everywhere), and an image counts as robust only if it survives both
        (`attacks.ensemble_robust_accuracy`, the forward pass is always the model's own).
        '''),
        code('''
RULES = (("triangle", None), ("sigmoid", None))
_ENSEMBLES = {}


def ensemble_accuracy(model, variables, eps, seed=SEED):
    """Accuracy (%) robust under PGD through every rule of RULES, and per rule."""
    if repr(model) not in _ENSEMBLES:
        eot, draws = (S["eot"], S["draws"]) if model.neuron.stochastic else (1, 1)

        def run_ensemble(variables, x, y, key, eps):
            attack = functools.partial(attacks.pgd, eps=eps, alpha=ALPHA, steps=S["pgd_steps"], eot=eot)
            return attacks.ensemble_robust_accuracy(model, variables, x, y, key, attack=attack, rules=RULES,
                                                    draws=draws)

        _ENSEMBLES[repr(model)] = jax.jit(run_ensemble)
    totals = {}
    for i in range(0, len(Y), S["eval_batch"]):
        xb, yb = X[i:i + S["eval_batch"]], Y[i:i + S["eval_batch"]]
        out = _ENSEMBLES[repr(model)](variables, xb, yb, jax.random.fold_in(jax.random.PRNGKey(seed), i), eps)
        for k, v in {**out.per_rule, "both": out.accuracy}.items():
            totals[k] = totals.get(k, 0.0) + float(v) * len(yb)
    return {k: 100 * v / len(Y) for k, v in totals.items()}


t0 = time.time()
ENSEMBLE = {name: ensemble_accuracy(*MODELS[name], 8 / 255) for name in NAMES}
print(f"{PGD} accuracy (%) at ε = 8/255 by the attack's backward rule ({time.time() - t0:.0f} s)")
rows = {name: {**r, "both − vanilla": r["both"] - ENSEMBLE["vanilla"]["both"]} for name, r in ENSEMBLE.items()}
print_table(rows, ["triangle", "sigmoid", "both", "both − vanilla"], fmt="{:.1f}", first="model", width=15)
        '''),
        md('''
        ## ε sweep

        PGD accuracy against the budget ε for the four models, on the same images. The points at ε = 0 (the
        clean accuracy), 8/255 and 0.1 are the table's; the others are computed here.
        '''),
        code('''
EPS_SWEEP = (0.0, 2 / 255, 4 / 255, 6 / 255, 8 / 255, 0.05, 0.1)


def sweep_point(name, eps):
    """PGD accuracy at ε, taken from the table where it has it."""
    if eps == 0:
        return TABLE[EPS_TABLE[0]][name]["Clean"]
    if eps in TABLE:
        return TABLE[eps][name][PGD]
    return robust_accuracy(*MODELS[name], PGD, eps)


t0 = time.time()
SWEEP = {name: [sweep_point(name, eps) for eps in EPS_SWEEP] for name in NAMES}
print(f"{PGD} accuracy (%) against ε ({time.time() - t0:.0f} s)")
print_table({n: dict(zip(map(eps_label, EPS_SWEEP), v)) for n, v in SWEEP.items()},
            [eps_label(e) for e in EPS_SWEEP], fmt="{:.1f}", first="model", width=8)

fig, ax = plt.subplots(figsize=(5.5, 3.4))
for name, accs in SWEEP.items():
    ax.plot(np.asarray(EPS_SWEEP) * 255, accs, marker="o", label=name)
ax.set_xlabel("ε (×1/255)")
ax.set_ylabel(f"{PGD} accuracy (%)")
ax.set_title("robust accuracy against the attack budget")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()
        '''),
        md('''
        ## σ sweep (noise at evaluation, TGO model)

        The TGO model (trained with σ = 0.4) evaluated with the Noisy-LIF noise levels σ = 0.2, 0.4, 0.6,
        `model.clone(neuron=dataclasses.replace(model.neuron, sigma=σ))`, and with the noise switched off
        (`kind="lif"`, σ → 0), under Clean and PGD (EoT for the noisy variants). Same weights; only the
        evaluation noise changes. The σ = 0.4 row is the table's.
        '''),
        code('''
SIGMAS = (0.2, 0.4, 0.6)
SIGMA_ATTACKS = ("Clean", PGD)
run, variables = RUNS["tgo"]
variants = {"no noise (LIF)": run.model.clone(neuron=dataclasses.replace(run.model.neuron, kind="lif"))}
variants.update({f"σ = {s}": run.model.clone(neuron=dataclasses.replace(run.model.neuron, sigma=s))
                 for s in SIGMAS})


def sigma_point(model, attack, eps):
    if repr(model) == repr(run.model):  # the trained noise level: the table's number
        return TABLE[eps]["tgo"][attack]
    return robust_accuracy(model, variables, attack, eps)


t0 = time.time()
SIGMA_SWEEP = {eps: {label: {a: sigma_point(m, a, eps) for a in SIGMA_ATTACKS} for label, m in variants.items()}
               for eps in EPS_TABLE}
print(f"TGO model under evaluation-time noise levels ({time.time() - t0:.0f} s)")
for eps, rows in SIGMA_SWEEP.items():
    print(f"\\nε = {eps_label(eps)} (accuracy %)")
    print_table(rows, SIGMA_ATTACKS, fmt="{:.1f}", first="evaluation noise", width=9)

fig, axes = plt.subplots(1, len(EPS_TABLE), figsize=(9, 3.2), sharey=True)
for ax, (eps, rows) in zip(axes, SIGMA_SWEEP.items()):
    xs = [0.0] + list(SIGMAS)
    for a in SIGMA_ATTACKS:
        ax.plot(xs, [rows[label][a] for label in rows], marker="o", label=a)
    ax.set_xlabel("evaluation σ (0 = LIF)")
    ax.set_title(f"TGO model, ε = {eps_label(eps)}")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("accuracy (%)")
axes[0].legend()
fig.tight_layout()
plt.show()
        '''),
        md('''
        ## Loss landscapes (App. F)

        `L(θ + α·d1 + β·d2)` for the vanilla and TGO models on `n_land` test images, clean and PGD-attacked
        (ε = 8/255, made once at the trained parameters). d1 is the loss gradient direction and d2 a random
        direction orthogonalised to it, both filter-normalised (`analysis.landscape_directions`, Li et al.
        2018), α, β ∈ [−1, 1]. BatchNorm statistics are the trained ones; for the Noisy-LIF model one noise
        draw is frozen for the whole grid so the surface is deterministic. The paper shows RFGSM inputs; this
        notebook uses PGD, the stronger attack of the table above.

        Printed per surface: the loss at the centre, its minimum and maximum over the grid, the mean absolute
        discrete Laplacian (a roughness measure on the shared grid) and the number of strict interior local
        maxima (8-neighbourhood).
        '''),
        code('''
XL, YL = X[:S["n_land"]], Y[:S["n_land"]]
ALPHAS = jnp.linspace(-1.0, 1.0, S["grid"])


def surface(model, variables, x, y, key):
    batch_stats = variables["batch_stats"]

    def loss_fn(params):
        logits_tb = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False,
                                rngs={"noise": key})
        return optax.softmax_cross_entropy_with_integer_labels(models.mean_over_time(logits_tb), y).mean()

    params = variables["params"]
    directions = analysis.landscape_directions(params, jax.grad(loss_fn)(params), jax.random.fold_in(key, 7))
    return analysis.loss_landscape(loss_fn, params, directions, ALPHAS, ALPHAS)


def roughness(z):
    lap = z[1:-1, 1:-1] * 4 - z[:-2, 1:-1] - z[2:, 1:-1] - z[1:-1, :-2] - z[1:-1, 2:]
    centre = z[1:-1, 1:-1]
    neighbours = np.stack([z[1 + di:z.shape[0] - 1 + di, 1 + dj:z.shape[1] - 1 + dj]
                           for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0)])
    return float(np.mean(np.abs(lap))), int(np.sum(np.all(centre > neighbours, axis=0)))


LAND, land_rows = {}, {}
t0 = time.time()
for name in ("vanilla", "tgo"):
    run, variables = RUNS[name]
    key = jax.random.PRNGKey(SEED + 1)
    eot = S["eot"] if run.model.neuron.stochastic else 1
    make_adv = jax.jit(functools.partial(attacks.pgd, attacks.model_logits_fn(run.model), eps=8 / 255,
                                         alpha=ALPHA, steps=S["pgd_steps"], eot=eot))
    land = jax.jit(functools.partial(surface, run.model))
    for inputs, x in (("clean", XL), ("PGD 8/255", make_adv(variables, XL, YL, key))):
        z = np.asarray(land(variables, x, YL, key))
        LAND[(name, inputs)] = z
        c = S["grid"] // 2
        lap, peaks = roughness(z)
        land_rows[f"{name}, {inputs}"] = {"centre": z[c, c], "min": z.min(), "max": z.max(),
                                          "|Δ²L|": lap, "local max": peaks}
print(f"{S['grid']}×{S['grid']} grids on {len(YL)} images ({time.time() - t0:.0f} s)")
print_table(land_rows, ["centre", "min", "max", "|Δ²L|", "local max"], fmt="{:.4g}", first="surface", width=11)
        '''),
        code('''
fig, axes = plt.subplots(2, 2, figsize=(9, 7.5), constrained_layout=True)
grid = np.asarray(ALPHAS)
for j, inputs in enumerate(("clean", "PGD 8/255")):
    zs = [LAND[(n, inputs)] for n in ("vanilla", "tgo")]
    levels = np.linspace(min(z.min() for z in zs), max(z.max() for z in zs), 21)
    for i, name in enumerate(("vanilla", "tgo")):
        ax = axes[i, j]
        cs = ax.contourf(grid, grid, LAND[(name, inputs)].T, levels=levels, cmap="viridis")
        ax.plot(0, 0, "r+")
        ax.set_title(f"{name}, {inputs}", fontsize=10)
        if i == 1:
            ax.set_xlabel("α (gradient direction d1)")
        if j == 0:
            ax.set_ylabel("β (random direction d2)")
    fig.colorbar(cs, ax=axes[:, j], shrink=0.8, label="CE loss")
plt.show()

fig, axes = plt.subplots(1, 2, figsize=(8.5, 3))
for ax, inputs in zip(axes, ("clean", "PGD 8/255")):
    for name in ("vanilla", "tgo"):
        ax.plot(grid, LAND[(name, inputs)][:, S["grid"] // 2], marker=".", label=name)
    ax.set_title(f"slice β = 0, {inputs}", fontsize=10)
    ax.set_xlabel("α")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("CE loss")
axes[0].legend()
fig.tight_layout()
plt.show()
        '''),
        md('''
        ## Comparison with the paper's ablation

        The paper's Table 4 (BPTT half) is on CIFAR-100 with VGG-11 trained for 300 epochs, attacked at
        ε = 8/255 with PGD40; this notebook trains a small net for one epoch on a Fashion-MNIST subset and
        uses the PGD steps above. The cell prints each part's change against the vanilla row, here and in the
        paper, in accuracy points. The comparison is of the direction of the changes only.
        '''),
        code('''
PAPER_TABLE4_BPTT = {  # paper Table 4, BPTT: Clean, FGSM, RFGSM, PGD40 (CIFAR-100, VGG-11), accuracy %
    "vanilla": (71.4, 5.9, 25.0, 0.0), "mc": (64.3, 17.1, 25.9, 0.5),
    "nlif": (70.6, 8.1, 31.7, 0.1), "tgo": (66.9, 21.5, 39.1, 0.5)}
for eps in EPS_TABLE:
    print(f"change against vanilla (points), here at ε = {eps_label(eps)} | paper at ε = 8/255")
    rows = {}
    for name in ("mc", "nlif", "tgo"):
        here = [TABLE[eps][name][a] - TABLE[eps]["vanilla"][a] for a in ATTACKS]
        paper = [p - v for p, v in zip(PAPER_TABLE4_BPTT[name], PAPER_TABLE4_BPTT["vanilla"])]
        rows[name] = {**{f"{a} here": h for a, h in zip(ATTACKS, here)},
                      **{f"{a} paper": p for a, p in zip(("Clean", "FGSM", "RFGSM", "PGD40"), paper)}}
    print_table(rows, list(rows["mc"]), fmt="{:+.1f}", first="model", width=12)
    print()
        '''),
    ]


NOTEBOOKS = {
    "01_theory.ipynb": theory,
    "02_threshold_guarding.ipynb": threshold_guarding,
    "03_robustness.ipynb": robustness,
}


def build(name: str) -> nbformat.NotebookNode:
    nb = v4.new_notebook(cells=NOTEBOOKS[name]())
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata.language_info = {"name": "python"}
    return nb


def execute(nb: nbformat.NotebookNode, timeout: int) -> None:
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": REPO}}).execute()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(NOTEBOOKS), help="notebook file names (default: all)")
    parser.add_argument("--execute", action="store_true", help="run each notebook and save its outputs")
    parser.add_argument("--timeout", type=int, default=3600, help="per-cell timeout in seconds (--execute)")
    args = parser.parse_args(argv)
    for name in args.names:
        nb = build(name)
        path = os.path.join(HERE, name)
        if args.execute:
            t0 = time.time()
            execute(nb, args.timeout)
            print(f"{name}: executed in {time.time() - t0:.0f} s "
                  f"(TGO_NOTEBOOK_SIZE={os.environ.get('TGO_NOTEBOOK_SIZE', 'full')})", flush=True)
        nbformat.write(nb, path)
        print(f"wrote {os.path.relpath(path, REPO)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
