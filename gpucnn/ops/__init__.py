"""Functional ops: one forward and one backward function per op.

Each validates its arguments once and runs the NumPy implementation for NumPy arrays, or the
CUDA kernels for CuPy arrays (and for NumPy arrays on the ``emulator`` device).
"""

from .activation import (
    dropout_backward,
    dropout_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from .conv import conv2d_backward, conv2d_forward
from .dense import dense_backward, dense_forward
from .loss import (
    accumulate_scores,
    hinge_backward,
    hinge_forward,
    mse_backward,
    mse_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from .optim import sgd_update, sgd_update_many
from .pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool2d_backward,
    global_avg_pool2d_forward,
    l2_pool2d_backward,
    l2_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)

__all__ = [
    "accumulate_scores",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "conv2d_backward",
    "conv2d_forward",
    "dense_backward",
    "dense_forward",
    "dropout_backward",
    "dropout_forward",
    "global_avg_pool2d_backward",
    "global_avg_pool2d_forward",
    "hinge_backward",
    "hinge_forward",
    "l2_pool2d_backward",
    "l2_pool2d_forward",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "mse_backward",
    "mse_forward",
    "relu_backward",
    "relu_forward",
    "sgd_update",
    "sgd_update_many",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_forward",
    "tanh_backward",
    "tanh_forward",
]
