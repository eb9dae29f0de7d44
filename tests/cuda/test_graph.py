"""gpucnn.cuda.graph: launches recorded once, replayed on the arrays the capture saw, with
the scalars it saw; on the emulator and on a GPU."""

from __future__ import annotations

import numpy as np
import pytest

import gpucnn
from gpucnn import ops
from gpucnn.cuda import _launch
from gpucnn.cuda.graph import Graph


def _on(backend):
    gpucnn.set_device(backend.name)
    return backend


@pytest.fixture
def device(backend):
    yield _on(backend)
    gpucnn.set_device("cpu")


def test_a_replay_reruns_the_launches_on_the_arrays_the_capture_saw(device):
    source = device.put(np.array([-2.0, 3.0, -0.5, 4.0], np.float32))
    graph = Graph(source)
    results = []
    with graph.capture():
        results.append(ops.relu_forward(source))
    (out,) = results
    with graph.ordered():  # eager work in order with the replays (their stream, on a GPU)
        out[...] = 7  # the capture ran nothing: a replay has to write every element
        graph.replay()
        assert np.array_equal(gpucnn.to_numpy(out), [0, 3, 0, 4])
        source[...] = device.put(np.array([1.0, -1.0, 2.0, -2.0], np.float32))
        graph.replay()  # the new contents of the same array
        assert np.array_equal(gpucnn.to_numpy(out), [1, 0, 2, 0])


def test_scalars_are_those_of_the_capture(device):
    param = device.put(np.ones(300, np.float32))
    grad = device.put(np.ones(300, np.float32))
    graph = Graph(param)
    with graph.capture():
        ops.sgd_update(param, grad, lr=0.25)
    with graph.ordered():
        for _ in range(2):
            graph.replay()
        assert np.array_equal(gpucnn.to_numpy(param), np.full(300, 0.5, np.float32))


def test_replay_before_capture_is_an_error(device):
    with pytest.raises(RuntimeError, match="before a capture"):
        Graph(device.put(np.zeros(1, np.float32))).replay()


def test_a_failed_capture_leaves_nothing_recorded(device):
    x = device.put(np.ones(4, np.float32))
    graph = Graph(x)
    with pytest.raises(ValueError, match="inside"), graph.capture():
        ops.relu_forward(x)
        raise ValueError("inside")
    assert not graph.captured
    assert _launch._recorded is None
    assert np.array_equal(gpucnn.to_numpy(ops.relu_forward(x)), np.ones(4))  # eager again


def test_emulator_captures_do_not_nest():
    with _launch.recording(), pytest.raises(RuntimeError, match="already capturing"):
        with _launch.recording():
            pass
    assert _launch._recorded is None
