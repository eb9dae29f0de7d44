"""Which implementation runs an op: the one place the backend is chosen."""

from __future__ import annotations

import functools

from .._device import uses_cuda_kernels


def backend(x):
    """The backend package for ``x``: ``gpucnn.cuda`` (CUDA kernels, on a GPU or the
    emulator) or ``gpucnn.cpu`` (NumPy). Each has the modules ``activation``,
    ``conv``, ``dense``, ``pool``, ``hopfield``, ``loss`` and ``optim``."""
    return _cuda() if uses_cuda_kernels(x) else _cpu()


# Imported at first use, then held: an import statement in ``backend`` itself cost every op
# ~1.1 us (of ~1.4 for the whole dispatch) looking the package up again.
@functools.cache
def _cuda():
    from .. import cuda

    return cuda


@functools.cache
def _cpu():
    from .. import cpu

    return cpu
