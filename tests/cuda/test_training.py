"""A whole training run on the CUDA path follows the NumPy path's loss curve."""

from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from gpucnn.data import load_digits
from gpucnn.losses import SoftmaxCrossEntropyLoss
from gpucnn.models import digits_cnn
from gpucnn.optim import SGD
from gpucnn.train import fit


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_fit_follows_the_cpu_loss_curve(backend, dropout):
    # The dropout masks are a function of (seed, step, element), so they match too.
    x, y = load_digits()
    x, y = x[:32], y[:32]

    def train():
        model = digits_cnn(dropout=dropout, seed=0)
        history = fit(
            model,
            SoftmaxCrossEntropyLoss(),
            SGD(model, 0.05, momentum=0.9),
            x,
            y,
            epochs=2,
            batch_size=16,
            seed=0,
            progress=False,
        )
        return history.loss, {k: gpucnn.to_numpy(v) for k, v in model.params.items()}

    reference_losses, reference_params = train()
    losses, params = backend.run(train)
    assert np.allclose(losses, reference_losses, rtol=1e-5, atol=0)
    for name, value in reference_params.items():
        assert np.allclose(params[name], value, rtol=1e-4, atol=1e-6), name


def test_labels_out_of_range_are_caught_once_before_training(backend):
    x, y = load_digits()
    y = y[:32].copy()
    y[5] = 10

    def train():
        model = digits_cnn(seed=0)
        fit(model, SoftmaxCrossEntropyLoss(), SGD(model, 0.05), x[:32], y, epochs=1, progress=False)

    with pytest.raises(ValueError, match=r"fit: class labels in \[0, 10\] but the model has 10"):
        backend.run(train)
