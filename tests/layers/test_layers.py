"""The layer API: forward/backward against the ops, params/grads, modes, devices, shapes."""

from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from gpucnn import ops
from gpucnn.layers import (
    AvgPool2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    L2Pool2D,
    MaxPool2D,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from tests.helpers import numerical_gradient, rel_error, shuffled_linspace


def _model(dtype=np.float64):
    return Sequential(
        [
            Conv2D(2, 3, 3, padding=1, seed=0, dtype=dtype),
            Tanh(),
            MaxPool2D(3, stride=2, padding=1, ceil_mode=True),
            Conv2D(3, 4, 2, stride=1, dilation=2, seed=1, dtype=dtype),
            Sigmoid(),
            L2Pool2D(2, stride=1),
            AvgPool2D(2, stride=1, padding=1, count_include_pad=False),
            ReLU(),
            GlobalAvgPool2D(),
            Dense(4, 5, seed=2, dtype=dtype),
        ]
    )


def test_sequential_gradients_match_finite_differences():
    model = _model()
    x = shuffled_linspace((2, 2, 9, 9), np.float64)
    dy = shuffled_linspace((2, 5), np.float64, seed=3, low=-0.3, high=1.1)
    y = model.forward(x)
    assert y.shape == (2, 5) and model.output_shape((2, 9, 9)) == (5,)
    dx = model.backward(dy)
    assert rel_error(dx, numerical_gradient(lambda x_: model.forward(x_) * dy, x)) < 1e-7
    for name in ("0.weight", "0.bias", "3.weight", "9.weight", "9.bias"):
        param = model.params[name]
        analytic = model.grads[name].copy()
        saved = param.copy()

        def loss(p, param=param):
            param[...] = p
            return model.forward(x) * dy

        numeric = numerical_gradient(loss, saved)
        param[...] = saved
        assert rel_error(analytic, numeric) < 1e-7, name


def test_without_the_input_gradient_the_parameter_gradients_are_the_same():
    # fit asks for no input gradient: the first layer with parameters skips its backward-data
    # and the layers before it do not run; every parameter gradient is the same bits.
    x = shuffled_linspace((2, 2, 9, 9), np.float64)
    dy = shuffled_linspace((2, 5), np.float64, seed=3)
    for prefix in ([], [ReLU()], [Flatten()]):
        grads = []
        for need in (True, False):
            layers = [*prefix, *_model().layers]
            if prefix and isinstance(prefix[0], Flatten):
                layers = [Flatten(), Dense(162, 5, seed=2, dtype=np.float64)]
            model = Sequential(layers)
            model.forward(x)
            dx = model.backward(dy, need_input_grad=need)
            assert (dx is None) == (not need) and (dx is None or dx.shape == x.shape)
            grads.append({k: v.copy() for k, v in model.grads.items()})
        assert grads[0].keys() == grads[1].keys()
        assert all(np.array_equal(grads[0][k], grads[1][k]) for k in grads[0])
    no_params = Sequential([ReLU(), Flatten()])
    no_params.forward(x)
    assert no_params.backward(x, need_input_grad=False) is None


def test_a_users_layer_with_the_one_argument_backward_still_trains():
    # Written against backward(grad_out) only: Sequential and fit call it that way and drop
    # the input gradient it returns when none is wanted.
    from gpucnn.layers import Layer

    class Scale(Layer):
        def __init__(self):
            super().__init__()
            self.params["weight"] = np.array([2.0])

        def forward(self, x):
            self._save(x)
            return x * self.params["weight"]

        def backward(self, grad_out):
            (x,) = self._restore()
            self.grads["weight"] = np.array([(grad_out * x).sum()])
            return grad_out * self.params["weight"]

    model = Sequential([Scale(), Dense(3, 2, seed=0, dtype=np.float64)])
    x = shuffled_linspace((4, 3), np.float64)
    model.forward(x)
    dx = model.backward(np.ones((4, 2)))
    weight_grad = model.grads["0.weight"].copy()
    model.forward(x)
    assert model.backward(np.ones((4, 2)), need_input_grad=False) is None
    assert dx.shape == x.shape and np.array_equal(model.grads["0.weight"], weight_grad)
    from gpucnn.losses import MSELoss
    from gpucnn.optim import SGD
    from gpucnn.train import fit

    fit(model, MSELoss(), SGD(model, 0.01), x, np.zeros((4, 2)), epochs=1, progress=False)
    alone = Scale()
    fit(alone, MSELoss(), SGD(alone, 0.01), x, np.zeros((4, 3)), epochs=1, progress=False)
    assert alone.params["weight"][0] < 2.0  # it trained towards the zero targets


def test_every_layer_returns_none_when_no_input_gradient_is_wanted():
    x = shuffled_linspace((2, 3, 6, 6), np.float64)
    for layer in [
        Conv2D(3, 2, 3, seed=0, dtype=np.float64),
        Tanh(),
        MaxPool2D(2),
        AvgPool2D(2),
        L2Pool2D(2),
        GlobalAvgPool2D(),
        Flatten(),
        Dropout(0.5, seed=0),
    ]:
        y = layer.forward(x)
        assert layer.backward(np.ones_like(y), need_input_grad=False) is None, layer
    dense = Dense(4, 3, seed=0, dtype=np.float64)
    dense.forward(np.ones((2, 4)))
    assert dense.backward(np.ones((2, 3)), need_input_grad=False) is None
    assert dense.grads["weight"].shape == (3, 4)
    with pytest.raises(TypeError, match="need_input_grad must be a bool"):
        ops.dense_backward(np.ones((2, 3)), np.ones((2, 4)), np.ones((3, 4)), need_input_grad=1)


@pytest.mark.parametrize("device", ["cpu", "emulator"])
def test_an_empty_batch_flows_through_every_layer(device):
    # A data set's last, or only, batch may be empty: every layer takes N = 0 both ways, and
    # the parameter gradients are zeros of the parameters' shapes.
    gpucnn.set_device(device)
    tail = [Dropout(0.5, seed=0), Flatten(), Dense(4 * 3 * 3, 2, seed=3, dtype=np.float64)]
    for model, shape in [
        (_model(), (0, 2, 9, 9)),
        (Sequential(_model().layers[:4] + tail), (0, 2, 9, 9)),
    ]:
        model.to(device)
        x = gpucnn.to_device(np.zeros(shape))
        y = model.forward(x)
        assert y.shape[0] == 0
        assert model.backward(y * 0).shape == shape
        for layer in model.layers:
            for name, grad in layer.grads.items():
                assert grad.shape == layer.params[name].shape and not gpucnn.to_numpy(grad).any()


def test_layers_hold_their_arrays_by_name():
    conv = Conv2D(3, 8, (3, 5), bias=False, seed=0)
    assert set(conv.params) == {"weight"} and conv.params["weight"].shape == (8, 3, 3, 5)
    dense = Dense(10, 4, init="glorot", seed=0)
    limit = np.sqrt(6 / 14)
    assert np.abs(dense.params["weight"]).max() <= limit
    assert np.array_equal(dense.params["bias"], np.zeros(4, np.float32))
    he = Conv2D(16, 64, 3, seed=0).params["weight"]  # 9216 draws: the std is within ~1%
    assert abs(he.std() / np.sqrt(2 / (16 * 9)) - 1) < 0.05
    assert np.array_equal(
        Conv2D(3, 8, 3, seed=5).params["weight"], Conv2D(3, 8, 3, seed=5).params["weight"]
    )


def test_layer_matches_its_op():
    x = shuffled_linspace((2, 3, 8, 8), np.float32)
    conv = Conv2D(3, 4, 3, stride=2, padding=1, seed=0)
    y = conv.forward(x)
    expected = ops.conv2d_forward(x, conv.params["weight"], conv.params["bias"], 2, 1)
    assert np.array_equal(y, expected)
    pool = MaxPool2D(2)
    assert np.array_equal(pool.forward(x), ops.max_pool2d_forward(x, 2)[0])


def test_dropout_train_and_eval():
    layer = Dropout(0.5, seed=1)
    x = np.ones((8, 100), np.float32)
    y1, y2 = layer.forward(x), layer.forward(x)
    assert not np.array_equal(y1, y2)  # a new mask every step
    grad = layer.backward(np.ones_like(x))
    assert np.array_equal(grad, y2)  # the gradient goes through the last mask
    assert layer.step == 2  # training forwards so far
    layer.eval()
    assert layer.forward(x) is x and np.array_equal(layer.backward(x), x)
    assert layer.step == 2
    again = Dropout(0.5, seed=1)
    assert np.array_equal(again.forward(x), y1)  # same seed, same first mask
    moved = again.to("emulator")  # the step counter travels with the layer
    assert moved.step == 1 and np.array_equal(moved.forward(x), y2)


def test_train_and_eval_propagate_through_sequential():
    model = Sequential([Dense(4, 4, seed=0), Dropout(0.5, seed=0)])
    model.eval()
    assert not model.training and not model[1].training
    model.train()
    assert all(layer.training for layer in model)
    for mode in ("no", 0):  # truthy or falsy, never a mode
        with pytest.raises(TypeError, match="mode must be a bool"):
            model.train(mode)
    assert all(layer.training for layer in model)


@pytest.mark.parametrize("shape", ["abc", 5, (1, -28, 28), (1, 28.0, 28)])
def test_summary_names_a_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape must be one example's shape"):
        Sequential([ReLU()]).summary(shape)


def test_sequential_wants_a_list_of_layers():
    with pytest.raises(TypeError, match="layers must be a list of gpucnn layers, got ReLU"):
        Sequential(ReLU())
    with pytest.raises(TypeError, match="layers must be a list of gpucnn layers, got int"):
        Sequential(5)


def test_output_shapes_down_to_one_pixel_and_not_below():
    # A window that just fits gives one output pixel; one a pixel too big on either axis
    # is refused by name (the summary and the model builders rely on it).
    conv = Conv2D(2, 3, kernel_size=(3, 2))
    assert conv.output_shape((2, 3, 2)) == (3, 1, 1)
    for pool in (MaxPool2D(2), AvgPool2D((2, 3))):
        assert pool.output_shape((4, 2, 3)) == (4, 1, 1)
    for shape in ((2, 2, 2), (2, 3, 1)):
        with pytest.raises(ValueError, match="Conv2D: kernel larger than the padded input"):
            conv.output_shape(shape)
    for shape in ((4, 1, 3), (4, 2, 2)):
        with pytest.raises(ValueError, match="AvgPool2D: window larger than the input"):
            AvgPool2D((2, 3)).output_shape(shape)


def test_one_layer_object_in_two_places_is_refused():
    # [ReLU()] * 2 puts one object in two places: its second forward would overwrite what the
    # first saw, and the backward through the first place would be silently wrong.
    with pytest.raises(ValueError, match=r"layers\[1\] is the same ReLU object as layers\[0\]"):
        Sequential([ReLU()] * 2)
    dense = Dense(2, 2)
    with pytest.raises(ValueError, match=r"layers\[1\]\[1\] is the same Dense object"):
        Sequential([dense, Sequential([ReLU(), dense])])
    assert len(Sequential([ReLU(), ReLU()]).layers) == 2  # two objects of one kind are fine


def test_summary_lists_shapes_and_parameter_counts():
    text = _model(np.float32).summary((2, 9, 9))
    assert "Conv2D(2, 3, kernel_size=3, padding=1)" in text
    assert "(3, 9, 9)" in text and "(5,)" in text
    expected = (3 * 2 * 9 + 3) + (4 * 3 * 4 + 4) + (5 * 4 + 5)
    assert f"total parameters: {expected:,}" in text
    assert text.splitlines()[3].endswith(" 57")  # counts right-aligned under "params"
    assert "?" in _model().summary()  # without an input shape, shapes are unknown


def test_flatten_round_trips():
    layer = Flatten()
    x = shuffled_linspace((2, 3, 4, 5))
    assert layer.forward(x).shape == (2, 60)
    assert np.array_equal(layer.backward(layer.forward(x)), x)
    assert layer.forward(x[:0]).shape == (0, 60)  # an empty batch keeps its feature count
    assert layer.forward(x[:, 0, 0, 0]).shape == (2, 1)  # no feature axes: one feature
    with pytest.raises(ValueError, match="Flatten needs a batch axis"):
        layer.forward(x[0, 0, 0, 0, ...])  # a 0-d array


def test_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match="before forward"):
        Conv2D(1, 1, 1).backward(np.zeros((1, 1, 1, 1), np.float32))


