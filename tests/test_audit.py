"""Tests for the gradient-masking audit (tgo_train/audit.py): the paired comparison, every flag on constructed
per-example correctness, the sizes' validation and description, and the whole audit on a tiny trained net
(``conftest.trained_small``, 64 test images) and on the same net behind ``jax.lax.stop_gradient`` (its
forward unchanged, its input gradient zero), which the audit must flag; on the tiny net, PGD2 with the paper's
fixed α = 0.01 at ε = 0.1 is weaker than FGSM, which the single-step check must flag.
"""
from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from typing import Any, Callable

import jax
import numpy as np
import pytest

from tgo_jax import attacks
from tgo_train import audit, evaluation, train, workdir as workdirs
from tests.conftest import tiny_model

NUM_IMAGES = 64
# The e2e audits (7 rows, one compilation each, ~3 s per row on 2 CPU cores): FGSM and PGD4 for the white
# box, no AutoAttack/ASSG rows and no sweep, Square with enough queries to find the corners that a zero
# gradient hides.
TINY = dataclasses.replace(audit.SIZES["ci"], pgd_steps=(4,), restarts=(1,), white_rows=(), sweep_rules=(),
                           queries=50, unbounded_steps=5)


# --------------------------------------------------------------------------------------------------
# the paired comparison
# --------------------------------------------------------------------------------------------------

def test_paired_comparison_counts_only_the_discordant_examples():
    n = 200
    # A right on 120, B right on 130; discordant: only-A 10, only-B 20.
    a = np.zeros(n)
    b = np.zeros(n)
    a[:110] = b[:110] = 1         # both right
    a[110:120] = 1                # only A
    b[120:140] = 1                # only B
    comp = audit.paired(a, b)
    d_mean = (20 - 10) / n
    var = ((20 + 10) - n * d_mean ** 2) / (n - 1)  # sample variance of d in {-1, 0, 1}
    assert comp["by"] == pytest.approx(d_mean)
    assert comp["tol"] == pytest.approx(2 * math.sqrt(var / n) + 1 / n)
    assert (comp["b_better_on"], comp["a_better_on"]) == (20, 10)
    assert comp["higher"] is False  # 5 points, but only 30 discordant pairs
    # The same 10 points with every pair concordant but the ten: decided.
    b2 = a.copy()
    b2[120:130] = 1
    assert audit.paired(a, b2)["higher"] is True
    # The unpaired rule of before (2 SE of the larger accuracy + 1/n) would call neither: 7 points needed.
    p = b2.mean()
    assert b2.mean() - a.mean() < 2 * math.sqrt(p * (1 - p) / n) + 1 / n
    # Fractions (noisy models: share of the draws) follow the same rule.
    frac = audit.paired(np.full(n, 0.5), np.full(n, 0.5) + np.linspace(-0.01, 0.05, n))
    assert frac["higher"] is True and frac["by"] == pytest.approx(0.02)


# --------------------------------------------------------------------------------------------------
# every flag on constructed correctness
# --------------------------------------------------------------------------------------------------

def _rows(spec: dict, n: int = 100) -> tuple[dict, dict]:
    """{name: (group, share right)} -> (correct, groups): example i right when i < share·n (nested, so a
    lower row's right examples are a subset of a higher row's)."""
    correct = {nm: (np.arange(n) < round(share * n)).astype(float) for nm, (_, share) in spec.items()}
    return correct, {nm: g for nm, (g, _) in spec.items()}


HEALTHY = {"Clean": ("clean", 0.9), "FGSM": ("single", 0.6), "PGD10": ("steps", 0.45), "PGD40": ("steps", 0.44),
           "PGD10 x5 restarts": ("restarts", 0.43), "APGD-CE": ("white", 0.42), "Square": ("square", 0.6),
           "Transfer (sigmoid surrogate)": ("twin", 0.5), "Transfer-seed1": ("transfer", 0.55),
           "Unbounded PGD": ("unbounded", 0.0)}


def _decide(spec, stochastic=False, **kw):
    correct, groups = _rows(spec)
    return audit.decide(correct, groups, sizes=audit.SIZES["full"], stochastic=stochastic, **kw)


def test_a_healthy_model_passes_every_check():
    checks = _decide(HEALTHY)
    assert {k: c["flag"] for k, c in checks.items()} == {
        "a_unbounded": "PASS", "b_more_steps": "PASS", "b_more_restarts": "PASS", "b_more_eot": "NOT RUN",
        "b_single_step": "PASS", "c_square": "PASS", "c_transfer_twin": "PASS", "c_transfer": "PASS",
        "d_worst_case": "PASS", "e_noise_on_off": "NOT RUN", "f_plateau": "PASS"}
    assert checks["b_more_eot"]["why"].startswith("not run: deterministic model")
    assert checks["d_worst_case"]["worst_case_accuracy"] == pytest.approx(0.42)


