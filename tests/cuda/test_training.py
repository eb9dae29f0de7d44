"""A whole training run on the CUDA path follows the NumPy path's loss curve."""

from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from gpucnn.data import load_digits, train_test_split
from gpucnn.emulator import set_sanitize
from gpucnn.layers import Dense, Flatten, Layer, Sequential
from gpucnn.losses import HingeLoss, MSELoss, SoftmaxCrossEntropyLoss
from gpucnn.models import digits_cnn
from gpucnn.optim import SGD, CosineLR, StepLR
from gpucnn.train import TrainingDiverged, TrainStep, evaluate, fit


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


@pytest.mark.gpu
def test_the_digits_model_reaches_the_cpu_accuracy_on_the_gpu(gpu_backend):
    # The whole default job (tests/test_train.py's run) on both paths: float32 rounding may
    # flip a few of the 360 held-out predictions, no more.
    x_train, y_train, x_test, y_test = train_test_split(*load_digits(), test_fraction=0.2, seed=0)

    def train():
        model = digits_cnn(seed=0)
        optimizer = SGD(model, 0.05, momentum=0.9, schedule=CosineLR(8))
        loss = SoftmaxCrossEntropyLoss()
        fit(
            model,
            loss,
            optimizer,
            x_train,
            y_train,
            epochs=8,
            batch_size=32,
            seed=0,
            progress=False,
        )
        return evaluate(model, loss, x_test, y_test)["accuracy"]

    on_cpu = train()
    on_gpu = gpu_backend.run(train)
    assert on_cpu >= 0.95 and abs(on_gpu - on_cpu) <= 0.01, (on_cpu, on_gpu)


def test_labels_out_of_range_are_caught_once_before_training(backend):
    x, y = load_digits()
    y = y[:32].copy()
    y[5] = 10

    def train():
        model = digits_cnn(seed=0)
        fit(model, SoftmaxCrossEntropyLoss(), SGD(model, 0.05), x[:32], y, epochs=1, progress=False)

    with pytest.raises(ValueError, match=r"fit: class labels in \[0, 10\] but the model has 10"):
        backend.run(train)


def test_data_that_is_not_finite_is_refused_on_the_device(backend):
    x, y = load_digits()
    x = x[:16].copy()
    x[11, 0, 4, 4] = np.nan

    def train():
        model = digits_cnn(seed=0)
        fit(model, SoftmaxCrossEntropyLoss(), SGD(model, 0.05), x, y[:16], progress=False)

    with pytest.raises(ValueError, match=r"fit: x holds NaN .*\(the first in example 11\)"):
        backend.run(train)


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_a_diverging_run_stops_on_the_device(backend, cuda_graph):
    x, y = load_digits()

    def train():
        model = Sequential([Flatten(), Dense(64, 10, seed=0)])
        optimizer = SGD(
            model, 0.05, schedule=lambda base_lr, epoch: base_lr if epoch == 0 else 1e38
        )
        fit(
            model,
            SoftmaxCrossEntropyLoss(),
            optimizer,
            x[:18],
            y[:18],
            epochs=3,
            batch_size=9,
            progress=False,
            cuda_graph=cuda_graph,
        )

    with pytest.raises(TrainingDiverged, match="in epoch 2") as error:
        backend.run(train)
    assert error.value.history.epoch == [1]


# A kernel that keeps the GPU busy for a given number of nanoseconds (%globaltimer, sm_70+).
_SPIN = r"""
extern "C" __global__ void spin(unsigned long long nanoseconds) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < nanoseconds);
}
"""


