// 2-D pooling: max (with argmax), average, L2 and global average; forward and backward.
//
// Layout: x (N, C, H, W), y / argmax / dy (N, C, P, Q), all C-contiguous. A "plane" is one
// (n, c) image: N * C planes of H * W inputs and P * Q outputs. Window (R, S), stride
// (stride_h, stride_w), padding (pad_h, pad_w); window (p, q) covers rows
// [p * stride_h - pad_h, + R) and columns [q * stride_w - pad_w, + S), clipped to the image
// (ceil_mode's overhang past the padding is never read). T is float or double.
//
// Launch: 1-D grids over the elements a kernel owns, walked by grid-stride loops (64-bit
// indices), 256 threads a block; the host caps the grid, so any grid size is correct.
//
// Ownership: forward kernels own one output element per loop step; backward kernels own one
// input element (max pooling's: a segment of kSegment inputs of a row) and gather from the
// windows that contain it, so each dx element is written exactly once: no zero-fill, no
// atomics, bit-for-bit reproducible. Where the windows tile the image, the _tiled kernels
// own one window each instead (forward and backward: a direct write); where they are 3x3 at
// column stride 2, the forward _pairs kernels own two neighbouring outputs of a row, which
// share a column of inputs, and at stride 2 both ways the max-pool backward's _quads kernel
// owns the four inputs from a window's centre. Where other windows overlap and a plane of dy
// and argmax fits in shared memory, the max-pool backward gives each block a plane
// (maxpool2d_backward_shared).
//
// Max pooling reads a 2x2 or 3x3 window's elements before comparing any (compile-time
// sizes, predicated loads), so a thread's loads are in flight together.
#include "common.cuh"

