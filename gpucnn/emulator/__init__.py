"""Run gpucnn's real CUDA kernels on the CPU: ``EmulatedModule`` has the interface of CuPy's
``RawModule``, so the GPU code path runs unchanged on NumPy arrays.

    module = EmulatedModule(code=source, name_expressions=["k<float>"])
    kernel = module.get_function("k<float>")
    kernel((blocks,), (threads,), (x, y, np.int32(n)), shared_mem=0)

The kernels are compiled by the host C++ compiler (see ``build.py`` and
``cuda_emulator.hpp``) with CUDA's execution semantics: real barriers, per-block shared
memory, real atomics, 32-lane warps. Sanitizer mode (``GPUCNN_EMULATOR_SANITIZE=1`` or
``set_sanitize(True)``) runs every launch in a separate process built with AddressSanitizer
and UBSan: an out-of-bounds access fails the launch with a ``KernelError`` naming the kernel.
A block's threads run one at a time from barrier to barrier, in thread order, or in reverse
(``GPUCNN_EMULATOR_THREAD_ORDER=reverse`` or ``set_thread_order("reverse")``): CUDA promises
no order, so a race between a block's threads (two writes to one shared element, a read not
separated from a write by a barrier) gives a wrong answer in one order or the other.

Slow by design (a fiber per CUDA thread): for debugging and testing kernels on small shapes.
"""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import threading

import numpy as np

from .._checks import env_flag
from ..cuda._source import Param, parse_kernels, resolve_params, split_name_expression
from .build import EmulatorCompileError, build

__all__ = [
    "EmulatedModule",
    "EmulatorCompileError",
    "KernelError",
    "LaunchError",
    "sanitize_enabled",
    "set_sanitize",
    "set_thread_order",
    "thread_order",
]


class LaunchError(RuntimeError):
    """A launch CUDA itself would refuse (a zero dimension, too many threads, ...)."""


class KernelError(RuntimeError):
    """A kernel failed while running: a sanitizer report, a deadlock, a crash."""


_sanitize_override: bool | None = None
_thread_order_override: str | None = None
THREAD_ORDERS = ("forward", "reverse")
_lock = threading.Lock()
_libraries: dict[str, ctypes.CDLL] = {}

# Exit codes the sanitizers are told to use, so their reports are told apart from crashes.
_ASAN_EXIT, _UBSAN_EXIT = 86, 87


def set_sanitize(enabled: bool | None) -> None:
    """Force sanitizer mode on or off (None: follow ``GPUCNN_EMULATOR_SANITIZE``)."""
    global _sanitize_override
    _sanitize_override = enabled


def sanitize_enabled() -> bool:
    if _sanitize_override is not None:
        return _sanitize_override
    return env_flag("GPUCNN_EMULATOR_SANITIZE")


def set_thread_order(order: str | None) -> None:
    """Resume a block's threads in thread order ("forward") or the reverse (None: follow
    ``GPUCNN_EMULATOR_THREAD_ORDER``, forward when unset)."""
    if order is not None and order not in THREAD_ORDERS:
        raise ValueError(f"order must be one of {THREAD_ORDERS} or None, got {order!r}")
    global _thread_order_override
    _thread_order_override = order


def thread_order() -> str:
    """The order launches resume a block's threads in: "forward" or "reverse"."""
    if _thread_order_override is not None:
        return _thread_order_override
    order = os.environ.get("GPUCNN_EMULATOR_THREAD_ORDER", "").strip() or "forward"
    if order not in THREAD_ORDERS:
        raise ValueError(
            f"GPUCNN_EMULATOR_THREAD_ORDER must be one of {THREAD_ORDERS}, got {order!r}"
        )
    return order


def _workers() -> int:
    value = os.environ.get("GPUCNN_EMULATOR_WORKERS")
    return max(1, int(value)) if value else max(1, os.cpu_count() or 1)


