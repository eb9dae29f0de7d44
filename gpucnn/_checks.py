"""Argument checks shared by the ops, the layers and the command lines. Each error names the
argument at fault."""

from __future__ import annotations

import argparse
import math
import numbers
import os
from pathlib import Path

import numpy as np

from ._device import array_device

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_path(path, name: str = "path") -> Path:
    """``path`` (a str or os.PathLike) as a Path."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def check_array(x, name: str) -> str:
    """The device of ``x`` ("host" or "gpu"), which must be a NumPy or CuPy array."""
    try:
        return array_device(x)
    except TypeError:
        raise TypeError(
            f"{name} must be a numpy.ndarray or cupy.ndarray, got {type(x).__name__}"
        ) from None


def check_float_array(x, name: str, ndim: int | None = None):
    """``x`` is a NumPy/CuPy array of float32 or float64 (with ``ndim`` dims when given)."""
    check_array(x, name)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    return x


def check_same_kind(reference, reference_name: str, **others) -> None:
    """Every array in ``others`` has the dtype and the device of ``reference``."""
    where = array_device(reference)
    for name, array in others.items():
        if array is None:
            continue
        if check_array(array, name) != where:
            _refuse_other_device(reference, reference_name, array, name)
        if array.dtype != reference.dtype:
            raise TypeError(
                f"{name} has dtype {array.dtype} but {reference_name} has {reference.dtype}"
            )


def check_same_device(reference, reference_name: str, array, name: str) -> None:
    """``array`` is on the device of ``reference`` (its dtype may differ)."""
    if check_array(array, name) != array_device(reference):
        _refuse_other_device(reference, reference_name, array, name)


def _refuse_other_device(reference, reference_name: str, array, name: str):
    raise TypeError(
        f"{name} is a {_kind_name(array)} but {reference_name} is a "
        f"{_kind_name(reference)}: move both to one device with gpucnn.to_device"
    )


def _kind_name(x) -> str:
    return "cupy.ndarray (GPU)" if array_device(x) == "gpu" else "numpy.ndarray (host)"


def check_choice(value, name: str, choices: tuple[str, ...]) -> str:
    """``value`` is one of the strings ``choices`` (tested as a str first: an array compared
    with a tuple would raise NumPy's "truth value is ambiguous")."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_flag(value, name: str) -> bool:
    """``value`` as a bool: True or False (or NumPy's bool), never a number or a string
    ("no" would be truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def check_examples(a, name: str):
    """``a`` as an array of examples along its first axis: NumPy and CuPy arrays as they are,
    lists and other sequences as NumPy arrays; a scalar or a non-numeric object is refused."""
    if not hasattr(a, "shape"):
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as error:  # ragged nested lists
            raise TypeError(f"{name} must be an array of examples: {error}") from None
    if len(a.shape) == 0 or a.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must be an array of examples (one per row), got "
            f"{type(a).__name__} of dtype {a.dtype} and shape {tuple(a.shape)}"
        )
    return a


def check_shape(x, name: str, expected: tuple[int, ...]) -> None:
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(x.shape)}")


def check_shape4(shape, name: str) -> tuple[int, int, int, int]:
    """A 4-tuple of non-negative ints (an NCHW shape passed as an argument). Only integers:
    int() would have turned 4.9 into 4 and "4" into 4."""
    # The usual call, an array's own shape, without the ABC checks below (3.9 -> 0.5 us;
    # every pooling backward passes one)
    if type(shape) is tuple and len(shape) == 4 and all(type(d) is int and d >= 0 for d in shape):
        return shape
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of 4 ints, got {shape!r}") from None
    # (bytes iterate as ints: b"1144" would pass as (49, 49, 52, 52))
    if isinstance(shape, (str, bytes)) or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims
    ):
        raise TypeError(f"{name} must be a tuple of 4 ints, got {shape!r}")
    if len(dims) != 4 or any(d < 0 for d in dims):
        raise ValueError(f"{name} must be a tuple of 4 non-negative ints, got {shape!r}")
    return tuple(int(d) for d in dims)


def check_number(value, name: str, low: float, high: float = math.inf, low_open=False) -> float:
    """``value`` as a float in [low, high) (or (low, high) with ``low_open``): a real number,
    not a bool, never NaN; with the default ``high`` that also refuses infinity."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not (low < value if low_open else low <= value) or not value < high:  # NaN fails too
        bound = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bound}{low}, {high}), got {value}")
    return value


def check_finite_in(value: float, name: str, dtype) -> None:
    """A rate or margin that an op rounds to the arrays' ``dtype`` must stay finite there
    (1e39 is a float64 but rounds to inf in float32)."""
    largest = float(np.finfo(dtype).max)
    if abs(value) > largest:
        raise ValueError(f"{name} = {value} overflows {np.dtype(dtype)}, the arrays' dtype")


def check_probability(p, name: str) -> float:
    return check_number(p, name, 0.0, 1.0)


def check_int(value, name: str, lowest: int) -> int:
    """``value`` as an int >= lowest (a plain or NumPy integer, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < lowest:
        raise ValueError(f"{name} must be >= {lowest}, got {value}")
    return int(value)


def cli_number_in(low: float, high: float = math.inf, low_open: bool = False):
    """An argparse type for a command-line rate: a float checked as ``check_number`` checks
    it, at parse time, so a bad value is refused before any data is loaded."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        try:
            return check_number(value, "value", low, high, low_open)
        except ValueError as error:  # "value must be in ...": argparse names the option
            raise argparse.ArgumentTypeError(str(error).removeprefix("value ")) from None

    return parse


def env_flag(variable: str, default: bool = False) -> bool:
    """The environment variable ``variable`` as a switch: 1/true/yes/on or 0/false/no/off in
    any case; unset or empty means ``default``. Anything else is an error naming it, rather
    than a guess at what was meant."""
    setting = os.environ.get(variable, "").strip().lower()
    if not setting:
        return default
    if setting in ("1", "true", "yes", "on"):
        return True
    if setting in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{variable} must be 1 or 0, got {os.environ[variable]!r}")


def make_rng(seed, name: str = "seed") -> np.random.Generator:
    """A Generator from a non-negative int seed, an existing Generator, or None (fresh
    entropy): what NumPy accepts, with errors that name the argument."""
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    return np.random.default_rng(check_seed(seed, name))


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` as an int, which must be non-negative (NumPy's generators refuse others)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int, a numpy Generator or None, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be >= 0, got {seed}")
    return int(seed)


def cli_int_at_least(lowest: int):
    """An argparse type for a command-line count: an int >= lowest, refused with a message
    that says so (argparse's own, for a non-number, would show this function's name)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be >= {lowest}, got {value}")
        return value

    return parse
