"""Fixtures for the CUDA path: the same tests run on the emulator (always; in sanitizer mode,
outputs poisoned, grids shrunk so every grid-stride loop loops) and on a real GPU (marked
``gpu``; skipped with the reason where there is none)."""

from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from gpucnn._checks import env_flag
from gpucnn.cuda import limit_grid_stride_blocks, poison_outputs
from gpucnn.emulator import set_sanitize
from gpucnn.emulator.build import EmulatorCompileError, compiler


class Backend:
    """Runs ops on one device and hands NumPy results back."""

    def __init__(self, name: str):
        self.name = name

    def put(self, array):
        return gpucnn.to_device(array, "gpu") if self.name == "gpu" else np.asarray(array)

    def run(self, op, *args, **kwargs):
        """op(*args) on this device (array arguments moved there), results as NumPy."""
        gpucnn.set_device(self.name)
        try:
            moved = [self.put(a) if isinstance(a, np.ndarray) else a for a in args]
            result = op(*moved, **kwargs)
        finally:
            gpucnn.set_device("cpu")
        if isinstance(result, tuple):
            return tuple(_host(r) for r in result)
        return _host(result)


def _host(value):
    """Arrays (of either device) as NumPy arrays; anything else unchanged."""
    return (
        gpucnn.to_numpy(value)
        if hasattr(value, "__array_interface__") or hasattr(value, "__cuda_array_interface__")
        else value
    )


@pytest.fixture(params=["emulator", pytest.param("gpu", marks=pytest.mark.gpu)])
def backend(request):
    """The CUDA path on the emulator (sanitized, poisoned, tiny grids) or a real GPU."""
    if request.param == "emulator":
        try:
            compiler()
        except EmulatorCompileError as exc:
            pytest.skip(f"no C++ compiler for the emulator: {exc}")
        # GPUCNN_TEST_SANITIZE=0: unsanitized, for tests.mutation's fast first pass only
        set_sanitize(env_flag("GPUCNN_TEST_SANITIZE", True))
        with poison_outputs(), limit_grid_stride_blocks(3):
            yield Backend("emulator")
        set_sanitize(None)
    else:
        with poison_outputs():
            yield Backend("gpu")


@pytest.fixture
def gpu_backend():
    """A real GPU only: for realistic sizes the emulator would take minutes."""
    with poison_outputs():
        yield Backend("gpu")
