"""``Sequential``: layers run in order forward and in reverse order backward."""

from __future__ import annotations

import math
import numbers

from .._device import get_device
from .base import Layer, backward_of, is_graph_safe, nested_parts


class Sequential(Layer):
    """A chain of layers with the layer API. Parameters and gradients are exposed as flat
    dicts named ``"<index>.<name>"`` (e.g. ``"0.weight"``), the names weights are saved under.
    """

    def __init__(self, layers):
        # Not Layer.__init__: a Sequential owns no arrays; params and grads are its layers'.
        self.training = True
        self._saved = None
        if isinstance(layers, Layer) or not hasattr(layers, "__iter__"):
            raise TypeError(f"layers must be a list of gpucnn layers, got {type(layers).__name__}")
        layers = list(layers)
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"layers[{index}] must be a gpucnn layer, got {type(layer).__name__}"
                )
        _check_each_layer_once(layers)
        devices = {layer.device for layer in layers}
        if len(devices) > 1:
            raise ValueError(f"layers live on different devices {sorted(devices)}; use .to()")
        self.layers = layers
        self.device = layers[0].device if layers else get_device()

    @property
    def graph_safe(self) -> bool:
        return all(is_graph_safe(layer) for layer in self.layers)

    # Rebuilt on access, so they always hold the layers' current arrays.
    @property
    def params(self):
        return {
            f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()
        }

    @property
    def grads(self):
        return {
            f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()
        }

    def forward(self, x):
        self._check_input(x)
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out, need_input_grad: bool = True):
        """Backward through every layer, last to first. With ``need_input_grad=False`` (what
        ``fit`` asks) the first layer with parameters skips its input gradient and the layers
        before it are not run: returns None."""
        self._check_input(grad_out, "grad_out")
        first = 0
        if not need_input_grad:
            with_params = [i for i, layer in enumerate(self.layers) if layer.params]
            if not with_params:
                return None  # no parameter needs a gradient
            first = with_params[0]
        for index in range(len(self.layers) - 1, first - 1, -1):
            wanted = need_input_grad or index > first
            grad_out = backward_of(self.layers[index], grad_out, wanted)
        return grad_out

    def output_shape(self, input_shape):
        for layer in self.layers:
            input_shape = layer.output_shape(input_shape)
        return tuple(input_shape)

    def train(self, mode: bool = True):
        super().train(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def to(self, device: str):
        for layer in self.layers:
            layer.to(device)
        if self.layers:
            self.device = self.layers[0].device
        return self

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def summary(self, input_shape=None) -> str:
        """A table of layers, output shapes (when ``input_shape``, one example's (C, H, W),
        is given) and parameter counts."""
        rows = [("#", "layer", "output shape", "params")]
        shape = None if input_shape is None else _example_shape(input_shape)
        if shape is not None:
            rows.append(("", "input", str(shape), ""))
        total = 0
        for index, layer in enumerate(self.layers):
            count = sum(math.prod(p.shape) for p in layer.params.values())
            total += count
            if shape is not None:
                shape = layer.output_shape(shape)
            rows.append((str(index), repr(layer), str(shape) if shape else "?", f"{count:,}"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(
                cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            )
            for row in rows
        ]
        rule = "-" * len(lines[0])
        lines.insert(1, rule)
        lines.append(rule)
        lines.append(f"total parameters: {total:,}  (device {self.device})")
        return "\n".join(lines)

    def __repr__(self):
        inner = ",\n".join(f"  {layer!r}" for layer in self.layers)
        return f"Sequential([\n{inner}\n])"


def _example_shape(input_shape) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints, or an error that names it."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if shape is None or not all(isinstance(d, numbers.Integral) and d >= 1 for d in shape):
        raise ValueError(
            f"input_shape must be one example's shape, positive ints such as (1, 28, 28), "
            f"got {input_shape!r}"
        )
    return tuple(int(d) for d in shape)


def _check_each_layer_once(layers) -> None:
    """A layer object may stand in one place of a chain only (nested chains included): it
    keeps what its forward saw for its backward, so a second place would overwrite the
    first's and the backward through the first would be silently wrong (``[ReLU()] * 2``)."""
    seen: dict[int, str] = {}
    for index, layer in enumerate(layers):
        for where, part in nested_parts(layer, f"layers[{index}]"):
            if id(part) in seen:
                raise ValueError(
                    f"{where} is the same {type(part).__name__} object as {seen[id(part)]}: "
                    "each place in the chain needs its own layer, since a layer keeps what its "
                    f"forward saw for its backward (make a new {type(part).__name__}(...) for "
                    "each)"
                )
            seen[id(part)] = where
