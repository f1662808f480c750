"""CPU comparison: the small spiking net in plain PyTorch against tgo_jax, train step and PGD-10.

The PyTorch net copies ``models.create("small")``: normalise → conv3×3 16 (bias) → BN → repeat over
T (direct encoding) → LIF → 2×2 avg-pool → conv3×3 32 → BN → LIF → avg-pool → FC 128 → BN → LIF → FC 10.
LIF: ``H = τ·V + I``, ``S = Θ(H - θ)``, hard reset ``V = H·(1 - S)`` (gradient through S), τ = 0.5,
θ = 1, triangle surrogate ``dS/dH = max(0, 1 - |H - θ|)``; BN 1 over B (before the repeat), BN 2 over T·B. CE of
the time-mean logits; SGD lr 0.1, momentum 0.9. PGD-10: ε = 8/255, α = 0.01, random start, eval
mode. Inputs are synthetic uniform 28×28×1 images, B = 64, T = 4 by default.

    python bench/torch_small.py [--batch 64] [--T 4] [--reps 10] [--jax-impls xla,auto] [--torch-threads 1,2]
    python bench/torch_small.py --arch vgg11 --batch 16 --reps 3 --jax-impls xla,im2col,xla_flip,auto --no-pgd

prints one JSON line: ``{"torch": {threads: {"train_ms", "pgd10_ms"}}, "jax": {impl: {"train_ms",
"pgd10_ms", "compile_s"}}, ...}``; times are medians over ``--reps`` runs after warm-up (the JAX
impls interleaved). ``time_jax`` (any arch) and ``time_jax_small`` are reusable from other
benchmarks.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tgo_jax import attacks  # noqa: E402  (after the sys.path line)
from tgo_train.bench import median_ms  # noqa: E402

EPS, ALPHA, PGD_STEPS = 8 / 255, attacks.ALPHA, 10  # the PyTorch net's PGD takes tgo_jax's step
MEAN, STD = 0.2860, 0.3530


# ----------------------------------------------------------------------------- PyTorch

def build_torch_small(num_steps: int = 4, channels=(16, 32), hidden: int = 128, classes: int = 10, hw: int = 28):
    import torch
    from torch import nn

    class SpikeTriangle(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u):
            ctx.save_for_backward(u)
            return (u >= 0).to(u.dtype)

        @staticmethod
        def backward(ctx, g):
            (u,) = ctx.saved_tensors
            return g * torch.clamp(1.0 - u.abs(), min=0.0)

    class LIF(nn.Module):
        """LIF over a merged [T·B, ...] tensor, python loop over T."""

        def forward(self, x):
            xs = x.view(num_steps, -1, *x.shape[1:])
            v, out = torch.zeros_like(xs[0]), []
            for t in range(num_steps):
                h = 0.5 * v + xs[t]
                s = SpikeTriangle.apply(h - 1.0)
                out.append(s)
                v = h * (1.0 - s)
            return torch.stack(out).flatten(0, 1)

    class SmallSNN(nn.Module):
        def __init__(self):
            super().__init__()
            c1, c2 = channels
            self.conv1, self.bn1 = nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1)
            self.conv2, self.bn2 = nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2)
            self.fc1, self.fc2 = nn.Linear(c2 * (hw // 4) ** 2, hidden), nn.Linear(hidden, classes)
            self.bn3 = nn.BatchNorm1d(hidden)
            self.lif1, self.lif2, self.lif3 = LIF(), LIF(), LIF()
            self.pool = nn.AvgPool2d(2)

        def forward(self, x):  # x: [B, 1, H, W] pixels in [0, 1]
            b = x.shape[0]
            x = self.bn1(self.conv1((x - MEAN) / STD))
            x = x.unsqueeze(0).expand(num_steps, *x.shape).flatten(0, 1)  # direct encoding
            x = self.pool(self.lif1(x))
            x = self.pool(self.lif2(self.bn2(self.conv2(x))))
            x = self.lif3(self.bn3(self.fc1(x.flatten(1))))
            return self.fc2(x).view(num_steps, b, -1).mean(0)

    return SmallSNN()


def time_torch_small(batch: int = 64, num_steps: int = 4, reps: int = 10, seed: int = 0,
                     threads: int | None = None) -> dict:
    """Train step (SGD) and PGD-10 of the PyTorch small net on CPU; median milliseconds.

    ``threads`` sets ``torch.set_num_threads`` (None: PyTorch's default, one per core). On a CPU
    shared with other work, PyTorch's OpenMP threads can slow down several-fold; time both.
    """
    import torch
    import torch.nn.functional as F

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = build_torch_small(num_steps)
    x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def train():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def pgd10():
        xa = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
        for _ in range(PGD_STEPS):
            xa.requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(xa), y), xa)
            xa = torch.min(torch.max(xa.detach() + ALPHA * g.sign(), x - EPS), x + EPS).clamp(0, 1)
        return xa

    model.train()
    train_ms = median_ms(train, reps)
    model.eval()
    pgd_ms = median_ms(pgd10, max(3, reps // 2))
    return {"train_ms": round(train_ms, 2), "pgd10_ms": round(pgd_ms, 2), "threads": torch.get_num_threads(),
            "version": torch.__version__}


# ----------------------------------------------------------------------------- JAX

def _jax_fns(model, tx):
    import jax
    import jax.numpy as jnp
    import optax
    from jax import lax

    from tgo_jax import models

    def ce(logits_tb, y):
        return optax.softmax_cross_entropy_with_integer_labels(models.mean_over_time(logits_tb), y).mean()

    def train_step(state, x, y):
        params, batch_stats, opt_state = state

        def loss_fn(params):
            logits_tb, upd = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                         mutable=["batch_stats"])
            return ce(logits_tb, y), upd["batch_stats"]

        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

    def pgd10(variables, x, y, key):
        grad_x = jax.grad(lambda xa: ce(model.apply(variables, xa), y))

        def body(_, xa):
            xa = xa + ALPHA * jnp.sign(grad_x(xa))
            return jnp.clip(jnp.clip(xa, x - EPS, x + EPS), 0.0, 1.0)

        x0 = jnp.clip(x + jax.random.uniform(key, x.shape, x.dtype, -EPS, EPS), 0.0, 1.0)
        return lax.fori_loop(0, PGD_STEPS, body, x0)

    return jax.jit(train_step, donate_argnums=0), jax.jit(pgd10)


def _jax_runner(arch, batch, num_steps, image, impl, seed, pgd, model_kwargs):
    """Compiled train-step and PGD-10 callables (each blocks) for one convolution impl."""
    import jax
    import optax

    from tgo_jax import models

    model = models.create(arch, num_steps=num_steps, conv_impl=impl, **model_kwargs)
    tx = optax.sgd(0.1, momentum=0.9)
    rng = np.random.default_rng(seed)
    x = jax.numpy.asarray(rng.uniform(size=(batch, *image)).astype(np.float32))
    y = jax.numpy.asarray(rng.integers(0, 10, batch).astype(np.int32))
    variables = jax.jit(model.init)(jax.random.PRNGKey(seed), x)
    state = [(variables["params"], variables["batch_stats"], tx.init(variables["params"]))]
    train_step, pgd10 = _jax_fns(model, tx)
    key = jax.random.PRNGKey(seed + 1)

    def train():
        state[0], loss = train_step(state[0], x, y)
        loss.block_until_ready()

    def run_pgd():
        pgd10({"params": state[0][0], "batch_stats": state[0][1]}, x, y, key).block_until_ready()

    compile_s = {}
    for name, fn in (("train", train), ("pgd10", run_pgd))[:2 if pgd else 1]:
        t0 = time.perf_counter()
        fn()  # traced and compiled here
        compile_s[name] = round(time.perf_counter() - t0, 1)
    return train, run_pgd, compile_s


def time_jax(arch: str = "small", batch: int = 64, num_steps: int = 4, image=(28, 28, 1), impls=("auto",),
             reps: int = 10, pgd: bool = True, seed: int = 0, **model_kwargs) -> dict:
    """Jitted train step (CE on time-mean logits, SGD momentum 0.9) and PGD-10 of a tgo_jax model.

    For each convolution impl (``fastconv.IMPLS``) returns median milliseconds (``train_ms``,
    ``pgd10_ms``) and the first-call seconds (``compile_s``, compilation included). The impls are
    timed in interleaved rounds so that a load change on a shared machine hits them alike.
    """
    if image[-1] != 1:
        model_kwargs.setdefault("in_channels", image[-1])
    runners = {i: _jax_runner(arch, batch, num_steps, image, i, seed, pgd, model_kwargs) for i in impls}
    samples = {i: {"train": [], "pgd10": []} for i in impls}
    kinds = ("train", "pgd10") if pgd else ("train",)
    for _ in range(reps):
        for impl, (train, run_pgd, _) in runners.items():
            for kind, fn in zip(kinds, (train, run_pgd)):
                t0 = time.perf_counter()
                fn()
                samples[impl][kind].append((time.perf_counter() - t0) * 1e3)
    return {i: {"compile_s": runners[i][2], **{f"{k}_ms": round(statistics.median(v), 2)
                                                for k, v in samples[i].items() if v}} for i in impls}


def time_jax_small(batch: int = 64, num_steps: int = 4, impls=("auto",), reps: int = 10) -> dict:
    """``time_jax`` for ``models.create("small")`` on 28×28×1 (the net ``build_torch_small`` copies)."""
    return time_jax("small", batch, num_steps, (28, 28, 1), impls=impls, reps=reps)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="small", help="tgo_jax arch; PyTorch is timed for 'small' only")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--jax-impls", default="xla,auto", help="comma-separated fastconv impls to time ('' for none)")
    p.add_argument("--torch-threads", default="1,2", help="comma-separated torch thread counts ('' for none)")
    p.add_argument("--no-pgd", action="store_true", help="time the JAX train step only")
    args = p.parse_args()
    image = (28, 28, 1) if args.arch == "small" else (32, 32, 3)
    result = {"arch": args.arch, "batch": args.batch, "T": args.T, "image": list(image), "cpus": os.cpu_count()}
    threads = [int(t) for t in args.torch_threads.split(",") if t] if args.arch == "small" else []
    if threads:
        result["torch"] = {t: time_torch_small(args.batch, args.T, args.reps, threads=t) for t in threads}
    impls = [i for i in args.jax_impls.split(",") if i]
    if impls:
        import jax

        result["jax_version"], result["jax_backend"] = jax.__version__, jax.default_backend()
        result["jax"] = time_jax(args.arch, args.batch, args.T, image, impls=impls, reps=args.reps,
                                 pgd=not args.no_pgd)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
