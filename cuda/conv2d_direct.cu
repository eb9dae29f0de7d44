// Direct convolution for layers with few channels and small images (LeNet, CIFAR): forward,
// backward-data (at a stride, one phase of dx at a time: conv2d_direct_phase) and
// backward-filter (GPUCNN_CONV_ALGORITHM=direct; gpucnn/cuda/conv.py).
//
// Why: the implicit GEMM (conv2d.cu) gathers each im2col element with a division and four
// bounds checks and then uses it for one tile of 32 or 128 output channels. With 6-16 output
// channels most of that tile multiplies zeros, and the gathering costs about as much as the
// multiply-adds it feeds (9% of the FP32 peak on ResNet-20's 16-channel layer, cuDNN ~17%).
// Here a block stages a band of the input, zero-padded, in shared memory with plain copies,
// so the inner loop has no index arithmetic and no bounds checks: per filter tap a thread
// reads 4 inputs and 8 weights (two 16-byte broadcasts) for 32 multiply-adds.
//
// Names as in conv2d.cu: x (N, C, H, W) in, y (N, K, P, Q) out; w (K, C, R, S), or with
// flip = 1 a layer's (C, K, R, S) weights read flipped and transposed, w[c, k, R-1-r, S-1-s]:
// backward-data at stride 1 is this convolution of dy with them (padding (R-1)*dh - ph).
//
// conv2d_direct and conv2d_direct_phase (P x Q: the phase's pixels) launch: grid (N * bands,
// ceil(K / (8 * groups))) where bands = ceil(P / band_rows); blockDim.x = pixel_threads * groups,
// pixel_threads a multiple of 32 (a warp shares its output channels, so its weight reads are
// broadcasts); band_rows * Q <= 4 * pixel_threads. Thread t owns output channels k0 + 8 * (t /
// pixel_threads) + i (i < 8) of band pixels t % pixel_threads + j * pixel_threads (j < 4, pixel e =
// row * Q + q). Dynamic shared memory: chunk * (R*S * 8 * groups + in_rows * span) elements, the
// weights and input rows of `chunk` input channels at a time. Each output sums its (c, r, s)
// products in that order: the same bits on every run.
#include "common.cuh"
#include "gemm_tile.cuh"

namespace direct {
constexpr int kPixels = 4;    // output pixels per thread
constexpr int kChannels = 8;  // output channels per thread
constexpr int kMaxThreads = 256;
constexpr int kColumns = 4;  // backward-filter: filter taps (c, r, s) per thread

// Blocks per SM the register budget is set for: two in float (at most 128 registers a
// thread; ptxas left alone picked 64 and spilled); one in double, whose 32 accumulators
// take 64 registers by themselves.
template <typename T>
constexpr int kMinBlocks = sizeof(T) == 4 ? 2 : 1;

// Stages `count` channels of an image, each `in_rows` rows from input row h0 by `span`
// columns from column -pw, into staged[channel][row][column]: zeros outside the image, so
// that the loops reading them need no bounds checks. A warp per row: plain copies.
template <typename T>
__device__ void stage_rows(const T* __restrict__ channels, T* __restrict__ staged, int count, int H,
                           int W, int h0, int pw, int in_rows, int span) {
    const int lane = threadIdx.x % 32, warps = blockDim.x / 32;
    for (int row = threadIdx.x / 32; row < count * in_rows; row += warps) {
        const int h = h0 + row % in_rows;
        const bool inside = h >= 0 && h < H;
        const T* source = channels + ((long long)(row / in_rows) * H + (inside ? h : 0)) * W;
        for (int col = lane; col < span; col += 32) {
            const int wi = col - pw;
            staged[row * span + col] = inside && wi >= 0 && wi < W ? source[wi] : T(0);
        }
    }
}

// acc[j][i] += values[j] * channels[i] for the kChannels values at `channels` (shared
// memory, 16-byte aligned; read as two 16-byte loads, broadcasts when a warp shares them):
// the multiply-adds of every direct kernel's inner loop.
template <typename T, int kValues>
__device__ __forceinline__ void multiply_add(T (&acc)[kValues][kChannels],
                                             const T (&values)[kValues], const T* channels) {
    static_assert(kChannels == 8, "two 4-wide loads");
    T low[4], high[4];  // channels i and 4 + i
    load4(channels, low);
    load4(channels + 4, high);
#pragma unroll
    for (int j = 0; j < kValues; ++j)
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            acc[j][i] = fma(values[j], low[i], acc[j][i]);
            acc[j][4 + i] = fma(values[j], high[i], acc[j][4 + i]);
        }
}