@pytest.mark.gpu
@pytest.mark.parametrize("model_name", ["digits_cnn", "lenet5"])
def test_a_training_step_never_waits_for_the_gpu(model_name):
    # Issue #5: no host round trip inside a step. The step is issued behind a kernel that
    # spins for a second: had anything in it waited for the GPU (a read-back, a sync, a
    # blocking copy), the spin would be over by the time the step returns to the host.
    import cupy

    from gpucnn.models import lenet5

    gpucnn.set_device("gpu")
    x, y = load_digits()
    if model_name == "lenet5":
        model = lenet5(seed=0)
        x = np.pad(x, ((0, 0), (0, 0), (10, 10), (10, 10)))  # 8x8 digits centred in 28x28
    else:
        model = digits_cnn(dropout=0.25, seed=0)
    loss_fn = SoftmaxCrossEntropyLoss()
    optimizer = SGD(model, 0.05, momentum=0.9, weight_decay=1e-4)
    xb, yb = gpucnn.to_device(x[:64], "gpu"), gpucnn.to_device(y[:64], "gpu")

    def step():
        pred = model.forward(xb)
        loss = loss_fn.forward(pred, yb, check_targets=False)  # fit checks labels once
        model.backward(loss_fn.backward())
        optimizer.step()
        return loss

    for _ in range(2):  # compiles the kernels; fills CuPy's memory pool for the steady state
        step()
    cupy.cuda.get_current_stream().synchronize()
    spin = cupy.RawKernel(_SPIN, "spin")
    spin((1,), (1,), (np.uint64(1_000_000_000),))
    busy = cupy.cuda.Event()
    busy.record()
    loss = step()
    still_busy = not busy.done
    busy.synchronize()
    assert still_busy, "the training step waited for the GPU"
    assert np.isfinite(float(loss))


@pytest.mark.parametrize(
    "examples, dropout, loss",
    [(40, 0.25, MSELoss), (48, 0.0, HingeLoss)],
    ids=["a smaller last batch, dropout, MSE", "whole batches, hinge"],
)
def test_a_cuda_graph_trains_as_the_eager_steps_do(backend, examples, dropout, loss):
    # Three epochs, the learning rate halved for the third (which records the step again);
    # the second replays the first's recording, after the first's last, smaller batch ran
    # eagerly (40 = 2 * 16 + 8). On the emulator, whose replays run exactly the recorded
    # launches, any work the step did outside a kernel would be missing from the replays.
    # The gradients left behind are the last step's, replayed (48) or eager (40). Dropout
    # draws a new mask at each replay from its counter on the device.
    set_sanitize(False)  # (the kernels' own tests run sanitized; here, 500 launches would take
    # half a minute, each in a process of its own)
    x, y = load_digits()
    x, y = x[:examples], y[:examples]

    def train(cuda_graph):
        model = digits_cnn(dropout=dropout, seed=0)
        optimizer = SGD(model, 0.05, momentum=0.9, weight_decay=1e-4, schedule=StepLR(2, 0.5))
        history = fit(
            model,
            loss(),
            optimizer,
            x,
            y,
            epochs=3,
            batch_size=16,
            seed=0,
            progress=False,
            cuda_graph=cuda_graph,
        )
        host = {
            f"{kind} {k}": gpucnn.to_numpy(v)
            for kind, store in (("param", model.params), ("grad", model.grads))
            for k, v in store.items()
        }
        return history.loss + history.accuracy, host

    eager_scores, eager = backend.run(train, False)
    graph_scores, graph = backend.run(train, True)
    _assert_graph_matches_eager(
        backend,
        {"scores": np.array(graph_scores), **graph},
        {"scores": np.array(eager_scores), **eager},
    )


class _Doubling(Layer):
    """A user's layer, in CuPy / NumPy array code: not graph-safe unless it says so."""

    def forward(self, x):
        return x * 2

    def backward(self, grad_out, need_input_grad=True):
        return grad_out * 2


class _HalfMSE(MSELoss):
    """A user's loss, array code on top of gpucnn's: it overrides backward without saying
    it is graph-safe, so MSELoss's promise does not pass on to it."""

    def backward(self):
        return super().backward() * 0.5


