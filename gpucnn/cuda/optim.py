"""The SGD update on the CUDA path: ``cuda/optim.cu``, up to sixteen parameters a launch.

Same functions and semantics as ``gpucnn.cpu.optim``; arguments arrive validated by
``gpucnn.ops.optim`` (params and velocities C-contiguous: they are updated in place).
"""

from __future__ import annotations

from ._launch import address, contiguous, grid_stride_blocks, launch
from ._loader import get_kernel

SOURCE = "optim.cu"
THREADS = 256
# The kernel's parameter slots: (param, grad, velocity, size) for each of sixteen parameters.
PARAMS_PER_LAUNCH = 16
_EMPTY_SLOT = (None, None, None, 0)


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov) -> None:
    sgd_update_many([param], [grad], [velocity], lr, momentum, weight_decay, nesterov)


def sgd_update_many(params, grads, velocities, lr, momentum, weight_decay, nesterov) -> None:
    """``sgd_update`` on each (param, grad, velocity): the parameters of one dtype share
    launches, sixteen to a launch. Arrays that overlap in memory (a parameter listed twice)
    would race in one launch: then each parameter has a launch of its own, in order, as
    separate calls would."""
    slots = [
        (param, contiguous(grad), velocity if momentum else None, param.size)
        for param, grad, velocity in zip(params, grads, velocities, strict=True)
        if param.size
    ]
    if len(slots) > 1 and not _disjoint(slots):
        for slot in slots:
            _launch([slot], lr, momentum, weight_decay, nesterov)
        return
    by_dtype: dict = {}
    for slot in slots:
        by_dtype.setdefault(slot[0].dtype, []).append(slot)
    for group in by_dtype.values():
        for start in range(0, len(group), PARAMS_PER_LAUNCH):
            _launch(group[start : start + PARAMS_PER_LAUNCH], lr, momentum, weight_decay, nesterov)


def _launch(slots, lr, momentum, weight_decay, nesterov) -> None:
    args = [lr, momentum, weight_decay, int(nesterov)]
    for slot in slots:
        args.extend(slot)
    for _ in range(PARAMS_PER_LAUNCH - len(slots)):
        args.extend(_EMPTY_SLOT)
    launch(
        get_kernel(SOURCE, "sgd_update", slots[0][0]),
        grid_stride_blocks(max(slot[3] for slot in slots), THREADS),
        THREADS,
        args,
    )


def _disjoint(slots) -> bool:
    """Whether no two arrays of ``slots`` share memory: one launch updates them all at once,
    which is the same as one after another only then."""
    ranges = sorted(
        (start, start + array.nbytes)
        for slot in slots
        for array in slot[:3]
        if array is not None
        for start in (address(array),)
    )
    return all(begin >= end for (_, end), (begin, _) in zip(ranges, ranges[1:], strict=False))
