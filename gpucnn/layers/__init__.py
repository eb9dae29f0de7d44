"""Layers with one API: ``forward(x)``, ``backward(grad_out)``, ``params``, ``grads``,
``train()`` / ``eval()``, ``to(device)``."""

from .base import Layer
from .conv import AvgPool2D, Conv2D, GlobalAvgPool2D, L2Pool2D, MaxPool2D
from .core import Dense, Dropout, Flatten, ReLU, Sigmoid, Tanh
from .sequential import Sequential

__all__ = [
    "AvgPool2D",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "GlobalAvgPool2D",
    "L2Pool2D",
    "Layer",
    "MaxPool2D",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
]
