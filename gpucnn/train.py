"""Minibatch training and evaluation.

``fit`` shuffles the training set and splits it into minibatches every epoch (minibatch
SGD as classically defined), shows a tqdm progress bar with the running loss and accuracy,
evaluates on a validation set after each epoch and returns the history. Losses and counts
are accumulated on the model's device and read back only when the bar refreshes.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import ops
from ._device import array_module, to_device, to_numpy
from .layers.base import backward_of, positive_int


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


def _check_dataset(x, y, name: str) -> None:
    if len(x) != len(y):
        raise ValueError(f"{name}: x has {len(x)} examples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError(f"{name}: the data set is empty")


def _on_model(model, array):
    """``array`` on the model's device, in the model's float dtype if it holds floats: NumPy
    makes float64 by default, and a float32 model would refuse it op by op. Converted once,
    up front (labels and other integers are left as they are)."""
    array = to_device(array, model.device)
    params = list(model.params.values())
    if params and array.dtype.kind == "f" and array.dtype != params[0].dtype:
        array = array.astype(params[0].dtype)
    return array


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


def _batches(count: int, batch_size: int, order=None):
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        yield order[start:stop] if order is not None else slice(start, stop)


def evaluate(model, loss_fn, x, y, batch_size: int = 256) -> dict:
    """Mean loss and accuracy of ``model`` on (x, y), in eval mode (dropout off)."""
    batch_size = positive_int(batch_size, "batch_size")
    _check_dataset(x, y, "evaluate")
    x, y = _on_model(model, x), _on_model(model, y)
    check_targets = not _labels_checked(model, x, y, "evaluate")
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
) -> History:
    """Train ``model`` on (x, y) with minibatch SGD; returns a ``History``.

    x and y are copied to the model's device once, up front, floats in the model's dtype (a
    float64 array trains a float32 model). Each epoch reshuffles with a generator seeded by
    ``seed`` (so a run is reproducible), calls ``optimizer.set_epoch`` (the learning-rate
    schedule), runs forward, loss, backward and step per minibatch (the last one may be
    smaller), then evaluates on ``validation_data=(x_val, y_val)``.
    ``verbose`` prints one line per epoch; ``progress`` shows a tqdm bar whose running loss
    and accuracy refresh every ``refresh_every`` steps (the only host syncs on a GPU).
    """
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    refresh_every = positive_int(refresh_every, "refresh_every")
    _check_dataset(x, y, "fit")
    if validation_data is not None:
        if len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val)")
        _check_dataset(*validation_data, "validation_data")
    x, y = _on_model(model, x), _on_model(model, y)
    check_targets = not _labels_checked(model, x, y, "fit")
    xp = array_module(x)
    rng = np.random.default_rng(seed)
    history = History()
    steps_per_epoch = -(-len(x) // batch_size)

    from tqdm.auto import tqdm

    for epoch in range(epochs):
        started = time.perf_counter()
        lr = optimizer.set_epoch(epoch)
        model.train()
        order = xp.asarray(rng.permutation(len(x)))
        totals, seen = xp.zeros(2, np.float64), 0  # loss sum, correct count: on the device
        bar = tqdm(
            total=steps_per_epoch,
            desc=f"epoch {epoch + 1}/{epochs}",
            leave=False,
            disable=not progress,
            unit="step",
        )
        for step, batch in enumerate(_batches(len(x), batch_size, order), start=1):
            xb, yb = x[batch], y[batch]
            pred = model.forward(xb)
            loss = loss_fn.forward(pred, yb, check_targets=check_targets)
            backward_of(model, loss_fn.backward(), need_input_grad=False)
            optimizer.step()
            ops.accumulate_scores(totals, loss, pred, yb)
            seen += len(batch)
            bar.update(1)
            if progress and (step % refresh_every == 0 or step == steps_per_epoch):
                loss_sum, correct = to_numpy(totals)  # the only host sync
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
        bar.close()
        loss_sum, correct = to_numpy(totals)
        history.epoch.append(epoch + 1)
        history.lr.append(lr)
        history.loss.append(float(loss_sum) / seen)
        history.accuracy.append(float(correct) / seen)
        if validation_data is not None:
            scores = evaluate(model, loss_fn, *validation_data)
            history.val_loss.append(scores["loss"])
            history.val_accuracy.append(scores["accuracy"])
        else:
            history.val_loss.append(None)
            history.val_accuracy.append(None)
        history.seconds.append(time.perf_counter() - started)
        if verbose:
            print(history.line(), flush=True)
    return history


def predict(model, x, batch_size: int = 256):
    """Model outputs for x in eval mode, as a NumPy array."""
    batch_size = positive_int(batch_size, "batch_size")
    x = _on_model(model, x)
    was_training = model.training
    model.eval()
    try:
        outputs = [to_numpy(model.forward(x[batch])) for batch in _batches(len(x), batch_size)]
    finally:
        model.train(was_training)
    return np.concatenate(outputs)
