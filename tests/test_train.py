"""Training end to end on the CPU: the digits model learns, runs reproduce, bad input fails."""

from __future__ import annotations

import numpy as np
import pytest

from gpucnn.data import load_digits, train_test_split
from gpucnn.layers import Dense, Sequential
from gpucnn.losses import HingeLoss, MSELoss, SoftmaxCrossEntropyLoss
from gpucnn.models import digits_cnn, lenet5
from gpucnn.optim import SGD, CosineLR
from gpucnn.train import TrainingDiverged, evaluate, fit, predict


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits()
    return train_test_split(x, y, test_fraction=0.2, seed=0)


def test_digits_model_reaches_95_percent_on_held_out_data(digits):
    x_train, y_train, x_test, y_test = digits
    model = digits_cnn(seed=0)
    optimizer = SGD(model, 0.05, momentum=0.9, schedule=CosineLR(8))
    history = fit(
        model,
        SoftmaxCrossEntropyLoss(),
        optimizer,
        x_train,
        y_train,
        epochs=8,
        batch_size=32,
        validation_data=(x_test, y_test),
        seed=0,
        progress=False,
    )
    scores = evaluate(model, SoftmaxCrossEntropyLoss(), x_test, y_test)
    assert scores["accuracy"] >= 0.95, scores
    assert history.loss[-1] < history.loss[0] / 4
    assert history.val_accuracy[-1] == scores["accuracy"]
    assert history.lr[0] == 0.05 and history.lr[-1] < 0.01
    assert (predict(model, x_test).argmax(axis=1) == y_test).mean() == scores["accuracy"]
    assert predict(model, x_test[:0]).shape == (0, 10)  # an empty input: no outputs, no crash


def test_same_seed_same_run(digits):
    x_train, y_train, *_ = digits
    runs = []
    for _ in range(2):
        model = digits_cnn(seed=3)
        fit(
            model,
            SoftmaxCrossEntropyLoss(),
            SGD(model, 0.05, momentum=0.9),
            x_train[:300],
            y_train[:300],
            epochs=2,
            seed=3,
            progress=False,
        )
        runs.append(model.params)
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])


@pytest.mark.parametrize("loss", [MSELoss(), HingeLoss()])
def test_other_losses_train_a_linear_classifier(digits, loss):
    x_train, y_train, x_test, y_test = digits
    flat_train, flat_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    model = Sequential([Dense(64, 10, init="glorot", seed=0)])
    fit(model, loss, SGD(model, 0.05, momentum=0.9), flat_train, y_train, epochs=5, progress=False)
    assert evaluate(model, loss, flat_test, y_test)["accuracy"] > 0.85


def test_float64_data_trains_a_float32_model_as_float32_data_does(digits):
    # NumPy makes float64 by default: fit, evaluate and predict convert floats (data and
    # float targets) to the model's dtype once, and train exactly as on float32 data.
    x_train, y_train, x_test, y_test = digits
    flat = x_train[:200].reshape(200, -1)
    onehot = np.eye(10)[y_train[:200]]  # float64 MSE targets
    results = []
    for dtype in (np.float32, np.float64):
        model = Sequential([Dense(64, 10, init="glorot", seed=0)])
        fit(
            model,
            MSELoss(),
            SGD(model, 0.05),
            flat.astype(dtype),
            onehot.astype(dtype),
            epochs=2,
            progress=False,
        )
        scores = evaluate(model, MSELoss(), x_test.reshape(len(x_test), -1).astype(dtype), y_test)
        out = predict(model, flat.astype(dtype))
        assert model.params["0.weight"].dtype == np.float32 and out.dtype == np.float32
        results.append((model.params["0.weight"], scores, out))
    assert np.array_equal(results[0][0], results[1][0]) and results[0][1] == results[1][1]
    assert np.array_equal(results[0][2], results[1][2])


def test_progress_bar_and_verbose_lines(digits, capsys):
    x_train, y_train, x_test, y_test = digits
    model = digits_cnn(seed=0)
    fit(
        model,
        SoftmaxCrossEntropyLoss(),
        SGD(model, 0.05),
        x_train[:64],
        y_train[:64],
        epochs=1,
        validation_data=(x_test[:32], y_test[:32]),
        progress=True,
        verbose=True,
    )
    captured = capsys.readouterr()
    assert "epoch   1" in captured.out and "val_acc" in captured.out
    assert "epoch 1/1" in captured.err  # tqdm's bar


@pytest.mark.parametrize(("progress", "reads"), [(False, 2), (True, 2 * (3 + 1))])
def test_scores_reach_the_host_only_when_the_bar_refreshes(digits, monkeypatch, progress, reads):
    # On a GPU each read is a host sync: once an epoch (at its end) without a bar; with one,
    # also every refresh_every steps and at the last (7 steps, refresh_every=3: 3, 6, 7)
    from gpucnn.train import TrainStep

    counted = []
    original = TrainStep.scores
    monkeypatch.setattr(TrainStep, "scores", lambda self: counted.append(1) or original(self))
    x_train, y_train, *_ = digits
    model = digits_cnn(seed=0)
    loss, sgd = SoftmaxCrossEntropyLoss(), SGD(model, 0.05)
    fit(
        model,
        loss,
        sgd,
        x_train[:63],
        y_train[:63],
        epochs=2,
        batch_size=9,
        progress=progress,
        refresh_every=3,
    )
    assert len(counted) == reads


