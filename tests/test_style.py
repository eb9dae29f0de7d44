"""The code base stays clean: ruff (lint and format) for Python, clang-format for the CUDA and
emulator C++ sources; checked with every test run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: it is part of the test extra")
    return found


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff(command):
    result = subprocess.run([_tool("ruff"), *command, str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


CPP_SOURCES = sorted(
    [
        *ROOT.glob("cuda/*.cu"),
        *ROOT.glob("cuda/*.cuh"),
        *ROOT.glob("tests/emulator/kernels/*.cu"),
        ROOT / "gpucnn/emulator/cuda_emulator.hpp",
        ROOT / "gpucnn/emulator/runtime.inc",
    ]
)


@pytest.mark.parametrize("path", CPP_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_clang_format(path):
    result = subprocess.run(
        [
            _tool("clang-format"),
            "--dry-run",
            "--Werror",
            f"--assume-filename={path.stem}.cpp",
            f"--style=file:{ROOT / '.clang-format'}",
        ],
        input=path.read_text(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
