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
// Launch: grid (ceil(COLS / 64), ceil(M / 64), splits), 256 threads; who owns what and how the
// tiles are loaded is in gemm_tile.cuh. The forward's A rows (w) are read as 8- or 16-byte
// pairs when C*R*S is even.
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

// A (M x RED) and B (RED x COLS) of forward: A = w as (K, C*R*S), B = im2col(x).
template <typename T>
struct Forward {
    const T* x;
    const T* w;
    Shape s;
    bool vector_a;  // C*R*S even: a row pair of w is one aligned vector load
    __device__ long long red() const { return (long long)s.C * s.R * s.S; }
    __device__ T a(int m, long long kk) const { return w[m * red() + kk]; }
    __device__ gemm::Pair<T> a_pair(int m, long long kk, long long end) const {
        // kk is even and so is the row length: the pair is 8- or 16-byte aligned
        if (vector_a && kk + 1 < end) return gemm::load_vector_pair(&w[m * red() + kk]);
        return gemm::scalar_pair<T>(*this, m, kk, end);
    }
    __device__ Column column(long long col) const {
        const long long pq = (long long)s.P * s.Q;
        const long long n = col / pq;
        const int p = (int)(col % pq / s.Q), q = (int)(col % s.Q);
        return Column{n * s.C * s.H * s.W, p * s.sh - s.ph, q * s.sw - s.pw};
    }
    __device__ T b(long long kk, const Column& col) const {
        const int rs = s.R * s.S;
        const int c = (int)(kk / rs), r = (int)(kk % rs / s.S), t = (int)(kk % s.S);
        const int h = col.a + r * s.dh, wi = col.b + t * s.dw;
        if (h < 0 || h >= s.H || wi < 0 || wi >= s.W) return T(0);
        return x[col.base + ((long long)c * s.H + h) * s.W + wi];
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
    __device__ gemm::Pair<T> a_pair(int m, long long kk, long long end) const {
        return gemm::scalar_pair<T>(*this, m, kk, end);
    }
    __device__ Column column(long long col) const {
        const long long hw = (long long)s.H * s.W;
        const long long n = col / hw;
        const int h = (int)(col % hw / s.W), wi = (int)(col % s.W);
        return Column{n * s.K * s.P * s.Q, h + s.ph, wi + s.pw};
    }
    __device__ T b(long long kk, const Column& col) const {
        const int rs = s.R * s.S;
        const int k = (int)(kk / rs), r = (int)(kk % rs / s.S), t = (int)(kk % s.S);
        const int ph = col.a - r * s.dh, pw = col.b - t * s.dw;  // = p * sh, q * sw if exact
        if (ph < 0 || pw < 0 || ph % s.sh != 0 || pw % s.sw != 0) return T(0);
        const int p = ph / s.sh, q = pw / s.sw;
        if (p >= s.P || q >= s.Q) return T(0);
        return dy[col.base + ((long long)k * s.P + p) * s.Q + q];
    }
};

// backward-filter: A = dy as (K, N*P*Q), B = im2col(x)^T, columns are filter taps (c, r, s).
template <typename T>
struct BackwardFilter {
    const T* dy;
    const T* x;
    Shape s;
    __device__ T a(int m, long long kk) const {
        const long long pq = (long long)s.P * s.Q;
        return dy[(kk / pq * s.K + m) * pq + kk % pq];
    }
    __device__ gemm::Pair<T> a_pair(int m, long long kk, long long end) const {
        return gemm::scalar_pair<T>(*this, m, kk, end);
    }
    __device__ Column column(long long col) const {
        const int rs = s.R * s.S;
        const int c = (int)(col / rs), r = (int)(col % rs / s.S), t = (int)(col % s.S);
        return Column{(long long)c * s.H * s.W, r * s.dh - s.ph, t * s.dw - s.pw};
    }
    __device__ T b(long long kk, const Column& col) const {
        const long long pq = (long long)s.P * s.Q;
        const long long n = kk / pq;
        const int p = (int)(kk % pq / s.Q), q = (int)(kk % s.Q);
        const int h = p * s.sh + col.a, wi = q * s.sw + col.b;
        if (h < 0 || h >= s.H || wi < 0 || wi >= s.W) return T(0);
        return x[n * s.C * s.H * s.W + col.base + (long long)h * s.W + wi];
    }
};

}  // namespace conv

// y = conv(x, w) + b; with has_bias = 0, b is ignored (and may be null).
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    conv2d_forward(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                   T* __restrict__ y, int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                   int sh, int sw, int ph, int pw, int dh, int dw, int has_bias, int vector_loads) {
    const conv::Shape shape{N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw};
    const conv::Forward<T> problem{x, w, shape, vector_loads != 0};
    const long long pq = (long long)P * Q;
    gemm::implicit_gemm_tile<T>(
        problem, K, N * pq, 0, (long long)C * R * S, [&](int k, long long col, T value) {
            const long long n = col / pq;
            y[(n * K + k) * pq + col % pq] = has_bias ? value + b[k] : value;
        });
}

// dx: each input pixel gathers from the outputs its taps fed.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    conv2d_backward_data(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx,
                         int N, int C, int H, int W, int K, int R, int S, int P, int Q, int sh,
                         int sw, int ph, int pw, int dh, int dw) {
    const conv::Shape shape{N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw};
    const conv::BackwardData<T> problem{dy, w, shape};
    const long long hw = (long long)H * W;
    gemm::implicit_gemm_tile<T>(
        problem, C, N * hw, 0, (long long)K * R * S,
        [&](int c, long long col, T value) { dx[(col / hw * C + c) * hw + col % hw] = value; });
}

// dw, or with splits > 1 one (K, C*R*S) slice of `out` per split (summed by
// conv2d_sum_splits): split z reduces over N*P*Q indices [z * chunk, (z + 1) * chunk).
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    conv2d_backward_filter(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ out,
                           int N, int C, int H, int W, int K, int R, int S, int P, int Q, int sh,
                           int sw, int ph, int pw, int dh, int dw, long long chunk) {
    const conv::Shape shape{N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw};
    const conv::BackwardFilter<T> problem{dy, x, shape};
    const long long red = (long long)N * P * Q, crs = (long long)C * R * S;
    const long long begin = blockIdx.z * chunk;
    const long long end = min(begin + chunk, red);
    T* slice = out + (long long)blockIdx.z * K * crs;
    gemm::implicit_gemm_tile<T>(problem, K, crs, begin, end, [&](int k, long long col, T value) {
        slice[k * crs + col] = value;
    });
}

// dw[i] = sum over splits, in split order, of partial[split][i]: the same bits every run.
template <typename T>
__global__ void conv2d_sum_splits(const T* __restrict__ partial, T* __restrict__ dw, int splits,
                                  long long size) {
    GPUCNN_GRID_STRIDE_LOOP(i, size) {
        T sum = T(0);
        for (int split = 0; split < splits; ++split)
            sum += partial[split * size + i];
        dw[i] = sum;
    }
}

// db[k] = sum over n, p, q of dy[n, k, p, q]: one block per channel, a fixed-order tree.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    conv2d_backward_bias(const T* __restrict__ dy, T* __restrict__ db, int N, int K,
                         long long plane) {
    __shared__ T partial[256];
    for (long long k = blockIdx.x; k < K; k += gridDim.x) {
        T sum = T(0);
        for (long long i = threadIdx.x; i < N * plane; i += blockDim.x)
            sum += dy[(i / plane * K + k) * plane + i % plane];
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
