// 2-D convolution as implicit GEMM: forward, backward-data and backward-filter.
//
// Names: x (N, C, H, W), w (K, C, R, S), y / dy (N, K, P, Q), all C-contiguous; stride
// (sh, sw), padding (ph, pw), dilation (dh, dw). Cross-correlation:
//     y[n, k, p, q] = b[k] + sum_{c, r, s} w[k, c, r, s] x[n, c, p*sh - ph + r*dh, q*sw - pw +
//     s*dw]
// (out-of-image taps read 0). Each direction is a GEMM C (M x COLS) = A (M x RED) B (RED x COLS)
// whose A and B are gathered on the fly, never materialised:
//     forward          M = K   COLS = N*P*Q  RED = C*R*S   A = w          B = im2col(x)
//     backward-data    M = C   COLS = N*H*W  RED = K*R*S   A = w^T        B = dy gathered at
//                                                          p = (h + ph - r*dh) / sh when exact
//     backward-filter  M = K   COLS = C*R*S  RED = N*P*Q   A = dy         B = im2col(x)^T
// Backward-data is a gather: each dx element sums what it contributed to, written once.
//
// Launch: grid (ceil(COLS / 128), ceil(M / rows), splits), 256 threads, where rows is 128 for
// the kernels and 32 for their _narrow twins (for M <= 32: few channels); who owns what and
// how the tiles are loaded is in gemm_tile.cuh. A is read as 4-wide vectors where rows allow:
// w in the forward when C*R*S is a multiple of 4, dy in backward-filter when P*Q is.
//
// Backward-filter splits RED over blockIdx.z when the tiles alone cannot fill the GPU; each
// split writes its own slice of a workspace and conv2d_sum_splits adds the slices in split
// order, so the result is the same bits on every run. The bias gradient is a fixed-order
// block reduction per output channel. T is float or double; all sizes fit int (checked on the
// host) except products that index whole tensors, which are 64-bit.
#include "common.cuh"
#include "gemm_tile.cuh"

namespace conv {

struct Shape {
    int N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw;
};

// The B column a thread loads, decoded once: for forward and backward-data an output or
// input pixel, for backward-filter a (c, r, s) filter tap.
struct Column {
    long long base;  // offset of the image plane / channel the column reads
    int a, b;        // forward: (p*sh - ph, q*sw - pw); backward-data: (h + ph, w + pw);
                     // backward-filter: (r*dh - ph, s*dw - pw)
};

// (c, r, s) of reduction index kk over C*R*S (or (k, r, s) over K*R*S), and the step to the
// next index: the B loaders decode once per step and walk four indices.
struct Tap {
    int c, r, s;
    __device__ Tap(int kk, int R, int S) {
        const int rs = R * S;
        c = kk / rs;
        r = (kk - c * rs) / S;
        s = kk - c * rs - r * S;
    }
    __device__ void next(int R, int S) {
        if (++s == S) {
            s = 0;
            if (++r == R) r = 0, ++c;
        }
    }
};

// A (M x RED) and B (RED x COLS) of forward: A = w as (K, C*R*S), B = im2col(x).
template <typename T>
struct Forward {
    const T* x;
    const T* w;
    Shape s;
    bool vector_a;  // C*R*S a multiple of 4: four along a row of w are one aligned vector
    __device__ long long red() const { return (long long)s.C * s.R * s.S; }
    __device__ T a(int m, long long kk) const { return w[m * red() + kk]; }
    __device__ const T* a_vector(int m, long long kk) const {
        return vector_a ? &w[m * red() + kk] : nullptr;
    }
    __device__ Column column(long long col) const {
        const long long pq = (long long)s.P * s.Q;
        const long long n = col / pq;
        const int p = (int)(col % pq / s.Q), q = (int)(col % s.Q);
        return Column{n * s.C * s.H * s.W, p * s.sh - s.ph, q * s.sw - s.pw};
    }
    __device__ void b4(long long kk, const Column& col, long long end, T (&out)[4]) const {
        Tap tap((int)kk, s.R, s.S);  // C*R*S fits int (checked on the host)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int h = col.a + tap.r * s.dh, wi = col.b + tap.s * s.dw;
            const bool inside = kk + i < end && h >= 0 && h < s.H && wi >= 0 && wi < s.W;
            out[i] = inside ? x[col.base + ((long long)tap.c * s.H + h) * s.W + wi] : T(0);
            tap.next(s.R, s.S);
        }
    }
};

