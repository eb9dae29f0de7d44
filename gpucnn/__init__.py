"""gpucnn: a CNN library with hand-written CUDA kernels and a NumPy reference path."""

from ._device import (
    DeviceUnavailableError,
    DeviceWarning,
    get_device,
    set_device,
    to_device,
    to_numpy,
)

__version__ = "0.1.0"

__all__ = [
    "DeviceUnavailableError",
    "DeviceWarning",
    "__version__",
    "get_device",
    "set_device",
    "to_device",
    "to_numpy",
]
