"""The README's Python blocks run as written (the quickstart trains and attacks a tiny net, about a minute)."""
from __future__ import annotations

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a Markdown text, in order."""
    return PYTHON_BLOCK.findall(text)


def test_python_blocks_are_found():
    blocks = python_blocks("a\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = 2\n```\n")
    assert blocks == ["x = 1\n", "y = 2\n"]


@pytest.mark.slow
@pytest.mark.usefixtures("fashion_mnist")
def test_readme_python_blocks_run(capsys):
    blocks = python_blocks(README.read_text())
    assert blocks, "the README has no ```python block"
    namespace = {"__name__": "readme"}
    for block in blocks:  # one namespace: a later block may use an earlier one's names
        exec(compile(block, str(README), "exec"), namespace)
    assert re.search(r"clean \d+\.\d +FGSM \d+\.\d +PGD-10 \d+\.\d", capsys.readouterr().out)
