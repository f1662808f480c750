"""Cost of Noisy-LIF noise: forward, input gradient and PGD-10 with EoT, LIF against Noisy-LIF.

    python bench/noise_cost.py [--batch 500] [--steps 4] [--pgd-batch 100] [--eot 4] [--reps 5] [--ref DIR]

Small net (28×28×1, random weights with eval-mode BatchNorm, 10 classes), random pixels; for each neuron kind,
the median wall milliseconds (after one warm-up call) of the jitted forward pass (``logits``), the input
gradient of the summed cross-entropy (``grad``, what every attack step computes) and PGD-10 with ``--eot`` noise
draws per gradient (``pgd10_eot``), and the CPU milliseconds of the same calls (``*_cpu_ms``: the worker process's
CPU time, all its threads; on cores shared with other jobs the CPU ratios move less than the wall ones, but they
do not show what a second core gains; on a GPU they are the host's time only). Seeds: parameters 0, pixels 1, labels 2, noise 3, attack 4. A ``draws``
record times the noise draws alone for the net's three Noisy-LIF layers over T steps (the sum of ξ², so nothing
is stored): ``tgo_jax.noise`` (Philox-4x32 bits) against ``jax.random.normal`` with one split key per step.

``--ref DIR`` times a second revision of the library in the same run: DIR is a checkout of it (e.g.
``git worktree add --detach /tmp/ref <commit>``). Each revision runs in its own worker process (one library per
process) that compiles everything first; then every measurement is taken rep by rep in turn across the
revisions, so that both see the same machine load. Only public tgo_jax API (and ``tgo_jax.noise``'s
``layer_key`` and ``gaussian``) is used, so the same script times any revision.

Output, one JSON object per line: a record per revision and kind, a ``draws`` record per revision, then a
``summary`` with the noisy/LIF ratios of each revision (wall and CPU) and, with ``--ref``, the new/ref ratio of every timing,
plus the machine (CPU model, cores, 1-minute load before and after).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

METRICS = ("logits_ms", "grad_ms", "pgd10_eot_ms")
CPU = {m: m.replace("_ms", "_cpu_ms") for m in METRICS}
DRAWS = ("philox_ms", "jax_random_normal_ms")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(args) -> dict:
    """name -> a blocking zero-argument call of each timed program, compiled and warmed up once."""
    import jax
    import jax.numpy as jnp
    import optax

    from tgo_jax import attacks, models, noise

    fns = {}
    for kind in args.kinds.split(","):
        model = models.create("small", kind=kind, num_classes=10, num_steps=args.steps)
        x = jax.random.uniform(jax.random.key(1), (args.batch, 28, 28, 1))
        y = jax.random.randint(jax.random.key(2), (args.batch,), 0, 10)
        noise_key, attack_key = jax.random.key(3), jax.random.key(4)
        variables = jax.jit(model.init)({"params": jax.random.key(0), "noise": noise_key}, x[:1])
        logits_fn = attacks.model_logits_fn(model)
        forward = jax.jit(logits_fn)

        @jax.jit
        def grad(variables, x, key, y=y, logits_fn=logits_fn):
            return jax.grad(lambda x: optax.softmax_cross_entropy_with_integer_labels(
                logits_fn(variables, x, key), y).sum())(x)

        pgd = jax.jit(lambda variables, x, y, key, logits_fn=logits_fn: attacks.pgd(
            logits_fn, variables, x, y, key, steps=10, eot=args.eot))
        xp, yp = x[:args.pgd_batch], y[:args.pgd_batch]
        fns[f"{kind}.logits_ms"] = lambda f=forward, v=variables, x=x, k=noise_key: f(v, x, k)
        fns[f"{kind}.grad_ms"] = lambda f=grad, v=variables, x=x, k=noise_key: f(v, x, k)
        fns[f"{kind}.pgd10_eot_ms"] = lambda f=pgd, v=variables, x=xp, y=yp, k=attack_key: f(v, x, y, k)

    shapes = [(args.batch, 28, 28, 16), (args.batch, 14, 14, 32), (args.batch, 128)]
    keys = jax.random.split(jax.random.key(3), len(shapes))

    @jax.jit
    def philox(keys):
        return sum(jnp.sum(jnp.square(noise.gaussian(noise.layer_key(k), t, shape, jnp.float32, 0.4)))
                   for k, shape in zip(keys, shapes) for t in range(args.steps))

    @jax.jit
    def threefry(keys):
        return sum(jnp.sum(jnp.square(0.4 * jax.random.normal(step_key, shape)))
                   for k, shape in zip(keys, shapes) for step_key in jax.random.split(k, args.steps))

    fns["draws.philox_ms"] = lambda: philox(keys)
    fns["draws.jax_random_normal_ms"] = lambda: threefry(keys)
    blocking = {name: (lambda fn=fn: jax.block_until_ready(fn())) for name, fn in fns.items()}
    for fn in blocking.values():
        fn()
    return blocking


def worker(args) -> None:
    """Serves timings over stdin/stdout: one name per line in, one JSON line (its wall and CPU ms) out."""
    sys.path.insert(0, args.worker)  # this revision's library before the installed one
    import jax
    import tgo_jax

    if not os.path.abspath(tgo_jax.__file__).startswith(os.path.abspath(args.worker)):
        raise SystemExit(f"tgo_jax loaded from {tgo_jax.__file__}, not from {args.worker}")
    t0 = time.perf_counter()
    fns = build(args)
    print(json.dumps({"ready": sorted(fns), "compile_s": round(time.perf_counter() - t0, 1),
                      "backend": jax.default_backend(), "jax": jax.__version__}), flush=True)
    for line in sys.stdin:
        t0, cpu0 = time.perf_counter(), time.process_time()
        fns[line.strip()]()
        print(json.dumps({"ms": (time.perf_counter() - t0) * 1e3, "cpu_ms": (time.process_time() - cpu0) * 1e3}),
              flush=True)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine()


def git_head(root: str) -> str | None:
    """The checkout's commit, with "+dirty" when its library differs from that commit."""
    out = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", root, "diff", "--quiet", "HEAD", "--", "tgo_jax"]).returncode != 0
    return (out.stdout.strip() + ("+dirty" if dirty else "")) or None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--steps", type=int, default=4, help="time steps T")
    parser.add_argument("--pgd-batch", type=int, default=100)
    parser.add_argument("--eot", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--kinds", default="lif,noisy")
    parser.add_argument("--ref", default=None, help="a checkout of the revision to compare with (timed in turn)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    revisions = {"new": ROOT, **({"ref": os.path.abspath(args.ref)} if args.ref else {})}
    flags = [f"--batch={args.batch}", f"--steps={args.steps}", f"--pgd-batch={args.pgd_batch}",
             f"--eot={args.eot}", f"--kinds={args.kinds}"]
    load_before = os.getloadavg()[0]
    procs, ready = {}, {}
    for rev, root in revisions.items():  # compile one revision at a time
        procs[rev] = subprocess.Popen([sys.executable, os.path.abspath(__file__), f"--worker={root}", *flags],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        line = procs[rev].stdout.readline()
        if not line:
            raise SystemExit(f"the {rev} worker ({root}) failed to start")
        ready[rev] = json.loads(line)
    names = ready["new"]["ready"]
    samples = {rev: {name: [] for name in names} for rev in revisions}
    cpu = {rev: {name: [] for name in names} for rev in revisions}
    for _ in range(args.reps):
        for name in names:
            for rev, proc in procs.items():
                proc.stdin.write(name + "\n")
                reply = json.loads(proc.stdout.readline())
                samples[rev][name].append(reply["ms"])
                cpu[rev][name].append(reply["cpu_ms"])
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()

    med = {rev: {name: round(statistics.median(v), 1) for name, v in s.items()} for rev, s in samples.items()}
    med_cpu = {rev: {name: round(statistics.median(v), 1) for name, v in s.items()} for rev, s in cpu.items()}
    kinds = args.kinds.split(",")
    for rev, root in revisions.items():
        common = dict(rev=rev, commit=git_head(root), backend=ready[rev]["backend"], jax=ready[rev]["jax"],
                      compile_s=ready[rev]["compile_s"])
        for kind in kinds:
            print(json.dumps({"kind": kind, "batch": args.batch, "T": args.steps, "pgd_batch": args.pgd_batch,
                              "eot": args.eot, **{m: med[rev][f"{kind}.{m}"] for m in METRICS},
                              **{CPU[m]: med_cpu[rev][f"{kind}.{m}"] for m in METRICS}, **common}))
        draws = sum(math.prod(s) for s in [(args.batch, 28, 28, 16), (args.batch, 14, 14, 32), (args.batch, 128)])
        print(json.dumps({"kind": "draws", "draws": draws * args.steps,
                          **{m: med[rev][f"draws.{m}"] for m in DRAWS}, **common}))
    summary = {"summary": True, "reps": args.reps, "cpu": cpu_model(), "cores": os.cpu_count(),
               "machine": platform.machine(), "load_1min_before": round(load_before, 2),
               "load_1min_after": round(os.getloadavg()[0], 2)}
    if "lif" in kinds and "noisy" in kinds:
        summary["noisy_over_lif"] = {rev: {m: round(med[rev][f"noisy.{m}"] / med[rev][f"lif.{m}"], 2)
                                           for m in METRICS} for rev in revisions}
        summary["noisy_over_lif_cpu"] = {rev: {CPU[m]: round(med_cpu[rev][f"noisy.{m}"] / med_cpu[rev][f"lif.{m}"], 2)
                                               for m in METRICS} for rev in revisions}
    if args.ref:
        summary["new_over_ref"] = {name: round(med["new"][name] / med["ref"][name], 2) for name in names}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
