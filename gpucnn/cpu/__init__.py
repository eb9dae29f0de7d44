"""NumPy implementations of the ops that have CUDA kernels: the reference semantics."""

from . import conv, hopfield, optim, pool

__all__ = ["conv", "hopfield", "optim", "pool"]