@pytest.mark.parametrize("change, check, flag", [
    ({"Unbounded PGD": ("unbounded", 0.1)}, "a_unbounded", "FAIL"),
    ({"PGD40": ("steps", 0.6)}, "b_more_steps", "FAIL"),
    ({"PGD10 x5 restarts": ("restarts", 0.6)}, "b_more_restarts", "FAIL"),
    ({"FGSM": ("single", 0.3)}, "b_single_step", "FAIL"),
    ({"Square": ("square", 0.3)}, "c_square", "FAIL"),
    ({"Transfer (sigmoid surrogate)": ("twin", 0.3)}, "c_transfer_twin", "FAIL"),
    ({"Transfer-seed1": ("transfer", 0.2)}, "c_transfer", "FAIL"),
    ({"Transfer-seed1": None}, "c_transfer", "NOT RUN"),
    ({"Square": None}, "c_square", "NOT RUN"),
    ({"PGD10 x5 restarts": None}, "b_more_restarts", "NOT RUN"),
])
def test_each_flag_fires_on_its_case(change, check, flag):
    spec = {k: v for k, v in {**HEALTHY, **change}.items() if v is not None}
    checks = _decide(spec)
    assert checks[check]["flag"] == flag, checks[check]
    assert [k for k, c in checks.items() if c["flag"] in ("FAIL", "WARN")] == ([check] if flag == "FAIL" else [])
    if flag == "NOT RUN":
        assert checks[check]["why"].startswith("not run: ")


def test_worst_case_far_below_every_single_attack_fails():
    n = 100
    correct = {"Clean": np.ones(n), "PGD10": (np.arange(n) % 2 == 0).astype(float),
               "Square": (np.arange(n) % 2 == 1).astype(float), "Unbounded PGD": np.zeros(n)}
    groups = {"Clean": "clean", "PGD10": "steps", "Square": "square", "Unbounded PGD": "unbounded"}
    checks = audit.decide(correct, groups, sizes=audit.SIZES["full"], stochastic=False)
    assert checks["d_worst_case"]["flag"] == "FAIL" and checks["d_worst_case"]["worst_case_accuracy"] == 0.0


def test_plateau_warns_and_asks_for_the_decisive_attacks():
    spec = {"Clean": ("clean", 0.82), "FGSM": ("single", 0.77), "PGD10": ("steps", 0.77), "PGD40": ("steps", 0.77),
            "Square": ("square", 0.79), "Unbounded PGD": ("unbounded", 0.0)}
    check = _decide(spec)["f_plateau"]
    assert check["flag"] == "WARN"
    assert "ASSG-search" in check["why"] and "5000" in check["why"] and "--transfer_from" in check["why"]
    assert check["share_of_clean"] == pytest.approx(0.77 / 0.82)
    spec["PGD40"] = ("steps", 0.73)  # 89 % of clean: more than 10 % taken
    assert _decide(spec)["f_plateau"]["flag"] == "PASS"
    spec = {nm: (g, 0.0) for nm, (g, _) in spec.items()}  # nothing classified right: nothing to say
    assert _decide(spec)["f_plateau"]["why"] == "not run: no attack row, or no example classified right"


def test_noisy_model_checks_eot_and_the_noise_off_twin():
    n = 100
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, n)  # shares of the draws
    correct = {"Clean": np.full(n, 0.9), "PGD10": base, "PGD10 EoT1": base, "PGD10 EoT10": base + 0.2,
               "Transfer (noise-off twin)": base - 0.2, "Unbounded PGD": np.zeros(n)}
    groups = {"Clean": "clean", "PGD10": "steps", "PGD10 EoT1": "eot", "PGD10 EoT10": "eot",
              "Transfer (noise-off twin)": "twin", "Unbounded PGD": "unbounded"}
    checks = audit.decide(correct, groups, sizes=audit.SIZES["full"], stochastic=True, noise_off={"Clean": 0.9})
    assert checks["b_more_eot"]["flag"] == "FAIL"
    assert checks["e_noise_on_off"]["flag"] == "FAIL"
    assert checks["c_transfer_twin"]["flag"] == "FAIL"


# --------------------------------------------------------------------------------------------------
# sizes
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("queries", 0), ("steps", 0), ("unbounded_steps", 0), ("eot", -1)])
def test_a_zero_budget_is_one_line_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^audit size {field}\b.* must be an int >= 1, got {value}$"):
        dataclasses.replace(audit.SIZES["full"], **{field: value})


