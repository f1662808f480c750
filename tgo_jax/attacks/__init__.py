"""L∞ attacks on spiking networks, EoT, robust-accuracy evaluation and attack suites (docs/FORMULAS.md §4).

The package's modules, each re-exported here (``from tgo_jax import attacks; attacks.pgd(...)``):

* ``core``: logit functions, objectives (CE, margin, DLR), input checks, projection, EoT gradients;
* ``gradient``: FGSM, R-FGSM, PGD, multi-targeted PGD;
* ``autopgd``: APGD-CE, APGD-DLR, APGD-T (AutoAttack's gradient attacks);
* ``fab``: FAB-T; ``square``: the Square Attack (score-based); ``auto_attack``: AutoAttack;
* ``evaluation``: accuracy and robust accuracy with fresh noise;
* ``snn_adaptive``: backward-rule ensembles, the surrogate sweep, ASSG + SA-PGD;
* ``transfer``: attacks made on a source model; ``differentiable``: attacks ``jax.grad`` flows through;
* ``events``: the event-level attack on event frames (Yao et al. 2024) and its attack success rate;
* ``suites``: the attack registry by name, ``paper_suite``, ``strong_suite``.

See ``tgo_jax.attacks.core`` for the conventions every attack follows.
"""
from tgo_jax.attacks.core import (ALPHA, EPS, LOSSES, Array, AttackFn, LogitsFn, LossGrad, ModelLogits, Objective,
                                  ce_loss, check_batch, check_options, dlr_loss, loss_and_grad, margin_loss,
                                  model_logits_fn, num_classes, project, targeted_dlr_loss, targeted_margin_loss)
from tgo_jax.attacks.gradient import fgsm, mtpgd, no_attack, pgd, rfgsm
from tgo_jax.attacks.autopgd import apgd, apgd_checkpoints, apgd_targeted
from tgo_jax.attacks.auto_attack import autoattack, autoattack_components
from tgo_jax.attacks.fab import fab_targeted, project_hyperplane_linf
from tgo_jax.attacks.square import square_attack
from tgo_jax.attacks.transfer import Source, transfer_attack
from tgo_jax.attacks import differentiable
from tgo_jax.attacks import events
from tgo_jax.attacks.evaluation import accuracy, correct, robust_accuracy, robust_correct
from tgo_jax.attacks.snn_adaptive import (ASSG_A, DEFAULT_ENSEMBLE_ATTACK, DEFAULT_RULES, SWEEP_RULES, EnsembleResult,
                                          Rule, assg_scale, assg_search, ensemble_robust_accuracy, rule_logits_fn,
                                          rule_name, sa_pgd, surrogate_sweep, sweep_logits_fn)
from tgo_jax.attacks.suites import (ATTACKS, PGD_STEP_RULES, ROWS, STRONG_ROWS, canonical, make, names, paper_suite,
                                    pgd_alpha, pgd_step_text, strong_suite, suite)