def test_lenet5_shapes():
    model = lenet5()
    assert model.output_shape((1, 28, 28)) == (10,)
    assert lenet5(3, 100, 32).output_shape((3, 32, 32)) == (100,)
    with pytest.raises(ValueError, match="input_size"):
        lenet5(input_size=8)
    with pytest.raises(TypeError, match="input_size must be an int"):
        lenet5(input_size=28.0)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        lenet5(seed=-3)
    for model in (lenet5, digits_cnn):  # the argument's own name, not the Dense layer's
        with pytest.raises(ValueError, match="num_classes must be >= 1"):
            model(num_classes=0)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(epochs=0), ValueError, "epochs"),
        (dict(batch_size=-1), ValueError, "batch_size"),
        (dict(y=np.zeros(5, np.int64)), ValueError, "x has 10 examples but y has 5"),
        (dict(y=np.full(10, 12)), ValueError, "class labels"),
        # the first label past the last class: the steps skip their own range checks
        (
            dict(y=np.arange(1, 11)),
            ValueError,
            r"class labels in \[1, 10\] but the model has 10",
        ),
        (dict(validation_data=(np.zeros((3, 1, 8, 8), np.float32),)), ValueError, "pair"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
        (dict(seed=0.5), TypeError, "seed must be an int"),
        (dict(x=None), TypeError, "fit: x must be an array of examples"),
        (
            dict(x=np.zeros((0, 1, 8, 8), np.float32), y=np.zeros(0, np.int64)),
            ValueError,
            "fit: the data set is empty",
        ),
        (dict(y="labels"), TypeError, "fit: y must be an array of examples"),
        (
            dict(validation_data=(np.zeros((3, 1, 8, 8), np.float32), 7)),
            TypeError,
            "validation_data: y must be an array",
        ),
    ],
)
def test_bad_arguments_are_named(kwargs, error, words):
    model = digits_cnn()
    arguments = dict(
        x=np.zeros((10, 1, 8, 8), np.float32), y=np.zeros(10, np.int64), epochs=1, progress=False
    )
    arguments.update(kwargs)
    x, y = arguments.pop("x"), arguments.pop("y")
    with pytest.raises(error, match=words):
        fit(model, SoftmaxCrossEntropyLoss(), SGD(model, 0.1), x, y, **arguments)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_data_that_is_not_finite_is_refused_naming_the_first_example(bad):
    # One NaN would make every loss and weight NaN from its first batch on, silently.
    model, loss = digits_cnn(), SoftmaxCrossEntropyLoss()
    x, y = np.zeros((10, 1, 8, 8), np.float32), np.arange(10)
    x[7, 0, 2, 3] = x[9, 0, 0, 0] = bad
    words = r"holds NaN or infinite values \(the first in example 7\)"
    with pytest.raises(ValueError, match="fit: x " + words):
        fit(model, loss, SGD(model, 0.1), x, y, progress=False)
    with pytest.raises(ValueError, match="evaluate: x " + words):
        evaluate(model, loss, x, y)
    with pytest.raises(ValueError, match="validation_data: x " + words):
        fit(model, loss, SGD(model, 0.1), x[:7], y[:7], validation_data=(x, y), progress=False)
    targets = np.zeros((10, 10), np.float32)  # MSE's float targets are data too
    targets[7, 1] = bad
    with pytest.raises(ValueError, match="fit: y " + words):
        fit(model, MSELoss(), SGD(model, 0.1), np.zeros_like(x), targets, progress=False)


def test_inputs_that_are_not_floats_are_refused_with_a_fix():
    # Raw 8-bit images: the first convolution would refuse them at the first step, naming
    # neither the data nor what to do.
    model, loss = digits_cnn(), SoftmaxCrossEntropyLoss()
    x, y = np.full((4, 1, 8, 8), 255, np.uint8), np.arange(4)
    words = (
        r"x must hold floats, got uint8: convert it first, e\.g\. x\.astype\(np\.float32\) / 255"
    )
    with pytest.raises(TypeError, match="fit: " + words):
        fit(model, loss, SGD(model, 0.1), x, y, progress=False)
    with pytest.raises(TypeError, match="evaluate: " + words):
        evaluate(model, loss, x, y)
    with pytest.raises(TypeError, match="predict: " + words):
        predict(model, x)
    with pytest.raises(TypeError, match="validation_data: x must hold floats, got bool"):
        fit(model, loss, SGD(model, 0.1), x / 255, y, validation_data=(x > 0, y), progress=False)


