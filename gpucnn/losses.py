"""Loss objects: ``forward(pred, target) -> loss``, ``backward() -> grad_pred``.

Every loss is averaged over the batch. ``forward`` returns a Python float for NumPy inputs
and a 0-d CuPy array for GPU inputs, so that training on the GPU reads the value back to the
host only when it wants to show it (``float(loss)`` works on both).

Integer class targets are checked to lie in [0, C). On a GPU that check is a host sync; a
caller that validated all its labels once (as ``fit`` does) passes ``check_targets=False``.
"""

from __future__ import annotations

from . import ops
from ._checks import check_number
from ._device import array_device


class _Loss:
    # Whether a training step ending in this loss can be recorded as a CUDA graph (see
    # gpucnn.layers.Layer.graph_safe and is_graph_safe): gpucnn's losses are all kernel
    # launches on the CUDA path; a loss of the user's says so when that holds.
    graph_safe = False

    def __init__(self):
        self._saved = None
        self.value = None  # the last forward's loss as a 0-d array on pred's device

    def _result(self, loss, pred):
        """What ``forward`` returns: a Python float on the host, a 0-d array (no host sync)
        on the GPU; ``value`` keeps the array either way."""
        self.value = loss
        return float(loss) if array_device(pred) == "host" else loss

    def __call__(self, pred, target, *, check_targets: bool = True):
        return self.forward(pred, target, check_targets=check_targets)

    def _restore(self):
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward()")
        return self._saved


class SoftmaxCrossEntropyLoss(_Loss):
    """Softmax over classes then the negative log-likelihood of the integer targets, computed
    with log-sum-exp so large logits never overflow. pred (N, C), target (N,) integers."""

    graph_safe = True

    def forward(self, pred, target, *, check_targets: bool = True):
        loss, probabilities = ops.softmax_cross_entropy_forward(pred, target, check_targets)
        self._saved = (probabilities, target)
        return self._result(loss, pred)

    def backward(self):
        probabilities, target = self._restore()
        return ops.softmax_cross_entropy_backward(probabilities, target)


class MSELoss(_Loss):
    """The classic squared error: 1/2 * sum_j (y_j - d_j)^2 for each example, averaged over
    the batch (not over the elements). ``target`` is a float array shaped like pred, or
    integer class labels, which are one-hot encoded."""

    graph_safe = True

    def forward(self, pred, target, *, check_targets: bool = True):
        loss, diff = ops.mse_forward(pred, target, check_targets)
        self._saved = diff
        return self._result(loss, pred)

    def backward(self):
        return ops.mse_backward(self._restore())


class HingeLoss(_Loss):
    """Multiclass hinge (Weston-Watkins): sum over wrong classes j of
    max(0, pred_j - pred_target + margin), averaged over the batch."""

    graph_safe = True

    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = check_number(margin, "margin", 0.0)

    def forward(self, pred, target, *, check_targets: bool = True):
        loss, violations = ops.hinge_forward(pred, target, self.margin, check_targets)
        self._saved = (violations, target)
        return self._result(loss, pred)

    def backward(self):
        violations, target = self._restore()
        return ops.hinge_backward(violations, target)