def test_a_zero_in_a_list_of_steps_names_the_entry():
    with pytest.raises(ValueError, match=r"audit size pgd_steps\[1\] must be an int >= 1, got 0"):
        audit.AuditSizes(pgd_steps=(10, 0))
    with pytest.raises(ValueError, match=r"audit size restarts must be a non-empty tuple"):
        audit.AuditSizes(restarts=())


def test_sizes_state_what_they_cut_from_the_reference():
    assert audit.describe(audit.SIZES["full"]) == "the reference sizes"
    assert [audit.size_name(s) for s in audit.SIZES.values()] == list(audit.SIZES)
    assert audit.size_name(TINY) == "custom"
    small = audit.describe(audit.SIZES["small"])
    assert small.startswith("cut from the reference (full): ")
    for cut in ("steps 100 → 20", "queries 5000 → 300", "eot 10 → 4", "restarts 1,5 → 1,3", "num_targets 9 → 3"):
        assert cut in small, small
    assert "pgd_steps" not in small  # kept at the reference
    assert "sweep_rules 14 surrogates → 2 surrogates" in audit.describe(audit.SIZES["ci"])
    assert "queries 5000 → none" in audit.describe(dataclasses.replace(audit.SIZES["full"], queries=None))
    assert "white_rows APGD-CE,APGD-DLR,APGD-T,FAB-T,ASSG,ASSG-search → none" in audit.describe(TINY)
    assert "white_rows APGD-CE,APGD-DLR,APGD-T,FAB-T,ASSG,ASSG-search → APGD-CE,APGD-DLR,APGD-T,FAB-T,ASSG" in small


# --------------------------------------------------------------------------------------------------
# the whole audit on a tiny net, and on the same net with its input gradient stopped
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Masked:
    """A flax model's stand-in whose forward is the model's on ``mask(x)``: with ``jax.lax.stop_gradient``
    the outputs are unchanged and the input gradient is zero."""

    inner: Any
    mask: Callable = jax.lax.stop_gradient

    @property
    def neuron(self):
        return self.inner.neuron

    def clone(self, **changes):
        return Masked(self.inner.clone(**changes), self.mask)

    def apply(self, variables, x, *args, **kwargs):
        return self.inner.apply(variables, self.mask(x), *args, **kwargs)


def _run(model, test) -> train.Run:
    return train.Run(config=None, info=None, splits={"test": (test.x[:NUM_IMAGES], test.y[:NUM_IMAGES])},
                     model=model, steps_per_epoch=0)


@pytest.mark.slow
def test_audit_passes_a_normal_net_and_flags_a_stopped_gradient(trained_small):
    model, variables, test = trained_small
    source = attacks.Source("twin", attacks.model_logits_fn(model), variables)
    # ε = 0.1 with α = 2.5·ε/k: the paper's fixed α = 0.01 lets PGD4 move 0.04 only (measured: FGSM is then
    # stronger than PGD2, 17 % against 52 %, and b_single_step rightly fails).
    kw = dict(eps=0.1, pgd_step="madry", sizes=TINY, batch_size=NUM_IMAGES, sources=[source], log=lambda *_: None)

    normal = audit.run_audit(_run(model, test), variables, **kw)
    assert normal["flags"] == {**normal["flags"], "a_unbounded": "PASS", "b_single_step": "PASS",
                               "c_square": "PASS", "c_transfer": "PASS", "f_plateau": "PASS"}
    assert normal["flags"]["b_more_eot"] == normal["flags"]["e_noise_on_off"] == "NOT RUN"
    assert normal["flags"]["b_more_steps"] == "NOT RUN"  # one PGD row in this size
    # The paper's fixed α = 0.01 at ε = 0.1: PGD2 moves 0.02 from its random start, one FGSM step of ε is stronger.
    run = _run(model, test)
    _, hits = evaluation.evaluate_suite(run, variables, [("PGD2", attacks.make("PGD2", eps=0.1))],
                                        batch_size=NUM_IMAGES, draws=1, seed=0, progress=False, per_example=True)
    paper_pgd2 = hits["PGD2"]
    correct = {"Clean": np.asarray(normal["per_example"]["Clean"]), "FGSM": np.asarray(normal["per_example"]["FGSM"]),
               "PGD2": paper_pgd2}
    single = audit.decide(correct, {"Clean": "clean", "FGSM": "single", "PGD2": "steps"}, sizes=TINY,
                          stochastic=False)["b_single_step"]
    assert single["flag"] == "FAIL" and single["why"].startswith("one FGSM step"), single

    masked = audit.run_audit(_run(Masked(model), test), variables, **kw)
    acc = masked["accuracy"]
    assert acc["Clean"] == pytest.approx(normal["accuracy"]["Clean"])  # the forward is unchanged
    assert acc["FGSM"] == acc["Clean"]  # sign(0) = 0: FGSM does nothing
    assert masked["flags"]["a_unbounded"] == "FAIL"
    assert masked["flags"]["c_square"] == "FAIL"
    assert masked["flags"]["c_transfer"] == "FAIL"
    # Without the black-box and transfer rows the same numbers plateau: WARN, and the checks say NOT RUN.
    kept = {nm: g for nm, g in masked["groups"].items() if g not in ("square", "transfer", "twin")}
    checks = audit.decide({nm: np.asarray(masked["per_example"][nm]) for nm in kept}, kept, sizes=TINY,
                          stochastic=False)
    assert checks["f_plateau"]["flag"] == "WARN"
    assert checks["c_square"]["flag"] == checks["c_transfer"]["flag"] == "NOT RUN"
    text = audit.render(masked, "masked")
    assert "| a_unbounded | FAIL |" in text and "Size `custom`: cut from the reference (full): " in text
    assert "PGD step: madry, α = 2.5·ε/k = 0.25/k" in text