namespace pool {

struct Geometry {
    int H, W, P, Q, R, S, stride_h, stride_w, pad_h, pad_w;
};

// a / b for a >= 0: in 32 bits when a fits (the usual case; a 64-bit division costs several
// times as many instructions, which the gather kernels would spend per element).
__device__ __forceinline__ long long quotient(long long a, int b) {
    return a <= 0xffffffffLL ? (long long)((unsigned)a / (unsigned)b) : a / b;
}

// Inputs per thread in the max-pool backward gather (the host's SEGMENT).
constexpr int kSegment = 4;

// Element i of a stack of planes of rows x cols, as (plane, row, column): two divisions.
struct PlaneIndex {
    long long plane;
    int row, col;
};

__device__ __forceinline__ PlaneIndex plane_index(long long i, int rows, int cols) {
    const long long line = quotient(i, cols), plane = quotient(line, rows);
    return PlaneIndex{plane, (int)(line - plane * rows), (int)(i - line * cols)};
}

// Output element i (of N*C*P*Q) and its window, clipped to the image.
struct OutputWindow {
    long long plane;                     // the (n, c) plane
    int h0, w0;                          // top-left corner, unpadded (may be negative)
    int h_begin, h_end, w_begin, w_end;  // the rows and columns inside the image
};

__device__ __forceinline__ OutputWindow output_window(long long i, const Geometry& g) {
    const PlaneIndex o = plane_index(i, g.P, g.Q);
    OutputWindow window;
    window.plane = o.plane;
    window.h0 = o.row * g.stride_h - g.pad_h;
    window.w0 = o.col * g.stride_w - g.pad_w;
    window.h_begin = max(window.h0, 0), window.h_end = min(window.h0 + g.R, g.H);
    window.w_begin = max(window.w0, 0), window.w_end = min(window.w0 + g.S, g.W);
    return window;
}

// Input element i (of N*C*H*W) and the windows [p_begin, p_end) x [q_begin, q_end) that hold
// it: what a backward gather visits.
struct InputWindows {
    long long plane;
    int h, w, p_begin, p_end, q_begin, q_end;
};

__device__ __forceinline__ int first_window(int c, int size, int stride, int pad) {
    const int shifted = c + pad;
    return shifted < size ? 0 : (shifted - size) / stride + 1;
}

__device__ __forceinline__ InputWindows input_windows(long long i, const Geometry& g) {
    const PlaneIndex in = plane_index(i, g.H, g.W);
    const int h = in.row, w = in.col;
    return InputWindows{in.plane,
                        h,
                        w,
                        first_window(h, g.R, g.stride_h, g.pad_h),
                        min((h + g.pad_h) / g.stride_h + 1, g.P),
                        first_window(w, g.S, g.stride_w, g.pad_w),
                        min((w + g.pad_w) / g.stride_w + 1, g.Q)};
}

// Number of elements the window at (h0, w0) averages over: with count_include_pad the padding
// counts but the ceil_mode overhang past it does not (PyTorch's rule).
__device__ __forceinline__ int avg_divisor(int h0, int w0, const Geometry& g,
                                           int count_include_pad) {
    if (count_include_pad)
        return (min(h0 + g.R, g.H + g.pad_h) - h0) * (min(w0 + g.S, g.W + g.pad_w) - w0);
    return (min(h0 + g.R, g.H) - max(h0, 0)) * (min(w0 + g.S, g.W) - max(w0, 0));
}

// Windows that tile the image exactly (stride = window, no padding, P * R = H, Q * S = W: the
// common 2x2/2 pooling): output i's window, whole and inside the image.
__device__ __forceinline__ OutputWindow tiled_window(long long i, int P, int Q, int R, int S) {
    const PlaneIndex o = plane_index(i, P, Q);
    const int h0 = o.row * R, w0 = o.col * S;
    return OutputWindow{o.plane, h0, w0, h0, h0 + R, w0, w0 + S};
}

// Max pooling's choice among a window's values, in row-major order: the first maximum, or
// the first NaN. Branch-free, so the loads that feed it need not wait for one another.
template <typename T>
__device__ __forceinline__ void consider(T value, int offset, T& best, int& best_offset,
                                         bool& nan_seen) {
    const bool take = !nan_seen && (value > best || isnan(value));
    best = take ? value : best;
    best_offset = take ? offset : best_offset;
    nan_seen = nan_seen || isnan(value);
}

// Max pooling's choice over output window o, clipped to the image: its in-bounds elements in
// row-major order from the first (so an all -inf window still points inside the image), as
// the index h * W + w in the plane. With the window's size known at compile time the loads
// are predicated rather than branched around, so they go out together.
template <int kR, int kS, typename T>
__device__ __forceinline__ void clipped_window_max(const T* image, int W, const OutputWindow& o,
                                                   T& best, int& best_index) {
    T values[kR * kS];
    bool inside[kR * kS];
#pragma unroll
    for (int r = 0; r < kR; ++r)
#pragma unroll
        for (int s = 0; s < kS; ++s) {
            const int h = o.h0 + r, w = o.w0 + s, k = r * kS + s;
            inside[k] = h >= o.h_begin && h < o.h_end && w >= o.w_begin && w < o.w_end;
            values[k] = inside[k] ? image[h * W + w] : T(0);
        }
    best_index = o.h_begin * W + o.w_begin;
    best = image[best_index];
    bool nan_seen = isnan(best);
#pragma unroll
    for (int k = 0; k < kR * kS; ++k)
        if (inside[k])
            consider(values[k], (o.h0 + k / kS) * W + o.w0 + k % kS, best, best_index, nan_seen);
}

// The same for window sizes known only at run time.
template <typename T>
__device__ __forceinline__ void clipped_window_max(const T* image, int W, const OutputWindow& o,
                                                   T& best, int& best_index) {
    best_index = o.h_begin * W + o.w_begin;
    best = image[best_index];
    bool nan_seen = isnan(best);
    for (int h = o.h_begin; h < o.h_end; ++h)
        for (int w = o.w_begin; w < o.w_end; ++w)
            consider(image[h * W + w], h * W + w, best, best_index, nan_seen);
}

// The sum of output window o's in-bounds elements in row-major order; with kR, kS > 0 the
// loads are predicated (the rest read as 0, which leaves the sum's bits unchanged) and go
// out together, else the bounds are read at run time.
template <int kR, int kS, typename T>
__device__ __forceinline__ T clipped_window_sum(const T* image, int W, const OutputWindow& o) {
    T sum = T(0);
    if constexpr (kR > 0 && kS > 0) {
        T values[kR * kS];
#pragma unroll
        for (int r = 0; r < kR; ++r)
#pragma unroll
            for (int s = 0; s < kS; ++s) {
                const int h = o.h0 + r, w = o.w0 + s;
                const bool inside = h >= o.h_begin && h < o.h_end && w >= o.w_begin && w < o.w_end;
                values[r * kS + s] = inside ? image[h * W + w] : T(0);
            }
#pragma unroll
        for (int k = 0; k < kR * kS; ++k)
            sum += values[k];
    } else {
        for (int h = o.h_begin; h < o.h_end; ++h)
            for (int w = o.w_begin; w < o.w_end; ++w)
                sum += image[h * W + w];
    }
    return sum;
}

// Max pooling's choice and the sum over output window o of an R x S pooling: 2x2 and 3x3
// windows at compile time (the same branch for every thread of a launch), others at run time.
template <typename T>
__device__ __forceinline__ void window_max(const T* image, int W, const OutputWindow& o, int R,
                                           int S, T& best, int& best_index) {
    if (R == 3 && S == 3)
        clipped_window_max<3, 3>(image, W, o, best, best_index);
    else if (R == 2 && S == 2)
        clipped_window_max<2, 2>(image, W, o, best, best_index);
    else
        clipped_window_max(image, W, o, best, best_index);
}

template <typename T>
__device__ __forceinline__ T window_sum(const T* image, int W, const OutputWindow& o, int R,
                                        int S) {
    if (R == 3 && S == 3) return clipped_window_sum<3, 3>(image, W, o);
    if (R == 2 && S == 2) return clipped_window_sum<2, 2>(image, W, o);
    return clipped_window_sum<0, 0>(image, W, o);
}

// The gather of one max-pool backward segment: inputs w0 .. w0 + kSegment - 1 of a row, and
// the windows [p_begin, p_end) x [q_begin, q_end) that hold any of them.
struct Segment {
    long long outputs;  // the plane's first output
    int self0;          // the argmax value that points at input e is self0 + e
    int w0, p_begin, p_end, q_begin, q_end;
};

// sum[e] += dy of every window of the segment that chose input e, in window order (p, then
// q). With kRows x kCols > 0 bounding the windows (a compile-time size, the same for every
// thread of a launch), every window's argmax and dy are loaded, predicated, before any is
// compared, so the loads go out together instead of one window's after another's.
template <int kRows, int kCols, typename T>
__device__ __forceinline__ void gather_segment(const T* dy, const int* argmax, const Segment& g,
                                               int Q, int S, int stride_w, int pad_w,
                                               T (&sum)[kSegment]) {
    const auto add = [&](int q, int chosen, T gradient) {
        // the window covers [left, left + S): an input it does not cover gets nothing (checked
        // once a window, not once an input: the loop below is what the kernel spends its
        // instructions on)
        const int left = q * stride_w - pad_w - g.w0;
        const int hit = chosen >= left && chosen < left + S ? chosen : -1;
#pragma unroll
        for (int e = 0; e < kSegment; ++e)
            if (e == hit) sum[e] += gradient;
    };
    if constexpr (kRows > 0 && kCols > 0) {
        int chosen[kRows * kCols];
        T gradient[kRows * kCols];
#pragma unroll
        for (int k = 0; k < kRows * kCols; ++k) {
            const int p = g.p_begin + k / kCols, q = g.q_begin + k % kCols;
            const bool inside = p < g.p_end && q < g.q_end;
            const long long o = g.outputs + p * Q + q;
            chosen[k] = inside ? argmax[o] - g.self0 : -1;  // -1 matches no input
            gradient[k] = inside ? dy[o] : T(0);
        }
#pragma unroll
        for (int k = 0; k < kRows * kCols; ++k)
            add(g.q_begin + k % kCols, chosen[k], gradient[k]);
    } else {
        for (int p = g.p_begin; p < g.p_end; ++p)
            for (int q = g.q_begin; q < g.q_end; ++q) {
                const long long o = g.outputs + p * Q + q;
                const int chosen = argmax[o] - g.self0;
                if (chosen >= 0 && chosen < kSegment) add(q, chosen, dy[o]);
            }
    }
}

// Whether every segment's windows fit gather_segment's unrolled 2 x 3: at most
// ceil(R / stride_h) window rows hold an input row, and ceil((S + kSegment - 1) / stride_w)
// window columns a segment (2 and 3 for 3x3/2, and for 2x2/2).
__device__ __forceinline__ bool few_windows(const Geometry& g) {
    return (g.R + g.stride_h - 1) / g.stride_h <= 2 &&
           (g.S + kSegment - 1 + g.stride_w - 1) / g.stride_w <= 3;
}

// Max-pool backward for the segment of row h of a plane starting at column w0: the gradient
// of inputs w0 .. w0 + kSegment - 1 gathered from the plane's dy and argmax (which start at
// `outputs`), written to the plane's dx row; one vector store where kSegment divides W.
template <typename T>
__device__ __forceinline__ void backward_segment(const T* dy, const int* argmax, long long outputs,
                                                 int h, int w0, const Geometry& g, bool few,
                                                 T* dx_row) {
    const int count = min(kSegment, g.W - w0);
    const Segment segment{outputs,
                          h * g.W + w0,
                          w0,
                          first_window(h, g.R, g.stride_h, g.pad_h),
                          min((h + g.pad_h) / g.stride_h + 1, g.P),
                          first_window(w0, g.S, g.stride_w, g.pad_w),
                          min((w0 + count - 1 + g.pad_w) / g.stride_w + 1, g.Q)};
    T sum[kSegment];
#pragma unroll
    for (int e = 0; e < kSegment; ++e)
        sum[e] = T(0);
    if (few)
        gather_segment<2, 3>(dy, argmax, segment, g.Q, g.S, g.stride_w, g.pad_w, sum);
    else
        gather_segment<0, 0>(dy, argmax, segment, g.Q, g.S, g.stride_w, g.pad_w, sum);
    T* out = dx_row + w0;
    if (g.W % kSegment == 0) {
        store_vector(out, sum);
    } else {
#pragma unroll
        for (int e = 0; e < kSegment; ++e)
            if (e < count) out[e] = sum[e];
    }
}

// Copy `size` elements of a plane into shared memory, the block's threads together: 16-byte
// loads and stores where 4 divides the size (each plane then starts on a 16-byte boundary).
template <typename T>
__device__ __forceinline__ void stage_plane(const T* __restrict__ source, T* staged, int size) {
    if (size % 4 == 0) {
        for (int k = 4 * threadIdx.x; k < size; k += 4 * blockDim.x) {
            T values[4];
            load4(source + k, values);
            store_vector(staged + k, values);
        }
    } else {
        for (int k = threadIdx.x; k < size; k += blockDim.x)
            staged[k] = source[k];
    }
}

// Two neighbouring 3x3 windows of a row at column stride 2 (outputs q and q + 1), the
// overlapping pooling of ResNet and AlexNet: together they cover 3 rows of 5 columns from
// (h0, w0), the middle column shared. Loaded whole and without branches, so every load is in
// flight at once.
constexpr int kPairWindow = 3, kPairStride = 2;

template <typename T>
struct PairPatch {
    static constexpr int kRows = kPairWindow, kCols = kPairWindow + kPairStride;
    T value[kRows][kCols];
    int index[kRows][kCols];  // h * W + w of the input each value was read from (max only)
};

// For sums: inputs outside the image read as 0 (which leaves a sum's bits unchanged); the
// indices are left unset.
template <typename T>
__device__ __forceinline__ PairPatch<T> load_pair_patch(const T* image, int H, int W, int h0,
                                                        int w0) {
    PairPatch<T> patch;
#pragma unroll
    for (int r = 0; r < patch.kRows; ++r)
#pragma unroll
        for (int c = 0; c < patch.kCols; ++c) {
            const bool inside =
                (unsigned)(h0 + r) < (unsigned)H && (unsigned)(w0 + c) < (unsigned)W;
            patch.value[r][c] = inside ? image[(h0 + r) * W + w0 + c] : T(0);
        }
    return patch;
}

// For max pooling: a position outside the image reads the nearest input of its window (its
// row and column clamped to the image), index included. Scanned in row-major order with ties
// to the first, a window then chooses exactly what its in-bounds elements alone would: a
// clamped copy lies just before its original (the padding row and column) or after it (the
// ceil_mode overhang), with no other input between them in the scan order, so the first
// occurrence of the maximum (or of a NaN) is, or copies, the first in-bounds one; and the
// first element is the first in-bounds one, the anchor. No predicates or flags are left in
// the comparisons, which are what the kernel spends its instructions on.
template <typename T>
__device__ __forceinline__ PairPatch<T> load_clamped_pair_patch(const T* image, int H, int W,
                                                                int h0, int w0) {
    PairPatch<T> patch;
    int row[patch.kRows], col[patch.kCols];
#pragma unroll
    for (int r = 0; r < patch.kRows; ++r)
        row[r] = min(max(h0 + r, 0), H - 1) * W;
#pragma unroll
    for (int c = 0; c < patch.kCols; ++c)
        col[c] = min(max(w0 + c, 0), W - 1);
#pragma unroll
    for (int r = 0; r < patch.kRows; ++r)
#pragma unroll
        for (int c = 0; c < patch.kCols; ++c) {
            patch.index[r][c] = row[r] + col[c];
            patch.value[r][c] = image[patch.index[r][c]];
        }
    return patch;
}

// Launch bounds of memory-bound kernels whose registers leave warp slots empty
// (kFullSmFloatBlocks serves both structs below). Such a kernel waits on memory, so warps in
// flight decide its speed: for float on sm_90, 8 blocks of 256 threads an SM (every warp
// slot, 32 registers, no spill: kernel_resources.py) instead of the 6 that 38 registers
// allowed took maxpool2d_forward_pairs on an H100 from 83% to 97% of copy bandwidth
// (benchmarks/NOTES.md). 8 blocks spill on sm_70 and sm_80, and sm_75 holds 1024 threads an
// SM, so elsewhere the pairs kernel's bound asks for nothing: 1024 threads and no minimum.
// (The templates spell the bounds without parentheses, for the kernel parser.)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
constexpr int kFullSmFloatBlocks = 8;
#else
constexpr int kFullSmFloatBlocks = 0;
#endif

template <typename T>
struct PairsBounds {
    static constexpr int blocks = sizeof(T) == 4 ? kFullSmFloatBlocks : 0;
    static constexpr int threads = blocks ? 256 : 1024;  // 256: the host's THREADS
};

// avgpool2d_forward_tiled's: the same 8 blocks for float on sm_90, where its 38 registers
// allowed 6 (2x2/2 at 85% of copy bandwidth, session 20), now 31 without spill. Elsewhere
// 256 threads (the host's THREADS) and no minimum, not 1024: given 1024, ptxas aims at two
// such blocks an SM, 32 registers, and spills this kernel (float on sm_70, double on sm_80
// and sm_90); given 256, the other builds move by at most 6 registers and spill nothing
// (kernel_resources.py).
template <typename T>
struct TiledAverageBounds {
    static constexpr int blocks = sizeof(T) == 4 ? kFullSmFloatBlocks : 0;
    static constexpr int threads = 256;
};

// Where the pair of outputs a thread owns lies: (plane, row p, first column q) and its
// patch's corner; pairs run along each row, ceil(Q / 2) a row (the last one single when Q is
// odd).
struct OutputPair {
    long long plane, first;  // first: the index of output q in y
    int h0, w0;
    bool second;  // whether output q + 1 exists
};

__device__ __forceinline__ OutputPair output_pair(long long pair, int P, int Q, int stride_h,
                                                  int pad_h, int pad_w) {
    const PlaneIndex at = plane_index(pair, P, (Q + 1) / 2);
    const int q = 2 * at.col;
    return OutputPair{at.plane, (at.plane * P + at.row) * Q + q, at.row * stride_h - pad_h,
                      q * kPairStride - pad_w, q + 1 < Q};
}

// Two consecutive elements at an address aligned to two: one 8-byte store for int (argmax),
// store_vector's for float and double.
__device__ __forceinline__ void store_two(int* address, const int (&v)[2]) {
    *reinterpret_cast<int2*>(address) = make_int2(v[0], v[1]);
}

template <typename T>
__device__ __forceinline__ void store_two(T* address, const T (&v)[2]) {
    store_vector(address, v);
}

// out[first] and out[first + 1] (when there is a second): one 2-wide store where Q is even
// (every pair then starts at an even index).
template <typename T>
__device__ __forceinline__ void store_pair(T* out, const OutputPair& o, int Q, const T (&v)[2]) {
    if (Q % 2 == 0) {
        store_two(out + o.first, v);
    } else {
        out[o.first] = v[0];
        if (o.second) out[o.first + 1] = v[1];
    }
}

}  // namespace pool