def test_wrong_device_array_gets_a_clear_error(monkeypatch):
    layer = ReLU()
    layer.device = "gpu"  # as if built on a GPU: a NumPy array must not be copied silently
    with pytest.raises(TypeError, match=r"numpy.ndarray \(host\) but the layer lives on .*gpu"):
        layer.forward(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="must be a numpy.ndarray or cupy.ndarray"):
        ReLU().forward([1.0, 2.0])


@pytest.mark.parametrize(
    "build, error, words",
    [
        (lambda: Conv2D(0, 4, 3), ValueError, "in_channels"),
        (lambda: Conv2D(3, 4.0, 3), TypeError, "out_channels"),
        (lambda: Conv2D(3, 4, 3, stride=0), ValueError, "stride"),
        (lambda: Conv2D(3, 4, 3, init="lecun"), ValueError, "init"),
        # an array where a word or a flag belongs: NumPy's "truth value is ambiguous" before
        (lambda: Dense(3, 4, init=np.array(["he", "he"])), ValueError, "init must be one of"),
        (lambda: Conv2D(3, 4, 3, bias=np.ones(4)), TypeError, "bias must be a bool"),
        (lambda: Dense(3, 4, bias="no"), TypeError, "bias must be a bool"),
        (lambda: Conv2D(3, 4, 2**31), ValueError, "kernel_size must be < 2"),
        (lambda: Conv2D(3, 4, 3, dtype=np.int32), TypeError, "dtype"),
        (lambda: Conv2D(3, 4, 3, seed="x"), TypeError, "seed"),
        (lambda: Conv2D(3, 4, 3, seed=-1), ValueError, "seed must be >= 0"),
        (lambda: Dense(3, 4, seed=True), TypeError, "seed"),
        (lambda: Dropout(0.5, seed=-1), ValueError, "seed must be >= 0"),
        (lambda: Dropout(0.5, seed=1.5), TypeError, "seed"),
        (lambda: Dense(3, 0), ValueError, "out_features"),
        (lambda: MaxPool2D(2, padding=2), ValueError, "padding"),
        (lambda: AvgPool2D(2, count_include_pad=None), TypeError, "count_include_pad"),
        (lambda: Dropout(1.5), ValueError, "p must be"),
        (lambda: Sequential([ReLU(), "relu"]), TypeError, r"layers\[1\]"),
    ],
)
def test_bad_constructor_arguments_are_named(build, error, words):
    with pytest.raises(error, match=words):
        build()


