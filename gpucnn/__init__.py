"""gpucnn: a CNN library with hand-written CUDA kernels and a NumPy reference path.

    import gpucnn
    gpucnn.set_device("auto")                      # "gpu" when usable, else "cpu"
    model = gpucnn.Sequential([gpucnn.layers.Conv2D(1, 8, 3), gpucnn.layers.ReLU(), ...])

Modules: ``ops`` (functional forward/backward pairs), ``layers``, ``losses``, ``optim``,
``train`` (fit, evaluate), ``data``, ``models``, ``checkpoint``, ``hopfield``, ``cuda`` (the
kernel wrappers, loader and launch helper), ``emulator`` (CUDA kernels on the CPU).
"""

from . import checkpoint, data, hopfield, layers, losses, models, ops, optim, train
from ._device import (
    DeviceUnavailableError,
    DeviceWarning,
    get_device,
    set_device,
    to_device,
    to_numpy,
)
from .layers import Sequential

__version__ = "0.1.0"

__all__ = [
    "DeviceUnavailableError",
    "DeviceWarning",
    "Sequential",
    "__version__",
    "checkpoint",
    "data",
    "get_device",
    "hopfield",
    "layers",
    "losses",
    "models",
    "ops",
    "optim",
    "set_device",
    "to_device",
    "to_numpy",
    "train",
]
