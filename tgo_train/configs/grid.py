r"""The reproduction's grid (``tgo_train/reproduce.py``): its models, attack columns, budgets and sizes.

    python -m tgo_train.reproduce --workdir runs/reproduce --size small --seeds 0,1,2 --report_dir .

Fashion-MNIST, the small spiking net, T = 4. The models are ``fmnist_vanilla.py`` with overrides
(``run_config``):

* the ablation of the paper's Table 4 under TET (``ABLATION``): ``vanilla``, ``mc`` (membrane margin
  penalty only), ``nlif`` (Noisy-LIF only), ``tgo`` (both, exactly as ``fmnist_tgo.py`` sets them);
* the training strategies of its Table 1: ``at`` / ``at_tgo`` and ``rat`` / ``rat_tgo``;
* ``sr``: the gradient-sparsity regulariser, the compared baseline.

A size (``SIZES``) sets how long each run trains and how hard it is evaluated; ``AUDITS`` the
gradient-masking audit of each run at that size. What the sizes cost is measured in BENCHMARKS.md and
RESULTS.md ("Runs and their times").
"""
from __future__ import annotations

import dataclasses

from tgo_jax import attacks
from tgo_train import audit
from tgo_train.configs import fmnist_tgo, fmnist_vanilla
from tgo_train.configs.base import tgo_overrides

LAMBDA_MAX = fmnist_tgo.get_config().margin.lambda_max  # TGO's margin penalty, as fmnist_tgo.py sets it
# The MC × NLIF ablation (the paper's Table 4): name -> (margin penalty on, neuron kind); also the notebooks'
# grid (tgo_train/notebook_runs.py).
ABLATION = {"vanilla": (False, "lif"), "mc": (True, "lif"), "nlif": (False, "noisy"), "tgo": (True, "noisy")}
_ABLATION_LABELS = {"vanilla": "vanilla (TET)", "mc": "MC only", "nlif": "NLIF only", "tgo": "TGO (MC + NLIF)"}
_TGO = tgo_overrides(LAMBDA_MAX)


def ablation_overrides(name: str) -> dict:
    """The overrides of one row of ``ABLATION`` (none for vanilla)."""
    margin, kind = ABLATION[name]
    return tgo_overrides(LAMBDA_MAX, margin=margin, noise=kind == "noisy")


# name -> (label, overrides of fmnist_vanilla.py).
MODELS = {
    **{name: (_ABLATION_LABELS[name], ablation_overrides(name)) for name in ABLATION},
    "at": ("AT", {"strategy": "at"}),
    "at_tgo": ("AT + TGO", dict(_TGO, strategy="at")),
    "rat": ("RAT", {"strategy": "rat", "optim.weight_decay": 0.0}),  # paper: RAT without weight decay
    "rat_tgo": ("RAT + TGO", dict(_TGO, strategy="rat", **{"optim.weight_decay": 0.0})),
    "sr": ("SR (baseline)", {"sr.enabled": True}),
}
# The attack columns, by name in the attack registry (``tgo_jax.attacks.make``); adding a column is a
# change of these lists. The paper's columns come first for every run, then the strong suite.
PAPER_ATTACKS = ("Clean", "FGSM", "RFGSM", "PGD10", "PGD40", "APGD", "MTPGD")
STRONG_ATTACKS = tuple(n for n in attacks.STRONG_ROWS if n not in PAPER_ATTACKS)
ATTACKS = PAPER_ATTACKS + STRONG_ATTACKS
SIZE_EXTRA_ROWS = ("ASSG-search",)  # strong columns a size may add (``Size.strong_extra``), at its strong budget
EPS = (8 / 255, 0.1)


@dataclasses.dataclass(frozen=True)
class Size:
    """How long each run trains and how hard it is evaluated."""

    epochs: int
    train_subset: int  # 0 = all 60k training images
    num_examples: int  # test images attacked
    eot: int  # EoT draws per gradient for Noisy-LIF models (noise on)
    draws: int  # noise draws per accuracy of a Noisy-LIF model
    apgd_steps: int  # the paper's APGD column
    mtpgd_steps: int  # the paper's MTPGD column: steps per target (at α = 0.01, ≥ 10 to reach ε = 0.1)
    mtpgd_targets: int  # its targets (reference: 9)
    strong_steps: int  # iterations of the strong suite's attacks (AutoAttack's reference: 100)
    strong_queries: int  # Square's queries (reference: 5000)
    strong_targets: int  # targets of APGD-T and FAB-T (reference: 9)
    analysis_examples: int  # test images for the share / gradient / Jacobian measures
    jacobian_iters: int
    eval_batch: int
    model_kwargs: tuple = ()  # overrides of the small net (tiny nets for the tests)
    num_steps: int = 4
    batch_size: int = 64
    strong_extra: tuple = ()  # strong columns of this size beyond ``ATTACKS`` (added to --attacks)


