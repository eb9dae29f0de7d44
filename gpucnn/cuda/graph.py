"""CUDA graphs: record a sequence of launches once, then replay it with one call.

At LeNet / CIFAR sizes a training step is about 40 launches of kernels that take a few
microseconds each, so on a GPU it costs what the host spends issuing them
(benchmarks/NOTES.md). Recorded as a CUDA graph, a replay issues them all in one call.

``Graph.capture()`` is a context: the launches inside are recorded, not run, and
``Graph.replay()`` runs them. A replay reads and writes exactly what the capture saw: the same
arrays (addresses) and the same scalar arguments. So a caller copies its next inputs into the
arrays the capture read, and whatever the captured work allocated stays alive with the
graph. Work that needs the host inside (a synchronisation, a value read back) cannot be
captured.

- On a GPU: CuPy's stream capture, on a stream of the graph's own (``Graph.stream``: eager
  work that feeds a replay best runs on it, ``ordered()``), and allocations inside
  come from a memory pool of the graph's own. Memory the captured work frees (its
  temporaries) thus goes back to that pool, never to other work that a replay would then
  overwrite. CuPy refuses cuBLAS calls during a capture, which is why the dense layer runs
  its own kernels there (``capturing()``).
- On the emulator: the launch helper records each launch (kernel, grid, block and the
  converted arguments: the very NumPy arrays) instead of running it, and a replay runs them
  in order. NumPy work inside a capture runs once, then, and is never replayed, so a step
  that replays correctly on the emulator does all its work in kernel launches.
"""

from __future__ import annotations

import contextlib
import threading

from .._device import is_cupy_array
from . import _launch

_state = threading.local()  # .warming: this thread runs a graph's warm-up step


def capturing() -> bool:
    """Whether work issued now belongs to a graph: its capture on a GPU, or the eager step
    that warms it up (which runs the same kernels, so that none is loaded during a capture).
    Only asked on the GPU path: it imports CuPy."""
    if getattr(_state, "warming", False):
        return True
    import cupy

    return cupy.cuda.get_current_stream().is_capturing()


class Graph:
    """Launches recorded once by ``capture()`` and run again by each ``replay()``; for GPU
    arrays when ``like`` is a CuPy array, else for the emulator."""

    def __init__(self, like):
        self.on_gpu = is_cupy_array(like)
        self._graph = None  # CuPy's graph, on a GPU
        self._launches: list | None = None  # the recorded launches, on the emulator
        self.stream = self._pool = None
        if self.on_gpu:
            import cupy

            # A blocking stream: CUDA orders its work with the legacy default stream's, so
            # eager work that is not inside ordered() still never races a replay.
            self.stream = cupy.cuda.Stream()
            self._pool = cupy.cuda.MemoryPool()

    @property
    def captured(self) -> bool:
        return self._graph is not None or self._launches is not None

    @contextlib.contextmanager
    def ordered(self):
        """Run the enclosed eager work on the graph's stream (a no-op on the emulator)."""
        if self.stream is None:
            yield
        else:
            with self.stream:
                yield

    @contextlib.contextmanager
    def warming_up(self):
        """The eager step before a capture: work that would take another path outside a
        graph (the dense layer's cuBLAS) takes the captured one, loading its kernels."""
        saved, _state.warming = getattr(_state, "warming", False), True
        try:
            with self.ordered():
                yield
        finally:
            _state.warming = saved

    @contextlib.contextmanager
    def capture(self):
        """Record the enclosed launches (they do not run); replaces any earlier recording."""
        self._graph = self._launches = None
        if not self.on_gpu:
            with _launch.recording() as launches:
                yield
            self._launches = launches
            return
        import cupy

        with self.stream, cupy.cuda.using_allocator(self._pool.malloc):
            self.stream.begin_capture()
            try:
                yield
            except BaseException:
                with contextlib.suppress(Exception):  # the capture is void either way
                    self.stream.end_capture()
                raise
            self._graph = self.stream.end_capture()

    def replay(self) -> None:
        """Run the recorded launches once more, in order (on the graph's stream on a GPU)."""
        if not self.captured:
            raise RuntimeError("Graph.replay() before a capture")
        if self.on_gpu:
            self._graph.launch(stream=self.stream)
        else:
            _launch.run_recorded(self._launches)
