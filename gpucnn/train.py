"""Minibatch training and evaluation.

``fit`` shuffles the training set and splits it into minibatches every epoch (minibatch
SGD as classically defined), shows a tqdm progress bar with the running loss and accuracy,
evaluates on a validation set after each epoch and returns the history. Losses and counts
are accumulated on the model's device and read back only when the bar refreshes.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import ops
from ._checks import check_examples, check_flag, check_int, make_rng
from ._device import array_module, to_device, to_numpy
from .layers.base import Layer, backward_of, is_graph_safe, nested_parts


@dataclass
class History:
    """Per-epoch records of ``fit``; validation entries are None without validation data."""

    epoch: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float | None] = field(default_factory=list)
    val_accuracy: list[float | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self, index: int = -1) -> str:
        """One epoch as a line of text, e.g. for logs."""
        text = (
            f"epoch {self.epoch[index]:3d}  lr {self.lr[index]:.4g}  "
            f"loss {self.loss[index]:.4f}  acc {self.accuracy[index]:.4f}"
        )
        if self.val_loss[index] is not None:
            text += f"  val_loss {self.val_loss[index]:.4f}  val_acc {self.val_accuracy[index]:.4f}"
        return text + f"  ({self.seconds[index]:.1f}s)"


def _check_model(model) -> None:
    if not isinstance(model, Layer):
        raise TypeError(
            "model must be a gpucnn layer or model (e.g. gpucnn.layers.Sequential([...])), "
            f"got {type(model).__name__}"
        )


def _dataset_on_model(model, x, y, name: str):
    """(x, y) checked and on the model's device and in its dtype (``_on_model``): arrays of as
    many examples, at least one, x of floats, all finite; ``name`` leads each error."""
    x, y = _check_inputs(x, f"{name}: x"), check_examples(y, f"{name}: y")
    if len(x) != len(y):
        raise ValueError(f"{name}: x has {len(x)} examples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError(f"{name}: the data set is empty")
    with np.errstate(over="ignore"):  # what overflows the model's dtype is named next
        x, y = _on_model(model, x), _on_model(model, y)
    for label, array in (("x", x), ("y", y)):
        _check_finite(array, f"{name}: {label}")
    return x, y


def _check_inputs(x, name: str):
    """``x`` as examples a model can take: floats. 8-bit images would otherwise be refused
    by the first layer at the first step, in words that name neither the data nor a fix."""
    x = check_examples(x, name)
    if x.dtype.kind != "f":
        raise TypeError(
            f"{name} must hold floats, got {x.dtype}: convert it first, e.g. "
            "x.astype(np.float32) / 255 for 8-bit images"
        )
    return x


def _on_model(model, array):
    """``array`` on the model's device, in the model's float dtype if it holds floats: NumPy
    makes float64 by default, and a float32 model would refuse it op by op. Converted once,
    up front (labels and other integers are left as they are)."""
    array = to_device(array, model.device)
    params = list(model.params.values())
    if params and array.dtype.kind == "f" and array.dtype != params[0].dtype:
        array = array.astype(params[0].dtype)
    return array


def _check_finite(array, name: str) -> None:
    """Refuse NaN and inf in data (checked in the model's dtype: 1e39 is inf in float32). One
    would make every loss and weight NaN from its first batch on, silently."""
    if array.dtype.kind != "f":
        return
    finite = array_module(array).isfinite(array).reshape(len(array), -1).all(axis=1)
    if not bool(finite.all()):  # one host read on a GPU
        first = int(to_numpy(finite).argmin())
        raise ValueError(f"{name} holds NaN or infinite values (the first in example {first})")


def _labels_checked(model, x, y, name: str) -> bool:
    """Check every integer class label against the model's number of outputs, once (on a GPU,
    one host sync instead of one per step). True when the per-step checks can be skipped."""
    if y.dtype.kind not in "iu" or y.ndim != 1:
        return False
    try:
        (classes,) = model.output_shape(tuple(x.shape[1:]))
    except (ValueError, TypeError):
        return False  # the loss will check each batch itself
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        raise ValueError(
            f"{name}: class labels in [{low}, {high}] but the model has {classes} "
            f"outputs (valid labels are 0 to {classes - 1})"
        )
    return True


def _layers(model):
    """The layers of ``model``, nested ``Sequential`` models opened up."""
    return (part for _, part in nested_parts(model) if getattr(part, "layers", None) is None)


def _check_methods(value, name: str, methods: tuple[str, ...], example: str) -> None:
    """``value`` is an object (not a class) with these methods, or a TypeError naming it."""
    if isinstance(value, type):
        raise TypeError(f"{name} is the class {value.__name__}, not one: {value.__name__}(...)")
    if not all(callable(getattr(value, method, None)) for method in methods):
        wanted = " and ".join(f"{method}()" for method in methods)
        raise TypeError(f"{name} must have {wanted} (e.g. {example}), got {type(value).__name__}")


def _check_loss(loss_fn) -> None:
    _check_methods(loss_fn, "loss_fn", ("forward", "backward"), "SoftmaxCrossEntropyLoss()")


def _check_optimizer(model, optimizer) -> None:
    _check_methods(optimizer, "optimizer", ("step", "set_epoch"), "SGD(model, lr)")
    # An optimizer of one part of the model (fine-tuning a layer) is fine; of another
    # model, its step would find none of the gradients this model's backward leaves.
    updated = getattr(optimizer, "model", None)
    if updated is not None and not any(part is updated for _, part in nested_parts(model)):
        raise ValueError(
            "optimizer updates the parameters of another model: make it from the model being "
            "trained (gpucnn.optim.SGD(model, lr)) or from one of its layers"
        )


def _batch(x, y, index):
    return (x, y) if index is None else (x[index], y[index])


def graph_obstacle(model, loss_fn, check_targets: bool) -> str | None:
    """Why a training step of ``model`` and ``loss_fn`` cannot be recorded as a CUDA graph,
    or None if it can."""
    if model.device not in ("gpu", "emulator"):
        return f"cuda_graph needs the model on the gpu or emulator device, not {model.device!r}"
    unsafe = [repr(layer) for layer in _layers(model) if not is_graph_safe(layer)]
    if unsafe:
        return (
            f"cuda_graph: {', '.join(unsafe)} cannot be recorded as a CUDA graph (a layer "
            "says it can with graph_safe = True: its forward and backward only launch "
            "kernels, read nothing back and keep no host state that changes per step)"
        )
    if not is_graph_safe(loss_fn):
        return (
            f"cuda_graph: {type(loss_fn).__name__} cannot be recorded as a CUDA graph "
            "(gpucnn's losses can; a loss of your own says so with graph_safe = True)"
        )
    if check_targets:
        return (
            "cuda_graph needs check_targets=False: checking labels reads them back every "
            "step (check them once beforehand, as fit does)"
        )
    return None


class TrainStep:
    """One training step on a batch: forward, loss, backward (no input gradient), the
    optimizer's update, and the running loss sum and correct count in ``totals`` (float64,
    on the model's device, read back only by ``scores``).

    With ``cuda_graph=True`` (GPU or emulator) the step is recorded as a CUDA graph and
    replayed (``gpucnn.cuda.graph``): the host issues a step in a few calls instead of ~40
    launches. The first step of a batch size runs eagerly (it creates what the step keeps,
    e.g. the momentum buffers, and loads every kernel), the second is captured, the rest
    replay it, reading their batch from arrays the capture saw. A change of the optimizer's
    settings (a learning-rate schedule) or of the model's mode records the step again, after
    one eager step; a batch of another size (an epoch's last) runs eagerly. It needs every
    layer and the loss to be ``graph_safe`` (gpucnn's layers and losses are; one of your own
    says so when it holds) and integer class labels checked beforehand
    (``check_targets=False``). Run eager work that touches the step's arrays inside
    ``ordered()``: on a GPU the graph has a stream of its own.
    """

    def __init__(self, model, loss_fn, optimizer, *, cuda_graph=False, check_targets=True):
        cuda_graph = check_flag(cuda_graph, "cuda_graph")
        _check_model(model)
        _check_loss(loss_fn)
        _check_optimizer(model, optimizer)
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.check_targets = check_targets
        self._graph = None
        if cuda_graph:
            self._check_graph_safe()
            from .cuda.graph import Graph

            like = next(iter(model.params.values()), None)
            if like is None:
                raise ValueError("cuda_graph needs a model with parameters")
            self._graph = Graph(like)
        self.totals = to_device(np.zeros(2, np.float64), model.device)  # loss sum, correct
        self._xp = array_module(self.totals)
        self._settings = None  # the optimizer settings the recording holds
        self._warm = None  # the settings of the last eager step of the graph's batch size
        self._inputs = None  # (x, labels): the arrays the recording reads its batch from
        self._attributes = None  # the layers' and loss's state as the capture left it
        self._bound = False  # whether that state is the layers' now

    def _check_graph_safe(self) -> None:
        obstacle = graph_obstacle(self.model, self.loss_fn, self.check_targets)
        if obstacle is not None:
            raise ValueError(obstacle)

    def ordered(self):
        """A context for eager work on the step's arrays: on the graph's stream (a GPU with
        cuda_graph=True), so that it stays in order with the replays."""
        return self._graph.ordered() if self._graph is not None else contextlib.nullcontext()

    def reset_scores(self) -> None:
        with self.ordered():
            self.totals.fill(0)

    def scores(self) -> tuple[float, float]:
        """(loss sum, correct count) since ``reset_scores``: reads them back (a host sync)."""
        with self.ordered():
            loss_sum, correct = to_numpy(self.totals)
        return float(loss_sum), float(correct)

    def _eager(self, xb, yb) -> None:
        pred = self.model.forward(xb)
        loss = self.loss_fn.forward(pred, yb, check_targets=self.check_targets)
        backward_of(self.model, self.loss_fn.backward(), need_input_grad=False)
        self.optimizer.step()
        value = getattr(self.loss_fn, "value", None)
        ops.accumulate_scores(self.totals, loss if value is None else value, pred, yb)

    def __call__(self, x, y, index=None) -> None:
        """One step on ``x[index], y[index]`` (all of x and y when index is None)."""
        if self._graph is None:
            self._eager(*_batch(x, y, index))
            return
        with self.ordered():
            self._step_graphed(x, y, index)

    def _step_graphed(self, x, y, index) -> None:
        if y.dtype != np.int64:
            raise TypeError(
                f"cuda_graph: class labels must be int64 (the kernels' type), got {y.dtype}; "
                "convert them once with y.astype(numpy.int64)"
            )
        size = len(x) if index is None else len(index)
        settings = (  # what a recording freezes; a change records again
            size,
            self.model.training,
            self.optimizer.lr,
            self.optimizer.momentum,
            self.optimizer.weight_decay,
            self.optimizer.nesterov,
        )
        if settings != self._settings:
            if settings != self._warm:  # a first step of this batch size and these settings
                self._bound = False
                with self._graph.warming_up():
                    self._eager(*_batch(x, y, index))
                if self._settings is None or size == self._settings[0]:
                    self._warm = settings  # (an epoch's last, smaller batch stays eager)
                return
            self._record(x, y, size)
            self._settings = settings
        xs, ys = self._inputs
        if index is None:
            xs[...], ys[...] = x, y
        else:
            self._xp.take(x, index, axis=0, out=xs)
            self._xp.take(y, index, axis=0, out=ys)
        self._graph.replay()
        if not self._bound:
            for layer, grads, saved in self._attributes[0]:
                layer.grads.clear()
                layer.grads.update(grads)
                layer._saved = saved
            self.loss_fn._saved, self.loss_fn.value = self._attributes[1]
            self._bound = True

    def _record(self, x, y, size: int) -> None:
        self._check_graph_safe()  # again: a layer of the user's may answer otherwise now
        # The last recording's arrays go back to the graph's pool for this one to reuse.
        self._attributes = self._inputs = None
        xs = self._xp.empty((size, *x.shape[1:]), x.dtype)
        ys = self._xp.empty(size, y.dtype)
        self._inputs = (xs, ys)
        try:
            with self._graph.capture():
                self._eager(xs, ys)
        except Exception as exc:  # the model is as the last eager step left it: nothing ran
            raise RuntimeError(
                f"cuda_graph: recording the training step failed ({type(exc).__name__}: "
                f"{exc}); the model holds the last completed step; train with "
                "cuda_graph=False"
            ) from exc
        self._attributes = (
            [(layer, dict(layer.grads), layer._saved) for layer in _layers(self.model)],
            (self.loss_fn._saved, self.loss_fn.value),
        )
        self._bound = True


EVAL_BATCH_SIZE = 256  # evaluate's default, and fit's for its validation set


def _batches(count: int, batch_size: int, order=None):
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        yield order[start:stop] if order is not None else slice(start, stop)


def evaluate(model, loss_fn, x, y, batch_size: int = EVAL_BATCH_SIZE) -> dict:
    """Mean loss and accuracy of ``model`` on (x, y), in eval mode (dropout off)."""
    batch_size = check_int(batch_size, "batch_size", 1)
    _check_loss(loss_fn)
    _check_model(model)
    x, y = _dataset_on_model(model, x, y, "evaluate")
    return _evaluate(model, loss_fn, x, y, batch_size, not _labels_checked(model, x, y, "evaluate"))


def _evaluate(model, loss_fn, x, y, batch_size: int, check_targets: bool) -> dict:
    """``evaluate`` on data already checked and on the model (``fit``'s validation set, each
    epoch: its checks ran once, up front)."""
    was_training = model.training
    model.eval()
    try:
        totals = array_module(x).zeros(2, np.float64)  # loss sum, correct count
        for batch in _batches(len(x), batch_size):
            pred = model.forward(x[batch])
            loss = loss_fn.forward(pred, y[batch], check_targets=check_targets)
            ops.accumulate_scores(totals, loss, pred, y[batch])
    finally:
        model.train(was_training)
    loss_sum, correct = to_numpy(totals)
    return {"loss": float(loss_sum) / len(x), "accuracy": float(correct) / len(x)}


def fit(
    model,
    loss_fn,
    optimizer,
    x,
    y,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    validation_data=None,
    seed: int = 0,
    progress: bool = True,
    verbose: bool = False,
    refresh_every: int = 10,
    cuda_graph: bool | None = None,
) -> History:
    """Train ``model`` on (x, y) with minibatch SGD; returns a ``History``.

    x and y are copied to the model's device once, up front, floats in the model's dtype (a
    float64 array trains a float32 model). Each epoch reshuffles with a generator seeded by
    ``seed`` (so a run is reproducible), calls ``optimizer.set_epoch`` (the learning-rate
    schedule), runs forward, loss, backward and step per minibatch (the last one may be
    smaller), then evaluates on ``validation_data=(x_val, y_val)``.
    ``verbose`` prints one line per epoch; ``progress`` shows a tqdm bar whose running loss
    and accuracy refresh every ``refresh_every`` steps (the only host syncs on a GPU).
    ``cuda_graph=True`` (GPU or emulator) records the step as a CUDA graph and replays it
    (``TrainStep``): the same updates, issued by the host in a few calls instead of ~40
    launches; the model and loss must allow it (``graph_safe``) and y must hold integer class
    labels. The default, None, records it wherever that holds (on an H100 the recorded step
    ran 1.3-2.8x faster: benchmarks/NOTES.md) and runs eagerly otherwise; False always runs
    eagerly.
    """
    if cuda_graph is not None and not isinstance(cuda_graph, bool):
        raise TypeError(f"cuda_graph must be True, False or None, got {type(cuda_graph).__name__}")
    epochs = check_int(epochs, "epochs", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    refresh_every = check_int(refresh_every, "refresh_every", 1)
    _check_model(model)
    x, y = _dataset_on_model(model, x, y, "fit")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val)")
        # Checked, and on the model's device and in its dtype, once: not by every epoch
        x_val, y_val = _dataset_on_model(model, *validation_data, "validation_data")
        val_check_targets = not _labels_checked(model, x_val, y_val, "validation_data")
    check_targets = not _labels_checked(model, x, y, "fit")
    if cuda_graph is None:  # wherever nothing stands in its way
        cuda_graph = graph_obstacle(model, loss_fn, check_targets) is None
    if cuda_graph:
        if check_targets:
            raise ValueError(
                "fit(cuda_graph=True) needs y to hold integer class labels (1-D) for a model "
                "whose output shape is known: they are checked once, before the graph"
            )
        y = y.astype(np.int64, copy=False)  # the kernels' type, converted once
    step = TrainStep(model, loss_fn, optimizer, cuda_graph=cuda_graph, check_targets=check_targets)
    xp = array_module(x)
    rng = make_rng(seed)
    history = History()
    steps_per_epoch = -(-len(x) // batch_size)

    from tqdm.auto import tqdm

    for epoch in range(epochs):
        started = time.perf_counter()
        lr = optimizer.set_epoch(epoch)
        model.train()
        with step.ordered():
            order = xp.asarray(rng.permutation(len(x)))
        step.reset_scores()
        seen = 0
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{epochs}",
            leave=False,
            disable=not progress,
            unit="step",
        )
        for number, batch in enumerate(_batches(len(x), batch_size, order), start=1):
            step(x, y, batch)
            seen += len(batch)
            bar.update(1)
            if progress and (number % refresh_every == 0 or number == steps_per_epoch):
                loss_sum, correct = step.scores()  # the only host sync
                _stop_if_diverged(loss_sum, epoch, lr, history, bar)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
        bar.close()
        loss_sum, correct = step.scores()
        _stop_if_diverged(loss_sum, epoch, lr, history, bar)
        history.epoch.append(epoch + 1)
        history.lr.append(lr)
        history.loss.append(float(loss_sum) / seen)
        history.accuracy.append(float(correct) / seen)
        if validation_data is not None:
            scores = _evaluate(model, loss_fn, x_val, y_val, EVAL_BATCH_SIZE, val_check_targets)
            history.val_loss.append(scores["loss"])
            history.val_accuracy.append(scores["accuracy"])
        else:
            history.val_loss.append(None)
            history.val_accuracy.append(None)
        history.seconds.append(time.perf_counter() - started)
        if verbose:
            print(history.line(), flush=True)
    return history


class TrainingDiverged(FloatingPointError):
    """``fit`` stopped because the training loss became NaN or infinite: every step after
    that only spreads NaN through the weights. ``history`` holds the epochs completed
    before it; the model's weights may no longer be finite (restore saved ones)."""

    def __init__(self, message: str, history: History):
        super().__init__(message)
        self.history = history


def _stop_if_diverged(loss_sum, epoch: int, lr: float, history: History, bar) -> None:
    """Raise TrainingDiverged if the loss read back from the device is not finite. Checked
    only where the loss reaches the host anyway (bar refreshes and each epoch's end)."""
    if np.isfinite(loss_sum):
        return
    bar.close()
    raise TrainingDiverged(
        f"fit: the training loss became {float(loss_sum)} in epoch {epoch + 1} (learning rate "
        f"{lr:.4g}): training diverged, and the weights may no longer be finite; try a "
        "smaller learning rate",
        history,
    )


def predict(model, x, batch_size: int = 256):
    """Model outputs for x in eval mode, as a NumPy array."""
    batch_size = check_int(batch_size, "batch_size", 1)
    _check_model(model)
    x = _on_model(model, _check_inputs(x, "predict: x"))
    was_training = model.training
    model.eval()
    try:
        batches = list(_batches(len(x), batch_size)) or [slice(0, 0)]  # empty x: (0, outputs)
        outputs = [to_numpy(model.forward(x[batch])) for batch in batches]
    finally:
        model.train(was_training)
    return np.concatenate(outputs)