SIZES = {
    # The end-to-end test: seconds per run, mostly compilation (one conv block compiles faster than two);
    # its numbers mean nothing.
    "ci": Size(epochs=1, train_subset=128, num_examples=32, eot=2, draws=1, apgd_steps=3, mtpgd_steps=2,
               mtpgd_targets=2, strong_steps=2, strong_queries=10, strong_targets=2, analysis_examples=32,
               jacobian_iters=2, eval_batch=32, batch_size=32, num_steps=2,
               model_kwargs=(("channels", (4,)), ("hidden", 16))),
    # Meant for about two hours on 2 idle CPU cores for the paper's columns of 9 models x 3 seeds, the strong
    # suite evaluated after them.
    "small": Size(epochs=2, train_subset=20_000, num_examples=200, eot=4, draws=2, apgd_steps=20,
                  mtpgd_steps=10, mtpgd_targets=3, strong_steps=10, strong_queries=100, strong_targets=3,
                  analysis_examples=200, jacobian_iters=10, eval_batch=200),
    # Close to converged clean accuracy: the measured curve (--convergence_epochs 10; RESULTS.md, "Convergence
    # of vanilla") gains under a point over its last five epochs.
    "full": Size(epochs=10, train_subset=0, num_examples=1000, eot=10, draws=3, apgd_steps=100,
                 mtpgd_steps=10, mtpgd_targets=9, strong_steps=100, strong_queries=5000, strong_targets=9,
                 analysis_examples=1000, jacobian_iters=20, eval_batch=500),
}
# Issue 31's faithful evaluation of the small grid: the `small` size's training configs and paper columns,
# its strong suite at the reference iterations (100) and targets (9), Square at 1000 queries and
# ASSG with the `a` search as one more strong column. A size of its own, so that the committed `small`
# records keep their cells (a changed budget would make their strong cells stale).
SIZES["small_strong"] = dataclasses.replace(SIZES["small"], strong_steps=100, strong_queries=1000,
                                            strong_targets=9, strong_extra=("ASSG-search",))

# The gradient-masking audit (tgo_train/audit.py) of each run, in its strong phase, by reproduction size.
# `ci`: the fewest rows that still decide checks (a), (b) single step, (c) transfers, (d), (e), (f), at the
# ci size's EoT and noise draws (the end-to-end test compiles each row; those reuse the suite's programs).
# `small`: issue 31's strong budgets (ASSG 100 iterations, Square 1000 queries); `small_strong` adds
# ASSG-search; `full`: the audit's reference sizes (Square 5000, ASSG-search).
AUDITS = {
    "ci": dataclasses.replace(audit.SIZES["ci"], pgd_steps=(2,), restarts=(1,), eot_draws=(2,), white_rows=(),
                              sweep_rules=(), queries=None, draws=SIZES["ci"].draws, eot=SIZES["ci"].eot),
    "small": dataclasses.replace(audit.SIZES["quick"], steps=100),
    "small_strong": dataclasses.replace(audit.SIZES["quick"], steps=100,
                                        white_rows=audit.WHITE_ROWS + ("ASSG-search",)),
    "full": audit.SIZES["full"],
}
# The audit's independently trained transfer sources: the vanilla model of the run's seed ("vanilla") and the
# same model's next seed ("next seed"). `ci` keeps the first only: each transfer row compiles anew (the
# source's weights are constants of it) and the end-to-end test is compile-bound.
AUDIT_SOURCES = {"ci": ("vanilla",)}
SOURCE_KINDS = ("vanilla", "next seed")


def run_config(model: str, seed: int, size: Size):
    """The training config of one grid cell: fmnist_vanilla.py with the model's overrides."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
    c = fmnist_vanilla.get_config()
    c.seed = seed
    c.epochs, c.train_subset, c.batch_size = size.epochs, size.train_subset, size.batch_size
    c.model.num_steps = size.num_steps
    for k, v in size.model_kwargs:
        c.model_kwargs[k] = v
    # Clean test accuracy after each epoch: on 2000 images (all 10k for the full size, the attacked ones
    # for the tests' tiny size).
    c.eval_subset = 0 if not size.train_subset else 2000 if size.train_subset >= 1000 else size.num_examples
    c.eval_batch_size = min(c.eval_batch_size, size.eval_batch * 4)
    c.checkpoint_every_steps = 200
    c.progress = False
    c.update_from_flattened_dict(MODELS[model][1])
    if c.neuron.kind == "noisy":
        c.eval_noise_draws = size.draws
    return c


def attack_options(name: str, size: dict) -> dict:
    """The size-dependent options of column ``name`` (``size``: a Size as a dict)."""
    if name == "APGD":
        return {"steps": size["apgd_steps"]}
    if name == "MTPGD":
        return {"steps": size["mtpgd_steps"], "num_targets": size["mtpgd_targets"]}
    if name in STRONG_ATTACKS + SIZE_EXTRA_ROWS and not name.startswith("PGD"):
        return {"steps": size["strong_steps"], "queries": size["strong_queries"],
                "num_targets": size["strong_targets"]}
    return {}


def cell_spec(name: str, size: dict, stochastic: bool) -> dict:
    """Everything a column's number depends on besides the model: its options and the evaluation effort."""
    return dict(attack_options(name, size), num_examples=size["num_examples"], eval_batch=size["eval_batch"],
                eot=size["eot"] if stochastic else 1, draws=size["draws"] if stochastic else 1)
