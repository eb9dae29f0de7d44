"""The optimiser's update as an op: validated once, then NumPy or the CUDA kernel."""

from __future__ import annotations

from .._checks import (
    check_array,
    check_finite_in,
    check_flag,
    check_float_array,
    check_number,
    check_same_device,
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
    rates = _check_rates(lr, momentum, weight_decay, nesterov)
    _check_parameter(param, grad, velocity, rates[1], ("param", "grad", "velocity"))
    _check_rates_fit(rates, param.dtype)
    backend(param).optim.sgd_update(param, grad, velocity, *rates)


def sgd_update_many(
    params, grads, velocities=None, *, lr, momentum=0.0, weight_decay=0.0, nesterov=False
):
    """``sgd_update`` on every ``(params[i], grads[i], velocities[i])`` with the same rates:
    the same bits as one call per parameter in order, in few launches on the CUDA path (sixteen
    parameters to a launch: a small network's whole update is one launch, not one per
    parameter). ``velocities`` may be None when momentum is 0. Every array must be on one
    device; nothing is updated unless every entry is valid."""
    rates = _check_rates(lr, momentum, weight_decay, nesterov)
    params, grads = _check_list(params, "params"), _check_list(grads, "grads")
    if velocities is None:
        velocities = [None] * len(params)
    velocities = _check_list(velocities, "velocities")
    if not len(params) == len(grads) == len(velocities):
        raise ValueError(
            f"params, grads and velocities must have one entry per parameter, got "
            f"{len(params)}, {len(grads)} and {len(velocities)}"
        )
    if not params:
        return
    dtypes = set()
    for i, (param, grad, velocity) in enumerate(zip(params, grads, velocities, strict=True)):
        names = (f"params[{i}]", f"grads[{i}]", f"velocities[{i}]")
        _check_parameter(param, grad, velocity, rates[1], names)
        if i:  # (the dtype may differ from parameter to parameter, the device may not)
            check_same_device(params[0], "params[0]", param, names[0])
        if param.dtype not in dtypes:
            _check_rates_fit(rates, param.dtype)
            dtypes.add(param.dtype)
    backend(params[0]).optim.sgd_update_many(params, grads, velocities, *rates)


def _check_rates(lr, momentum, weight_decay, nesterov) -> tuple[float, float, float, bool]:
    return (
        check_number(lr, "lr", 0.0),
        check_number(momentum, "momentum", 0.0, 1.0),
        check_number(weight_decay, "weight_decay", 0.0),
        check_flag(nesterov, "nesterov"),
    )


def _check_list(items, name: str) -> list:
    if isinstance(items, (list, tuple)):
        return list(items)
    raise TypeError(f"{name} must be a list or tuple of arrays, got {type(items).__name__}")


def _check_parameter(param, grad, velocity, momentum, names) -> None:
    param_name, grad_name, velocity_name = names
    check_float_array(param, param_name)
    if grad is None:  # (check_same_kind passes over None: it stands for an absent array)
        check_array(grad, grad_name)
    check_same_kind(param, param_name, **{grad_name: grad, velocity_name: velocity})
    check_shape(grad, grad_name, param.shape)
    if momentum:
        if velocity is None:
            raise ValueError(f"{velocity_name} is needed when momentum > 0")
        check_shape(velocity, velocity_name, param.shape)
    for name, array in ((param_name, param), (velocity_name, velocity)):
        if array is not None and not array.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous: it is updated in place")


def _check_rates_fit(rates, dtype) -> None:
    """The rates, rounded to ``dtype`` by the update, stay finite there."""
    lr, _, weight_decay, _ = rates
    check_finite_in(lr, "lr", dtype)
    check_finite_in(weight_decay, "weight_decay", dtype)
