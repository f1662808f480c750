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
# # 01 · Noisy-LIF theory: flip probability, firing probability and its sensitivity
#
# Checks the closed forms of the TGO paper against a Monte-Carlo simulation of Noisy-LIF neurons
# (`tgo_jax.neurons.noisy_lif_step`), following docs/FORMULAS.md §1:
#
# * **Theorem 1** — under noise ξ ~ N(0, σ²) the spike `Θ(H + ξ − θ)` differs from the noise-free
#   `Θ(H − θ)` with probability `P_flip(H) = Φ(−|H − θ| / σ)`.
# * **Eq. 16** — firing probability `P(H) = Φ((H − θ) / σ)`.
# * **Eq. 17** — sensitivity `ΔP ≈ φ(z)·ΔH / σ`, `z = (H − θ) / σ`, and
#   `∂/∂σ [φ(z)/σ] = φ(z)(z² − 1)/σ²`: for `|H − θ| < σ` more noise means *less* sensitivity.
#
# σ here is the noise standard deviation (the library default 0.4; the paper's "variance 0.4" is
# σ = √0.4 ≈ 0.63, `NeuronConfig(sigma_is_variance=True)`). θ = 1.
#
# Size switch (the `parameters` cell): `SIZE = "ci"` (few Monte-Carlo draws, for the tests) or `"full"`
# (default), read from `TGO_NOTEBOOK_SIZE`.
# Every number printed below is computed in this notebook.

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
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from tgo_jax import analysis, neurons
from tgo_train.notebook_runs import check_size

check_size(SIZE)

THETA = 1.0
SIGMAS = (0.2, 0.4, 0.6)
N_DRAWS = {"ci": 2_000, "full": 100_000}[SIZE]  # Monte-Carlo noise draws per potential
SEED = 0
KEY = jax.random.PRNGKey(SEED)
print(f"size={SIZE}, Monte-Carlo draws per potential = {N_DRAWS}, seed = {SEED}, "
      f"jax {jax.__version__} on {jax.devices()[0].platform}")

# %% [markdown]
# ## Theorem 1: state-flip probability
#
# For a grid of potentials H ∈ [0, 2], `analysis.simulate_flip_rate` runs `N_DRAWS` single
# Noisy-LIF steps from V = 0 with input current H and counts how often the noisy spike differs
# from the noise-free one. The binomial standard error of a rate p is `sqrt(p(1 − p)/n)`; the
# z-score is the Monte-Carlo minus the closed form in units of that error, reported where
# `n·p(1 − p) ≥ 10` (where the normal approximation of the count holds; far in the tails a single
# event is many "standard errors").

# %%
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


# %% [markdown]
# ## Eq. 16: firing probability
#
# The share of noisy steps that fire, simulated directly with `neurons.noisy_lif_step`, against
# `analysis.firing_probability` = Φ((H − θ)/σ).

# %%
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

# %% [markdown]
# ## Eq. 17: first-order change of the firing probability
#
# A small shift ΔH moves the firing probability by `ΔP ≈ φ(z)·ΔH/σ`. The Monte-Carlo ΔP uses the same
# noise draws at H and H + ΔH (common random numbers), so its error is that of counting the draws
# that fall in the shifted interval.

# %%
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

# %% [markdown]
# ## Sensitivity φ(z)/σ against σ
#
# For a fixed distance d = |H − θ|, the sensitivity `φ(d/σ)/σ` as a function of σ. Its derivative
# `φ(z)(z² − 1)/σ²` vanishes at σ = d: for σ > d (the neuron sits within one σ of the threshold)
# it is negative, so more noise lowers the sensitivity; for σ < d it is positive.

# %%
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

# %% [markdown]
# ## Sign of ∂/∂σ [φ(z)/σ]
#
# The closed form `analysis.sensitivity_dsigma` against `jax.grad` of `analysis.firing_sensitivity`
# with respect to σ, on a grid of (d, σ); then the share of grid points where the sign is the one
# the paper states (negative for d < σ, positive for d > σ). Points within 0.02 of d = σ are left
# out, and so are those with z = d/σ > 10, where φ(z) underflows float32 and the derivative is 0.

# %%
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

# %% [markdown]
# ## Summary
#
# The cell below restates the computed checks in one place. At the library's default σ = 0.4 it also
# gives the flip probability and sensitivity of a neuron at a few distances from θ: a membrane
# margin penalty with δ = 0.5 pushes potentials to d ≥ δ, where both are small.

# %%
for d in (0.0, 0.1, 0.25, 0.5, 1.0):
    pf = float(analysis.flip_probability(THETA + d, THETA, 0.4))
    se = float(analysis.firing_sensitivity(THETA + d, THETA, 0.4))
    ds = float(analysis.sensitivity_dsigma(THETA + d, THETA, 0.4))
    print(f"σ = 0.4, d = {d:4.2f}: P_flip = {pf:.4f}, dP/dH = {se:.4f}, ∂/∂σ(dP/dH) = {ds:+.4f}")
worst = max(float(np.max(np.abs(mc - c))) for c, mc in flip.values())
print(f"Theorem 1: largest |Monte-Carlo − closed form| over σ ∈ {SIGMAS}: {worst:.4f} ({N_DRAWS} draws)")
print(f"Eq. 17 sign: negative on {float(jnp.mean(closed[inside] < 0)):.1%} of the d < σ grid points, "
      f"positive on {float(jnp.mean(closed[outside] > 0)):.1%} of the d > σ points")
