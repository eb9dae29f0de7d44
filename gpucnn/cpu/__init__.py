"""NumPy implementations of the ops that have CUDA kernels: the reference semantics."""

from . import activation, conv, dense, hopfield, loss, optim, pool
from ._malloc import tune_malloc

tune_malloc()  # the NumPy path allocates per op: keep glibc from returning it each time

__all__ = ["activation", "conv", "dense", "hopfield", "loss", "optim", "pool"]
