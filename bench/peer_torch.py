"""Peer benchmark: spiking VGG-11 / WRN-16-4 train step and PGD-10 in PyTorch.

Variants: `plain` (python loop over T, autograd.Function surrogate, as most papers' code does it),
`sj` (the LIF replaced by spikingjelly 2.x's fused multi-step LIFNode), `compile` (plain under torch.compile).
Direct encoding, T steps, LIF decay 0.5, threshold 1, hard reset, rectangular surrogate, fp32 (TF32 convs),
synthetic uniform inputs, SGD momentum 0.9. BatchNorm runs over the merged T*B batch.
Architectures (see docs/FORMULAS.md §2): vgg11 (SNN-RAT style, 3 pools + two 4096 FC layers), wrn16 (WRN-16-4,
pre-activation), vgg11-classic (5 pools, one FC).
Prints one JSON line per variant: {"name", "arch", "device", "batch", "T", "train_ms", "pgd10_ms", "peak_mib"}.
Times are medians over --iters steps after 3 warm-up steps.
Usage: python peer_torch.py [--arch vgg11] [--batch 128] [--T 4] [--iters 20] [--variants plain,sj,compile]
spikingjelly is optional (pip install spikingjelly; offline, install its wheel with --no-deps plus loguru and scienceplots).
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCHS = {
    "vgg11": [64, "P", 128, 256, "P", 512, 512, 512, "P", 512, 512],
    "vgg11-classic": [64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"],
}


class SpikeRect(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u):
        ctx.save_for_backward(u)
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, g):
        (u,) = ctx.saved_tensors
        return g * (u.abs() < 0.5).to(g.dtype)


class LoopLIF(nn.Module):
    """LIF over a merged [T*B, ...] tensor with a python loop over T."""

    def __init__(self, T, decay=0.5, thresh=1.0):
        super().__init__()
        self.T, self.decay, self.thresh = T, decay, thresh

    def forward(self, x):
        xs = x.view(self.T, -1, *x.shape[1:])
        u = torch.zeros_like(xs[0])
        out = []
        for t in range(self.T):
            u = self.decay * u + xs[t]
            s = SpikeRect.apply(u - self.thresh)
            out.append(s)
            u = u * (1.0 - s)
        return torch.stack(out).flatten(0, 1)


class SJLIF(nn.Module):
    """spikingjelly's fused multi-step LIF (tau=2 is decay 0.5 with a halved input) on a merged tensor."""

    def __init__(self, T):
        super().__init__()
        from spikingjelly.activation_based import functional, neuron, surrogate

        self.T, self.functional = T, functional
        self.node = neuron.LIFNode(tau=2.0, v_threshold=1.0, v_reset=0.0,
                                   surrogate_function=surrogate.Sigmoid(), step_mode="m")

    def forward(self, x):
        self.functional.reset_net(self.node)
        return self.node(x.view(self.T, -1, *x.shape[1:])).flatten(0, 1)


class VGG(nn.Module):
    def __init__(self, cfg, T, lif, classes=10, rat_head=True):
        super().__init__()
        self.T = T
        layers, c, size = [], 3, 32
        for v in cfg:
            if v == "P":
                layers.append(nn.AvgPool2d(2))
                size //= 2
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), lif(T)]
                c = v
        self.features = nn.Sequential(*layers)
        if rat_head:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * size * size, 4096), lif(T),
                                      nn.Linear(4096, 4096), lif(T), nn.Linear(4096, classes))
        else:
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * size * size, classes))

    def forward(self, x):
        xs = x.unsqueeze(0).expand(self.T, *x.shape).flatten(0, 1)
        return self.head(self.features(xs)).view(self.T, x.shape[0], -1).mean(0)


class PreActBlock(nn.Module):
    def __init__(self, cin, cout, stride, T, lif):
        super().__init__()
        self.bn1, self.lif1 = nn.BatchNorm2d(cin), lif(T)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.lif2 = nn.BatchNorm2d(cout), lif(T)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = self.lif1(self.bn1(x))
        sc = x if self.short is None else self.short(o)
        o = self.conv1(o)
        o = self.conv2(self.lif2(self.bn2(o)))
        return o + sc


class WRN16(nn.Module):
    def __init__(self, T, lif, classes=10, widen=4):
        super().__init__()
        self.T = T
        blocks, c = [], 16
        for w, s in [(16 * widen, 1), (32 * widen, 2), (64 * widen, 2)]:
            blocks += [PreActBlock(c, w, s, T, lif), PreActBlock(w, w, 1, T, lif)]
            c = w
        self.stem = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(*blocks)
        self.bn, self.lif = nn.BatchNorm2d(c), lif(T)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        xs = x.unsqueeze(0).expand(self.T, *x.shape).flatten(0, 1)
        h = self.lif(self.bn(self.blocks(self.stem(xs))))
        h = F.adaptive_avg_pool2d(h, 1).flatten(1)
        return self.fc(h).view(self.T, x.shape[0], -1).mean(0)


def build(arch, T, lif):
    if arch == "wrn16":
        return WRN16(T, lif)
    return VGG(ARCHS[arch], T, lif, rat_head=(arch == "vgg11"))


def median_ms(fn, iters, dev):
    for _ in range(3):
        fn()
    if dev == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        if dev == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1000 * times[len(times) // 2]


def bench(name, model, args, dev):
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (args.batch,), device=dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def train():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    def pgd10():
        eps, alpha = 8 / 255, 0.01
        xa = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
        for _ in range(10):
            xa.requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(xa), y), xa)
            xa = torch.min(torch.max(xa.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
        return xa

    model.train()
    train_ms = median_ms(train, args.iters, dev)
    model.eval()
    pgd_ms = median_ms(pgd10, max(3, args.iters // 4), dev)
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else None
    print(json.dumps({"name": name, "arch": args.arch, "device": dev, "batch": args.batch, "T": args.T,
                      "train_ms": round(train_ms, 2), "pgd10_ms": round(pgd_ms, 2),
                      "peak_mib": peak and round(peak)}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="vgg11", choices=["vgg11", "wrn16", "vgg11-classic"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--variants", default="plain,sj,compile")
    args = p.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda":
        torch.backends.cudnn.benchmark = True
    for v in args.variants.split(","):
        try:
            if v == "plain":
                bench("torch-plain-loop", build(args.arch, args.T, LoopLIF).to(dev), args, dev)
            elif v == "sj":
                bench("spikingjelly", build(args.arch, args.T, SJLIF).to(dev), args, dev)
            elif v == "compile":
                model = torch.compile(build(args.arch, args.T, LoopLIF).to(dev))
                bench("torch-plain-compiled", model, args, dev)
        except Exception as e:  # report and go on to the next variant
            print(json.dumps({"name": v, "arch": args.arch, "error": repr(e)[:300]}), flush=True)


if __name__ == "__main__":
    main()
