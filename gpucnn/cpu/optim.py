"""The SGD update in NumPy: the reference the CUDA kernel is judged against.

In place, PyTorch's formulation, each product and sum rounded on its own (the kernel avoids
fused multiply-adds to match). Arguments arrive validated (gpucnn.ops.optim).
"""

from __future__ import annotations


def sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov) -> None:
    dtype = param.dtype.type  # the rates rounded to the parameters' precision, as the kernel's
    g = grad
    if weight_decay:
        g = g + dtype(weight_decay) * param
    if momentum:
        velocity *= dtype(momentum)
        velocity += g
        g = g + dtype(momentum) * velocity if nesterov else velocity
    param -= dtype(lr) * g


def sgd_update_many(params, grads, velocities, lr, momentum, weight_decay, nesterov) -> None:
    for param, grad, velocity in zip(params, grads, velocities, strict=True):
        sgd_update(param, grad, velocity, lr, momentum, weight_decay, nesterov)
