"""The shared argument checks (tgo_jax.validation): one ValueError line naming the field, the value and
what is allowed; values are checked when concrete and pass through untouched when traced."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tgo_jax import validation

INF, NAN = math.inf, math.nan


@pytest.mark.parametrize("check, args, good, bad", [
    (validation.finite, (), [0.0, -3, np.float32(2.5), jnp.float32(1.0)], [INF, NAN, "1", None, True, [1.0]]),
    (validation.positive, (), [1e-9, 3, np.float64(0.4)], [0.0, -1.0, INF, NAN, "0.5", False]),
    (validation.non_negative, (), [0.0, 2], [-1e-9, INF, NAN, "0"]),
    (validation.in_range, (0.0, 1.0), [0.0, 0.5, 1], [-0.1, 1.5, NAN, "0.5", INF]),
    (validation.all_positive, (), [0.4, np.array([0.1, 2.0]), jnp.ones((2, 3))],
     [np.array([0.1, 0.0]), np.array([1.0, INF]), np.array([]), "0.4", True]),
])
def test_number_checks(check, args, good, bad):
    for value in good:
        assert check("field", value, *args) is value
    for value in bad:
        with pytest.raises(ValueError, match=r"^field must be .*, got "):
            check("field", value, *args)


def test_message_names_field_value_and_allowed():
    with pytest.raises(ValueError, match=r"^decay must be a number in \[0.0, 1.0\], got '0.5'$"):
        validation.in_range("decay", "0.5", 0.0, 1.0)
    with pytest.raises(ValueError, match=r"^threshold must be a finite number > 0, got inf$"):
        validation.positive("threshold", INF)


def test_count_boolean_choice():
    assert validation.count("n", 3) == 3 and validation.count("n", np.int64(0), minimum=0) == 0
    for bad in (0, -2, 1.0, True, "3", None):
        with pytest.raises(ValueError, match=r"^n must be an int >= 1, got "):
            validation.count("n", bad)
    assert validation.boolean("flag", True) is True and validation.boolean("flag", np.bool_(False)) is False
    for bad in ("no", "True", 0, 1, None):
        with pytest.raises(ValueError, match=r"^flag must be True or False, got "):
            validation.boolean("flag", bad)
    assert validation.choice("kind", "lif", ("lif", "noisy")) == "lif"
    with pytest.raises(ValueError, match=r"^kind must be one of \('lif', 'noisy'\), got 'spiky'$"):
        validation.choice("kind", "spiky", ("lif", "noisy"))


def test_array_checks():
    validation.rank_at_least("x", jnp.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match=r"x must have rank >= 2, got shape \(3,\)"):
        validation.rank_at_least("x", jnp.zeros(3), 2)
    validation.non_empty_batch("x", jnp.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"x must hold at least one example, got shape \(0, 4\)"):
        validation.non_empty_batch("x", jnp.zeros((0, 4)))
    with pytest.raises(ValueError, match="x must be finite, got 2 NaN/inf"):
        validation.finite_array("x", jnp.array([0.0, jnp.nan, jnp.inf]))
    validation.pixels("x", jnp.array([0.0, 0.5, 1.0]))
    for bad, pattern in ((jnp.array([0.0, 1.5]), r"\[0, 1\]"), (jnp.array([jnp.nan]), "finite"),
                         (jnp.array([0, 1]), "floating")):
        with pytest.raises(ValueError, match=pattern):
            validation.pixels("x", bad)
    validation.labels("y", jnp.array([0, 9]), 10)
    for bad in (jnp.array([0, 10]), jnp.array([-1, 3]), jnp.array([0.0, 1.0])):
        with pytest.raises(ValueError, match="y must"):
            validation.labels("y", bad, 10)


def test_traced_values_pass_through_under_jit():
    """Checks on values are skipped for tracers (closed-over constants and jitted arguments both work)."""
    @jax.jit
    def f(sigma, x, y):
        validation.positive("sigma", sigma)
        validation.in_range("decay", sigma, 0.0, 1.0)
        validation.all_positive("sigma", sigma)
        validation.pixels("x", x)
        validation.labels("y", y, 10)
        validation.finite_array("x", x)
        return sigma * x.sum() + y.sum()

    # Out-of-range values reach the traced function without an error: their checks need concrete values.
    assert float(f(-1.0, jnp.full((2,), 3.0), jnp.array([11, 12]))) == -6.0 + 23.0
    # Shapes are static, so shape checks still run under jit.
    with pytest.raises(ValueError, match="at least one example"):
        jax.jit(lambda x: validation.non_empty_batch("x", x) or x)(jnp.zeros((0, 2)))
