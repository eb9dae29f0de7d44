"""The layer interface every layer and ``Sequential`` share (Caffe's Layer, in Python).

A layer owns its parameters (``params``), the gradients of its last backward (``grads``,
same names: ``"weight"``, ``"bias"``) and whatever its forward saved for backward. It lives on
one device; ``forward`` refuses an array of another device instead of copying it silently.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from .._checks import check_array, check_choice, check_flag, make_rng
from .._device import get_device, resolve_device, to_device


class Layer:
    """Base class: ``forward(x) -> y``, ``backward(grad_out) -> grad_in``."""

    # Whether a training step through this layer can be recorded as a CUDA graph and
    # replayed (``fit(cuda_graph=True)``): on the CUDA path its forward and backward are
    # kernel launches fixed by the input's shape, reading no value back and keeping no host
    # state that changes from step to step. A subclass says so only when that holds; one that
    # overrides forward or backward says so again (``is_graph_safe``).
    graph_safe = False

    def __init__(self) -> None:
        self.params: dict[str, object] = {}
        self.grads: dict[str, object] = {}
        self.training = True
        self.device = get_device()
        self._saved = None

    # -- the interface -------------------------------------------------------------------

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad_out, need_input_grad: bool = True):
        """The gradient with respect to the input, after storing the parameters' gradients in
        ``grads``. With ``need_input_grad=False`` the layer computes only the latter and
        returns None: a model's first layer, whose input gradient nobody uses (the most
        expensive backward-data of a network: for LeNet's first convolution on a GPU, as
        long as its backward-filter)."""
        raise NotImplementedError

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one example's output given one example's input shape (no batch axis)."""
        return tuple(input_shape)

    def __call__(self, x):
        return self.forward(x)

    # -- modes and devices ---------------------------------------------------------------

    def train(self, mode: bool = True):
        self.training = check_flag(mode, "mode")
        return self

    def eval(self):
        return self.train(False)

    def to(self, device: str):
        """Move parameters (and gradients) to ``device``; returns self."""
        target = resolve_device(device)
        for store in (self.params, self.grads):
            for name, value in store.items():
                store[name] = to_device(value, target)
        self.device = target
        self._saved = None
        return self

    # -- helpers for subclasses ----------------------------------------------------------

    def _check_input(self, x, name: str = "x") -> None:
        kind = check_array(x, f"{type(self).__name__}.forward: {name}")
        expected = "gpu" if self.device == "gpu" else "host"
        if kind != expected:
            where = "a cupy.ndarray (GPU)" if kind == "gpu" else "a numpy.ndarray (host)"
            raise TypeError(
                f"{type(self).__name__}.{'forward' if name == 'x' else 'backward'}: {name} is "
                f"{where} but the layer lives on device {self.device!r}; move it with "
                f"gpucnn.to_device({name}, {self.device!r}) or the model with .to(device)"
            )

    def _check_grad_like(self, grad_out, shape, dtype) -> None:
        """For layers whose ops cannot tell: ``grad_out`` must be shaped and typed like the
        forward's output (a float64 gradient would silently turn the rest of the backward
        pass float64)."""
        name = f"{type(self).__name__}.backward: grad_out"
        if grad_out.dtype != dtype:
            raise TypeError(f"{name} has dtype {grad_out.dtype}, the output had {np.dtype(dtype)}")
        if tuple(grad_out.shape) != tuple(shape):
            raise ValueError(
                f"{name} has shape {tuple(grad_out.shape)}, the output had {tuple(shape)}"
            )

    def _save(self, *tensors) -> None:
        self._saved = tensors

    def _restore(self):
        if self._saved is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward() called before forward() (or after .to())"
            )
        return self._saved

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def nested_parts(model, where: str = "model"):
    """(path, part) for ``model`` and everything inside it, nested ``Sequential`` chains and
    their layers, depth first: ("model", model), ("model[0]", its first layer), ..."""
    yield where, model
    for index, inner in enumerate(getattr(model, "layers", ())):
        yield from nested_parts(inner, f"{where}[{index}]")


def is_graph_safe(obj) -> bool:
    """``obj.graph_safe`` (a layer's or a loss's), trusted only where the class that declares
    it is the one whose forward and backward run, or a subclass of it: a subclass that
    overrides them (say, with array code) inherits no promise about its own code."""
    mro = type(obj).__mro__

    def defined_at(name: str) -> int:
        return next((i for i, cls in enumerate(mro) if name in vars(cls)), len(mro))

    declared = defined_at("graph_safe")
    if declared > defined_at("forward") or declared > defined_at("backward"):
        return False
    return bool(getattr(obj, "graph_safe", False))


def backward_of(layer, grad_out, need_input_grad: bool = True):
    """``layer.backward(grad_out)``, telling the layer when its input gradient is not needed
    (then None is returned). A layer written against the one-argument ``backward(grad_out)``
    (a user's own) still works: it is called as such and its input gradient dropped."""
    if need_input_grad:
        return layer.backward(grad_out)
    if _takes_need_input_grad(type(layer)):
        return layer.backward(grad_out, need_input_grad=False)
    layer.backward(grad_out)
    return None


@functools.cache
def _takes_need_input_grad(cls: type) -> bool:
    return "need_input_grad" in inspect.signature(cls.backward).parameters


def float_dtype(dtype) -> np.dtype:
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if resolved not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {resolved}")
    return resolved


class WeightedLayer(Layer):
    """A layer y = op(x, weight, bias) with a weight whose first axis is the output's
    (Conv2D, Dense): one place for their parameters, forward and backward. A subclass names
    its op pair and the geometry they take besides the arrays (``_geometry``)."""

    graph_safe = True
    forward_op = None  # staticmethod: (x, weight, bias, **geometry) -> y
    backward_op = None  # staticmethod: (dy, x, weight, with_bias=, need_input_grad=, **geometry)

    def _create_params(self, shape, fan_in: int, fan_out: int, bias, init, seed, dtype) -> None:
        """He (normal, std sqrt(2 / fan_in)) or Glorot (uniform, limit sqrt(6 / (fan_in +
        fan_out))) initial weights, drawn in float64 from ``seed`` and rounded to ``dtype``;
        a zero bias when ``bias``."""
        dtype = float_dtype(dtype)
        rng = make_rng(seed)
        if check_choice(init, "init", ("he", "glorot")) == "he":
            values = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            values = rng.uniform(-limit, limit, size=shape)
        self.params["weight"] = to_device(values.astype(dtype), self.device)
        if check_flag(bias, "bias"):
            self.params["bias"] = to_device(np.zeros(shape[0], dtype), self.device)

    def _geometry(self) -> dict:
        """The keyword arguments both ops take besides the arrays (none for Dense)."""
        return {}

    def forward(self, x):
        self._check_input(x)
        y = self.forward_op(x, self.params["weight"], self.params.get("bias"), **self._geometry())
        self._save(x)
        return y

    def backward(self, grad_out, need_input_grad: bool = True):
        self._check_input(grad_out, "grad_out")
        (x,) = self._restore()
        dx, dw, db = self.backward_op(
            grad_out,
            x,
            self.params["weight"],
            with_bias="bias" in self.params,
            need_input_grad=need_input_grad,
            **self._geometry(),
        )
        self.grads["weight"] = dw
        if db is not None:
            self.grads["bias"] = db
        return dx
