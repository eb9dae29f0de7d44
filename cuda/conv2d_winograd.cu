// Winograd F(2x2, 3x3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", 2016) for 3x3 layers with stride 1 and no dilation: the forward, and the
// backward-data as the forward of dy with w flipped and transposed (see below).
//
// Names as in conv2d.cu: input (N, C, H, W), w (K, C, 3, 3), output (N, K, P, Q) with
// P = H + 2ph - 2, Q = W + 2pw - 2, all C-contiguous. The output is cut into 2x2 tiles, TH =
// ceil(P / 2) by TW = ceil(Q / 2) per image. One call covers images [n0, n0 + n_count): its
// T = n_count*TH*TW tiles are numbered t = ((n - n0)*TH + i)*TW + j, and tile t reads the 4x4
// patch d of each input channel at rows 2i - ph .. 2i - ph + 3, columns 2j - pw .. + 3 (zero
// outside the image). With xi = 4a + b indexing the 4x4 Winograd domain:
//     U[xi][k][c] = (G g G^T)[a][b],  g = w[k][c]          winograd_filter_transform
//     V[xi][c][t] = (B^T d B)[a][b]                        winograd_input_transform
//     Z[xi][k][t] = sum_c U[xi][k][c] V[xi][c][t]         winograd_gemm: 16 GEMMs
//     y tile (k, t) = A^T Z[.][k][t] A (+ b[k])            winograd_output_transform
// Each 2x2 output tile costs 16 multiplications per input channel instead of 36: 2.25x fewer.
//
// Backward-data: dx[n, c, h, w] = sum_{k, r, s} w[k, c, 2 - r, 2 - s] dyp[n, k, h + r, w + s]
// with dy padded by (2 - ph, 2 - pw): the forward with input dy, K and C swapped and the
// filter transform reading w flipped and transposed (flip = 1).
//
// Backward-filter, the adjoint of the forward (y_t = A^T (U . V_t) A per tile and channel
// pair, so dU = sum_t (A dy_t A^T) . V_t and dg = G^T dU G):
//     D[xi][t][k] = (A dy_t A^T)[a][b]                     winograd_output_gradient_transform
//     E[xi][c][k] = sum_t V[xi][c][t] D[xi][t][k]          winograd_gemm: 16 GEMMs,
//                   the reduction over t split over blockIdx.z / 16 into slices, summed in
//                   split order (and pass order) by winograd_sum_splits: the same bits every run
//     dw[k][c] = G^T E[.][c][k] G                          winograd_filter_gradient
// D is tile-major (k fastest) so that the GEMM's B loads are coalesced. Host:
// gpucnn/cuda/conv.py, which also checks the sizes (every count below fits int; whole-tensor
// offsets are 64-bit).
//
// Launches: the transforms are grid-stride loops, one thread per (filter) or per (channel,
// tile) (the tile index fastest, so a warp's loads and stores of U, V and Z are coalesced);
// the GEMM is gemm_tile.cuh's, grid (ceil(T / 128), ceil(rows / tile rows), 16), blockIdx.z
// the Winograd index xi.
#include "common.cuh"
#include "gemm_tile.cuh"

namespace winograd {

// n, i, j of tile t (counted from image n0): the image and the tile's row and column.
struct TileIndex {
    int n, i, j;
    __device__ TileIndex(long long t, int n0, int TH, int TW)
        : n(n0 + (int)(t / ((long long)TH * TW))), i((int)(t / TW % TH)), j((int)(t % TW)) {}
};

// The N x N patch of an (H, W) plane whose top-left element is (h0, w0), zero outside it.
template <int N, typename T>
__device__ __forceinline__ void load_patch(const T* plane, int H, int W, int h0, int w0,
                                           T (&out)[N][N]) {
#pragma unroll
    for (int r = 0; r < N; ++r)
#pragma unroll
        for (int s = 0; s < N; ++s) {
            const int h = h0 + r, w = w0 + s;
            out[r][s] = h >= 0 && h < H && w >= 0 && w < W ? plane[(long long)h * W + w] : T(0);
        }
}

// The 16 GEMMs out[xi] = a[xi] b[xi], each operand row-major: a (M x red), b (red x cols).
// The forward's are U V (M = rows, red = channels in, cols = T); backward-filter's V D (M = C,
// red = T, cols = K), with the reduction split. blockIdx.z = split * 16 + xi.
template <typename T>
struct Batched {
    const T* lhs;  // a
    const T* rhs;  // b
    int M;
    long long red, cols;
    bool vector_a;  // red a multiple of 4: four along a row of a are one aligned vector
    __device__ long long xi() const { return blockIdx.z % 16; }
    __device__ T a(int m, long long kk) const { return lhs[(xi() * M + m) * red + kk]; }
    __device__ const T* a_vector(int m, long long kk) const {
        return vector_a ? &lhs[(xi() * M + m) * red + kk] : nullptr;
    }
    __device__ long long column(long long col) const { return col; }
    __device__ void b4(long long kk, long long col, long long end, T (&out)[4]) const {
#pragma unroll
        for (int i = 0; i < 4; ++i)
            out[i] = kk + i < end ? rhs[(xi() * red + kk + i) * cols + col] : T(0);
    }
};

// Split blockIdx.z / 16 reduces over [split * chunk, (split + 1) * chunk) into its own
// (M, cols) slice blockIdx.z of `out`; chunk is a multiple of the reduction step (or all of
// it: one split).
template <typename T, class Tile>
__device__ void batched_gemm(const T* a, const T* b, T* out, int M, long long red, long long cols,
                             long long chunk, int vector_loads) {
    const Batched<T> problem{a, b, M, red, cols, vector_loads != 0};
    const long long begin = blockIdx.z / 16 * chunk, end = min(begin + chunk, red);
    T* slice = out + (long long)blockIdx.z * M * cols;
    gemm::implicit_gemm_tile<T, Tile>(
        problem, M, cols, begin, end,
        [&](int m, long long col, T value) { slice[(long long)m * cols + col] = value; });
}

}  // namespace winograd

