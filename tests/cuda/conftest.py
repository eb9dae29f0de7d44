"""Fixtures for the CUDA path: the same tests run on the emulator (always: in sanitizer mode,
outputs poisoned, grids shrunk so every grid-stride loop loops; then again with each block's
threads resumed in reverse order, which turns a race between threads into a wrong answer
in one pass or the other) and on a real GPU (marked ``gpu``; skipped with the reason where
there is none)."""

from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from gpucnn._checks import env_flag
from gpucnn.cuda import limit_grid_stride_blocks, poison_outputs
from gpucnn.emulator import set_sanitize, set_thread_order
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


@pytest.fixture(
    params=["emulator", "emulator-reversed", pytest.param("gpu", marks=pytest.mark.gpu)]
)
def backend(request):
    """The CUDA path on the emulator (poisoned, tiny grids; sanitized, or with each block's
    threads in reverse order) or a real GPU."""
    if request.param.startswith("emulator"):
        try:
            compiler()
        except EmulatorCompileError as exc:
            pytest.skip(f"no C++ compiler for the emulator: {exc}")
        reverse = request.param == "emulator-reversed"
        # Reversed, unsanitized: the forward pass has checked every access already, and the
        # sanitizers' processes would double the suite's time. GPUCNN_TEST_SANITIZE=0:
        # unsanitized both ways, for tests.mutation's fast first pass only.
        set_sanitize(False if reverse else env_flag("GPUCNN_TEST_SANITIZE", True))
        set_thread_order("reverse" if reverse else "forward")
        with poison_outputs(), limit_grid_stride_blocks(3):
            yield Backend("emulator")
        set_sanitize(None)
        set_thread_order(None)
    else:
        with poison_outputs():
            yield Backend("gpu")


@pytest.fixture
def gpu_backend():
    """A real GPU only: for realistic sizes the emulator would take minutes."""
    with poison_outputs():
        yield Backend("gpu")