// Max pooling. Semantics (those of gpucnn.cpu.pool): start from the first in-bounds element
// (so an all -inf window still points inside the image), move on a strictly greater value
// (ties keep the first), and keep the first NaN (which propagates). argmax holds
// h * W + w inside the plane.
template <typename T>
__global__ void maxpool2d_forward(const T* __restrict__ x, T* __restrict__ y,
                                  int* __restrict__ argmax, long long total, int H, int W, int P,
                                  int Q, int R, int S, int stride_h, int stride_w, int pad_h,
                                  int pad_w) {
    const pool::Geometry g{H, W, P, Q, R, S, stride_h, stride_w, pad_h, pad_w};
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const pool::OutputWindow o = pool::output_window(i, g);
        const T* image = x + o.plane * H * W;
        T best;
        int best_index;
        pool::window_max(image, W, o, R, S, best, best_index);
        y[i] = best;
        argmax[i] = best_index;
    }
}

// maxpool2d_forward for 3x3 windows at column stride 2, two outputs of a row to a thread
// (pool::PairPatch): 15 loads for two windows instead of 18, one set of divisions, and no
// bounds in the comparisons (pool::load_clamped_pair_patch). ncu on an H100 found the
// one-output kernel bound by instruction issue at 64x256x56x56, not by memory
// (benchmarks/NOTES.md). Same semantics: the first element anchors; a strictly greater value
// or the first NaN moves (while best is not NaN, !(v <= best) is exactly "v > best or v is
// NaN"; once it is, nothing moves).
template <typename T>
__global__ void __launch_bounds__(pool::PairsBounds<T>::threads, pool::PairsBounds<T>::blocks)
    maxpool2d_forward_pairs(const T* __restrict__ x, T* __restrict__ y, int* __restrict__ argmax,
                            long long pairs, int H, int W, int P, int Q, int stride_h, int pad_h,
                            int pad_w) {
    GPUCNN_GRID_STRIDE_LOOP(pair, pairs) {
        const pool::OutputPair o = pool::output_pair(pair, P, Q, stride_h, pad_h, pad_w);
        const pool::PairPatch<T> patch =
            pool::load_clamped_pair_patch(x + o.plane * H * W, H, W, o.h0, o.w0);
        T best[2];
        int best_index[2];
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const int first = k * pool::kPairStride;
            best[k] = patch.value[0][first], best_index[k] = patch.index[0][first];
#pragma unroll
            for (int r = 0; r < pool::kPairWindow; ++r)
#pragma unroll
                for (int s = r == 0 ? 1 : 0; s < pool::kPairWindow; ++s) {
                    const T value = patch.value[r][first + s];
                    const bool take = best[k] == best[k] && !(value <= best[k]);
                    best[k] = take ? value : best[k];
                    best_index[k] = take ? patch.index[r][first + s] : best_index[k];
                }
        }
        pool::store_pair(y, o, Q, best);
        pool::store_pair(argmax, o, Q, best_index);
    }
}

