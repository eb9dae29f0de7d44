"""Shared fixtures: every test starts on the CPU device; GPU tests skip, with the reason,
where no GPU is usable (the emulator tests run the same checks there)."""

from __future__ import annotations

import pytest

import gpucnn
from gpucnn import _device


@pytest.fixture(autouse=True)
def cpu_device():
    """Each test starts on the cpu device and leaves the global device as it found it."""
    saved = _device._current
    gpucnn.set_device("cpu")
    yield
    _device._current = saved


def pytest_collection_modifyitems(config, items):
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    usable, why = _device.probe_gpu()
    if usable:
        return
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {why}")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