# --------------------------------------------------------------------------------------------------
# transfer sources
# --------------------------------------------------------------------------------------------------

def test_an_incompatible_transfer_source_is_one_line_naming_both_values():
    import jax.numpy as jnp

    def tiny(**kw):
        model = tiny_model(**kw)
        # Shapes only (check_compatible traces, never computes): abstract variables.
        return attacks.model_logits_fn(model), jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))

    fn, variables = tiny()
    x = jnp.zeros((2, 28, 28, 1))
    same = attacks.Source("seed1", fn, variables, dataset="fashion_mnist", input_shape=(28, 28, 1))
    attacks.transfer.check_source(same, fn, variables, x, target_dataset="fashion_mnist")  # compatible
    cases = [
        (same._replace(dataset="cifar10"), r"^transfer source 'seed1' was trained on cifar10, the target on "
                                           r"fashion_mnist$"),
        (same._replace(input_shape=(32, 32, 3)), r"^transfer source 'seed1' takes inputs of shape \(32, 32, 3\), "
                                                 r"the target \(28, 28, 1\)$"),
        (attacks.Source("seed1", *tiny(num_classes=7)), r"^transfer source 'seed1' predicts 7 classes, the target 10$"),
    ]
    for source, message in cases:
        with pytest.raises(ValueError, match=message):
            attacks.transfer.check_source(source, fn, variables, x, target_dataset="fashion_mnist")
    # A Transfer-<name> row by name, in any case (run in the e2e audit above).
    assert attacks.canonical("transfer-SEED1", [same]) == "Transfer-seed1"
    assert callable(attacks.make("transfer-SEED1", eps=0.1, pgd_step="madry", sources=[same]))


def test_pgd_step_rules():
    assert attacks.pgd_alpha(0.1, 10, "paper") == attacks.ALPHA
    assert attacks.pgd_alpha(0.1, 10, "madry") == pytest.approx(0.025)
    assert attacks.pgd_alpha(8 / 255, 40, "madry") == pytest.approx(2.5 * 8 / 255 / 40)
    assert attacks.make("PGD10", eps=0.1, pgd_step="madry").keywords["alpha"] == pytest.approx(0.025)
    assert attacks.make("PGD10", eps=0.1).keywords["alpha"] == attacks.ALPHA
    assert dict(attacks.paper_suite(eps=0.1, pgd_step="madry"))["PGD40"].keywords["alpha"] == pytest.approx(0.1 / 16)
    with pytest.raises(ValueError, match=r"pgd_step must be one of \('paper', 'madry'\), got 'fast'"):
        attacks.make("PGD10", pgd_step="fast")


def run_audit_program(*args: str) -> subprocess.CompletedProcess:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-m", "tgo_train.audit_main", *args], cwd=repo, capture_output=True,
                          text=True, timeout=240)


def test_audit_program_names_a_missing_workdir(tmp_path):
    missing = str(tmp_path / "no_such_run")
    out = run_audit_program("--workdir", missing, "--size", "ci")
    assert out.returncode == 1 and out.stderr.startswith("error: ") and missing in out.stderr, out.stderr[-2000:]
    assert not os.path.exists(missing)  # nothing made for a run that is not there


def test_audit_program_waits_for_no_other_evaluation(tmp_path):
    """Like tgo-evaluate it holds the workdir's evaluation lock: refused at once while another evaluation holds it."""
    workdir = str(tmp_path / "run")
    with workdirs.locked(workdir, workdirs.EVALUATOR):
        out = run_audit_program("--workdir", workdir, "--size", "ci")
    assert out.returncode == 1 and f"pid {os.getpid()}" in out.stderr, out.stderr[-2000:]
