"""Dense, activation, dropout and flatten layers."""

from __future__ import annotations

import math

import numpy as np

from .. import ops
from .._checks import check_int, check_probability, check_seed, make_rng
from .._device import to_device, to_numpy
from .base import Layer, WeightedLayer


class Dense(WeightedLayer):
    """Fully connected: (N, in_features) -> (N, out_features), y = x W^T + b.

    ``init`` is ``"he"`` (default) or ``"glorot"``; the bias starts at 0.
    """

    forward_op = staticmethod(ops.dense_forward)
    backward_op = staticmethod(ops.dense_backward)

    def __init__(
        self, in_features, out_features, bias=True, *, init="he", seed=None, dtype=np.float32
    ):
        super().__init__()
        self.in_features = check_int(in_features, "in_features", 1)
        self.out_features = check_int(out_features, "out_features", 1)
        self._create_params(
            (self.out_features, self.in_features),
            self.in_features,
            self.out_features,
            bias,
            init,
            seed,
            dtype,
        )

    def output_shape(self, input_shape):
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(
                f"Dense expects ({self.in_features},) inputs, got {tuple(input_shape)}"
                " (add a Flatten before it?)"
            )
        return (self.out_features,)

    def __repr__(self):
        bias = "" if "bias" in self.params else ", bias=False"
        return f"Dense({self.in_features}, {self.out_features}{bias})"


class _Activation(Layer):
    """y = f(x); the backward needs only what ``_saved_for_backward`` keeps."""

    graph_safe = True

    _forward = staticmethod(ops.relu_forward)
    _backward = staticmethod(ops.relu_backward)
    _saves_output = False  # sigmoid and tanh differentiate from y, ReLU from x

    def forward(self, x):
        self._check_input(x)
        y = self._forward(x)
        self._save(y if self._saves_output else x)
        return y

    def backward(self, grad_out, need_input_grad: bool = True):
        self._check_input(grad_out, "grad_out")
        (saved,) = self._restore()
        return self._backward(grad_out, saved) if need_input_grad else None


class ReLU(_Activation):
    pass


class Sigmoid(_Activation):
    _forward = staticmethod(ops.sigmoid_forward)
    _backward = staticmethod(ops.sigmoid_backward)
    _saves_output = True


class Tanh(_Activation):
    _forward = staticmethod(ops.tanh_forward)
    _backward = staticmethod(ops.tanh_backward)
    _saves_output = True


class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the
    rest by 1/(1-p); in eval mode, the identity.

    The mask is a function of (seed, step, element), the step counting training forwards, so
    a run is reproducible and NumPy and the GPU draw the same masks. The step lives in a
    counter on the layer's device that each training forward advances there, so a CUDA graph
    that replays the forward draws a new mask each time.
    """

    graph_safe = True

    def __init__(self, p=0.5, *, seed=None):
        super().__init__()
        self.p = check_probability(p, "p")
        if seed is None or isinstance(seed, np.random.Generator):  # draw one
            self.seed = int(make_rng(seed).integers(2**63))
        else:
            self.seed = check_seed(seed)
        self._counter = to_device(np.zeros(2, np.uint64), self.device)  # [step, 0]

    @property
    def step(self) -> int:
        """Training forwards so far (on a GPU, reading it waits for them)."""
        return int(to_numpy(self._counter)[0])

    def to(self, device: str):
        super().to(device)
        self._counter = to_device(self._counter, self.device)
        return self

    def forward(self, x):
        self._check_input(x)
        if not self.training or self.p == 0.0:
            self._save(None)
            return x
        y, mask = ops.dropout_forward(x, self.p, self.seed, self._counter)
        self._save(mask)
        return y

    def backward(self, grad_out, need_input_grad: bool = True):
        self._check_input(grad_out, "grad_out")
        (mask,) = self._restore()
        if not need_input_grad:
            return None
        return grad_out if mask is None else ops.dropout_backward(grad_out, mask)

    def __repr__(self):
        return f"Dropout(p={self.p})"


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

    graph_safe = True

    def forward(self, x):
        self._check_input(x)
        if x.ndim < 1:
            raise ValueError("Flatten needs a batch axis")
        y = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # not -1: N may be 0
        self._save(x.shape, y.shape, y.dtype)
        return y

    def backward(self, grad_out, need_input_grad: bool = True):
        self._check_input(grad_out, "grad_out")
        shape, y_shape, dtype = self._restore()
        self._check_grad_like(grad_out, y_shape, dtype)
        return grad_out.reshape(shape) if need_input_grad else None

    def output_shape(self, input_shape):
        return (math.prod(input_shape),)