// backward-data: A = w^T as (C, K*R*S), B = dy gathered per input pixel (n, h, w).
template <typename T>
struct BackwardData {
    const T* dy;
    const T* w;
    Shape s;
    __device__ T a(int m, long long kk) const {
        const int rs = s.R * s.S;
        const long long k = kk / rs;
        return w[(k * s.C + m) * rs + kk % rs];
    }
    __device__ const T* a_vector(int, long long) const { return nullptr; }
    __device__ Column column(long long col) const {
        const long long hw = (long long)s.H * s.W;
        const long long n = col / hw;
        const int h = (int)(col % hw / s.W), wi = (int)(col % s.W);
        return Column{n * s.K * s.P * s.Q, h + s.ph, wi + s.pw};
    }
    __device__ void b4(long long kk, const Column& col, long long end, T (&out)[4]) const {
        Tap tap((int)kk, s.R, s.S);  // tap.c is the output channel k
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int ph = col.a - tap.r * s.dh, pw = col.b - tap.s * s.dw;  // p*sh, q*sw if exact
            // (stride 1, the common case, skips the divisions)
            const int p = s.sh == 1 ? ph : ph / s.sh, q = s.sw == 1 ? pw : pw / s.sw;
            const bool hit = kk + i < end && ph >= 0 && pw >= 0 && p * s.sh == ph &&
                             q * s.sw == pw && p < s.P && q < s.Q;
            out[i] = hit ? dy[col.base + ((long long)tap.c * s.P + p) * s.Q + q] : T(0);
            tap.next(s.R, s.S);
        }
    }
};

// backward-filter: A = dy as (K, N*P*Q), B = im2col(x)^T, columns are filter taps (c, r, s).
template <typename T>
struct BackwardFilter {
    const T* dy;
    const T* x;
    Shape s;
    bool vector_a;  // P*Q a multiple of 4: four along a row of dy never cross an image
    __device__ T a(int m, long long kk) const {
        const long long pq = (long long)s.P * s.Q;
        return dy[(kk / pq * s.K + m) * pq + kk % pq];
    }
    __device__ const T* a_vector(int m, long long kk) const {
        const long long pq = (long long)s.P * s.Q;
        return vector_a ? &dy[(kk / pq * s.K + m) * pq + kk % pq] : nullptr;
    }
    __device__ Column column(long long col) const {
        const Tap tap((int)col, s.R, s.S);
        return Column{(long long)tap.c * s.H * s.W, tap.r * s.dh - s.ph, tap.s * s.dw - s.pw};
    }
    __device__ void b4(long long kk, const Column& col, long long end, T (&out)[4]) const {
        const long long pq = (long long)s.P * s.Q;
        long long n = kk / pq;
        int p = (int)(kk - n * pq) / s.Q, q = (int)(kk - n * pq) - p * s.Q;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int h = p * s.sh + col.a, wi = q * s.sw + col.b;
            const bool inside = kk + i < end && h >= 0 && h < s.H && wi >= 0 && wi < s.W;
            out[i] = inside ? x[n * s.C * s.H * s.W + col.base + (long long)h * s.W + wi] : T(0);
            if (++q == s.Q) {
                q = 0;
                if (++p == s.P) p = 0, ++n;
            }
        }
    }
};

}  // namespace conv

// The three GEMMs, for either tile; the kernels below are their Wide and Narrow entry points.
template <typename T, class Tile>
__device__ void forward(const T* x, const T* w, const T* b, T* y, const conv::Shape& s,
                        int has_bias, int vector_loads) {
    const conv::Forward<T> problem{x, w, s, vector_loads != 0};
    const long long pq = (long long)s.P * s.Q;
    gemm::implicit_gemm_tile<T, Tile>(
        problem, s.K, s.N * pq, 0, (long long)s.C * s.R * s.S, [&](int k, long long col, T value) {
            const long long n = col / pq;
            y[(n * s.K + k) * pq + col % pq] = has_bias ? value + b[k] : value;
        });
}

template <typename T, class Tile>
__device__ void backward_data(const T* dy, const T* w, T* dx, const conv::Shape& s) {
    const conv::BackwardData<T> problem{dy, w, s};
    const long long hw = (long long)s.H * s.W;
    gemm::implicit_gemm_tile<T, Tile>(
        problem, s.C, s.N * hw, 0, (long long)s.K * s.R * s.S,
        [&](int c, long long col, T value) { dx[(col / hw * s.C + c) * hw + col % hw] = value; });
}

