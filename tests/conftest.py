"""Shared fixtures: every test starts on the CPU device; GPU tests skip, with the reason,
where no GPU is usable (the emulator tests run the same checks there), unless
GPUCNN_REQUIRE_GPU=1 makes that an error (the GPU check script sets it, so that a run on a
machine whose GPU is unusable cannot pass by skipping everything)."""

from __future__ import annotations

import os
from pathlib import Path

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
    if os.environ.get("GPUCNN_REQUIRE_GPU") == "1":  # set by benchmarks/gpu_check.sh
        raise pytest.UsageError(f"GPUCNN_REQUIRE_GPU=1 but no GPU is usable: {why}")
    skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {why}")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


def _ran_whole_suite(session) -> bool:
    """No -k/-m filter, only folders on the command line, and the CUDA tests among them."""
    options = session.config.option
    if getattr(options, "keyword", "") or getattr(options, "markexpr", ""):
        return False
    if getattr(options, "deselect", None) or getattr(options, "lf", False):
        return False
    if not all(Path(arg).is_dir() for arg in session.config.args):
        return False
    return any(item.nodeid.startswith("tests/cuda/") for item in session.items)


def pytest_sessionfinish(session, exitstatus):
    """Every kernel in cuda/ must have been launched on the emulator by some test."""
    if exitstatus != 0 or not _ran_whole_suite(session):
        return
    from gpucnn.cuda._launch import emulator_launches
    from gpucnn.cuda._source import kernel_files, kernel_source, name_expressions

    missing = [
        f"{filename}:{expression}"
        for filename in kernel_files()
        for expression in name_expressions(kernel_source(filename))
        if (filename, expression) not in emulator_launches
    ]
    if missing:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.ensure_newline()
        reporter.write_line(
            f"FAILED kernel coverage: no emulator test launched {missing}", red=True, bold=True
        )