// U[xi][m][j] = (G g G^T)[xi] for every filter: g = w[m][j] (flip = 0: m = k, j = c), or
// g = w[j][m] rotated by 180 degrees (flip = 1: m = c, j = k, the backward-data filter).
// G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
template <typename T>
__global__ void winograd_filter_transform(const T* __restrict__ w, T* __restrict__ u, int rows,
                                          int red, int flip) {
    const long long filters = (long long)rows * red;
    GPUCNN_GRID_STRIDE_LOOP(f, filters) {
        const int m = (int)(f / red), j = (int)(f % red);
        const T* g = flip ? w + ((long long)j * rows + m) * 9 : w + f * 9;
        T gg[3][3];
#pragma unroll
        for (int r = 0; r < 3; ++r)
#pragma unroll
            for (int s = 0; s < 3; ++s)
                gg[r][s] = flip ? g[(2 - r) * 3 + (2 - s)] : g[r * 3 + s];
        const T half = T(0.5);
        T left[4][3];  // G g
#pragma unroll
        for (int s = 0; s < 3; ++s) {
            left[0][s] = gg[0][s];
            left[1][s] = half * (gg[0][s] + gg[1][s] + gg[2][s]);
            left[2][s] = half * (gg[0][s] - gg[1][s] + gg[2][s]);
            left[3][s] = gg[2][s];
        }
#pragma unroll
        for (int a = 0; a < 4; ++a) {  // (G g) G^T, row a
            const T row[4] = {left[a][0], half * (left[a][0] + left[a][1] + left[a][2]),
                              half * (left[a][0] - left[a][1] + left[a][2]), left[a][2]};
#pragma unroll
            for (int b = 0; b < 4; ++b)
                u[(4 * a + b) * filters + f] = row[b];
        }
    }
}

// V[xi][c][t] = (B^T d B)[xi], d the 4x4 patch of tile t in channel c (zeros outside).
// B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
template <typename T>
__global__ void winograd_input_transform(const T* __restrict__ x, T* __restrict__ v, int n0,
                                         int n_count, int C, int H, int W, int ph, int pw, int TH,
                                         int TW) {
    const long long tiles = (long long)n_count * TH * TW, total = tiles * C;
    GPUCNN_GRID_STRIDE_LOOP(index, total) {
        const int c = (int)(index / tiles);
        const long long t = index % tiles;
        const winograd::TileIndex tile(t, n0, TH, TW);
        const T* plane = x + ((long long)tile.n * C + c) * H * W;
        T d[4][4];
        winograd::load_patch(plane, H, W, 2 * tile.i - ph, 2 * tile.j - pw, d);
        T left[4][4];  // B^T d
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            left[0][s] = d[0][s] - d[2][s];
            left[1][s] = d[1][s] + d[2][s];
            left[2][s] = d[2][s] - d[1][s];
            left[3][s] = d[1][s] - d[3][s];
        }
#pragma unroll
        for (int a = 0; a < 4; ++a) {  // (B^T d) B, row a
            const T row[4] = {left[a][0] - left[a][2], left[a][1] + left[a][2],
                              left[a][2] - left[a][1], left[a][1] - left[a][3]};
#pragma unroll
            for (int b = 0; b < 4; ++b)
                v[((long long)(4 * a + b) * C + c) * tiles + t] = row[b];
        }
    }
}

// out[split * 16 + xi] = a[xi] b[xi] over the split's part of the reduction (see
// winograd::batched_gemm): the forward's Z = U V (one split) and backward-filter's partial
// E = V D. vector_loads: red is a multiple of 4.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    winograd_gemm(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, int M,
                  long long red, long long cols, long long chunk, int vector_loads) {
    winograd::batched_gemm<T, gemm::Wide>(a, b, out, M, red, cols, chunk, vector_loads);
}

template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    winograd_gemm_narrow(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                         int M, long long red, long long cols, long long chunk, int vector_loads) {
    winograd::batched_gemm<T, gemm::Narrow>(a, b, out, M, red, cols, chunk, vector_loads);
}

