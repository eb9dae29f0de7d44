"""Convolution: forward, backward-data and backward-filter on the layers of LeNet-5 (batch
256), CIFAR ResNet-20 and the training-step benchmark's CIFAR CNN (batch 128), and the 3x3
layers of ResNet-50 and VGG-16 (batch 32).

Each direction costs 2 N K C R S P Q flops; the result is given in TFLOP/s, as a fraction of
the float32 matrix-product rate measured in the same run, and against cuDNN through PyTorch
(TF32 off, benchmark mode) on the same shapes. Targets (issue #4): at least 0.7x cuDNN on the
ResNet-50/VGG layers, at least 1.0x on LeNet and CIFAR. The plain rows are what a user gets
(GPUCNN_CONV_ALGORITHM, "auto" by default); on 3x3 stride-1 layers a "(gemm)" or
"(winograd)" row times the algorithm that was not picked, and "(winograd4)" F(4x4, 3x3);
"(direct)" rows time the direct kernels in each direction where they apply and "auto" did
not pick them, and a "backward-data (gemm)" row the GEMM where "auto" took the direct
kernel's phases (strided layers of few channels).
"""

from __future__ import annotations

from gpucnn import ops
from gpucnn._shapes import conv_window
from gpucnn.cuda.conv import (
    PER_TAP_FILTER_TAPS,
    chosen_direct_plan,
    direct_filter_plan,
    direct_phase_plan,
    direct_plan,
    takes_direct_phases,
    winograd_tile,
)
from gpucnn.cuda.conv import conv_algorithm as algorithm_in_use

from .harness import Target, conv_algorithm, record

# name, batch, (C, H, W), (K, R, S, stride, padding)
LAYERS = [
    ("lenet5 conv1", 256, (1, 28, 28), (6, 5, 5, 1, 2)),
    ("lenet5 conv2", 256, (6, 14, 14), (16, 5, 5, 1, 0)),
    ("resnet20 16@32", 128, (16, 32, 32), (16, 3, 3, 1, 1)),
    # the first layer: "auto" gives its backward-data (16 -> 3 channels) the direct kernel,
    # a direction of more input channels than any the rule was measured on
    ("resnet20 3->16@32", 128, (3, 32, 32), (16, 3, 3, 1, 1)),
    ("resnet20 32@16 s2", 128, (16, 32, 32), (32, 3, 3, 2, 1)),
    ("resnet20 32@16", 128, (32, 16, 16), (32, 3, 3, 1, 1)),
    # the second downsampling layer (its backward-data by the direct kernel's phases)
    ("resnet20 64@8 s2", 128, (32, 16, 16), (64, 3, 3, 2, 1)),
    ("resnet20 64@8", 128, (64, 8, 8), (64, 3, 3, 1, 1)),
    # the training-step benchmark's CIFAR CNN: its two largest layers (2.4 GFLOP each); the
    # second sits between the sizes "auto"'s Winograd rule was measured on
    ("cifar-cnn 32@32", 128, (32, 32, 32), (32, 3, 3, 1, 1)),
    ("cifar-cnn 64@16", 128, (64, 16, 16), (64, 3, 3, 1, 1)),
    ("resnet50 64@56", 32, (64, 56, 56), (64, 3, 3, 1, 1)),
    ("resnet50 128@28", 32, (128, 28, 28), (128, 3, 3, 1, 1)),
    ("resnet50 256@14", 32, (256, 14, 14), (256, 3, 3, 1, 1)),
    ("resnet50 512@7", 32, (512, 7, 7), (512, 3, 3, 1, 1)),
    ("vgg16 64@224", 32, (64, 224, 224), (64, 3, 3, 1, 1)),
    ("vgg16 128@112", 32, (128, 112, 112), (128, 3, 3, 1, 1)),
    ("vgg16 256@56", 32, (256, 56, 56), (256, 3, 3, 1, 1)),
    ("vgg16 512@28", 32, (512, 28, 28), (512, 3, 3, 1, 1)),
    ("vgg16 512@14", 32, (512, 14, 14), (512, 3, 3, 1, 1)),
]
QUICK = ("lenet5 conv2", "resnet20 16@32", "resnet50 128@28", "vgg16 256@56")
INPUT_SETS = 3  # rotated so that no run finds its inputs in L2


def layers(target: Target):
    if target.name == "cpu":  # the NumPy path: CIFAR-sized layers at most
        return [layer for layer in LAYERS if layer[0].startswith(("lenet", "resnet20"))][:3]
    return [layer for layer in LAYERS if not target.quick or layer[0] in QUICK]


def run(target: Target, ceilings: dict) -> list[dict]:
    return [row for layer in layers(target) for row in _layer(target, ceilings, *layer)]


