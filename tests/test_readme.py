"""The README's Python examples run as written (on the CPU), so the first thing a user
copies does not rot as the API moves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("code", EXAMPLES, ids=lambda code: code.splitlines()[0])
def test_readme_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples save files
    monkeypatch.setenv("GPUCNN_DEVICE", "cpu")
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