// maxpool2d_forward where the windows tile the image (pool::tiled_window): same semantics.
// (Rows read as 2-wide vectors measured no faster on an H100: see benchmarks/NOTES.md.)
template <typename T>
__global__ void maxpool2d_forward_tiled(const T* __restrict__ x, T* __restrict__ y,
                                        int* __restrict__ argmax, long long total, int W, int P,
                                        int Q, int R, int S) {
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const pool::OutputWindow o = pool::tiled_window(i, P, Q, R, S);
        T best;
        int best_index;
        pool::window_max(x + o.plane * P * R * W, W, o, R, S, best, best_index);
        y[i] = best;
        argmax[i] = best_index;
    }
}

// maxpool2d_backward where the windows tile the image: each input lies in exactly one window,
// so one thread per output writes its whole window (dy where argmax points, zero elsewhere).
// A 2-wide window writes each of its rows as one vector store: the rows start at even
// columns, since S = 2 divides W.
template <typename T>
__global__ void maxpool2d_backward_tiled(const T* __restrict__ dy, const int* __restrict__ argmax,
                                         T* __restrict__ dx, long long total, int W, int P, int Q,
                                         int R, int S) {
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const pool::OutputWindow o = pool::tiled_window(i, P, Q, R, S);
        const int corner = o.h0 * W + o.w0;
        const int chosen = argmax[i] - corner;  // r * W + s when inside the window
        const T gradient = T(0) + dy[i];        // + 0 as in the gather: -0 becomes 0
        T* window = dx + o.plane * P * R * W + corner;
        if (S == 2) {
            for (int r = 0; r < R; ++r) {
                const T row[2] = {r * W == chosen ? gradient : T(0),
                                  r * W + 1 == chosen ? gradient : T(0)};
                store_vector(window + r * W, row);
            }
        } else {
            for (int r = 0; r < R; ++r)
                for (int s = 0; s < S; ++s)
                    window[r * W + s] = r * W + s == chosen ? gradient : T(0);
        }
    }
}