def test_shape_mismatches_are_reported_by_name():
    with pytest.raises(ValueError, match="input channels"):
        Conv2D(3, 4, 3).forward(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="Flatten"):
        Sequential([Conv2D(1, 2, 3), Dense(18, 2)]).summary((1, 5, 5))
    with pytest.raises(ValueError, match="expects 3 input channels"):
        Conv2D(3, 4, 3).output_shape((2, 5, 5))


def test_to_moves_parameters_between_host_devices():
    model = _model(np.float32)
    gpucnn.set_device("cpu")
    model.to("cpu")
    assert model.device == "cpu" and all(isinstance(p, np.ndarray) for p in model.params.values())
    with pytest.raises(ValueError, match="device must be one of"):
        model.to("tpu")


def test_the_top_level_package_exposes_sequential_and_the_modules():
    assert gpucnn.Sequential is Sequential
    for module in ("ops", "layers", "losses", "optim", "train", "data", "models", "hopfield"):
        assert hasattr(gpucnn, module), module


def test_graph_safety_is_declared_by_the_class_that_runs():
    from gpucnn.layers.base import Layer, is_graph_safe
    from gpucnn.losses import HingeLoss, MSELoss, SoftmaxCrossEntropyLoss

    built_in = [
        Conv2D(1, 2, 3),
        Dense(3, 2),
        MaxPool2D(2),
        AvgPool2D(2),
        L2Pool2D(2),
        GlobalAvgPool2D(),
        ReLU(),
        Sigmoid(),
        Tanh(),
        Dropout(0.5),
        Flatten(),
        Sequential([Flatten(), Dense(3, 2)]),
        SoftmaxCrossEntropyLoss(),
        MSELoss(),
        HingeLoss(),
    ]
    assert all(is_graph_safe(obj) for obj in built_in)

    class Noisy(ReLU):  # overrides forward with array code: no promise inherited
        def forward(self, x):
            return super().forward(x) + 0

    class Vouched(Noisy):
        graph_safe = True

    assert not is_graph_safe(Noisy()) and is_graph_safe(Vouched())
    assert not is_graph_safe(Sequential([Noisy()])) and not is_graph_safe(Layer())


@pytest.mark.parametrize(
    "layer, x",
    [
        (MaxPool2D(2), np.zeros((2, 3, 4, 4), np.float32)),
        (AvgPool2D(2), np.zeros((2, 3, 4, 4), np.float32)),
        (GlobalAvgPool2D(), np.zeros((2, 3, 4, 4), np.float32)),
        (Flatten(), np.zeros((2, 3, 4, 4), np.float32)),
    ],
)
def test_a_gradient_unlike_the_output_is_refused_by_layers_whose_ops_cannot_tell(layer, x):
    # Their backward ops never see the forward's input, so a float64 gradient after a
    # float32 forward went through and turned the rest of the backward pass float64.
    y = layer.forward(x)
    name = type(layer).__name__
    with pytest.raises(TypeError, match=f"{name}.backward: grad_out has dtype float64"):
        layer.backward(np.zeros(y.shape))
    with pytest.raises(ValueError, match=f"{name}.backward: grad_out has shape"):
        layer.backward(np.zeros((1, *y.shape[1:]), np.float32))
    assert layer.backward(np.ones(y.shape, np.float32)).dtype == np.float32