// Input x (N, C, H, W) and the R x S taps that each output pixel (p, q) of P x Q sums.
struct Geometry {
    int N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw;
};
// Which weight feeds tap (r, s): w[k, c, r_first + r_step * r, s_first + s_step * s] of a
// (K, C, Rw, Sw) array, or with transposed = 1 w[c, k, ...] of a (C, K, Rw, Sw) one.
struct Taps {
    int transposed, Rw, Sw, r_first, r_step, s_first, s_step;
};
// Where output (p, q) goes: y (N, K, rows, cols) at row row0 + row_step * p, column
// col0 + col_step * q.
struct Placement {
    int rows, cols, row0, row_step, col0, col_step;
};

// The body of conv2d_direct and conv2d_direct_phase (launch as described at the top).
// Block x covers band x % bands of image x / bands; a band past the P rows has no work.
template <typename T>
__device__ void convolve(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                         T* __restrict__ y, const Geometry& g, const Taps& weights_of,
                         const Placement& out, int has_bias, int bands, int band_rows,
                         int pixel_threads, int chunk) {
    extern __shared__ __align__(16) unsigned char dynamic[];
    const int taps = g.R * g.S;
    const int block_channels = blockDim.x / pixel_threads * kChannels;
    const int in_rows = (band_rows - 1) * g.sh + (g.R - 1) * g.dh + 1;  // input rows a band reads
    const int span = (g.Q - 1) * g.sw + (g.S - 1) * g.dw + 1;  // and columns, padding included
    T* weights = reinterpret_cast<T*>(dynamic);                // [chunk][taps][block_channels]
    T* inputs = weights + chunk * taps * block_channels;       // [chunk][in_rows][span]

    const long long n = blockIdx.x / bands;
    const int p0 = (int)(blockIdx.x % bands) * band_rows;
    if (p0 >= g.P) return;  // (the whole block: no barrier is left waiting)
    const int pixels = min(band_rows, g.P - p0) * g.Q;  // in this band
    const int k0 = blockIdx.y * block_channels;
    const int t = threadIdx.x, group = t / pixel_threads, pixel0 = t % pixel_threads;

    // Where pixel j's first tap sits in one channel's staged rows.
    int offset[kPixels];
#pragma unroll
    for (int j = 0; j < kPixels; ++j) {
        const int e = pixel0 + j * pixel_threads;
        offset[j] = e < pixels ? e / g.Q * g.sh * span + e % g.Q * g.sw : 0;
    }
    T acc[kPixels][kChannels];
#pragma unroll
    for (int j = 0; j < kPixels; ++j)
#pragma unroll
        for (int i = 0; i < kChannels; ++i)
            acc[j][i] = T(0);

    const int h0 = p0 * g.sh - g.ph;  // the input row of staged row 0; column 0 is -pw
    for (int c0 = 0; c0 < g.C; c0 += chunk) {
        const int count = min(chunk, g.C - c0);
        __syncthreads();  // every thread is done with the previous chunk
        // weights[(c - c0) * taps + tap][kc]: blockDim.x is a multiple of block_channels, so
        // a thread stages one channel kc throughout
        const int kc = t % block_channels, k = k0 + kc;
        for (int pair = t / block_channels; pair < count * taps;
             pair += blockDim.x / block_channels) {
            const int c = c0 + pair / taps, tap = pair % taps;
            const int r = weights_of.r_first + weights_of.r_step * (tap / g.S);
            const int s = weights_of.s_first + weights_of.s_step * (tap % g.S);
            const long long filter =
                weights_of.transposed ? (long long)c * g.K + k : (long long)k * g.C + c;
            weights[pair * block_channels + kc] =
                k < g.K ? w[(filter * weights_of.Rw + r) * weights_of.Sw + s] : T(0);
        }
        stage_rows(x + (n * g.C + c0) * g.H * (long long)g.W, inputs, count, g.H, g.W, h0, g.pw,
                   in_rows, span);
        __syncthreads();
        for (int ci = 0; ci < count; ++ci) {
            const T* in = inputs + ci * in_rows * span;
            const T* weight = weights + ci * taps * block_channels + group * kChannels;
            for (int r = 0; r < g.R; ++r) {
                for (int s = 0; s < g.S; ++s) {
                    const int tap = r * g.dh * span + s * g.dw;
                    T xv[kPixels];
#pragma unroll
                    for (int j = 0; j < kPixels; ++j)
                        xv[j] = in[offset[j] + tap];
                    multiply_add(acc, xv, weight + (r * g.S + s) * block_channels);
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < kPixels; ++j) {
        const int e = pixel0 + j * pixel_threads;
        if (e >= pixels) continue;
        const int row = out.row0 + out.row_step * (p0 + e / g.Q);
        const int col = out.col0 + out.col_step * (e % g.Q);
#pragma unroll
        for (int i = 0; i < kChannels; ++i) {
            const int k = k0 + group * kChannels + i;
            if (k < g.K)
                y[((n * g.K + k) * out.rows + row) * (long long)out.cols + col] =
                    has_bias ? acc[j][i] + b[k] : acc[j][i];
        }
    }
}

}  // namespace direct

// The forward (flip = 0), or backward-data at stride 1 (flip = 1: x is dy, w the layer's
// weights read flipped and transposed, padding (R-1)*dh - ph): y = conv(x, w) + b, with
// has_bias = 0 ignoring b (which may be null).
template <typename T>
__global__ void __launch_bounds__(direct::kMaxThreads, direct::kMinBlocks<T>)
    conv2d_direct(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                  T* __restrict__ y, int N, int C, int H, int W, int K, int R, int S, int P, int Q,
                  int sh, int sw, int ph, int pw, int dh, int dw, int flip, int has_bias,
                  int band_rows, int pixel_threads, int chunk) {
    const direct::Taps taps =
        flip ? direct::Taps{1, R, S, R - 1, -1, S - 1, -1} : direct::Taps{0, R, S, 0, 1, 0, 1};
    direct::convolve(x, w, b, y, {N, C, H, W, K, R, S, P, Q, sh, sw, ph, pw, dh, dw}, taps,
                     {P, Q, 0, 1, 0, 1}, has_bias, (P + band_rows - 1) / band_rows, band_rows,
                     pixel_threads, chunk);
}

// Backward-data of a strided, undilated layer, phase blockIdx.z = a * sw + b of dx: the
// input pixels (a + sh * i, b + sw * j). Layer names: dy (N, K, P, Q), w (K, C, R, S), dx
// (N, C, H, W). Input row h = a + sh * i took taps r = r0, r0 + sh, ... (r0 = (a + ph) % sh)
// from output rows (h + ph - r) / sh, one lower per tap: so the phase is a stride-1
// correlation of dy with those taps, last first (w's rows r_last, r_last - sh, ...), padded
// so that its first tap, r_last, reads row i + (a + ph - r_last) / sh; columns likewise. A
// phase without taps (a 1x1 filter at stride 2) writes zeros. Launch: grid (N * bands,
// channel blocks, sh * sw), with the bands of phase (0, 0), which has the most pixels, and a
// plan for those pixels and the most taps any phase has (ceil(R / sh) by ceil(S / sw)).
template <typename T>
__global__ void __launch_bounds__(direct::kMaxThreads, direct::kMinBlocks<T>)
    conv2d_direct_phase(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx,
                        int N, int K, int P, int Q, int C, int R, int S, int H, int W, int sh,
                        int sw, int ph, int pw, int band_rows, int pixel_threads, int chunk) {
    const int a = blockIdx.z / sw, b = blockIdx.z % sw;
    const int rows = (H - a + sh - 1) / sh, cols = (W - b + sw - 1) / sw;  // of this phase
    if (rows <= 0 || cols <= 0) return;  // (an input too small to have pixels in this phase)
    const int r0 = (a + ph) % sh, s0 = (b + pw) % sw;
    const int taps_h = r0 < R ? (R - r0 + sh - 1) / sh : 0;
    const int taps_w = s0 < S ? (S - s0 + sw - 1) / sw : 0;
    const int r_last = r0 + sh * (taps_h - 1), s_last = s0 + sw * (taps_w - 1);
    const int bands = ((H + sh - 1) / sh + band_rows - 1) / band_rows;
    direct::convolve<T>(dy, w, nullptr, dx,
                        {N, K, P, Q, C, taps_h, taps_w, rows, cols, 1, 1, -(a + ph - r_last) / sh,
                         -(b + pw - s_last) / sw, 1, 1},
                        {1, R, S, r_last, -sh, s_last, -sw}, {H, W, a, sh, b, sw}, 0, bands,
                        band_rows, pixel_threads, chunk);
}

// dw, or with gridDim.x > 1 split x's slice of `out`, summed by conv2d_sum_splits_by_warp:
// dw[k, c, r, s] = sum over n, p, q of dy[n, k, p, q] x[n, c, p*sh - ph + r*dh, q*sw - pw +
// s*dw]. Block (split, k block, c block) reduces over the units (n, band of band_rows output
// rows) [split * units, (split + 1) * units) in order; per unit it stages the band's dy, as
// [pixel][k] so that a thread's 8 channels are two 16-byte broadcasts, and its input rows
// as the forward does. Thread t owns output channels k0 + 8 * (t / column_threads) + i
// (i < 8) of filter taps ct + j * column_threads (j < 4, ct = t % column_threads) among the
// block's `chunk` channels' (c, r, s); per output pixel it reads 8 dy and 4 x values for 32
// multiply-adds, in (n, p, q) order: the same bits on every run. Launch: grid (splits,
// ceil(K / (8 * groups)), ceil(C / chunk)), blockDim.x >= groups * column_threads; dynamic
// shared memory (band_rows * Q * 8 * groups + chunk * in_rows * span) elements.
template <typename T>
__global__ void __launch_bounds__(direct::kMaxThreads, direct::kMinBlocks<T>)
    conv2d_direct_backward_filter(const T* __restrict__ dy, const T* __restrict__ x,
                                  T* __restrict__ out, int N, int C, int H, int W, int K, int R,
                                  int S, int P, int Q, int sh, int sw, int ph, int pw, int dh,
                                  int dw, int band_rows, int groups, int column_threads, int chunk,
                                  int units) {
    using direct::kChannels;
    using direct::kColumns;
    extern __shared__ __align__(16) unsigned char dynamic[];
    const int taps = R * S;
    const int block_channels = groups * kChannels;
    const int in_rows = (band_rows - 1) * sh + (R - 1) * dh + 1;
    const int span = (Q - 1) * sw + (S - 1) * dw + 1;
    T* gradients = reinterpret_cast<T*>(dynamic);            // [band pixel][block_channels]
    T* inputs = gradients + band_rows * Q * block_channels;  // [chunk][in_rows][span]

    const int k0 = blockIdx.y * block_channels, c0 = blockIdx.z * chunk;
    const int count = min(chunk, C - c0);  // channels of this block
    const int t = threadIdx.x, group = t / column_threads, column0 = t % column_threads;
    const bool active = group < groups;  // (threads past groups * column_threads only stage)
    // Where column j's tap sits in the staged rows, relative to an output pixel's first tap.
    int offset[kColumns];
#pragma unroll
    for (int j = 0; j < kColumns; ++j) {
        const int column = column0 + j * column_threads;  // c_local * taps + r * S + s
        const int tap = column % taps;
        offset[j] = column < count * taps
                        ? column / taps * in_rows * span + tap / S * dh * span + tap % S * dw
                        : 0;
    }
    T acc[kColumns][kChannels];
#pragma unroll
    for (int j = 0; j < kColumns; ++j)
#pragma unroll
        for (int i = 0; i < kChannels; ++i)
            acc[j][i] = T(0);

    const int bands = (P + band_rows - 1) / band_rows;
    const long long first = (long long)blockIdx.x * units;
    const long long last = min(first + units, (long long)N * bands);
    for (long long unit = first; unit < last; ++unit) {
        const long long n = unit / bands;
        const int p0 = (int)(unit % bands) * band_rows, rows = min(band_rows, P - p0);
        __syncthreads();  // every thread is done with the previous unit
        // dy (n, k0 .., p0 .., :) as [pixel][channel]: consecutive threads, consecutive
        // channels (each channel's band is one run of rows * Q values in dy)
        for (int e = t; e < rows * Q * block_channels; e += blockDim.x) {
            const int kc = e % block_channels, k = k0 + kc;
            gradients[e] =
                k < K ? dy[((n * K + k) * P + p0) * (long long)Q + e / block_channels] : T(0);
        }
        direct::stage_rows(x + (n * C + c0) * H * (long long)W, inputs, count, H, W, p0 * sh - ph,
                           pw, in_rows, span);
        __syncthreads();
        if (!active) continue;
        const T* pixel_gradients = gradients + group * kChannels;
        for (int row = 0; row < rows; ++row) {
            for (int q = 0; q < Q; ++q) {
                const int pixel = row * Q + q, first_tap = row * sh * span + q * sw;
                T xv[kColumns];
#pragma unroll
                for (int j = 0; j < kColumns; ++j)
                    xv[j] = inputs[first_tap + offset[j]];
                direct::multiply_add(acc, xv, pixel_gradients + pixel * block_channels);
            }
        }
    }
    if (!active) return;
    T* slice = out + (long long)blockIdx.x * K * C * taps;
#pragma unroll
    for (int j = 0; j < kColumns; ++j) {
        const int column = column0 + j * column_threads;
        if (column >= count * taps) continue;
#pragma unroll
        for (int i = 0; i < kChannels; ++i) {
            const int k = k0 + group * kChannels + i;
            if (k < K) slice[((long long)k * C + c0) * taps + column] = acc[j][i];
        }
    }
}