// Split z reduces over N*P*Q indices [z * chunk, (z + 1) * chunk) into its own (K, C*R*S)
// slice of `out`; chunk is a multiple of the reduction step.
template <typename T, class Tile>
__device__ void backward_filter(const T* dy, const T* x, T* out, const conv::Shape& s,
                                long long chunk, int vector_loads) {
    const conv::BackwardFilter<T> problem{dy, x, s, vector_loads != 0};
    const long long red = (long long)s.N * s.P * s.Q, crs = (long long)s.C * s.R * s.S;
    const long long begin = blockIdx.z * chunk;
    const long long end = min(begin + chunk, red);
    T* slice = out + (long long)blockIdx.z * s.K * crs;
    gemm::implicit_gemm_tile<T, Tile>(
        problem, s.K, crs, begin, end,
        [&](int k, long long col, T value) { slice[k * crs + col] = value; });
}

// y = conv(x, w) + b; with has_bias = 0, b is ignored (and may be null). vector_loads: C*R*S
// is a multiple of 4.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    conv2d_forward(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                   T* __restrict__ y, int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                   int sh, int sw, int ph, int pw, int dh, int dw, int has_bias, int vector_loads) {
    forward<T, gemm::Wide>(x, w, b, y, {N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw},
                           has_bias, vector_loads);
}

template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    conv2d_forward_narrow(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                          T* __restrict__ y, int N, int C, int H, int W, int K, int R, int S, int P,
                          int Q, int sh, int sw, int ph, int pw, int dh, int dw, int has_bias,
                          int vector_loads) {
    forward<T, gemm::Narrow>(x, w, b, y, {N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw},
                             has_bias, vector_loads);
}

// dx: each input pixel gathers from the outputs its taps fed.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    conv2d_backward_data(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx,
                         int N, int C, int H, int W, int K, int R, int S, int P, int Q, int sh,
                         int sw, int ph, int pw, int dh, int dw) {
    backward_data<T, gemm::Wide>(dy, w, dx, {N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw});
}

template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    conv2d_backward_data_narrow(const T* __restrict__ dy, const T* __restrict__ w,
                                T* __restrict__ dx, int N, int C, int H, int W, int K, int R, int S,
                                int P, int Q, int sh, int sw, int ph, int pw, int dh, int dw) {
    backward_data<T, gemm::Narrow>(dy, w, dx, {N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw});
}

// dw, or with splits > 1 one slice of `out` per split, summed by conv2d_sum_splits.
// vector_loads: P*Q is a multiple of 4.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    conv2d_backward_filter(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ out,
                           int N, int C, int H, int W, int K, int R, int S, int P, int Q, int sh,
                           int sw, int ph, int pw, int dh, int dw, long long chunk,
                           int vector_loads) {
    backward_filter<T, gemm::Wide>(dy, x, out, {N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw},
                                   chunk, vector_loads);
}

template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    conv2d_backward_filter_narrow(const T* __restrict__ dy, const T* __restrict__ x,
                                  T* __restrict__ out, int N, int C, int H, int W, int K, int R,
                                  int S, int P, int Q, int sh, int sw, int ph, int pw, int dh,
                                  int dw, long long chunk, int vector_loads) {
    backward_filter<T, gemm::Narrow>(
        dy, x, out, {N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw}, chunk, vector_loads);
}