// The 2x2 outputs of tile t in channel k: A^T Z[.][k][t] A (+ b[k] when has_bias), the parts
// inside (P, Q). A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].
template <typename T>
__global__ void winograd_output_transform(const T* __restrict__ z, const T* __restrict__ b,
                                          T* __restrict__ y, int n0, int n_count, int K, int P,
                                          int Q, int TH, int TW, int has_bias) {
    const long long tiles = (long long)n_count * TH * TW, total = tiles * K;
    GPUCNN_GRID_STRIDE_LOOP(index, total) {
        const int k = (int)(index / tiles);
        const long long t = index % tiles;
        const winograd::TileIndex tile(t, n0, TH, TW);
        T m[4][4];
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                m[a][e] = z[((long long)(4 * a + e) * K + k) * tiles + t];
        T left[2][4];  // A^T m
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            left[0][e] = m[0][e] + m[1][e] + m[2][e];
            left[1][e] = m[1][e] - m[2][e] - m[3][e];
        }
        const T bias = has_bias ? b[k] : T(0);
        T* plane = y + ((long long)tile.n * K + k) * P * Q;
#pragma unroll
        for (int a = 0; a < 2; ++a) {
            const int p = 2 * tile.i + a;
            if (p >= P) continue;
            const T out[2] = {left[a][0] + left[a][1] + left[a][2],
                              left[a][1] - left[a][2] - left[a][3]};
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int q = 2 * tile.j + e;
                if (q < Q) plane[(long long)p * Q + q] = has_bias ? out[e] + bias : out[e];
            }
        }
    }
}

// D[xi][t][k] = (A dy_t A^T)[xi], dy_t the 2x2 outputs of tile t in channel k (zero past P, Q).
// A = [[1, 0], [1, 1], [1, -1], [0, -1]]. One thread per (tile, k), k fastest.
template <typename T>
__global__ void winograd_output_gradient_transform(const T* __restrict__ dy, T* __restrict__ d,
                                                   int n0, int n_count, int K, int P, int Q, int TH,
                                                   int TW) {
    const long long tiles = (long long)n_count * TH * TW, total = tiles * K;
    GPUCNN_GRID_STRIDE_LOOP(index, total) {
        const int k = (int)(index % K);
        const long long t = index / K;
        const winograd::TileIndex tile(t, n0, TH, TW);
        const T* plane = dy + ((long long)tile.n * K + k) * P * Q;
        T g[2][2];
        winograd::load_patch(plane, P, Q, 2 * tile.i, 2 * tile.j, g);
        T left[4][2];  // A g
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            left[0][e] = g[0][e];
            left[1][e] = g[0][e] + g[1][e];
            left[2][e] = g[0][e] - g[1][e];
            left[3][e] = -g[1][e];
        }
#pragma unroll
        for (int a = 0; a < 4; ++a) {  // (A g) A^T, row a
            const T row[4] = {left[a][0], left[a][0] + left[a][1], left[a][0] - left[a][1],
                              -left[a][1]};
#pragma unroll
            for (int b = 0; b < 4; ++b)
                d[((long long)(4 * a + b) * tiles + t) * K + k] = row[b];
        }
    }
}

// E = (accumulate ? E : 0) + the splits' slices in split order: called once per pass over the
// batch, so E sums the passes in order too.
template <typename T>
__global__ void winograd_sum_splits(const T* __restrict__ partial, T* __restrict__ e, int splits,
                                    long long size, int accumulate) {
    sum_splits(partial, e, splits, size, accumulate != 0);
}

// dw[k][c] = G^T E[.][c][k] G. G^T = [[1, 1/2, 1/2, 0], [0, 1/2, -1/2, 0], [0, 1/2, 1/2, 1]].
template <typename T>
__global__ void winograd_filter_gradient(const T* __restrict__ e, T* __restrict__ dw, int K,
                                         int C) {
    const long long filters = (long long)K * C;
    GPUCNN_GRID_STRIDE_LOOP(f, filters) {
        const int k = (int)(f / C), c = (int)(f % C);
        T m[4][4];
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
            for (int b = 0; b < 4; ++b)
                m[a][b] = e[((long long)(4 * a + b) * C + c) * K + k];
        const T half = T(0.5);
        T left[3][4];  // G^T m
#pragma unroll
        for (int b = 0; b < 4; ++b) {
            left[0][b] = m[0][b] + half * (m[1][b] + m[2][b]);
            left[1][b] = half * (m[1][b] - m[2][b]);
            left[2][b] = half * (m[1][b] + m[2][b]) + m[3][b];
        }
#pragma unroll
        for (int r = 0; r < 3; ++r) {  // (G^T m) G, row r
            dw[f * 9 + r * 3 + 0] = left[r][0] + half * (left[r][1] + left[r][2]);
            dw[f * 9 + r * 3 + 1] = half * (left[r][1] - left[r][2]);
            dw[f * 9 + r * 3 + 2] = half * (left[r][1] + left[r][2]) + left[r][3];
        }
    }
}
