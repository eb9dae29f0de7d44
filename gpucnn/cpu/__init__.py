"""NumPy implementations of the ops that have CUDA kernels: the reference semantics."""

from . import conv, hopfield, pool

__all__ = ["conv", "hopfield", "pool"]