// avgpool2d_forward where the windows tile the image (no padding: both divisors are R * S).
// 2x2 windows with an even number of outputs a row go two to a thread: each window row pair
// is one 16-byte load (4 divides W) and the two means one vector store; a divisor of 4 is
// a multiplication by 0.25, which rounds exactly as the division does.
template <typename T>
__global__ void __launch_bounds__(pool::TiledAverageBounds<T>::threads,
                                  pool::TiledAverageBounds<T>::blocks)
    avgpool2d_forward_tiled(const T* __restrict__ x, T* __restrict__ y, long long total, int W,
                            int P, int Q, int R, int S) {
    if (R == 2 && S == 2 && Q % 2 == 0) {
        GPUCNN_GRID_STRIDE_LOOP(pair, total / 2) {
            const pool::OutputWindow o = pool::tiled_window(2 * pair, P, Q, R, S);
            const T* top = x + o.plane * P * R * W + o.h0 * W + o.w0;
            T upper[4], lower[4];
            load4(top, upper);
            load4(top + W, lower);
            // the sums in clipped_window_sum's order: row-major from 0
            const T sums[2] = {(((T(0) + upper[0]) + upper[1]) + lower[0]) + lower[1],
                               (((T(0) + upper[2]) + upper[3]) + lower[2]) + lower[3]};
            const T out[2] = {sums[0] * T(0.25), sums[1] * T(0.25)};
            store_vector(y + 2 * pair, out);
        }
        return;
    }
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const pool::OutputWindow o = pool::tiled_window(i, P, Q, R, S);
        y[i] = pool::window_sum(x + o.plane * P * R * W, W, o, R, S) / T(R * S);
    }
}

