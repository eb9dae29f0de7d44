"""Device selection, array movement, and the one decision of which backend runs an op.

Devices:
  cpu       NumPy arrays, NumPy implementations.
  gpu       CuPy arrays, CUDA kernels (through CuPy's RawModule).
  emulator  NumPy arrays, but the CUDA code path: the real ``.cu`` kernels compiled for
            and run on the CPU (see ``gpucnn.emulator``). For debugging kernels without a GPU.
  auto      resolves to ``gpu`` when CuPy imports and a CUDA device answers, else ``cpu``.

The choice comes from ``set_device`` or, until that is called, the ``GPUCNN_DEVICE``
environment variable (default ``auto``, also where it is set but empty).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

DEVICES = ("auto", "cpu", "gpu", "emulator")
ENV_VAR = "GPUCNN_DEVICE"


class DeviceWarning(RuntimeWarning):
    """CuPy is installed but no GPU is usable, so ``auto`` fell back to the CPU."""


class DeviceUnavailableError(RuntimeError):
    """The requested device cannot be used on this machine; the message says why."""


@dataclass(frozen=True)
class _Resolved:
    name: str  # "cpu" | "gpu" | "emulator"
    requested: str
    reason: str


_current: _Resolved | None = None


def probe_gpu() -> tuple[bool, str]:
    """Return (usable, reason): whether CuPy can run kernels here, and why or why not.

    Does what ``cupy.is_available()`` does, but keeps the cause, so a user is told whether
    CuPy is missing, the driver is, no device answers, or NVRTC (needed for our kernels) is.
    """
    try:
        import cupy
    except ImportError as exc:
        return False, f"CuPy is not installed ({exc})"
    except Exception as exc:  # a broken CuPy install raises all sorts of things on import
        return False, f"CuPy failed to import: {type(exc).__name__}: {exc}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"CuPy {cupy.__version__} is installed but CUDA is unusable: {exc}"
    if count < 1:
        return False, f"CuPy {cupy.__version__} is installed but no CUDA device is visible"
    try:
        nvrtc_version = cupy.cuda.nvrtc.getVersion()
    except Exception as exc:
        return False, f"CuPy {cupy.__version__} found a GPU but NVRTC is missing: {exc}"
    name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    major, minor = nvrtc_version
    return True, f"{name} through CuPy {cupy.__version__} (NVRTC {major}.{minor})"


def _resolve(requested: str) -> _Resolved:
    if requested == "cpu":
        return _Resolved("cpu", requested, "requested explicitly")
    if requested == "emulator":
        from .emulator.build import EmulatorCompileError, compiler

        try:
            cxx = compiler()
        except EmulatorCompileError as exc:
            raise DeviceUnavailableError(f"device 'emulator' is not usable: {exc}") from None
        return _Resolved("emulator", requested, f"CUDA kernels compiled by {cxx}, run on the CPU")
    usable, why = probe_gpu()
    if requested == "gpu":
        if not usable:
            raise DeviceUnavailableError(f"device 'gpu' was requested but is not usable: {why}")
        return _Resolved("gpu", requested, why)
    # auto
    if usable:
        return _Resolved("gpu", requested, f"auto: {why}")
    if not why.startswith("CuPy is not installed"):
        warnings.warn(f"gpucnn falls back to the CPU: {why}", DeviceWarning, stacklevel=3)
    return _Resolved("cpu", requested, f"auto: {why}")


def _check_device_name(device: object, argument: str = "device") -> str:
    if not isinstance(device, str):
        raise TypeError(f"{argument} must be one of {DEVICES}, got {type(device).__name__}")
    name = device.strip().lower()
    if name not in DEVICES:
        raise ValueError(f"{argument} must be one of {DEVICES}, got {device!r}")
    return name


def set_device(device: str) -> str:
    """Select the device for new layers and arrays; return its resolved name."""
    global _current
    _current = _resolve(_check_device_name(device))
    return _current.name


def _state() -> _Resolved:
    global _current
    if _current is None:
        # set but empty (``GPUCNN_DEVICE= cmd``, a compose file passing an unset variable)
        # means unset, as for gpucnn's other variables
        requested = os.environ.get(ENV_VAR, "").strip() or "auto"
        _current = _resolve(_check_device_name(requested, argument=ENV_VAR))
    return _current


def get_device() -> str:
    """The resolved current device: ``"cpu"``, ``"gpu"`` or ``"emulator"``."""
    return _state().name


def device_reason() -> str:
    """Why the current device was chosen (for ``python -m gpucnn info``)."""
    state = _state()
    return f"{state.name} (requested {state.requested!r}): {state.reason}"


# ----------------------------------------------------------------------------- arrays


# "host", "gpu" or None (not an array) per type: every op asks for each of its arrays, and
# on a GPU the per-op host time is what small layers wait for.
_device_of_type: dict[type, str | None] = {np.ndarray: "host"}


def _classify(cls: type) -> str | None:
    if issubclass(cls, np.ndarray):
        return "host"
    # By module name, so that NumPy-only installs never import CuPy; the interface is looked
    # up on the class (on an instance, CuPy builds it afresh).
    if cls.__module__.startswith("cupy") and hasattr(cls, "__cuda_array_interface__"):
        return "gpu"
    return None


def _device_of(x: object) -> str | None:
    cls = type(x)
    device = _device_of_type.get(cls, False)
    if device is False:
        device = _device_of_type[cls] = _classify(cls)
    return device


def is_cupy_array(x: object) -> bool:
    return _device_of(x) == "gpu"


def array_device(x: object) -> str:
    """``"gpu"`` for a CuPy array, ``"host"`` for a NumPy array; TypeError otherwise."""
    device = _device_of(x)
    if device is None:
        raise TypeError(f"expected a numpy.ndarray or cupy.ndarray, got {type(x).__name__}")
    return device


def array_module(x: object):
    """``numpy`` or ``cupy``, whichever owns ``x`` (Chainer's ``get_array_module``)."""
    if array_device(x) == "gpu":
        import cupy

        return cupy
    return np


def uses_cuda_kernels(x: object) -> bool:
    """The one dispatch decision: does an op on ``x`` run the CUDA kernels?

    A CuPy array always does. A NumPy array does only on the ``emulator`` device, which
    runs the same kernels on the CPU.
    """
    return array_device(x) == "gpu" or get_device() == "emulator"


def to_device(x, device: str | None = None):
    """Copy ``x`` (array-like) to ``device`` (default: the current one); no copy if it is there."""
    target = get_device() if device is None else resolve_device(device)
    if target == "gpu":
        import cupy

        return cupy.asarray(x)
    return to_numpy(x)


def resolve_device(device: str) -> str:
    """The concrete device (cpu, gpu, emulator) that ``device`` names; checks a GPU is usable."""
    name = _check_device_name(device)
    if name == "auto":
        return get_device()
    if name == "gpu":
        usable, why = probe_gpu()
        if not usable:
            raise DeviceUnavailableError(f"cannot move an array to the GPU: {why}")
    return name


def to_numpy(x) -> np.ndarray:
    """A NumPy array holding ``x`` (copied from the GPU when ``x`` is a CuPy array)."""
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)
