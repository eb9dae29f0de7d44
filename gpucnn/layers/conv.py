"""Convolution and pooling layers: thin state-keeping wrappers over ``gpucnn.ops``."""

from __future__ import annotations

import numpy as np

from .. import ops
from .._checks import check_flag, check_int
from .._shapes import conv_window, pool_window
from .base import Layer, WeightedLayer


class Conv2D(WeightedLayer):
    """2-D convolution: (N, in_channels, H, W) -> (N, out_channels, P, Q).

    ``init`` is ``"he"`` (default, for ReLU networks) or ``"glorot"``; the bias starts at 0.
    ``seed`` (int or numpy Generator) makes the initial weights reproducible.
    """

    forward_op = staticmethod(ops.conv2d_forward)
    backward_op = staticmethod(ops.conv2d_backward)

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        bias=True,
        *,
        init="he",
        seed=None,
        dtype=np.float32,
    ):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self._window = window = conv_window(kernel_size, stride, padding, dilation)
        self.kernel_size, self.stride = window.size, window.stride
        self.padding, self.dilation = window.padding, window.dilation
        r, s = window.size
        self._create_params(
            (self.out_channels, self.in_channels, r, s),
            self.in_channels * r * s,
            self.out_channels * r * s,
            bias,
            init,
            seed,
            dtype,
        )

    def _geometry(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation)

    def output_shape(self, input_shape):
        c, height, width = _chw(input_shape, type(self).__name__)
        if c != self.in_channels:
            raise ValueError(f"Conv2D expects {self.in_channels} input channels, got {c}")
        out_h, out_w = self._window.output_shape(height, width)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"Conv2D: kernel larger than the padded input {input_shape}")
        return (self.out_channels, out_h, out_w)

    def __repr__(self):
        options = _options(
            stride=(self.stride, 1),
            padding=(self.padding, 0),
            dilation=(self.dilation, 1),
            bias=("bias" in self.params, True),
        )
        return (
            f"Conv2D({self.in_channels}, {self.out_channels}, "
            f"kernel_size={_compact(self.kernel_size)}{options})"
        )


def _compact(value):
    """(3, 3) -> 3; anything else unchanged (for short reprs)."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return value[0]
    return value


def _options(**values_and_defaults) -> str:
    """ ", name=value" for each option that differs from its default."""
    return "".join(
        f", {name}={_compact(value)}"
        for name, (value, default) in values_and_defaults.items()
        if _compact(value) != default
    )


def _chw(input_shape, layer: str):
    if len(input_shape) != 3:
        raise ValueError(f"{layer} expects (C, H, W) inputs, got shape {tuple(input_shape)}")
    return input_shape


class _Pool2D(Layer):
    """Shared constructor and shape logic of the windowed pooling layers."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        self._window = pool_window(kernel_size, stride, padding, ceil_mode)
        self.kernel_size, self.stride = self._window.size, self._window.stride
        self.padding, self.ceil_mode = self._window.padding, self._window.ceil_mode

    def _geometry(self):
        return dict(
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            ceil_mode=self.ceil_mode,
        )

    def output_shape(self, input_shape):
        c, height, width = _chw(input_shape, type(self).__name__)
        out_h, out_w = self._window.output_shape(height, width)
        if out_h < 1 or out_w < 1:
            raise ValueError(f"{type(self).__name__}: window larger than the input {input_shape}")
        return (c, out_h, out_w)

    def __repr__(self):
        options = _options(
            stride=(self.stride, _compact(self.kernel_size)),
            padding=(self.padding, 0),
            ceil_mode=(self.ceil_mode, False),
        )
        return f"{type(self).__name__}({_compact(self.kernel_size)}{options})"


class MaxPool2D(_Pool2D):
    """Max pooling; remembers each window's argmax and routes the gradient through it."""

    graph_safe = True

    def forward(self, x):
        self._check_input(x)
        y, argmax = ops.max_pool2d_forward(x, **self._geometry())
        self._save(argmax, x.shape, y.dtype)
        return y

    def backward(self, grad_out, need_input_grad: bool = True):
        self._check_input(grad_out, "grad_out")
        argmax, x_shape, dtype = self._restore()
        self._check_grad_like(grad_out, argmax.shape, dtype)
        if not need_input_grad:
            return None
        return ops.max_pool2d_backward(grad_out, argmax, x_shape, **self._geometry())


class AvgPool2D(_Pool2D):
    """Average pooling; ``count_include_pad`` as in PyTorch (default True)."""

    graph_safe = True

    def __init__(
        self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
    ):
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = check_flag(count_include_pad, "count_include_pad")

    def _geometry(self):
        return dict(super()._geometry(), count_include_pad=self.count_include_pad)

    def forward(self, x):
        self._check_input(x)
        y = ops.avg_pool2d_forward(x, **self._geometry())
        self._save(x.shape, y.shape, y.dtype)
        return y

    def backward(self, grad_out, need_input_grad: bool = True):
        self._check_input(grad_out, "grad_out")
        x_shape, y_shape, dtype = self._restore()
        self._check_grad_like(grad_out, y_shape, dtype)
        if not need_input_grad:
            return None
        return ops.avg_pool2d_backward(grad_out, x_shape, **self._geometry())


class L2Pool2D(_Pool2D):
    """L2 pooling: the root of the sum of squares over each window."""

    graph_safe = True

    def forward(self, x):
        self._check_input(x)
        y = ops.l2_pool2d_forward(x, **self._geometry())
        self._save(x, y)
        return y

    def backward(self, grad_out, need_input_grad: bool = True):
        self._check_input(grad_out, "grad_out")
        x, y = self._restore()
        if not need_input_grad:
            return None
        return ops.l2_pool2d_backward(grad_out, x, y, **self._geometry())


class GlobalAvgPool2D(Layer):
    """Mean of each channel's plane: (N, C, H, W) -> (N, C)."""

    graph_safe = True

    def forward(self, x):
        self._check_input(x)
        y = ops.global_avg_pool2d_forward(x)
        self._save(x.shape, y.shape, y.dtype)
        return y

    def backward(self, grad_out, need_input_grad: bool = True):
        self._check_input(grad_out, "grad_out")
        x_shape, y_shape, dtype = self._restore()
        self._check_grad_like(grad_out, y_shape, dtype)
        if not need_input_grad:
            return None
        return ops.global_avg_pool2d_backward(grad_out, x_shape)

    def output_shape(self, input_shape):
        c, _, _ = _chw(input_shape, "GlobalAvgPool2D")
        return (c,)