// dx[h, w] = sum of dy over the windows that contain (h, w) and chose it, in window order
// (p, then q). A thread owns kSegment consecutive inputs of one row (the host launches one
// per segment, ceil(W / kSegment) a row): their windows' rows are the same and their columns
// overlap, so each window's argmax and dy are read once for the segment, and the window
// ranges cost six divisions a segment instead of six an element. Where kSegment divides W,
// the segment is written with one vector store.
template <typename T>
__global__ void maxpool2d_backward(const T* __restrict__ dy, const int* __restrict__ argmax,
                                   T* __restrict__ dx, long long segments, int H, int W, int P,
                                   int Q, int R, int S, int stride_h, int stride_w, int pad_h,
                                   int pad_w) {
    const pool::Geometry g{H, W, P, Q, R, S, stride_h, stride_w, pad_h, pad_w};
    const int per_row = (W + pool::kSegment - 1) / pool::kSegment;
    const bool few = pool::few_windows(g);
    GPUCNN_GRID_STRIDE_LOOP(segment, segments) {
        const pool::PlaneIndex at = pool::plane_index(segment, H, per_row);
        pool::backward_segment(dy, argmax, at.plane * P * Q, at.row, at.col * pool::kSegment, g,
                               few, dx + (at.plane * H + at.row) * (long long)W);
    }
}

// maxpool2d_backward for 3x3 windows at stride 2 (any padding, which is 0 or 1), without
// the window arithmetic of the general gather: window (p, q) is centred on input
// (2p - pad + 1, 2q - pad + 1), so an input in a centre row lies in window row p alone and
// the row below it in rows p and p + 1; the same for columns. A thread owns the quad of
// inputs from a centre (the centre, the input right of it, below it, and diagonally below):
// they lie in windows (p .. p + 1, q .. q + 1), whose argmax and dy it loads once, and each
// input sums those of its windows that chose it, in window order (p, then q), from 0: the
// gather's semantics and bits, and an argmax outside its window is dropped (no input it
// could match looks at that window). ncu on an H100 found the general gather bound by
// instruction issue (benchmarks/NOTES.md). Quads run along each row, ceil((W + 1 - pad) / 2)
// a row (the first starts at column -1 when pad is 0), ceil((H + 1 - pad) / 2) rows of them.
template <typename T>
__global__ void maxpool2d_backward_quads(const T* __restrict__ dy, const int* __restrict__ argmax,
                                         T* __restrict__ dx, long long quads, int H, int W, int P,
                                         int Q, int pad_h, int pad_w) {
    const int quad_rows = (H + 2 - pad_h) / 2, quad_cols = (W + 2 - pad_w) / 2;
    GPUCNN_GRID_STRIDE_LOOP(quad, quads) {
        const pool::PlaneIndex at = pool::plane_index(quad, quad_rows, quad_cols);
        const int p = at.row - (1 - pad_h), q = at.col - (1 - pad_w);  // the centre's window
        const int h0 = 2 * p - pad_h + 1, w0 = 2 * q - pad_w + 1;      // the centre
        const long long outputs = at.plane * P * Q;
        int chosen[2][2];
        T gradient[2][2];
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const bool exists =
                    (unsigned)(p + i) < (unsigned)P && (unsigned)(q + j) < (unsigned)Q;
                const long long o = outputs + (p + i) * Q + q + j;
                chosen[i][j] = exists ? argmax[o] : -1;  // -1 matches no input
                gradient[i][j] = exists ? dy[o] : T(0);
            }
        // input (h0 + a, w0 + b) lies in windows (p + i, q + j) for i <= a, j <= b
        T sum[2][2];
#pragma unroll
        for (int a = 0; a < 2; ++a)
#pragma unroll
            for (int b = 0; b < 2; ++b) {
                const int self = (h0 + a) * W + w0 + b;
                sum[a][b] = T(0);
#pragma unroll
                for (int i = 0; i <= a; ++i)
#pragma unroll
                    for (int j = 0; j <= b; ++j)
                        if (chosen[i][j] == self) sum[a][b] += gradient[i][j];
            }
        T* plane = dx + at.plane * H * W;
#pragma unroll
        for (int a = 0; a < 2; ++a) {
            const int h = h0 + a;
            if ((unsigned)h >= (unsigned)H) continue;
            // one 2-wide store where the quad starts on an even column of an even-wide row
            if (pad_w == 1 && W % 2 == 0) {
                store_vector(plane + h * W + w0, sum[a]);
            } else {
#pragma unroll
                for (int b = 0; b < 2; ++b)
                    if ((unsigned)(w0 + b) < (unsigned)W) plane[h * W + w0 + b] = sum[a][b];
            }
        }
    }
}

