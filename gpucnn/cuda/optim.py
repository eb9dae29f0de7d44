"""The SGD update on the CUDA path: one launch of ``cuda/optim.cu`` per parameter.

Same function and semantics as ``gpucnn.cpu.optim``; arguments arrive validated by
``gpucnn.ops.optim`` (param and velocity C-contiguous: they are updated in place).
"""

from __future__ import annotations

from ._launch import contiguous, grid_stride_blocks, launch
from ._loader import get_kernel

SOURCE = "optim.cu"
THREADS = 256


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov) -> None:
    launch(
        get_kernel(SOURCE, "sgd_update", param),
        grid_stride_blocks(param.size, THREADS),
        THREADS,
        (
            param,
            contiguous(grad),
            velocity if momentum else None,
            param.size,
            lr,
            momentum,
            weight_decay,
            int(nesterov),
        ),
    )
