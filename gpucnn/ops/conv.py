"""2-D convolution: the public functions. They validate once, then hand off to the NumPy
implementation (``gpucnn.cpu.conv``) or the CUDA one (``gpucnn.cuda.conv``).

Layout NCHW; weight (K, C, R, S); cross-correlation like every framework.
"""

from __future__ import annotations

from .._checks import check_flag, check_float_array, check_same_kind, check_shape
from .._shapes import Window, conv_window
from ._dispatch import backend

ADDRESSABLE_BYTES = 2**63  # NumPy's (and CuPy's) ceiling on one array's size in bytes


def _validate(x, w, b, stride, padding, dilation) -> Window:
    check_float_array(x, "x", ndim=4)
    check_float_array(w, "w", ndim=4)
    check_same_kind(x, "x", w=w, b=b)
    n, c, height, width = x.shape
    k, wc, r, s = w.shape
    if wc != c:
        raise ValueError(f"w has {wc} input channels (shape {tuple(w.shape)}) but x has {c}")
    if min(c, height, width) < 1:  # an empty image: nothing a gradient could flow to
        raise ValueError(
            f"x must have at least one channel, row and column, got shape {tuple(x.shape)}"
        )
    if min(k, r, s) < 1:
        raise ValueError(f"w must have positive K, R and S, got shape {tuple(w.shape)}")
    if b is not None:
        check_float_array(b, "b", ndim=1)
        check_shape(b, "b", (k,))
    window = conv_window((r, s), stride, padding, dilation)
    padded_hw = []
    for axis, (name, length) in enumerate((("height", height), ("width", width))):
        padded = length + 2 * window.padding[axis]
        if window.extent(axis) > padded:
            raise ValueError(
                f"w's kernel {name} spans {window.extent(axis)} pixels "
                f"(dilation * (size - 1) + 1) but the padded input {name} is only {padded}"
            )
        padded_hw.append(padded)
    # A padding no memory could hold is named here, not left to NumPy's "array is too big".
    out_hw = window.output_shape(height, width)
    largest = max(n * c * padded_hw[0] * padded_hw[1], n * k * out_hw[0] * out_hw[1])
    if largest * x.itemsize >= ADDRESSABLE_BYTES:
        raise ValueError(
            f"padding={window.padding} makes a padded input of {padded_hw[0]}x{padded_hw[1]} "
            f"and an output of {out_hw[0]}x{out_hw[1]} per channel: past any memory"
        )
    return window


def conv2d_forward(x, w, b=None, stride=1, padding=0, dilation=1):
    """y = conv(x, w) + b: x (N, C, H, W), w (K, C, R, S), b (K,) or None -> y (N, K, P, Q).

    P = floor((H + 2*padding - dilation*(R - 1) - 1) / stride) + 1, likewise Q.
    stride, padding and dilation are ints or (vertical, horizontal) pairs.
    """
    window = _validate(x, w, b, stride, padding, dilation)
    return backend(x).conv.conv2d_forward(x, w, b, window)


def conv2d_backward(
    dy,
    x,
    w,
    stride=1,
    padding=0,
    dilation=1,
    with_bias=True,
    need_input_grad=True,
    need_weight_grad=True,
):
    """Gradients of ``conv2d_forward``: returns (dx, dw, db); db is None unless with_bias,
    dx None unless need_input_grad (a first layer does not need it), dw None unless
    need_weight_grad.

    Correct also when (H + 2p - d(R-1) - 1) is not divisible by the stride: the rows and
    columns no window reaches get a zero gradient.
    """
    window = _validate(x, w, None, stride, padding, dilation)
    check_float_array(dy, "dy", ndim=4)
    check_same_kind(x, "x", dy=dy)
    n, _, height, width = x.shape
    check_shape(dy, "dy", (n, w.shape[0], *window.output_shape(height, width)))
    with_bias = check_flag(with_bias, "with_bias")
    need_input_grad = check_flag(need_input_grad, "need_input_grad")
    need_weight_grad = check_flag(need_weight_grad, "need_weight_grad")
    return backend(x).conv.conv2d_backward(
        dy, x, w, window, with_bias, need_input_grad, need_weight_grad
    )