def _layer(target: Target, ceilings: dict, name, batch, chw, spec) -> list[dict]:
    (c, h, w), (k, r, s, stride, padding) = chw, spec
    results = []
    xs = [target.random((batch, c, h, w), seed=i) for i in range(INPUT_SETS)]
    weight = target.random((k, c, r, s), seed=10)
    y = ops.conv2d_forward(xs[0], weight, None, stride, padding)
    dys = [target.random(y.shape, seed=20 + i) for i in range(INPUT_SETS)]
    p, q = y.shape[2:]
    flops = 2 * batch * k * c * r * s * p * q  # the same for each of the three directions
    pairs = list(zip(dys, xs, strict=True))

    def backward(dy, x, data, filter_):
        return ops.conv2d_backward(
            dy,
            x,
            weight,
            stride,
            padding,
            with_bias=False,
            need_input_grad=data,
            need_weight_grad=filter_,
        )

    timers = {  # each direction's timing, under whatever algorithm is set
        "forward": lambda: target.time(
            lambda x: ops.conv2d_forward(x, weight, None, stride, padding), [(x,) for x in xs]
        ),
        "backward-data": lambda: target.time(lambda dy, x: backward(dy, x, True, False), pairs),
        "backward-filter": lambda: target.time(lambda dy, x: backward(dy, x, False, True), pairs),
    }
    ours = {direction: timer() for direction, timer in timers.items()}
    for other, directions in _alternatives(target, xs[0].shape, weight.shape, stride, padding):
        with conv_algorithm(other):
            for direction in directions:
                ours[f"{direction} ({other})"] = timers[direction]()
    theirs = _torch(target, xs, weight, dys, stride, padding)
    shape = {
        "N": batch,
        "C": c,
        "H": h,
        "W": w,
        "K": k,
        "R": r,
        "S": s,
        "stride": stride,
        "padding": padding,
    }
    for direction, timing in ours.items():
        results.append(
            record(
                "conv2d",
                name,
                direction,
                timing,
                flops=flops,
                ceilings=ceilings,
                torch_timing=theirs.get(direction.split(" (")[0]),
                shape=shape,
            )
        )
    return results


def _alternatives(target: Target, x_shape, w_shape, stride: int, padding: int):
    """(algorithm, directions) timed beside what "auto" picked, on a GPU: on 3x3 stride-1
    layers each of gemm, winograd (F(2x2, 3x3)) and winograd4 (F(4x4, 3x3)) it did not pick
    (same flop count for the fraction of peak: the rate of useful work), so each run shows
    whether the rule holds; the direct kernel in each direction where it applies and was not
    picked, and the GEMM's in each direction where the direct kernel (or its phases) was."""
    if target.name != "gpu":
        return []
    k, c, r, s = w_shape
    window = conv_window((r, s), stride, padding, 1)
    out_hw = window.output_shape(*x_shape[2:])
    found = []
    if (r, s, stride) == (3, 3, 1):
        chosen = winograd_tile(x_shape, w_shape, window, out_hw)
        every = ("forward", "backward-data", "backward-filter")
        tiles = {"gemm": 0, "winograd": 2, "winograd4": 4}
        found += [(name, every) for name, tile in tiles.items() if tile != chosen]
    algorithm = algorithm_in_use()
    chosen_forward = chosen_direct_plan(algorithm, c, k, out_hw, (r, s), window, 4)
    phases = stride != 1 and direct_phase_plan(w_shape, x_shape[2:], window, 4)
    if stride == 1:
        chosen_data = chosen_direct_plan(algorithm, k, c, x_shape[2:], (r, s), window, 4)
    else:
        chosen_data = phases and takes_direct_phases(w_shape, window, algorithm)
    # (filters of few taps keep their own reduction under every algorithm)
    filter_plan = k * c * r * s > PER_TAP_FILTER_TAPS and direct_filter_plan(
        x_shape[0], c, k, out_hw, (r, s), window.stride, window.dilation, 4
    )
    applies = {
        "forward": (
            direct_plan(c, k, out_hw, (r, s), window.stride, window.dilation, 4),
            chosen_forward,
        ),
        "backward-data": (
            direct_plan(k, c, x_shape[2:], (r, s), (1, 1), window.dilation, 4)
            if stride == 1
            else phases,
            chosen_data,
        ),
        "backward-filter": (filter_plan, filter_plan and chosen_forward),
    }
    picked = tuple(direction for direction, (_, chosen) in applies.items() if chosen)
    if picked:  # (never beside Winograd, which takes layers of 32 channels and more)
        found.insert(0, ("gemm", picked))  # the plain rows time the direct kernel
    unpicked = tuple(
        direction for direction, (plan, chosen) in applies.items() if plan and not chosen
    )
    if unpicked:
        found.append(("direct", unpicked))
    return found


def _torch(target: Target, xs, weight, dys, stride, padding) -> dict:
    found = target.torch()
    if found is None:
        return {}
    torch, device = found
    txs, tdys, tw = (_to_torch(torch, device, arrays) for arrays in (xs, dys, [weight]))
    tw = tw[0]
    conv = torch.nn.functional.conv2d
    pairs = list(zip(tdys, txs, strict=True))

    def backward(dy, x, mask):
        return torch.ops.aten.convolution_backward(
            dy, x, tw, None, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0], 1, mask
        )

    with torch.no_grad():
        return {
            "forward": target.torch_time(
                lambda x: conv(x, tw, None, stride, padding), [(x,) for x in txs]
            ),
            "backward-data": target.torch_time(
                lambda dy, x: backward(dy, x, [True, False, False]), pairs
            ),
            "backward-filter": target.torch_time(
                lambda dy, x: backward(dy, x, [False, True, False]), pairs
            ),
        }


def _to_torch(torch, device, arrays):
    """CuPy arrays shared with torch without a copy; NumPy arrays wrapped in place."""
    if device == "cuda":
        return [torch.as_tensor(a, device=device) for a in arrays]
    return [torch.from_numpy(a) for a in arrays]