// maxpool2d_backward with one block per (n, c) plane, for planes the host found small enough:
// the block first copies the plane's dy (in 16-byte loads) and argmax into shared memory,
// then gathers from there, so overlapping windows (3x3/1, say) read each dy and argmax from
// global memory once instead of from L1/L2 for every segment that holds them. Same
// semantics and bits as maxpool2d_backward. (The same staging of x measured no faster for
// the forward on an H100: see benchmarks/NOTES.md.)
template <typename T>
__global__ void maxpool2d_backward_shared(const T* __restrict__ dy, const int* __restrict__ argmax,
                                          T* __restrict__ dx, long long planes, int H, int W, int P,
                                          int Q, int R, int S, int stride_h, int stride_w,
                                          int pad_h, int pad_w) {
    extern __shared__ __align__(16) unsigned char dynamic[];
    const pool::Geometry g{H, W, P, Q, R, S, stride_h, stride_w, pad_h, pad_w};
    const int outputs = P * Q, per_row = (W + pool::kSegment - 1) / pool::kSegment;
    T* gradients = reinterpret_cast<T*>(dynamic);               // [P * Q]
    int* chosen = reinterpret_cast<int*>(gradients + outputs);  // [P * Q]
    const bool few = pool::few_windows(g);
    for (long long plane = blockIdx.x; plane < planes; plane += gridDim.x) {
        pool::stage_plane(dy + plane * outputs, gradients, outputs);
        for (int k = threadIdx.x; k < outputs; k += blockDim.x)
            chosen[k] = argmax[plane * outputs + k];
        __syncthreads();
        for (int segment = threadIdx.x; segment < H * per_row; segment += blockDim.x) {
            const int h = segment / per_row;
            pool::backward_segment(gradients, chosen, 0, h,
                                   (segment - h * per_row) * pool::kSegment, g, few,
                                   dx + (plane * H + h) * (long long)W);
        }
        __syncthreads();
    }
}

// The same result without the window geometry: one thread per plane walks its outputs in
// order. Slow with few planes, but deterministic; argmax values outside the plane are skipped
// rather than written through.
template <typename T>
__global__ void maxpool2d_backward_planes(const T* __restrict__ dy, const int* __restrict__ argmax,
                                          T* __restrict__ dx, long long planes, int plane_in,
                                          int plane_out) {
    GPUCNN_GRID_STRIDE_LOOP(plane, planes) {
        T* dx_plane = dx + plane * plane_in;
        for (int j = 0; j < plane_in; ++j)
            dx_plane[j] = T(0);
        for (int j = 0; j < plane_out; ++j) {
            const int target = argmax[plane * plane_out + j];
            if (target >= 0 && target < plane_in) dx_plane[target] += dy[plane * plane_out + j];
        }
    }
}

template <typename T>
__global__ void avgpool2d_forward(const T* __restrict__ x, T* __restrict__ y, long long total,
                                  int H, int W, int P, int Q, int R, int S, int stride_h,
                                  int stride_w, int pad_h, int pad_w, int count_include_pad) {
    const pool::Geometry g{H, W, P, Q, R, S, stride_h, stride_w, pad_h, pad_w};
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const pool::OutputWindow o = pool::output_window(i, g);
        const T* image = x + o.plane * H * W;
        y[i] = pool::window_sum(image, W, o, R, S) /
               T(pool::avg_divisor(o.h0, o.w0, g, count_include_pad));
    }
}