def test_data_is_checked_in_the_model_dtype():
    # 1e39 is a float64 but inf in a float32 model, which is where it would be used.
    model = digits_cnn()
    x = np.zeros((4, 1, 8, 8))
    x[2, 0, 0, 0] = 1e39
    with pytest.raises(ValueError, match="fit: x holds NaN .* example 2"):
        fit(model, SoftmaxCrossEntropyLoss(), SGD(model, 0.1), x, np.arange(4), progress=False)
    scores = evaluate(digits_cnn(dtype=np.float64), SoftmaxCrossEntropyLoss(), x, np.arange(4))
    assert np.isfinite(scores["loss"])


class _CountingLoss(SoftmaxCrossEntropyLoss):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return super().forward(*args, **kwargs)


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")
@pytest.mark.parametrize(("progress", "steps"), [(False, 20), (True, range(11, 20))])
def test_a_diverging_run_stops_with_the_epochs_before_it(digits, progress, steps):
    # Epoch 2's learning rate blows the weights up. Without a bar the loss reaches the host
    # at the epoch's end; with one, at the next refresh, which stops the epoch early.
    x_train, y_train, *_ = digits
    model, loss = digits_cnn(dropout=0.0, seed=0), _CountingLoss()
    optimizer = SGD(model, 0.05, schedule=lambda base_lr, epoch: base_lr if epoch == 0 else 1e30)
    with pytest.raises(
        TrainingDiverged, match=r"became (nan|inf) in epoch 2 \(learning rate 1e\+30"
    ) as error:
        fit(
            model,
            loss,
            optimizer,
            x_train[:90],
            y_train[:90],
            epochs=3,
            batch_size=9,
            progress=progress,
            refresh_every=2,
        )
    assert isinstance(error.value, FloatingPointError)
    history = error.value.history
    assert history.epoch == [1] and np.isfinite(history.loss[0]) and len(history.lr) == 1
    assert loss.calls in (steps if progress else [steps])


def test_a_loss_or_optimizer_that_cannot_train_the_model_is_named():
    model = digits_cnn()
    x, y = np.zeros((10, 1, 8, 8), np.float32), np.zeros(10, np.int64)
    loss = SoftmaxCrossEntropyLoss()
    with pytest.raises(TypeError, match=r"loss_fn must have forward\(\) and backward\(\)"):
        fit(model, "cross-entropy", SGD(model, 0.1), x, y, epochs=1, progress=False)
    with pytest.raises(TypeError, match="loss_fn is the class MSELoss, not one"):
        evaluate(model, MSELoss, x, y)
    with pytest.raises(TypeError, match=r"optimizer must have step\(\) and set_epoch\(\)"):
        fit(model, loss, 0.1, x, y, epochs=1, progress=False)
    with pytest.raises(TypeError, match="optimizer is the class SGD"):
        fit(model, loss, SGD, x, y, epochs=1, progress=False)
    # An optimizer made for another model would find none of this model's gradients.
    with pytest.raises(ValueError, match="parameters of another model"):
        fit(model, loss, SGD(digits_cnn(), 0.1), x, y, epochs=1, progress=False)


def test_an_optimizer_of_one_layer_trains_that_layer_only():
    # Fine-tuning: the whole model runs forward and backward, one layer is updated.
    model = digits_cnn(dropout=0.0, seed=0)
    head = model.layers[-1]
    before = {name: value.copy() for name, value in model.params.items()}
    x = np.random.default_rng(0).random((20, 1, 8, 8)).astype(np.float32)
    y = np.arange(20) % 10
    fit(model, SoftmaxCrossEntropyLoss(), SGD(head, 0.1), x, y, epochs=1, progress=False)
    head_names = {name for name in before if model.params[name] is head.params[name.split(".")[-1]]}
    assert head_names  # the head's parameters are found under the model's names
    for name, value in model.params.items():
        assert np.array_equal(value, before[name]) != (name in head_names)


def test_a_cuda_graph_needs_the_gpu_or_the_emulator(digits):
    x_train, y_train = digits[:2]
    model = digits_cnn(dropout=0.0, seed=0)
    with pytest.raises(ValueError, match="gpu or emulator device, not 'cpu'"):
        fit(
            model,
            SoftmaxCrossEntropyLoss(),
            SGD(model, 0.05),
            x_train,
            y_train,
            progress=False,
            cuda_graph=True,
        )


def test_what_is_not_a_model_or_examples_is_named():
    # These were AttributeErrors from deep inside (None has no attribute 'device').
    model, loss = digits_cnn(), SoftmaxCrossEntropyLoss()
    x, y = np.zeros((4, 1, 8, 8), np.float32), np.zeros(4, np.int64)
    for not_a_model in (None, [Dense(3, 2)], Sequential):
        with pytest.raises(TypeError, match="model must be a gpucnn layer"):
            fit(not_a_model, loss, SGD(model, 0.1), x, y, progress=False)
        with pytest.raises(TypeError, match="model must be a gpucnn layer"):
            evaluate(not_a_model, loss, x, y)
        with pytest.raises(TypeError, match="model must be a gpucnn layer"):
            predict(not_a_model, x)
    with pytest.raises(TypeError, match="evaluate: x must be an array of examples"):
        evaluate(model, loss, 1.5, y)
    with pytest.raises(TypeError, match="x must be an array of examples"):
        predict(model, None)
