"""Loss transforms: task losses, the TGO membrane-margin penalty, regularisers (docs/FORMULAS.md §3).

A *term* is a pure function ``term(outputs, batch, params, step, **extra)`` returning per-example values
[B] (or a scalar for a term on the weights alone):

- ``outputs``: an ``Outputs`` (per-step logits [T, B, K], the per-layer pre-spike potentials H and the
  per-layer, per-example spike rates), what the forward pass made;
- ``batch``: a dict with ``'image'`` [B, H, W, C] pixels in [0, 1] and ``'label'`` [B] int;
- ``params``: the model's ``'params'`` collection;
- ``step``: the global step, an int32 scalar (traced under jit);
- ``extra``: keyword inputs some terms need, passed to those that name them (as optax passes extra
  arguments): ``key=`` the PRNG key of a term that runs a stochastic model again (``sr``).

Weights are numbers or schedules (``step -> value``, optax style). ``compose`` sums weighted terms,
reducing each over the batch, into ``loss_fn(outputs, batch, params, step, **extra) -> (total, metrics)``,
itself a term, so one forward pass feeds every term and composed losses nest::

    loss_fn = compose(tet(), (margin(delta=0.5), cosine_ramp(0.6, total_steps)), lipschitz(2e-3))

Modules: ``task`` (ce, tet), ``margin`` (TGO penalty), ``regularisers`` (Lipschitz, firing rate),
``sr``, ``schedules``, ``compose``, ``objective`` (the paper's experiments). The threshold-neighbour share
is in ``tgo_jax.metrics``; the Parseval retraction and the merge-simplex projection, as optax transforms,
in ``tgo_jax.projections`` (re-exported here).
"""
from tgo_jax.losses.compose import Weighted, compose, term_name, weighted
from tgo_jax.losses.margin import (layer_margin_cost, layer_margin_penalty, margin, margin_cost,
                                   margin_penalty)
from tgo_jax.losses.objective import ADVERSARIAL, STRATEGIES, TASKS, tgo_objective
from tgo_jax.losses.outputs import Batch, Outputs, Term
from tgo_jax.losses.regularisers import (firing_rate, firing_rate_cost, lipschitz, lipschitz_penalty,
                                         parseval_residual)
from tgo_jax.losses.schedules import (SCHEDULES, Schedule, Weight, constant, cosine_ramp, linear_ramp,
                                      schedule_by_name)
from tgo_jax.losses.sr import sr, sr_cost, sr_penalty, top_wrong_class, training_logits_fn
from tgo_jax.losses.task import ce, tet
from tgo_jax.metrics import NeighbourShare, threshold_neighbour_share
from tgo_jax.projections import (apply_retraction, is_merge_param, is_weight_kernel, kernel_matrix,
                                 merge_simplex_projection, parseval_retraction, project_merge_simplex,
                                 project_simplex)