class EmulatedModule:
    """CuPy's ``RawModule(code=..., options=..., name_expressions=...)``, run on the CPU."""

    def __init__(self, code: str, options=(), name_expressions=()):
        self.code = code
        self.options = tuple(options)  # NVRTC options: meaningless to the host compiler
        self.name_expressions = list(name_expressions)
        self._decls = parse_kernels(code)
        self._kernels: dict[str, EmulatedKernel] = {}
        for expression in self.name_expressions:
            name, template_args = split_name_expression(expression)
            if name not in self._decls:
                raise ValueError(f"name expression {expression!r}: no kernel {name} in the code")
            params = resolve_params(self._decls[name], template_args)
            self._kernels[expression] = EmulatedKernel(self, expression, params)

    def get_function(self, name: str) -> EmulatedKernel:
        try:
            return self._kernels[name]
        except KeyError:
            raise KeyError(
                f"{name!r} is not among this module's name_expressions {self.name_expressions}"
            ) from None

    def compile(self, sanitize: bool | None = None) -> None:
        """Build now (otherwise the first launch builds)."""
        sanitize = sanitize_enabled() if sanitize is None else sanitize
        if sanitize:
            build(self.code, self.name_expressions, sanitize=True)
        else:
            self._library()

    def _library(self) -> ctypes.CDLL:
        path = str(build(self.code, self.name_expressions, sanitize=False))
        with _lock:
            if path not in _libraries:
                library = ctypes.CDLL(path)
                library.gpucnn_emu_launch.restype = ctypes.c_int
                library.gpucnn_emu_launch.argtypes = [
                    ctypes.c_char_p,
                    ctypes.POINTER(ctypes.c_uint),
                    ctypes.POINTER(ctypes.c_uint),
                    ctypes.c_ulonglong,
                    ctypes.POINTER(ctypes.c_void_p),
                    ctypes.c_int,
                    ctypes.c_int,
                    ctypes.c_char_p,
                    ctypes.c_int,
                ]
                _libraries[path] = library
            return _libraries[path]


