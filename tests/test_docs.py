"""The API reference: pdoc renders every module of tgo_jax from its docstrings, offline, into a temp dir."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# page -> names it must document (an anchor per function or class)
EXPECTED = {
    "tgo_jax/attacks/gradient.html": ("pgd", "fgsm"),
    "tgo_jax/losses/compose.html": ("compose",),
    "tgo_jax/models.html": ("create",),
    "tgo_jax/data/aedat.html": ("read_aedat",),
    "tgo_jax/projections.html": ("project_simplex", "parseval_retraction"),
}


def test_api_reference_builds(tmp_path):
    pytest.importorskip("pdoc")
    out = subprocess.run([sys.executable, "-m", "pdoc", "--no-search", "-o", str(tmp_path), "tgo_jax"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "tgo_jax.html").is_file()
    for page, names in EXPECTED.items():
        html = (tmp_path / page).read_text()
        for name in names:
            assert f'id="{name}"' in html, f"{name} is not documented in {page}"
