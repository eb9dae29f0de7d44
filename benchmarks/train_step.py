"""A whole training step (forward, softmax cross-entropy, backward, SGD with momentum) of
LeNet-5 at batch 256 and of a CIFAR-sized CNN at batch 128, against the same model in
PyTorch eager on the same device (TF32 off). Target (issue #5): at least 1.0x PyTorch.

Beside each step, two of its parts timed alone, for both libraries: the forward pass with the
loss, and the SGD update (one more backward is the rest). At these sizes a step is many small
launches, so the parts show where host time goes, e.g. whether a fused optimizer would pay.
On a GPU, "step (CUDA graph)" is fit's step (the running loss and accuracy included, one
launch more than "step") recorded once as a CUDA graph and replayed
(``fit(cuda_graph=True)``), and "(direct conv)" rows the steps with the direct convolution
kernels (GPUCNN_CONV_ALGORITHM=direct), each against PyTorch's eager step.
"""

from __future__ import annotations

import sys

import numpy as np

from gpucnn import ops
from gpucnn.losses import SoftmaxCrossEntropyLoss
from gpucnn.models import cifar_cnn, lenet5
from gpucnn.optim import SGD
from gpucnn.train import TrainStep

from .harness import Target, conv_algorithm, record

CASES = [("lenet5", 256, (1, 28, 28)), ("cifar-cnn", 128, (3, 32, 32))]


def run(target: Target, ceilings: dict) -> list[dict]:
    return [row for case in CASES for row in _case(target, *case)]


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

    def forward(x, y):
        return loss.forward(model.forward(x), y, check_targets=False)

    def step(x, y):
        forward(x, y)
        model.backward(loss.backward(), need_input_grad=False)  # as PyTorch: no input grad
        optimizer.step()

    velocities = {name: target.xp.zeros_like(p) for name, p in model.params.items()}

    def update_a_launch_per_parameter():  # SGD.step before session 31, for the A/B
        grads = model.grads
        for name, param in model.params.items():
            ops.sgd_update(
                param,
                grads[name],
                velocities[name],
                lr=optimizer.lr,
                momentum=optimizer.momentum,
                weight_decay=optimizer.weight_decay,
                nesterov=optimizer.nesterov,
            )

    ours = {
        "step": target.time(step, inputs),  # leaves gradients for the update timed alone
        "forward + loss": target.time(forward, inputs),
        "SGD update": target.time(optimizer.step),
        "SGD update (a launch per parameter)": target.time(update_a_launch_per_parameter),
    }
    if target.name == "gpu":
        ours.update(_gpu_variants(target, name, model, loss, optimizer, step, inputs))
    theirs = _torch(target, name, batch, shape) or {}
    theirs.setdefault("SGD update (a launch per parameter)", theirs.get("SGD update"))
    for part in ours:  # each variant of the step against PyTorch's one eager step
        theirs.setdefault(part, theirs.get("step"))
    return [
        record("train_step", f"{name} batch={batch}", part, timing, torch_timing=theirs.get(part))
        for part, timing in ours.items()
    ]


def _gpu_variants(target: Target, name: str, model, loss, optimizer, step, inputs) -> dict:
    """The step recorded as a CUDA graph (gpucnn.train.TrainStep: each call copies its batch
    in and replays), and both steps with the direct convolution kernels
    (GPUCNN_CONV_ALGORITHM=direct). Graphs are timed on their stream, which the CUDA events
    then bracket. (Not yet run on a GPU when written: a failure is reported, the other rows
    kept.)"""
    rows = {}
    for algorithm, suffix in ((None, ""), ("direct", ", direct conv")):
        with conv_algorithm(algorithm):
            if algorithm is not None:
                rows[f"step ({algorithm} conv)"] = target.time(step, inputs)
            try:
                graphed = TrainStep(model, loss, optimizer, cuda_graph=True, check_targets=False)
                with graphed.ordered():
                    rows[f"step (CUDA graph{suffix})"] = target.time(graphed, inputs)
            except Exception as exc:  # noqa: BLE001 - reported, not hidden
                print(
                    f"train_step {name}: the CUDA graph step{suffix} failed: {exc!r}",
                    file=sys.stderr,
                )
    return rows


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

    return {
        "step": target.torch_time(step, inputs),
        "forward + loss": target.torch_time(lambda x, y: criterion(model(x), y), inputs),
        "SGD update": target.torch_time(optimizer.step),
    }
