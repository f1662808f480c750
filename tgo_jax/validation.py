"""Argument checks shared by the whole library: one line naming the field, its value and what is allowed.

Checks on numbers run on concrete Python / NumPy / JAX values only; a traced value (under ``jax.jit`` or
``jax.grad``) passes through untouched, so library functions stay jittable and closed-over constants work.
Every check raises ``ValueError``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

import jax
import numpy as np


def is_concrete(value: Any) -> bool:
    """True when ``value`` can be read on the host now (not a tracer inside a transformation)."""
    return not isinstance(value, jax.core.Tracer)


def _number(name: str, value: Any, expected: str) -> float | None:
    """``float(value)`` for a concrete scalar; None for a tracer; a ValueError naming ``name`` otherwise."""
    if not is_concrete(value):
        return None
    if isinstance(value, (bool, np.bool_, str)) or np.ndim(value) != 0:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {expected}, got {value!r}") from None


def _scalar(name: str, value: Any, expected: str, allowed: Callable[[float], bool]) -> Any:
    """``value`` when it is a concrete scalar that ``allowed`` accepts, or a tracer; else a ValueError
    "``name`` must be ``expected``, got ``value``"."""
    number = _number(name, value, expected)
    if number is not None and not allowed(number):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return value


def finite(name: str, value: Any) -> Any:
    """A finite real number (NaN and ±inf refused)."""
    return _scalar(name, value, "a finite number", math.isfinite)


def positive(name: str, value: Any) -> Any:
    """A finite number > 0."""
    return _scalar(name, value, "a finite number > 0", lambda x: math.isfinite(x) and x > 0)


def non_negative(name: str, value: Any) -> Any:
    """A finite number >= 0."""
    return _scalar(name, value, "a finite number >= 0", lambda x: math.isfinite(x) and x >= 0)


def all_positive(name: str, value: Any) -> Any:
    """A number or an array of numbers, every entry finite and > 0 (checked when concrete)."""
    if not is_concrete(value):
        return value
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be finite numbers > 0, got {value!r}") from None
    if isinstance(value, (bool, str)) or not (a.size and np.all(np.isfinite(a)) and np.all(a > 0)):
        raise ValueError(f"{name} must be finite numbers > 0, got {value!r}")
    return value


def in_range(name: str, value: Any, lo: float, hi: float) -> Any:
    """A number in the closed interval [lo, hi]."""
    return _scalar(name, value, f"a number in [{lo}, {hi}]", lambda x: lo <= x <= hi)


def in_open_range(name: str, value: Any, lo: float, hi: float) -> Any:
    """A number in the open interval (lo, hi)."""
    return _scalar(name, value, f"a number in ({lo}, {hi})", lambda x: lo < x < hi)


def count(name: str, value: Any, minimum: int = 1) -> int:
    """A Python / NumPy integer >= ``minimum`` (bool refused). Always concrete: counts shape programs."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def boolean(name: str, value: Any) -> bool:
    """A Python or NumPy bool (not a string such as 'no', nor 0 / 1: a flag is True or False)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """One of ``choices`` (a bool is not taken for the number 1 or 0)."""
    is_bool = isinstance(value, (bool, np.bool_))
    if value not in tuple(choices) or (is_bool and not any(isinstance(c, (bool, np.bool_)) for c in choices)):
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def rank_at_least(name: str, x: Any, rank: int) -> None:
    """An array of rank >= ``rank`` (shapes are static, so this runs under jit too)."""
    if np.ndim(x) < rank:
        raise ValueError(f"{name} must have rank >= {rank}, got shape {np.shape(x)}")


def non_empty_batch(name: str, x: Any) -> None:
    """A batch [B, ...] with B >= 1."""
    rank_at_least(name, x, 1)
    if np.shape(x)[0] < 1:
        raise ValueError(f"{name} must hold at least one example, got shape {np.shape(x)}")


def finite_array(name: str, x: Any) -> None:
    """No NaN or ±inf entry (checked on concrete arrays only)."""
    if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"{name} must be finite, got {int(np.sum(~np.isfinite(np.asarray(x))))} NaN/inf entries")


def pixels(name: str, x: Any) -> None:
    """Finite floating-point pixels in [0, 1] (the range is checked on concrete arrays only)."""
    if not np.issubdtype(np.asarray(x).dtype if is_concrete(x) else x.dtype, np.floating):
        raise ValueError(f"{name} must be floating-point pixels in [0, 1], got dtype {x.dtype}")
    if is_concrete(x):
        a = np.asarray(x)
        finite_array(name, a)
        if a.size and (a.min() < 0.0 or a.max() > 1.0):
            raise ValueError(f"{name} must be pixels in [0, 1], got values in [{a.min()}, {a.max()}]")


def labels(name: str, y: Any, num_classes: int | None = None) -> None:
    """Integer class labels, each in [0, num_classes) when that is known (values checked on concrete arrays)."""
    dtype = np.asarray(y).dtype if is_concrete(y) else y.dtype
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {dtype}")
    if num_classes is not None and is_concrete(y):
        a = np.asarray(y)
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} must be class labels in [0, {num_classes}), got values in [{a.min()}, {a.max()}]")


def paired(x_name: str, x: Any, y_name: str, y: Any) -> int:
    """Examples ``x`` [N, ...] and their labels ``y`` [N] (rank 1, same N); returns N."""
    if np.ndim(y) != 1:
        raise ValueError(f"{y_name} must be [N] (rank 1), got shape {np.shape(y)}")
    if np.ndim(x) < 1 or np.shape(x)[0] != np.shape(y)[0]:
        raise ValueError(f"{x_name} and {y_name} must have the same leading size N, got shapes "
                         f"{np.shape(x)} and {np.shape(y)}")
    return int(np.shape(y)[0])


def text(name: str, value: Any) -> str:
    """A str."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    return value


def function(name: str, value: Any, signature: str) -> Any:
    """A callable; ``signature`` says what it is called with and returns, for the error message."""
    if not callable(value):
        raise ValueError(f"{name} must be a function {signature}, got {value!r}")
    return value


def per_layer(name: str, values: Any, rank: int, hint: str) -> tuple:
    """A non-empty tuple (or list) with one array of rank >= ``rank`` per layer; ``hint`` says how to get it."""
    if not isinstance(values, (tuple, list)) or len(values) == 0:
        length = len(values) if isinstance(values, (tuple, list)) else "n/a"
        raise ValueError(f"{name} must be a non-empty tuple with one array per LIF layer ({hint}), "
                         f"got {type(values).__name__} of length {length}")
    for i, value in enumerate(values):
        if np.ndim(value) < rank:
            raise ValueError(f"{name}[{i}] must have rank >= {rank}, got shape {np.shape(value)}")
    return tuple(values)
