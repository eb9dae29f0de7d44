"""The one kernel loader: a .cu file becomes a CuPy ``RawModule`` (on a GPU) or an
``EmulatedModule`` (on the CPU), built once per process and device, with every template
instantiation exported through ``name_expressions``."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

import numpy as np

from .._device import is_cupy_array
from ._source import (
    CPP_NAME_OF_DTYPE,
    Param,
    kernel_files,
    kernel_source,
    name_expressions,
    parse_kernels,
    resolve_params,
    split_name_expression,
)

# What NVRTC is told, on a GPU and in the compile checks alike.
NVRTC_OPTIONS = ("--std=c++17",)

_modules: dict[tuple[str, str], object] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Kernel:
    """A compiled kernel and the signature the launch helper checks its arguments against."""

    source: str  # the .cu file, e.g. "pool2d.cu"
    name: str  # the name expression, e.g. "maxpool2d_forward<float>"
    params: tuple[Param, ...]
    function: object  # cupy.RawKernel or gpucnn.emulator.EmulatedKernel
    on_gpu: bool
    # Per parameter, what the launch helper needs on its fast path, worked out once: the
    # NumPy scalar type and, for integer scalars, the (min, max) a value must fit.
    scalar_types: tuple = field(init=False, repr=False, compare=False)
    int_bounds: tuple = field(init=False, repr=False, compare=False)
    # Whether each parameter is a pointer, and the largest array (in elements) the kernel may
    # take: 2^31 - 1 unless it has a 64-bit integer scalar parameter (a size or offset; a
    # pointer to int64 data says nothing about how the kernel indexes).
    pointers: tuple = field(init=False, repr=False, compare=False)
    max_array_size: int = field(init=False, repr=False, compare=False)
    # For each integer scalar parameter, the cache of converted values of its type
    # (``int_scalar_cache``), else None.
    int_caches: tuple = field(init=False, repr=False, compare=False)
    # On a GPU, the launch helper's ``DriverLauncher`` for this kernel, made at its first
    # launch.
    launcher: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        bounds = []
        for param in self.params:
            info = np.iinfo(param.dtype) if param.dtype.kind in "iu" else None
            bounds.append(None if param.pointer or info is None else (info.min, info.max))
        wide = any(
            not p.pointer and p.dtype.itemsize == 8 and p.dtype.kind in "iu" for p in self.params
        )
        object.__setattr__(self, "scalar_types", tuple(p.dtype.type for p in self.params))
        object.__setattr__(self, "int_bounds", tuple(bounds))
        object.__setattr__(self, "pointers", tuple(p.pointer for p in self.params))
        object.__setattr__(self, "max_array_size", 2**63 - 1 if wide else 2**31 - 1)
        caches = tuple(
            None if b is None else int_scalar_cache(p.dtype.type)
            for p, b in zip(self.params, bounds, strict=True)
        )
        object.__setattr__(self, "int_caches", caches)


# Integer scalars already converted to their parameter's NumPy type, by type and value: a
# launch passes the same sizes over and over, and a dict lookup costs a sixth of making a
# NumPy scalar (0.03 against 0.16 us; a convolution passes 17). Filled by the launch helper.
_int_scalar_caches: dict[type, dict[int, np.generic]] = {}


def int_scalar_cache(scalar_type: type) -> dict[int, np.generic]:
    return _int_scalar_caches.setdefault(scalar_type, {})


def _device_key(on_gpu: bool) -> str:
    if not on_gpu:
        return "emulator"
    import cupy

    return f"cuda:{cupy.cuda.Device().id}"


def load_module(filename: str, on_gpu: bool):
    """The module for ``filename`` on the current CUDA device (or the emulator), cached."""
    key = (filename, _device_key(on_gpu))
    with _lock:
        module = _modules.get(key)
        if module is None:
            source = kernel_source(filename)
            expressions = name_expressions(source)
            if on_gpu:
                import cupy

                module = cupy.RawModule(
                    code=source, options=NVRTC_OPTIONS, name_expressions=expressions
                )
            else:
                from ..emulator import EmulatedModule

                module = EmulatedModule(source, NVRTC_OPTIONS, expressions)
            _modules[key] = module
    return module


def get_kernel(filename: str, name: str, like) -> Kernel:
    """Kernel ``name`` of ``filename`` for arrays like ``like``: a CuPy array selects the GPU,
    a NumPy array the emulator; a template kernel is instantiated for ``like.dtype``."""
    on_gpu = is_cupy_array(like)
    return _kernel(filename, name, like.dtype.str, _device_key(on_gpu), on_gpu)


# Parsing a source for its signatures takes about a millisecond: once per kernel, dtype and
# device, not once per launch.
@functools.cache
def _kernel(filename: str, name: str, dtype: str, device_key: str, on_gpu: bool) -> Kernel:
    decl = parse_kernels(kernel_source(filename))[name]
    expression = name
    if decl.template_params:
        expression = f"{name}<{CPP_NAME_OF_DTYPE[np.dtype(dtype)]}>"
    params = resolve_params(decl, split_name_expression(expression)[1])
    function = load_module(filename, on_gpu).get_function(expression)
    return Kernel(filename, expression, params, function, on_gpu)


def warmup(on_gpu: bool | None = None) -> list[str]:
    """Compile every kernel of every .cu file now, for the GPU (default when the current
    device is the GPU) or the emulator; returns the name expressions compiled. On a GPU,
    CuPy keeps the binaries in its cache (``CUPY_CACHE_DIR``), so later processes skip NVRTC."""
    if on_gpu is None:
        from .._device import get_device

        on_gpu = get_device() == "gpu"
    compiled = []
    for filename in kernel_files():
        module = load_module(filename, on_gpu)
        expressions = name_expressions(kernel_source(filename))
        if on_gpu:
            for expression in expressions:
                module.get_function(expression)
        else:
            module.compile()
        compiled.extend(f"{filename}:{expression}" for expression in expressions)
    return compiled
