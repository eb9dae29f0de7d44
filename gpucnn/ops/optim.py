"""The optimiser's update as an op: validated once, then NumPy or the CUDA kernel."""

from __future__ import annotations

from .._checks import (
    check_finite_in,
    check_flag,
    check_float_array,
    check_number,
    check_same_kind,
    check_shape,
)
from ._dispatch import backend


def sgd_update(param, grad, velocity=None, *, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """One SGD step on ``param``, in place (PyTorch's formulation)::

        g = grad + weight_decay * param
        velocity = momentum * velocity + g                  (when momentum > 0)
        g = g + momentum * velocity if nesterov else velocity
        param -= lr * g

    ``velocity`` (updated in place) is needed when momentum > 0; start it at zeros, which
    makes the first step's velocity ``g``, as in PyTorch. The rates are rounded to param's
    dtype, so each must be finite there: lr and weight_decay >= 0, momentum in [0, 1). The
    same bits on the NumPy path and the CUDA kernel.
    """
    lr = check_number(lr, "lr", 0.0)
    momentum = check_number(momentum, "momentum", 0.0, 1.0)
    weight_decay = check_number(weight_decay, "weight_decay", 0.0)
    nesterov = check_flag(nesterov, "nesterov")
    check_float_array(param, "param")
    check_finite_in(lr, "lr", param.dtype)
    check_finite_in(weight_decay, "weight_decay", param.dtype)
    check_float_array(grad, "grad")
    check_same_kind(param, "param", grad=grad, velocity=velocity)
    check_shape(grad, "grad", param.shape)
    if momentum:
        if velocity is None:
            raise ValueError("velocity is needed when momentum > 0")
        check_shape(velocity, "velocity", param.shape)
    for name, array in (("param", param), ("velocity", velocity)):
        if array is not None and not array.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous: it is updated in place")
    backend(param).optim.sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov)