def _dims(value, what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or any(int(d) < 0 for d in dims):
        raise LaunchError(f"CUDA_ERROR_INVALID_VALUE: {what} must be 1 to 3 non-negative ints")
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    if any(d >= 2**32 for d in dims):
        raise LaunchError(f"CUDA_ERROR_INVALID_VALUE: {what} {dims} out of range")
    return dims


def _trim_report(report: str) -> str:
    """A sanitizer report without ASan's notice about fibers and its shadow-byte dump."""
    lines = [
        line
        for line in report.strip().splitlines()
        if "doesn't fully support makecontext/swapcontext" not in line
    ]
    for index, line in enumerate(lines):
        if line.startswith("SUMMARY:"):
            return "\n".join(lines[: index + 1])
    return "\n".join(lines)


class EmulatedKernel:
    """A kernel of an ``EmulatedModule``: call it like a CuPy ``RawKernel``."""

    def __init__(self, module: EmulatedModule, name: str, params: tuple[Param, ...]):
        self.module, self.name, self.params = module, name, params

    def __call__(self, grid, block, args, shared_mem=0):
        grid, block = _dims(grid, "grid"), _dims(block, "block")
        values = self._check_args(args)
        if sanitize_enabled():
            self._run_sanitized(grid, block, int(shared_mem), args, values)
        else:
            self._run_in_process(grid, block, int(shared_mem), args, values)

    def _check_args(self, args) -> list[np.ndarray]:
        """Check each argument against the kernel's signature (RawKernel trusts the caller;
        a wrong type here would be memory corruption, so this does not) and return each
        argument's bytes: a pointer's array, or a one-element array holding a scalar."""
        if len(args) != len(self.params):
            raise TypeError(f"{self.name} takes {len(self.params)} arguments, got {len(args)}")
        values = []
        for value, param in zip(args, self.params, strict=True):
            if param.pointer:
                if value is None:  # a null pointer
                    values.append(None)
                    continue
                if not isinstance(value, np.ndarray):
                    raise TypeError(
                        f"{self.name}: {param.name} must be a numpy.ndarray on the "
                        f"emulator, got {type(value).__name__}"
                    )
                if value.dtype != param.dtype or not value.flags.c_contiguous:
                    raise TypeError(
                        f"{self.name}: {param.name} must be a C-contiguous "
                        f"{param.dtype} array, got {value.dtype}"
                    )
                if not param.const and not value.flags.writeable:
                    raise ValueError(f"{self.name}: {param.name} is written but read-only")
                values.append(value)
            else:
                if not isinstance(value, np.generic) or value.dtype != param.dtype:
                    raise TypeError(
                        f"{self.name}: {param.name} must be a numpy {param.dtype} "
                        f"scalar, got {value!r}"
                    )
                values.append(np.array([value], dtype=param.dtype))
        return values

    def _run_in_process(self, grid, block, shared_mem, args, values) -> None:
        library = self.module._library()
        # cudaLaunchKernel's layout: args[i] points at the i-th parameter's value.
        holders = [
            np.array([0 if v is None else v.ctypes.data], dtype=np.uintp) if p.pointer else v
            for v, p in zip(values, self.params, strict=True)
        ]
        pointers = (ctypes.c_void_p * max(1, len(holders)))(*(h.ctypes.data for h in holders))
        error = ctypes.create_string_buffer(1024)
        status = library.gpucnn_emu_launch(
            self.name.encode(),
            (ctypes.c_uint * 3)(*grid),
            (ctypes.c_uint * 3)(*block),
            shared_mem,
            pointers,
            _workers(),
            int(thread_order() == "reverse"),
            error,
            len(error),
        )
        if status != 0:
            self._raise(error.value.decode(errors="replace"))

    def _run_sanitized(self, grid, block, shared_mem, args, values) -> None:
        runner = build(self.module.code, self.module.name_expressions, sanitize=True)
        name = self.name.encode()
        request = [
            b"GEMU",
            struct.pack("<I", len(name)),
            name,
            struct.pack(
                "<3I3IQiiI",
                *grid,
                *block,
                shared_mem,
                _workers(),
                int(thread_order() == "reverse"),
                len(values),
            ),
        ]
        for value, param in zip(values, self.params, strict=True):
            if param.pointer and value is None:
                request.append(struct.pack("<BQ", 2, 0))  # a null pointer
                continue
            data = value.tobytes()
            request += [struct.pack("<BQ", 1 if param.pointer else 0, len(data)), data]
        env = dict(
            os.environ,
            ASAN_OPTIONS=f"detect_leaks=0:exitcode={_ASAN_EXIT}",
            UBSAN_OPTIONS=f"print_stacktrace=1:halt_on_error=1:exitcode={_UBSAN_EXIT}",
        )
        result = subprocess.run(
            [str(runner)], input=b"".join(request), capture_output=True, env=env
        )
        report = _trim_report(result.stderr.decode(errors="replace"))
        if result.returncode == 3:
            self._raise(report)
        if result.returncode != 0:
            what = {_ASAN_EXIT: "AddressSanitizer", _UBSAN_EXIT: "UndefinedBehaviorSanitizer"}
            raise KernelError(
                f"kernel {self.name} failed under "
                f"{what.get(result.returncode, f'the sanitizers (exit {result.returncode})')}:"
                f"\n{report}"
            )
        offset, output = 0, result.stdout
        for value, param in zip(values, self.params, strict=True):
            if param.pointer and value is not None:
                size = value.nbytes
                if not param.const:
                    value.reshape(-1).view(np.uint8)[:] = np.frombuffer(
                        output, np.uint8, size, offset
                    )
                offset += size

    def _raise(self, message: str):
        if message.startswith("CUDA_ERROR_INVALID_VALUE") or message.startswith(
            "CUDA_ERROR_NOT_FOUND"
        ):
            raise LaunchError(f"{self.name}: {message}")
        raise KernelError(f"kernel {self.name}: {message}")
