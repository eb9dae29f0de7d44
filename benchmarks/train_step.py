"""A whole training step (forward, softmax cross-entropy, backward, SGD with momentum) of
LeNet-5 at batch 256 and of a CIFAR-sized CNN at batch 128, against the same model in
PyTorch eager on the same device (TF32 off). Target (issue #5): at least 1.0x PyTorch.
"""

from __future__ import annotations

import numpy as np

from gpucnn.losses import SoftmaxCrossEntropyLoss
from gpucnn.models import cifar_cnn, lenet5
from gpucnn.optim import SGD

from .harness import Target, record

CASES = [("lenet5", 256, (1, 28, 28)), ("cifar-cnn", 128, (3, 32, 32))]


def run(target: Target, ceilings: dict) -> list[dict]:
    return [_case(target, *case) for case in CASES]


def _case(target: Target, name: str, batch: int, shape) -> dict:
    if target.name == "cpu":
        batch //= 4  # the NumPy path: the same model at a quarter of the batch
    model = lenet5(shape[0], 10, shape[1]) if name == "lenet5" else cifar_cnn(shape[0])
    optimizer, loss = SGD(model, 0.01, momentum=0.9), SoftmaxCrossEntropyLoss()
    inputs = [
        (
            target.random((batch, *shape), seed=i),
            target.put(np.random.default_rng(i).integers(0, 10, batch)),
        )
        for i in range(3)
    ]

    def step(x, y):
        pred = model.forward(x)
        loss.forward(pred, y, check_targets=False)
        model.backward(loss.backward())
        optimizer.step()

    return record(
        "train_step",
        f"{name} batch={batch}",
        "step",
        target.time(step, inputs),
        torch_timing=_torch(target, name, batch, shape),
    )


def _torch(target: Target, name: str, batch: int, shape):
    found = target.torch()
    if found is None:
        return None
    torch, device = found
    nn = torch.nn
    c = shape[0]
    if name == "lenet5":
        layers = [
            nn.Conv2d(c, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(400, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        ]
    else:
        layers = [
            nn.Conv2d(c, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4096, 256),
            nn.ReLU(),
            nn.Linear(256, 10),
        ]
    model = nn.Sequential(*layers).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    inputs = [
        (
            torch.randn((batch, *shape), generator=generator).to(device),
            torch.randint(0, 10, (batch,), generator=generator).to(device),
        )
        for _ in range(3)
    ]

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        criterion(model(x), y).backward()
        optimizer.step()

    return target.torch_time(step, inputs)
