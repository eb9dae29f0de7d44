"""Which implementation runs an op: the one place the backend is chosen."""

from __future__ import annotations

from .._device import uses_cuda_kernels


def backend(x):
    """The backend package for ``x``: ``gpucnn.cuda`` (CUDA kernels, on a GPU or the
    emulator) or ``gpucnn.cpu`` (NumPy). Each has the modules ``activation``,
    ``conv``, ``dense``, ``pool``, ``hopfield``, ``loss`` and ``optim``."""
    if uses_cuda_kernels(x):
        from .. import cuda

        return cuda
    from .. import cpu

    return cpu
