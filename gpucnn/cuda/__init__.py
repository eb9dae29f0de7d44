"""The CUDA backend: Python wrappers that size and launch the kernels in ``cuda/*.cu``.

Each wrapper runs on a GPU (CuPy arrays, kernels compiled by NVRTC through ``RawModule``)
or on the emulator (NumPy arrays, the same kernels compiled for the CPU): one code path.
"""

from . import activation, conv, dense, graph, hopfield, loss, optim, pool
from ._launch import KernelError, launch, limit_grid_stride_blocks, poison_outputs
from ._loader import get_kernel, warmup

__all__ = [
    "KernelError",
    "activation",
    "conv",
    "dense",
    "graph",
    "hopfield",
    "get_kernel",
    "launch",
    "loss",
    "limit_grid_stride_blocks",
    "optim",
    "poison_outputs",
    "pool",
    "warmup",
]