def _fit_digits(backend, x, labels, extra_layer=False, loss=None, **arguments):
    """fit the digits CNN on ``backend`` (preceded by a _Doubling layer if ``extra_layer``)
    with ``loss`` (softmax cross-entropy by default)."""
    gpucnn.set_device(backend.name)
    try:
        model = digits_cnn(seed=0)
        if extra_layer:
            model = Sequential([_Doubling(), model])
        loss = SoftmaxCrossEntropyLoss() if loss is None else loss
        fit(model, loss, SGD(model, 0.05), x, labels, progress=False, **arguments)
    finally:
        gpucnn.set_device("cpu")


def test_a_cuda_graph_refuses_what_it_cannot_replay(backend):
    x, y = load_digits()
    x, y = x[:64], y[:64]
    with pytest.raises(ValueError, match=r"_Doubling\(\) cannot be recorded"):
        _fit_digits(backend, x, y, extra_layer=True, cuda_graph=True)
    with pytest.raises(ValueError, match="_HalfMSE cannot be recorded"):
        _fit_digits(backend, x, y, loss=_HalfMSE(), cuda_graph=True)
    with pytest.raises(ValueError, match="integer class labels"):
        _fit_digits(backend, x, y.astype(np.float32), cuda_graph=True)
    with pytest.raises(TypeError, match="cuda_graph must be True, False or None, got int"):
        _fit_digits(backend, x, y, cuda_graph=1)


def test_fit_records_the_step_by_default_where_nothing_stands_in_its_way(backend, monkeypatch):
    # The default (cuda_graph=None) graphs the step where cuda_graph=True would, and trains
    # eagerly, without an error, where True would refuse: a user's layer or loss that does
    # not say it is graph-safe, or labels that are not integer classes.
    set_sanitize(False)  # (the kernels' own tests run sanitized)
    x, y = load_digits()
    x, y = x[:32], y[:32]
    asked = []
    step = gpucnn.train.TrainStep

    def recording_step(*args, cuda_graph, **kwargs):
        asked.append(cuda_graph)
        return step(*args, cuda_graph=cuda_graph, **kwargs)

    monkeypatch.setattr(gpucnn.train, "TrainStep", recording_step)
    one_epoch = {"epochs": 1, "batch_size": 8}
    _fit_digits(backend, x, y, **one_epoch)
    _fit_digits(backend, x, y, extra_layer=True, **one_epoch)
    _fit_digits(backend, x, y, loss=_HalfMSE(), **one_epoch)
    one_hot = np.eye(10, dtype=np.float32)[y]  # targets, not labels
    _fit_digits(backend, x, one_hot, loss=MSELoss(), **one_epoch)
    assert asked == [True, False, False, False]


def test_an_epochs_smaller_last_batch_stays_eager_and_the_graph_is_recorded_once(
    backend, monkeypatch
):
    # 30 examples in batches of 8: three full batches and one of 6 an epoch. The full
    # batches' step is recorded once (after one eager warm-up step) and replayed in every
    # epoch; the batch of 6 runs eagerly each time, never recorded, never displacing it.
    set_sanitize(False)  # (the kernels' own tests run sanitized)
    recorded = []
    record = gpucnn.train.TrainStep._record

    def counting(self, x, y, size):
        recorded.append(size)
        return record(self, x, y, size)

    monkeypatch.setattr(gpucnn.train.TrainStep, "_record", counting)
    x, y = load_digits()
    _fit_digits(backend, x[:30], y[:30], epochs=3, batch_size=8, cuda_graph=True)
    assert recorded == [8]


def _digits_step(cuda_graph, dropout=0.0, momentum=0.0):
    """The digits model and a TrainStep for it (its labels checked by the caller)."""
    model = digits_cnn(dropout=dropout, seed=0)
    optimizer = SGD(model, 0.05, momentum=momentum)
    loss = SoftmaxCrossEntropyLoss()
    return model, TrainStep(model, loss, optimizer, cuda_graph=cuda_graph, check_targets=False)


