"""Weight schedules ``step -> value``, traceable (optax style; docs/FORMULAS.md §3, dynamic λ)."""
from __future__ import annotations

import math
from typing import Callable, Union

import jax
import jax.numpy as jnp

from tgo_jax import validation

Array = jax.Array
Schedule = Callable[[Array], Array]
Weight = Union[float, Schedule]

SCHEDULES = ("cosine", "linear", "constant")


def constant(value: float) -> Schedule:
    """λ(step) = value."""
    value = validation.non_negative("value", value)
    return lambda step: jnp.full((), value, jnp.float32)


def _progress(step: Array, total_steps: int) -> Array:
    """min(max(step, 0), E) / E in float32: 0 at the start, 1 from step E on."""
    step = jnp.asarray(step, jnp.float32)
    return jnp.clip(step, 0.0, float(total_steps)) / float(total_steps)


def linear_ramp(value_max: float, total_steps: int) -> Schedule:
    """λ(e) = λ_max·min(e, E)/E (the linear option of docs/FORMULAS.md §3, dynamic λ)."""
    value_max = validation.non_negative("value_max", value_max)
    total_steps = validation.count("total_steps", total_steps)
    return lambda step: value_max * _progress(step, total_steps)


def cosine_ramp(value_max: float, total_steps: int) -> Schedule:
    """λ(e) = λ_max·(1 − cos(π·min(e, E)/E))/2 (paper eq. 14 as reconstructed in docs/FORMULAS.md §3).

    Starts at 0, reaches λ_max/2 at E/2 and λ_max at E, and stays there after E.
    """
    value_max = validation.non_negative("value_max", value_max)
    total_steps = validation.count("total_steps", total_steps)
    return lambda step: value_max * 0.5 * (1.0 - jnp.cos(math.pi * _progress(step, total_steps)))


def schedule_by_name(name: str, value_max: float, total_steps: int) -> Schedule:
    """The margin weight schedule named in a config: "cosine" (default), "linear" or "constant"."""
    validation.choice("schedule", name, SCHEDULES)
    if name == "cosine":
        return cosine_ramp(value_max, total_steps)
    if name == "linear":
        return linear_ramp(value_max, total_steps)
    return constant(value_max)