// avgpool2d_forward for 3x3 windows at column stride 2, two outputs of a row to a thread, as
// maxpool2d_forward_pairs: each sum in clipped_window_sum's order (row-major from 0, inputs
// outside the image adding 0).
template <typename T>
__global__ void avgpool2d_forward_pairs(const T* __restrict__ x, T* __restrict__ y, long long pairs,
                                        int H, int W, int P, int Q, int stride_h, int pad_h,
                                        int pad_w, int count_include_pad) {
    using Patch = pool::PairPatch<T>;
    const pool::Geometry g{
        H,     W,    P, Q, pool::kPairWindow, pool::kPairWindow, stride_h, pool::kPairStride,
        pad_h, pad_w};
    GPUCNN_GRID_STRIDE_LOOP(pair, pairs) {
        const pool::OutputPair o = pool::output_pair(pair, P, Q, stride_h, pad_h, pad_w);
        const Patch patch = pool::load_pair_patch(x + o.plane * H * W, H, W, o.h0, o.w0);
        T mean[2];
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            T sum = T(0);
#pragma unroll
            for (int r = 0; r < pool::kPairWindow; ++r)
#pragma unroll
                for (int s = 0; s < pool::kPairWindow; ++s)
                    sum += patch.value[r][k * pool::kPairStride + s];
            const int w0 = o.w0 + k * pool::kPairStride;
            mean[k] = sum / T(pool::avg_divisor(o.h0, w0, g, count_include_pad));
        }
        pool::store_pair(y, o, Q, mean);
    }
}

template <typename T>
__global__ void avgpool2d_backward(const T* __restrict__ dy, T* __restrict__ dx, long long total,
                                   int H, int W, int P, int Q, int R, int S, int stride_h,
                                   int stride_w, int pad_h, int pad_w, int count_include_pad) {
    const pool::Geometry g{H, W, P, Q, R, S, stride_h, stride_w, pad_h, pad_w};
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const pool::InputWindows in = pool::input_windows(i, g);
        const T* dy_plane = dy + in.plane * P * Q;
        T sum = T(0);
        for (int p = in.p_begin; p < in.p_end; ++p)
            for (int q = in.q_begin; q < in.q_end; ++q)
                sum += dy_plane[p * Q + q] /
                       T(pool::avg_divisor(p * stride_h - pad_h, q * stride_w - pad_w, g,
                                           count_include_pad));
        dx[i] = sum;
    }
}

// L2 pooling: y = sqrt(sum of x^2 over the window); padding contributes nothing.
template <typename T>
__global__ void l2pool2d_forward(const T* __restrict__ x, T* __restrict__ y, long long total, int H,
                                 int W, int P, int Q, int R, int S, int stride_h, int stride_w,
                                 int pad_h, int pad_w) {
    const pool::Geometry g{H, W, P, Q, R, S, stride_h, stride_w, pad_h, pad_w};
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const pool::OutputWindow o = pool::output_window(i, g);
        const T* image = x + o.plane * H * W;
        T sum = T(0);
        for (int h = o.h_begin; h < o.h_end; ++h)
            for (int w = o.w_begin; w < o.w_end; ++w)
                sum += image[h * W + w] * image[h * W + w];
        y[i] = sqrt(sum);
    }
}

// dx = x * sum over the windows holding x of dy / y; a window with y = 0 (all zeros) passes
// no gradient.
template <typename T>
__global__ void l2pool2d_backward(const T* __restrict__ dy, const T* __restrict__ x,
                                  const T* __restrict__ y, T* __restrict__ dx, long long total,
                                  int H, int W, int P, int Q, int R, int S, int stride_h,
                                  int stride_w, int pad_h, int pad_w) {
    const pool::Geometry g{H, W, P, Q, R, S, stride_h, stride_w, pad_h, pad_w};
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const pool::InputWindows in = pool::input_windows(i, g);
        const long long offset = in.plane * P * Q;
        T scale = T(0);
        for (int p = in.p_begin; p < in.p_end; ++p)
            for (int q = in.q_begin; q < in.q_end; ++q) {
                const T norm = y[offset + p * Q + q];
                if (norm > T(0)) scale += dy[offset + p * Q + q] / norm;
            }
        dx[i] = x[i] * scale;
    }
}

// Global average pooling: y[plane] = mean of the plane. One warp per plane: lanes stride
// through the plane, then a shuffle tree in a fixed order (deterministic) sums the lanes.
template <typename T>
__global__ void global_avgpool2d_forward(const T* __restrict__ x, T* __restrict__ y,
                                         long long planes, int plane_size) {
    const int lane = threadIdx.x % 32;
    const long long warps = (long long)gridDim.x * blockDim.x / 32;
    for (long long plane = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32; plane < planes;
         plane += warps) {
        const T* image = x + plane * plane_size;
        T sum = T(0);
        for (int j = lane; j < plane_size; j += 32)
            sum += image[j];
        for (int offset = 16; offset > 0; offset /= 2)
            sum += __shfl_down_sync(0xffffffffu, sum, offset);
        if (lane == 0) y[plane] = sum / T(plane_size);
    }
}

template <typename T>
__global__ void global_avgpool2d_backward(const T* __restrict__ dy, T* __restrict__ dx,
                                          long long total, int plane_size) {
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        dx[i] = dy[i / plane_size] / T(plane_size);
    }
}