def _assert_graph_matches_eager(backend, graph: dict, eager: dict):
    for name, value in eager.items():
        if backend.name == "emulator":  # the very same kernels, replayed
            assert np.array_equal(graph[name], value), name
        else:  # the eager dense layers ran on cuBLAS, the captured ones on our kernels
            assert np.allclose(graph[name], value, rtol=1e-4, atol=1e-6), name


def test_a_graphed_train_step_wants_int64_labels(backend):
    x, y = load_digits()

    def step():
        _, train_step = _digits_step(cuda_graph=True)
        put = gpucnn.to_device
        train_step(put(x[:16]), put(y[:16].astype(np.int32)))

    with pytest.raises(TypeError, match="int64"):
        backend.run(step)


def test_after_a_graph_replay_the_layers_hold_its_gradients(backend):
    # A replay writes the arrays its capture made; an eager step in between (a batch of
    # another size) points the layers at new ones: after the next replay they must hold the
    # replay's gradients again, as after an eager step.
    set_sanitize(False)
    x, y = load_digits()
    sizes = [16, 16, 8, 16]  # warm-up, capture and replay, eager, replay

    def train(cuda_graph):
        model, step = _digits_step(cuda_graph, momentum=0.9)
        start = 0
        for size in sizes:
            xb = gpucnn.to_device(x[start : start + size])
            yb = gpucnn.to_device(y[start : start + size].astype(np.int64))
            step(xb, yb)
            start += size
        with step.ordered():
            return {k: gpucnn.to_numpy(v) for k, v in model.grads.items()}

    _assert_graph_matches_eager(backend, backend.run(train, True), backend.run(train, False))


def test_a_graph_records_again_when_the_model_changes_mode(backend):
    # Recorded with Dropout in eval mode (the identity), then put in training mode: the next
    # recording must draw masks, as the eager steps do.
    set_sanitize(False)
    x, y = load_digits()

    def steps(cuda_graph):
        model, step = _digits_step(cuda_graph, dropout=0.25)
        model.eval()
        xb, yb = gpucnn.to_device(x[:8]), gpucnn.to_device(y[:8].astype(np.int64))
        for _ in range(3):  # warm-up, record, replay
            step(xb, yb)
        model.train()
        for _ in range(3):  # an eager step in the new mode, its recording, a replay
            step(xb, yb)
        with step.ordered():
            return {k: gpucnn.to_numpy(v) for k, v in model.params.items()}

    _assert_graph_matches_eager(backend, backend.run(steps, True), backend.run(steps, False))


class _FailsWhenRecorded(Layer):
    """Says it is graph-safe, then does host work that a capture refuses (as a layer that
    reads a value back would on a GPU)."""

    graph_safe = True

    def forward(self, x):
        from gpucnn.cuda import _launch

        if _launch._recorded is not None or _capturing_on_gpu(x):
            raise RuntimeError("operation not permitted when stream is capturing")
        return x

    def backward(self, grad_out, need_input_grad=True):
        return grad_out


def _capturing_on_gpu(x) -> bool:
    if not hasattr(x, "__cuda_array_interface__"):
        return False
    import cupy

    return cupy.cuda.get_current_stream().is_capturing()


def test_a_failed_recording_is_reported_and_the_model_kept(backend):
    x, y = load_digits()

    def steps():
        model = Sequential([_FailsWhenRecorded(), digits_cnn(dropout=0.0, seed=0)])
        step = TrainStep(
            model, SoftmaxCrossEntropyLoss(), SGD(model, 0.05), cuda_graph=True, check_targets=False
        )
        xb, yb = gpucnn.to_device(x[:8]), gpucnn.to_device(y[:8].astype(np.int64))
        step(xb, yb)  # the eager warm-up
        before = {k: gpucnn.to_numpy(v) for k, v in model.params.items()}
        with pytest.raises(RuntimeError, match="recording the training step failed") as caught:
            step(xb, yb)
        assert "not permitted when stream is capturing" in str(caught.value)
        after = {k: gpucnn.to_numpy(v) for k, v in model.params.items()}
        assert all(np.array_equal(before[k], after[k]) for k in before)

    backend.run(steps)
