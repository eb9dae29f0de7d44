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
// filter transform reading w flipped and transposed (flip = 1). Host: gpucnn/cuda/conv.py,
// which also checks the sizes (every count below fits int; whole-tensor offsets are 64-bit).
//
// Launches: the transforms are grid-stride loops, one thread per (filter) or per (channel,
// tile) (the tile index fastest, so a warp's loads and stores of U, V and Z are coalesced);
// the GEMM is gemm_tile.cuh's, grid (ceil(T / 128), ceil(rows / tile rows), 16), blockIdx.z
// the Winograd index xi.
#include "common.cuh"
#include "gemm_tile.cuh"

namespace winograd {

// The GEMM of one Winograd index: A = U[xi] (rows x red), B = V[xi] (red x T).
template <typename T>
struct Product {
    const T* u;
    const T* v;
    int rows, red;
    long long tiles;
    bool vector_a;  // red a multiple of 4: four along a row of U are one aligned vector
    __device__ long long xi() const { return blockIdx.z; }
    __device__ T a(int m, long long kk) const { return u[(xi() * rows + m) * red + kk]; }
    __device__ const T* a_vector(int m, long long kk) const {
        return vector_a ? &u[(xi() * rows + m) * red + kk] : nullptr;
    }
    __device__ long long column(long long col) const { return col; }
    __device__ void b4(long long kk, long long col, long long end, T (&out)[4]) const {
#pragma unroll
        for (int i = 0; i < 4; ++i)
            out[i] = kk + i < end ? v[(xi() * red + kk + i) * tiles + col] : T(0);
    }
};

template <typename T, class Tile>
__device__ void product(const T* u, const T* v, T* z, int rows, int red, long long tiles,
                        int vector_loads) {
    const Product<T> problem{u, v, rows, red, tiles, vector_loads != 0};
    T* z_xi = z + (long long)blockIdx.z * rows * tiles;
    gemm::implicit_gemm_tile<T, Tile>(
        problem, rows, tiles, 0, red,
        [&](int m, long long col, T value) { z_xi[m * tiles + col] = value; });
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
        const int n = n0 + (int)(t / ((long long)TH * TW));
        const int i = (int)(t / TW % TH), j = (int)(t % TW);
        const int h0 = 2 * i - ph, w0 = 2 * j - pw;
        const T* plane = x + ((long long)n * C + c) * H * W;
        T d[4][4];
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int s = 0; s < 4; ++s) {
                const int h = h0 + r, wi = w0 + s;
                d[r][s] =
                    h >= 0 && h < H && wi >= 0 && wi < W ? plane[(long long)h * W + wi] : T(0);
            }
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

// Z[xi] = U[xi] V[xi] for the 16 xi (blockIdx.z). vector_loads: red is a multiple of 4.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    winograd_gemm(const T* __restrict__ u, const T* __restrict__ v, T* __restrict__ z, int rows,
                  int red, long long tiles, int vector_loads) {
    winograd::product<T, gemm::Wide>(u, v, z, rows, red, tiles, vector_loads);
}

template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    winograd_gemm_narrow(const T* __restrict__ u, const T* __restrict__ v, T* __restrict__ z,
                         int rows, int red, long long tiles, int vector_loads) {
    winograd::product<T, gemm::Narrow>(u, v, z, rows, red, tiles, vector_loads);
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
        const int n = n0 + (int)(t / ((long long)TH * TW));
        const int i = (int)(t / TW % TH), j = (int)(t % TW);
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
        T* plane = y + ((long long)n * K + k) * P * Q;
#pragma unroll
        for (int a = 0; a < 2; ++a) {
            const int p = 2 * i + a;
            if (p >= P) continue;
            const T out[2] = {left[a][0] + left[a][1] + left[a][2],
                              left[a][1] - left[a][2] - left[a][3]};
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int q = 2 * j + e;
                if (q < Q) plane[(long long)p * Q + q] = has_bias ? out[e] + bias : out[e];
            }
        }
    }
}
