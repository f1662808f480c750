"""Text tables and ε labels (tgo_train/tables.py)."""
from __future__ import annotations

import numpy as np
import pytest

from tgo_train import tables


def test_eps_label():
    assert tables.eps_label(8 / 255) == "8/255"
    assert tables.eps_label(0.1) == "0.1"
    assert tables.eps_label(0.0) == "0"
    assert tables.eps_label(0.5 / 255) == f"{0.5 / 255:g}"


@pytest.mark.parametrize("text, value", [("8/255", 8 / 255), (" 2/255 ", 2 / 255), ("0.1", 0.1), ("0", 0.0),
                                         ("1e-2", 0.01)])
def test_parse_eps_reads_numbers_and_fractions(text, value):
    assert tables.parse_eps(text) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("text", ["eight", "", "8/0", "-0.1", "8//255", "0.1,0.2"])
def test_parse_eps_rejects_bad_text(text):
    with pytest.raises(ValueError, match="eps"):
        tables.parse_eps(text)


def test_eps_label_round_trips():
    for text in ("2/255", "8/255", "0.1"):
        assert tables.eps_label(tables.parse_eps(text)) == text


def test_text_table_layout():
    rows = {"vanilla": {"Clean": 91.234, "PGD": np.float32(0.5)}, "tgo-long-name": {"Clean": 88.0, "note": "✓"}}
    text = tables.text_table(rows, ["Clean", "PGD", "note"], fmt="{:.1f}", first="model", width=7)
    assert text.splitlines() == [
        "model            Clean    PGD   note",
        "vanilla           91.2    0.5      -",
        "tgo-long-name     88.0      -      ✓",
    ]


def test_print_table_prints_the_text(capsys):
    tables.print_table({"a": {"x": 1}}, ["x"], fmt="{:.0f}", width=3)
    assert capsys.readouterr().out == tables.text_table({"a": {"x": 1}}, ["x"], fmt="{:.0f}", width=3) + "\n"
