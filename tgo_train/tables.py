"""Plain-text tables and ε labels (written and read) shared by the programs and the notebooks."""
from __future__ import annotations

import numbers
from fractions import Fraction
from typing import Mapping, Sequence


def eps_label(eps: float) -> str:
    """'8/255' when ε > 0 is a whole number of 1/255 steps, else the plain number ('0', '0.1')."""
    steps = eps * 255
    return f"{round(steps)}/255" if eps and abs(steps - round(steps)) < 1e-6 else f"{eps:g}"


def parse_eps(text: str) -> float:
    """'8/255' or '0.1' -> float (``eps_label``'s inverse); raises ValueError for text that is not a number >= 0."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError) as e:
        raise ValueError(f"cannot read epsilon {text!r}: use a number or a fraction like 8/255") from e
    if value < 0:
        raise ValueError(f"epsilon must be >= 0, got {text!r}")
    return value


def text_table(rows: Mapping[str, Mapping], columns: Sequence, fmt: str = "{:.2f}", first: str = "",
               width: int = 10) -> str:
    """A fixed-width text table: a row per ``rows`` entry (name -> {column: value}).

    Numbers are written with ``fmt``, other values as text, a missing column as '-'. The name column
    is as wide as the longest name (or ``first``, its header) plus two spaces; every other column is
    right-aligned in ``width`` characters.
    """
    head = max([len(first)] + [len(str(n)) for n in rows]) + 2
    lines = [first.ljust(head) + "".join(str(c).rjust(width) for c in columns)]
    for name, row in rows.items():
        cells = [fmt.format(float(row[c])) if isinstance(row.get(c), numbers.Number) else str(row.get(c, "-"))
                 for c in columns]
        lines.append(str(name).ljust(head) + "".join(c.rjust(width) for c in cells))
    return "\n".join(lines)


def print_table(rows: Mapping[str, Mapping], columns: Sequence, fmt: str = "{:.2f}", first: str = "",
                width: int = 10) -> None:
    """Prints ``text_table(rows, columns, fmt, first, width)``."""
    print(text_table(rows, columns, fmt, first, width))
