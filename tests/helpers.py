"""Test helpers: error measures, distinct-valued inputs, finite differences, and slow loop
references that are obviously correct (one output element at a time)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info


def draw_conv_case(draw, max_size: int = 12, max_stride: int = 4, max_dilation: int = 3):
    """Hypothesis: a valid convolution's ((N, C, H, W), (K, C, R, S), geometry) with kernels
    1-4 wide, strides below, at and past the kernel, dilation, padding up to 3, sizes from
    the smallest the window allows to ``max_size``."""
    from hypothesis import strategies as st

    def pair(low, high):
        return (draw(st.integers(low, high)), draw(st.integers(low, high)))

    size, stride, dilation, padding = (
        pair(1, 4),
        pair(1, max_stride),
        pair(1, max_dilation),
        pair(0, 3),
    )
    hw = tuple(
        draw(st.integers(max(1, dilation[a] * (size[a] - 1) + 1 - 2 * padding[a]), max_size))
        for a in (0, 1)
    )
    n, c, k = pair(1, 3) + (draw(st.integers(1, 5)),)
    geometry = dict(stride=stride, padding=padding, dilation=dilation)
    return (n, c, *hw), (k, c, *size), geometry


def conv_case_inputs(case, seed=0):
    """x, w and b of a convolution case (N, C, H, W, K, R, S, stride, padding, dilation),
    standard normal in float64."""
    n, c, h, w, k, r, s, *_ = case
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, c, h, w)),
        rng.standard_normal((k, c, r, s)),
        rng.standard_normal(k),
    )


def conv_case_geometry(case) -> dict:
    """The stride, padding and dilation keywords of a convolution case."""
    return dict(stride=case[7], padding=case[8], dilation=case[9])


def check_drawn_conv_case(draw, backend) -> None:
    """Hypothesis: a drawn convolution (``draw_conv_case``), forward and all three gradients
    in float64 on ``backend``, against the NumPy path."""
    from hypothesis import strategies as st

    from gpucnn import ops

    x_shape, w_shape, geometry = draw_conv_case(draw, 10, 3, 2)
    rng = np.random.default_rng(draw(st.integers(0, 100)))
    # Positive values: a sum that cancels to rounding noise has no meaningful relative error.
    x, w, b = (rng.random(shape) + 0.1 for shape in (x_shape, w_shape, w_shape[:1]))
    y = ops.conv2d_forward(x, w, b, **geometry)
    dy = np.random.default_rng(3).random(y.shape) + 0.1
    assert rel_error(backend.run(ops.conv2d_forward, x, w, b, **geometry), y) < 1e-13
    got = backend.run(ops.conv2d_backward, dy, x, w, **geometry)
    for value, reference in zip(got, ops.conv2d_backward(dy, x, w, **geometry), strict=True):
        assert rel_error(value, reference) < 1e-13


def draw_pool_case(draw, max_size: int = 9, pairs: bool = False):
    """Hypothesis: a valid pooling's ((N, C, H, W), geometry): kernels 1-4 wide, strides
    below, at and past the kernel, padding up to kernel // 2, ceil_mode either way; one case
    in four has windows that tile the image exactly (stride = kernel, no padding, sizes a
    multiple of the kernel: the usual 2x2/2, which the CUDA path runs on its own kernels).
    With ``pairs``, 3x3 windows at column stride 2 only (the CUDA path's forward _pairs
    kernels), any row stride, 2 (its max-pool backward's _quads kernel) one time in two."""
    from hypothesis import strategies as st

    kernel = (3, 3) if pairs else (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    if pairs:
        stride = (draw(st.sampled_from([1, 2, 2, 2, 3, 4])), 2)
        padding = tuple(draw(st.integers(0, 1)) for _ in range(2))
        hw = tuple(draw(st.integers(3 - 2 * padding[a], max_size + 3)) for a in (0, 1))
    elif draw(st.integers(0, 3)) == 0:
        stride, padding = kernel, (0, 0)
        hw = tuple(kernel[a] * draw(st.integers(1, max(1, max_size // kernel[a]))) for a in (0, 1))
    else:
        stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
        padding = tuple(draw(st.integers(0, kernel[a] // 2)) for a in (0, 1))
        hw = tuple(draw(st.integers(max(1, kernel[a] - 2 * padding[a]), max_size)) for a in (0, 1))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *hw)
    geometry = dict(
        kernel_size=kernel, stride=stride, padding=padding, ceil_mode=draw(st.booleans())
    )
    return shape, geometry


def draw_special_values(draw, shape, dtype=np.float64):
    """Hypothesis: an array of few distinct values (ties everywhere), NaN and -inf."""
    from hypothesis import strategies as st

    size = math.prod(shape)
    values = st.sampled_from([0.0, 1.0, 2.0, -np.inf, np.nan])
    return np.array(draw(st.lists(values, min_size=size, max_size=size)), dtype).reshape(shape)


def count_refusals(load, original: bytes, damaged_path, tries: int, seed: int, cut=0.0) -> int:
    """Write ``tries`` damaged copies of a good file's bytes to ``damaged_path`` (1-8 bytes
    overwritten, and with probability ``cut`` the end cut off) and ``load`` each: it must
    succeed or raise a ValueError naming the file, nothing else. Returns how many it
    refused."""
    rng = np.random.default_rng(seed)
    refused = 0
    for _ in range(tries):
        data = bytearray(original)
        for where in rng.integers(0, len(data), rng.integers(1, 9)):
            data[where] = rng.integers(0, 256)
        if rng.random() < cut:
            data = data[: rng.integers(0, len(data))]
        damaged_path.write_bytes(bytes(data))
        try:
            load(damaged_path)
        except ValueError as error:
            assert damaged_path.name in str(error)
            refused += 1
    return refused


def rel_error(out, ref) -> float:
    """||out - ref|| / ||ref|| (or ||out - ref|| when ref is all zeros); NaN never passes."""
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    assert out.shape == ref.shape, f"shape {out.shape} != {ref.shape}"
    assert np.array_equal(np.isnan(out), np.isnan(ref)), "NaN positions differ"
    mask = ~np.isnan(ref)
    diff = np.linalg.norm(np.where(mask, out - ref, 0).ravel())
    scale = np.linalg.norm(np.where(mask, ref, 0).ravel())
    return float(diff / scale) if scale > 0 else float(diff)


def same_bits(got, expected) -> bool:
    """The same dtype, shape and values bit for bit, the sign of zero included (which
    np.array_equal ignores: -0.0 == 0.0); NaN matches NaN in the same places whatever its
    payload and sign, which the hardware picks (x86 and CUDA make different NaNs)."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.dtype != expected.dtype or got.shape != expected.shape:
        return False
    if got.dtype.kind != "f":
        return np.array_equal(got, expected)
    nan = np.isnan(expected)
    if not np.array_equal(np.isnan(got), nan):
        return False
    got, expected = got[~nan], expected[~nan]
    return np.array_equal(got, expected) and np.array_equal(np.signbit(got), np.signbit(expected))


def shuffled_linspace(shape, dtype=np.float64, seed=0, low=-1.0, high=1.0):
    """Distinct values in random order (Chainer's trick): no ties, so max pooling's argmax and
    a finite-difference gradient never depend on tie-breaking."""
    size = math.prod(shape)
    values = np.linspace(low, high, size, dtype=np.float64)
    return np.random.default_rng(seed).permutation(values).reshape(shape).astype(dtype)


def numerical_gradient(f, x, eps=1e-6):
    """d(sum of f(x))/dx by central differences, element by element, in float64."""
    x = x.astype(np.float64, copy=True)
    grad = np.zeros_like(x)
    flat, flat_grad = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        plus = float(np.sum(f(x)))
        flat[i] = keep - eps
        minus = float(np.sum(f(x)))
        flat[i] = keep
        flat_grad[i] = (plus - minus) / (2 * eps)
    return grad


# ------------------------------------------------------------------------ loop references


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv2d_loop(x, w, b=None, stride=1, padding=0, dilation=1):
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, height, width = x.shape
    k, _, r, s = w.shape
    out_h = (height + 2 * ph - dh * (r - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (s - 1) - 1) // sw + 1
    y = np.zeros((n, k, out_h, out_w), np.float64)
    for ni in range(n):
        for ki in range(k):
            for p in range(out_h):
                for q in range(out_w):
                    total = 0.0 if b is None else float(b[ki])
                    for ci in range(c):
                        for ri in range(r):
                            for si in range(s):
                                h = p * sh - ph + ri * dh
                                wi = q * sw - pw + si * dw
                                if 0 <= h < height and 0 <= wi < width:
                                    total += float(w[ki, ci, ri, si]) * float(x[ni, ci, h, wi])
                    y[ni, ki, p, q] = total
    return y


def pool_out(length, k, stride, pad, ceil_mode):
    """PyTorch's pooling output size, written out independently of gpucnn._shapes."""
    numerator = length + 2 * pad - k + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1
    if ceil_mode and (out - 1) * stride >= length + pad:
        out -= 1
    return out


def _pool_loop(x, kernel, stride, padding, ceil_mode, reduce):
    """Apply ``reduce(plane, cells, inside)`` to every window, one at a time.

    cells: the window's (h, w) positions in row-major order, padding and overhang included;
    inside: those within the image. Returns an (N, C, P, Q) object array of the results.
    """
    (kh, kw), (ph, pw) = _pair(kernel), _pair(padding)
    sh, sw = _pair(stride if stride is not None else kernel)
    n, c, height, width = x.shape
    out_h = pool_out(height, kh, sh, ph, ceil_mode)
    out_w = pool_out(width, kw, sw, pw, ceil_mode)
    results = np.empty((n, c, out_h, out_w), dtype=object)
    for ni, ci, p, q in np.ndindex(results.shape):
        cells = [(p * sh - ph + i, q * sw - pw + j) for i in range(kh) for j in range(kw)]
        inside = [(h, w) for h, w in cells if 0 <= h < height and 0 <= w < width]
        results[ni, ci, p, q] = reduce(x[ni, ci], cells, inside)
    return results


def max_pool2d_loop(x, kernel, stride=None, padding=0, ceil_mode=False):
    """The spec: start at the first in-bounds element; move on strict > or on the first NaN."""
    width = x.shape[3]

    def reduce(plane, cells, inside):
        best = inside[0]
        for h, w in inside[1:]:
            if np.isnan(plane[best]):
                break
            if np.isnan(plane[h, w]) or plane[h, w] > plane[best]:
                best = (h, w)
        return plane[best], best[0] * width + best[1]

    results = _pool_loop(x, kernel, stride, padding, ceil_mode, reduce)
    y = np.array([v for v, _ in results.ravel()], x.dtype).reshape(results.shape)
    argmax = np.array([i for _, i in results.ravel()], np.int32).reshape(results.shape)
    return y, argmax


def avg_pool2d_loop(x, kernel, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    height, width = x.shape[2:]
    ph, pw = _pair(padding)

    def reduce(plane, cells, inside):
        total = sum(float(plane[h, w]) for h, w in inside)
        if count_include_pad:  # padding counts, the ceil_mode overhang past it does not
            return total / sum(1 for h, w in cells if h < height + ph and w < width + pw)
        return total / len(inside)

    return _pool_loop(x, kernel, stride, padding, ceil_mode, reduce).astype(np.float64)


def l2_pool2d_loop(x, kernel, stride=None, padding=0, ceil_mode=False):
    def reduce(plane, cells, inside):
        return math.sqrt(sum(float(plane[h, w]) ** 2 for h, w in inside))

    return _pool_loop(x, kernel, stride, padding, ceil_mode, reduce).astype(np.float64)


def misaligned(a):
    """``a``'s values in a C-contiguous array (of ``a``'s device) that starts one element past
    an allocation's start: contiguous, but off the 16-byte boundary vector loads need."""
    from gpucnn._device import array_module

    flat = array_module(a).empty(a.size + 1, a.dtype)
    view = flat[1:].reshape(a.shape)
    view[...] = a
    return view


def record_launches(monkeypatch, module) -> list[str]:
    """The names (without template arguments) of the kernels ``module`` launches from now
    on, in order: ``module`` is a gpucnn.cuda wrapper that calls ``launch``."""
    launched = []
    real = module.launch

    def recording(kernel, *args, **kwargs):
        launched.append(kernel.name.split("<")[0])
        return real(kernel, *args, **kwargs)

    monkeypatch.setattr(module, "launch", recording)
    return launched


def numpy_blas() -> list[dict]:
    """threadpoolctl's entries for NumPy's own BLAS, the one that runs its products: a wheel
    carries it in numpy.libs (or inside the package). SciPy's, loaded with scikit-learn,
    never runs them. Where none is found there (a NumPy linked to a system BLAS), every BLAS
    threadpoolctl sees."""
    package = Path(np.__file__).parent
    homes = (package, package.parent / "numpy.libs")
    blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
    own = [i for i in blas if any(Path(i["filepath"]).is_relative_to(h) for h in homes)]
    return own or blas
