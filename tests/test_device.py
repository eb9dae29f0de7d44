"""Device selection: names, the environment variable, auto's fallback and its warning."""

from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest

import gpucnn
from gpucnn import _device


@pytest.fixture
def fresh(monkeypatch):
    """No device chosen yet, so the next get_device() reads GPUCNN_DEVICE."""
    monkeypatch.setattr(_device, "_current", None)
    return monkeypatch


def _fake_cupy(monkeypatch, *, device_count=1, runtime_error=None, nvrtc_error=None):
    """Install a stand-in CuPy module that fails the way a broken install does."""
    cupy = types.ModuleType("cupy")
    cupy.__version__ = "99.0"

    def get_device_count():
        if runtime_error:
            raise RuntimeError(runtime_error)
        return device_count

    def nvrtc_version():
        if nvrtc_error:
            raise OSError(nvrtc_error)
        return (12, 4)

    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(
            getDeviceCount=get_device_count, getDeviceProperties=lambda i: {"name": b"Fake GPU"}
        ),
        nvrtc=types.SimpleNamespace(getVersion=nvrtc_version),
        Device=lambda: types.SimpleNamespace(id=0),
    )
    monkeypatch.setitem(sys.modules, "cupy", cupy)


def test_cpu_and_emulator_resolve_without_cupy(fresh):
    assert gpucnn.set_device("cpu") == "cpu" and gpucnn.get_device() == "cpu"
    assert gpucnn.set_device(" CPU ") == "cpu"


@pytest.mark.parametrize("bad, error", [("tpu", ValueError), (0, TypeError), (None, TypeError)])
def test_bad_device_names(fresh, bad, error):
    with pytest.raises(error, match="device must be one of"):
        gpucnn.set_device(bad)


def test_environment_variable_is_read_once(fresh):
    fresh.setenv("GPUCNN_DEVICE", "cpu")
    assert gpucnn.get_device() == "cpu"
    assert "requested 'cpu'" in _device.device_reason()


def test_bad_environment_variable_is_named(fresh):
    fresh.setenv("GPUCNN_DEVICE", "quantum")
    with pytest.raises(ValueError, match="GPUCNN_DEVICE must be one of"):
        gpucnn.get_device()


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_environment_variable_means_auto(fresh, value):
    # as for GPUCNN_CPU_THREADS and GPUCNN_CONV_ALGORITHM: set but empty is unset
    fresh.setitem(sys.modules, "cupy", None)  # auto then resolves to the CPU, silently
    fresh.setenv("GPUCNN_DEVICE", value)
    assert gpucnn.get_device() == "cpu"
    assert "requested 'auto'" in _device.device_reason()


def test_auto_without_cupy_is_silent(fresh):
    fresh.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gpucnn.set_device("auto") == "cpu"
    assert "CuPy is not installed" in _device.device_reason()


@pytest.mark.parametrize(
    "failure, cause",
    [
        (dict(runtime_error="cudaErrorInsufficientDriver"), "cudaErrorInsufficientDriver"),
        (dict(device_count=0), "no CUDA device"),
        (dict(nvrtc_error="libnvrtc.so.12: cannot open"), "NVRTC is missing"),
    ],
)
def test_auto_with_unusable_cupy_warns_once_with_the_cause(fresh, failure, cause):
    _fake_cupy(fresh, **failure)
    with pytest.warns(gpucnn.DeviceWarning, match=cause) as record:
        assert gpucnn.set_device("auto") == "cpu"
    assert len(record) == 1
    with pytest.raises(gpucnn.DeviceUnavailableError, match=cause):
        gpucnn.set_device("gpu")


def test_auto_with_a_working_gpu_picks_it(fresh):
    _fake_cupy(fresh)
    assert gpucnn.set_device("auto") == "gpu"
    assert "Fake GPU" in _device.device_reason()


def test_to_device_and_to_numpy_on_the_host():
    x = [[1.0, 2.0]]
    moved = gpucnn.to_device(x)
    assert isinstance(moved, np.ndarray) and moved.tolist() == x
    array = np.arange(3.0)
    assert gpucnn.to_device(array, "cpu") is array  # no copy when already there
    assert gpucnn.to_numpy(array) is array
    with pytest.raises(ValueError, match="device must be one of"):
        gpucnn.to_device(array, "tpu")


def _array_class(module):
    """A class that looks like a GPU array from ``module``: it has the CUDA interface."""
    return type("ndarray", (), {"__module__": module, "__cuda_array_interface__": {}})


def test_which_arrays_take_the_cuda_kernels(fresh):
    # The one dispatch decision: a CuPy array always; a NumPy array only on the emulator.
    host, gpu_array = np.zeros(2), _array_class("cupy._core.core")()
    assert _device.array_device(gpu_array) == "gpu" and _device.array_device(host) == "host"
    for device, host_takes_kernels in (("cpu", False), ("emulator", True)):
        gpucnn.set_device(device)
        assert _device.uses_cuda_kernels(host) is host_takes_kernels
        assert _device.uses_cuda_kernels(gpu_array) is True
    assert _device.array_module(host) is np


def test_another_librarys_gpu_array_is_not_taken_for_cupys():
    # A Torch or Numba CUDA array has the CUDA interface too, but no CuPy array API.
    foreign = _array_class("torch")()
    with pytest.raises(TypeError, match="expected a numpy.ndarray or cupy.ndarray, got ndarray"):
        _device.array_device(foreign)


def test_gpu_request_without_cupy_names_the_cause(fresh):
    fresh.setitem(sys.modules, "cupy", None)
    with pytest.raises(gpucnn.DeviceUnavailableError, match="CuPy is not installed"):
        gpucnn.set_device("gpu")
    with pytest.raises(gpucnn.DeviceUnavailableError, match="CuPy is not installed"):
        gpucnn.to_device(np.zeros(2), "gpu")


@pytest.mark.parametrize(
    "setting, expected",
    [("1", True), ("Yes", True), (" on ", True), ("0", False), ("FALSE", False), ("", None)],
)
def test_switches_in_the_environment_read_alike(monkeypatch, setting, expected):
    # GPUCNN_EMULATOR_SANITIZE, GPUCNN_SYNC_LAUNCHES, GPUCNN_NVTX and
    # GPUCNN_CPU_MALLOC_TUNING are all read by this one function.
    from gpucnn._checks import env_flag

    monkeypatch.setenv("GPUCNN_SOME_SWITCH", setting)
    for default in (True, False):
        wanted = default if expected is None else expected
        assert env_flag("GPUCNN_SOME_SWITCH", default) is wanted
    monkeypatch.delenv("GPUCNN_SOME_SWITCH")
    assert env_flag("GPUCNN_SOME_SWITCH", True) is True


@pytest.mark.parametrize("setting", ["2", "maybe", "enabled"])
def test_a_switch_that_is_neither_on_nor_off_is_named(monkeypatch, setting):
    # The emulator's sanitizer switch used to take anything but 0/false/no as "on".
    from gpucnn.emulator import sanitize_enabled

    monkeypatch.setenv("GPUCNN_EMULATOR_SANITIZE", setting)
    with pytest.raises(ValueError, match="GPUCNN_EMULATOR_SANITIZE must be 1 or 0"):
        sanitize_enabled()
