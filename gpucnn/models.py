"""Ready-made models. Each takes ``seed`` so that its initial weights are reproducible."""

from __future__ import annotations

import numpy as np

from ._checks import check_int, make_rng
from .layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU, Sequential


def lenet5(
    in_channels: int = 1, num_classes: int = 10, input_size: int = 28, *, seed=0, dtype=np.float32
) -> Sequential:
    """LeNet-5 (LeCun et al., 1998): conv 6@5x5, pool, conv 16@5x5, pool, 120, 84, classes,
    with ReLU and max pooling in place of the original's scaled tanh and trainable
    subsampling. ``input_size`` 32 is the original; 28 (MNIST) pads the first convolution by 2
    so the feature maps match the original's."""
    input_size = check_int(input_size, "input_size", 1)
    if input_size not in (28, 32):
        raise ValueError(f"lenet5 takes 28x28 or 32x32 inputs, got input_size={input_size}")
    num_classes = check_int(num_classes, "num_classes", 1)
    rng = make_rng(seed)
    return Sequential(
        [
            Conv2D(in_channels, 6, 5, padding=2 if input_size == 28 else 0, seed=rng, dtype=dtype),
            ReLU(),
            MaxPool2D(2),
            Conv2D(6, 16, 5, seed=rng, dtype=dtype),
            ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(16 * 5 * 5, 120, seed=rng, dtype=dtype),
            ReLU(),
            Dense(120, 84, seed=rng, dtype=dtype),
            ReLU(),
            Dense(84, num_classes, init="glorot", seed=rng, dtype=dtype),
        ]
    )


def digits_cnn(
    num_classes: int = 10, *, dropout: float = 0.25, seed=0, dtype=np.float32
) -> Sequential:
    """A small CNN for 8x8 digits: two 3x3 convolutions (16 and 32 channels), 2x2 max
    pooling to 4x4, a 64-unit dense layer with dropout, then the classes."""
    num_classes = check_int(num_classes, "num_classes", 1)
    rng = make_rng(seed)
    return Sequential(
        [
            Conv2D(1, 16, 3, padding=1, seed=rng, dtype=dtype),
            ReLU(),
            Conv2D(16, 32, 3, padding=1, seed=rng, dtype=dtype),
            ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(32 * 4 * 4, 64, seed=rng, dtype=dtype),
            ReLU(),
            Dropout(dropout, seed=rng),
            Dense(64, num_classes, init="glorot", seed=rng, dtype=dtype),
        ]
    )


def cifar_cnn(
    in_channels: int = 3, num_classes: int = 10, *, seed=0, dtype=np.float32
) -> Sequential:
    """A CIFAR-sized CNN for 32x32 images: two blocks of two 3x3 convolutions (32 then 64
    channels) each followed by 2x2 max pooling, then a 256-unit dense layer and the classes."""
    rng = make_rng(seed)
    return Sequential(
        [
            Conv2D(in_channels, 32, 3, padding=1, seed=rng, dtype=dtype),
            ReLU(),
            Conv2D(32, 32, 3, padding=1, seed=rng, dtype=dtype),
            ReLU(),
            MaxPool2D(2),
            Conv2D(32, 64, 3, padding=1, seed=rng, dtype=dtype),
            ReLU(),
            Conv2D(64, 64, 3, padding=1, seed=rng, dtype=dtype),
            ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(64 * 8 * 8, 256, seed=rng, dtype=dtype),
            ReLU(),
            Dense(256, num_classes, init="glorot", seed=rng, dtype=dtype),
        ]
    )


MODELS = {"lenet5": lenet5, "digits-cnn": digits_cnn, "cifar-cnn": cifar_cnn}