// dw for layers with few filter taps (K*C*R*S <= blockDim.x, e.g. a first layer on one
// channel: LeNet's 6 x 1 x 5 x 5), where the GEMM tiles above would be almost all padding
// (6 of 32 rows, 25 of 128 columns) and a split's 8-deep steps run one after another. A
// direct reduction instead: thread o owns tap o = (k, c, r, s) and block z sums its tap's
// products over the output rows (n, p) in [z * rows, (z + 1) * rows) into slice z of `out`
// (dw itself when there is one split). Each thread works out once which rows and columns
// its tap keeps inside the image, so the inner loop over q is two loads and a multiply-add,
// unrolled into four accumulators combined in a fixed order (the same bits every run). A
// warp's taps read one or two dy values (broadcast) and neighbouring x values.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    conv2d_backward_filter_per_tap(const T* __restrict__ dy, const T* __restrict__ x,
                                   T* __restrict__ out, int N, int C, int H, int W, int K, int R,
                                   int S, int P, int Q, int sh, int sw, int ph, int pw, int dh,
                                   int dw, int rows) {
    const int taps = K * C * R * S;  // at most blockDim.x (checked on the host)
    const int o = threadIdx.x;
    if (o >= taps) return;  // no barrier below
    const int s = o % S, r = o / S % R, c = o / (R * S) % C, k = o / (C * R * S);
    // Columns q whose input column q*sw - pw + s*dw lies in [0, W).
    const int column0 = s * dw - pw;
    const int q_begin = column0 >= 0 ? 0 : (-column0 + sw - 1) / sw;
    const int q_end = column0 > W - 1 ? 0 : min(Q, (W - 1 - column0) / sw + 1);
    T acc0 = T(0), acc1 = T(0), acc2 = T(0), acc3 = T(0);
    const long long first = (long long)blockIdx.x * rows;
    const long long last = min(first + rows, (long long)N * P);
    for (long long row = first; row < last; ++row) {
        const long long n = row / P;
        const int p = (int)(row - n * P), h = p * sh - ph + r * dh;
        if (h < 0 || h >= H) continue;
        const T* dy_row = dy + ((n * K + k) * P + p) * (long long)Q;
        // x's row, offset to this tap's first column (which may lie left of the row: only
        // the columns in [q_begin, q_end) are read)
        const long long x_row = ((n * C + c) * H + h) * (long long)W + column0;
        int q = q_begin;
        for (; q + 4 <= q_end; q += 4) {
            acc0 += dy_row[q] * x[x_row + q * sw];
            acc1 += dy_row[q + 1] * x[x_row + (q + 1) * sw];
            acc2 += dy_row[q + 2] * x[x_row + (q + 2) * sw];
            acc3 += dy_row[q + 3] * x[x_row + (q + 3) * sw];
        }
        for (; q < q_end; ++q)
            acc0 += dy_row[q] * x[x_row + q * sw];
    }
    out[(long long)blockIdx.x * taps + o] = (acc0 + acc1) + (acc2 + acc3);
}

// dw[i] = sum over splits of partial[split][i], one warp per element: lane l sums splits
// l, l + 32, ... in order, then a fixed shuffle tree: the same bits every run, and 32 times
// shorter chains than conv2d_sum_splits where there are hundreds of splits and few elements.
template <typename T>
__global__ void conv2d_sum_splits_by_warp(const T* __restrict__ partial, T* __restrict__ dw,
                                          int splits, long long size) {
    const int lane = threadIdx.x % 32;
    const long long warps = (long long)gridDim.x * blockDim.x / 32;
    for (long long i = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32; i < size;
         i += warps) {
        T sum = T(0);
        for (int split = lane; split < splits; split += 32)
            sum += partial[split * size + i];
        for (int offset = 16; offset > 0; offset /= 2)
            sum += __shfl_down_sync(0xffffffffu, sum, offset);
        if (lane == 0) dw[i] = sum;
    }
}

// dw[i] = sum over splits, in split order, of partial[split][i]: the same bits every run.
template <typename T>
__global__ void conv2d_sum_splits(const T* __restrict__ partial, T* __restrict__ dw, int splits,
                                  long long size) {
    sum_splits(partial, dw, splits, size, false);
}

// db[k] = sum over n, p, q of dy[n, k, p, q]: one block per channel, a fixed-order tree.
// Thread t sums elements t, t + blockDim.x, ... of the channel's N*plane values in order; it
// walks their (n, j) position by a fixed step instead of dividing each index (a division
// and a remainder by a run-time value, 40-50 instructions an element even on NVRTC's 32-bit
// path, about 0.05 ms for LeNet's first layer at batch 256, one block per channel).
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    conv2d_backward_bias(const T* __restrict__ dy, T* __restrict__ db, int N, int K,
                         long long plane) {
    __shared__ T partial[256];
    const long long total = N * plane;
    // One step of blockDim.x elements moves step_n images and step_j positions on.
    const long long step_n = blockDim.x / plane, step_j = blockDim.x % plane;
    const long long image = (long long)K * plane;  // from (n, k, j) to (n + 1, k, j)
    for (long long k = blockIdx.x; k < K; k += gridDim.x) {
        T sum = T(0);
        long long j = threadIdx.x % plane;
        long long offset = threadIdx.x / plane * image + k * plane + j;
        for (long long i = threadIdx.x; i < total; i += blockDim.x) {
            sum += dy[offset];
            offset += step_n * image + step_j;
            j += step_j;
            if (j >= plane) j -= plane, offset += image - plane;
        }
        partial[threadIdx.x] = sum;
        __syncthreads();
        for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
            if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
            __syncthreads();
        }
        if (threadIdx.x == 0) db[k] = partial[0];
        __syncthreads();  // partial is reused by the next channel
    }
}
