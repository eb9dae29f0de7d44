"""The built wheel carries the kernels and the emulator, and an installed copy finds them."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = out.glob("gpucnn-*.whl")
    return path


def test_wheel_holds_every_kernel_source_and_the_emulator(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for source in sorted((ROOT / "cuda").iterdir()):
        assert f"gpucnn/kernels/{source.name}" in names, source.name
    for part in ("cuda_emulator.hpp", "runtime.inc", "build.py"):
        assert f"gpucnn/emulator/{part}" in names
    assert not any(name.startswith(("tests/", "cuda/")) for name in names)


def test_an_installed_copy_finds_and_runs_its_kernels(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        "import numpy as np, gpucnn\n"
        "from gpucnn import ops\n"
        "from gpucnn.cuda._source import kernel_dir\n"
        "print(kernel_dir())\n"
        "gpucnn.set_device('emulator')\n"
        "y, a = ops.max_pool2d_forward(np.arange(16.0).reshape(1, 1, 4, 4), 2)\n"
        "print(y.ravel().tolist(), a.ravel().tolist())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert result.returncode == 0, result.stderr
    kernels, values = result.stdout.splitlines()
    assert Path(kernels) == site / "gpucnn" / "kernels"
    assert values == "[5.0, 7.0, 13.0, 15.0] [5, 7, 13, 15]"
