"""Stochastic gradient descent with momentum, weight decay and learning-rate schedules."""

from __future__ import annotations

import math

from . import ops
from ._checks import check_flag, check_int, check_number
from ._device import array_module


class ConstantLR:
    """The base learning rate in every epoch."""

    def __call__(self, base_lr: float, epoch: int) -> float:
        return base_lr

    def __repr__(self):
        return "ConstantLR()"


class StepLR:
    """base_lr * gamma ** (epoch // step_size): divide the rate every ``step_size`` epochs."""

    def __init__(self, step_size: int, gamma: float = 0.1):
        self.step_size = check_int(step_size, "step_size", 1)
        self.gamma = check_number(gamma, "gamma", 0.0, low_open=True)

    def __call__(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)

    def __repr__(self):
        return f"StepLR(step_size={self.step_size}, gamma={self.gamma})"


class CosineLR:
    """Cosine annealing over ``total_epochs``: base_lr at epoch 0, falling towards min_lr,
    which it would reach at epoch total_epochs (PyTorch's CosineAnnealingLR with T_max =
    total_epochs): every epoch of the run still learns."""

    def __init__(self, total_epochs: int, min_lr: float = 0.0):
        self.total_epochs = check_int(total_epochs, "total_epochs", 1)
        self.min_lr = check_number(min_lr, "min_lr", 0.0)

    def __call__(self, base_lr: float, epoch: int) -> float:
        progress = min(epoch, self.total_epochs) / self.total_epochs
        return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1 + math.cos(math.pi * progress))

    def __repr__(self):
        return f"CosineLR(total_epochs={self.total_epochs}, min_lr={self.min_lr})"


class SGD:
    """SGD over a model's ``params``/``grads`` (PyTorch's formulation):

        g = grad + weight_decay * p
        v = momentum * v + g                        (when momentum > 0)
        g = g + momentum * v if nesterov else v
        p = p - lr * g

    ``schedule`` (ConstantLR, StepLR, CosineLR or any ``(base_lr, epoch) -> lr``) sets the
    rate at each ``set_epoch``; ``fit`` calls it at the start of every epoch.
    """

    def __init__(self, model, lr, momentum=0.0, weight_decay=0.0, nesterov=False, schedule=None):
        if not hasattr(model, "params") or not hasattr(model, "grads"):
            raise TypeError("model must be a gpucnn layer or Sequential")
        self.model = model
        self.base_lr = check_number(lr, "lr", 0.0, low_open=True)
        self.momentum = check_number(momentum, "momentum", 0.0, 1.0)
        self.weight_decay = check_number(weight_decay, "weight_decay", 0.0)
        nesterov = check_flag(nesterov, "nesterov")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        self.nesterov = nesterov
        self.schedule = ConstantLR() if schedule is None else schedule
        if not callable(self.schedule):
            raise TypeError("schedule must be callable as schedule(base_lr, epoch)")
        self.lr = self.base_lr
        self._velocity: dict[str, object] = {}

    def set_epoch(self, epoch: int) -> float:
        """Apply the schedule for ``epoch`` (0-based); returns the new learning rate."""
        lr = self.schedule(self.base_lr, epoch)
        try:  # a user's schedule: a negative, NaN or infinite rate would train silently wrong
            self.lr = check_number(lr, "the learning rate", 0.0)
        except (TypeError, ValueError) as error:
            raise type(error)(f"schedule {self.schedule!r} at epoch {epoch}: {error}") from None
        return self.lr

    def step(self) -> None:
        """Update every parameter in place from the gradients of the last backward."""
        params, grads = self.model.params, self.model.grads
        missing = sorted(set(params) - set(grads))
        if missing:
            raise RuntimeError(f"no gradient for {missing}: call model.backward() first")
        velocities = []
        for name, p in params.items():
            v = None
            if self.momentum:
                v = self._velocity.get(name)
                stale = v is None or v.shape != p.shape or v.dtype != p.dtype
                if stale or type(v) is not type(p):
                    # zeros make the first velocity the gradient itself (PyTorch's rule)
                    v = self._velocity[name] = array_module(p).zeros_like(p)
            velocities.append(v)
        ops.sgd_update_many(  # (on a GPU, a launch per sixteen parameters)
            list(params.values()),
            [grads[name] for name in params],
            velocities,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            nesterov=self.nesterov,
        )
