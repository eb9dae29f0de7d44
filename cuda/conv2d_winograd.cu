// Winograd F(m x m, 3 x 3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional
// Neural Networks", 2016), m = 2 or 4, for 3x3 layers with stride 1 and no dilation: the
// forward, and the backward-data as the forward of dy with w flipped and transposed (see
// below). n = m + 2 is the side of an input patch and of the Winograd domain, whose n^2
// points ("points") index the batched GEMMs. The transform kernels are winograd_* for m = 2
// and winograd4_* for m = 4; the GEMM and the split sum serve both.
//
// Names as in conv2d.cu: input (N, C, H, W), w (K, C, 3, 3), output (N, K, P, Q) with
// P = H + 2ph - 2, Q = W + 2pw - 2, all C-contiguous. The output is cut into m x m tiles, TH =
// ceil(P / m) by TW = ceil(Q / m) per image. One call covers images [n0, n0 + n_count): its
// T = n_count*TH*TW tiles are numbered t = ((n - n0)*TH + i)*TW + j, and tile t reads the
// n x n patch d of each input channel at rows m*i - ph .. m*i - ph + n - 1, columns
// m*j - pw .. (zero outside the image). With xi = n*a + b indexing the Winograd domain:
//     U[xi][k][c] = (G g G^T)[a][b],  g = w[k][c]          *_filter_transform
//     V[xi][c][t] = (B^T d B)[a][b]                        *_input_transform
//     Z[xi][k][t] = sum_c U[xi][k][c] V[xi][c][t]         winograd_gemm: n^2 GEMMs
//     y tile (k, t) = A^T Z[.][k][t] A (+ b[k])            *_output_transform
// B^T, G and A^T are winograd::Matrices<m> below. Each output tile costs n^2 multiplications
// per input channel instead of 9 m^2: 2.25x fewer for m = 2, 4x for m = 4 (whose larger
// transform coefficients round a little more).
//
// Backward-data: dx[n, c, h, w] = sum_{k, r, s} w[k, c, 2 - r, 2 - s] dyp[n, k, h + r, w + s]
// with dy padded by (2 - ph, 2 - pw): the forward with input dy, K and C swapped and the
// filter transform reading w flipped and transposed (flip = 1).
//
// Backward-filter, the adjoint of the forward (y_t = A^T (U . V_t) A per tile and channel
// pair, so dU = sum_t (A dy_t A^T) . V_t and dg = G^T dU G):
//     D[xi][t][k] = (A dy_t A^T)[a][b]                     *_output_gradient_transform
//     E[xi][c][k] = sum_t V[xi][c][t] D[xi][t][k]          winograd_gemm: n^2 GEMMs,
//                   the reduction over t split over blockIdx.z / points into slices, summed in
//                   split order, then pass order: the same bits every run
//     dw[k][c] = G^T E[.][c][k] G                          *_filter_gradient
// The last pass's slices are summed by *_filter_gradient itself, as it reads them (E never
// goes through memory on one pass); winograd_sum_splits sums those of the passes before.
// D is tile-major (k fastest) so that the GEMM's B loads are coalesced. Host:
// gpucnn/cuda/conv.py, which also checks the sizes (every count below fits int; whole-tensor
// offsets are 64-bit).
//
// Launches: the transforms are grid-stride loops, one thread per (filter) or per (channel,
// tile) (the tile index fastest, so a warp's loads and stores of U, V and Z are coalesced);
// the GEMM is gemm_tile.cuh's, grid (ceil(T / 128), ceil(rows / tile rows), points),
// blockIdx.z the Winograd index xi.
#include "common.cuh"
#include "gemm_tile.cuh"

namespace winograd {

// The transform matrices of F(m x m, 3 x 3), n = m + 2 (Lavin & Gray; the points 0, 1, -1
// for m = 2 and 0, 1, -1, 2, -2 for m = 4, with the point at infinity): B^T (n x n), G (n x 3),
// A^T (m x n). Coefficients are read at compile time once the loops that use them unroll.
template <int M>
struct Matrices;

template <>
struct Matrices<2> {
    static constexpr int kN = 4;
    __device__ static constexpr double bt(int i, int j) {
        constexpr double table[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
        return table[i][j];
    }
    __device__ static constexpr double g(int i, int j) {
        constexpr double table[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
        return table[i][j];
    }
    __device__ static constexpr double at(int i, int j) {
        constexpr double table[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
        return table[i][j];
    }
};

template <>
struct Matrices<4> {
    static constexpr int kN = 6;
    __device__ static constexpr double bt(int i, int j) {
        constexpr double table[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0},
                                        {0, 4, -4, -1, 1, 0}, {0, -2, -1, 2, 1, 0},
                                        {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
        return table[i][j];
    }
    __device__ static constexpr double g(int i, int j) {
        constexpr double table[6][3] = {{1.0 / 4, 0, 0},
                                        {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                        {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                        {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                        {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                        {0, 0, 1}};
        return table[i][j];
    }
    __device__ static constexpr double at(int i, int j) {
        constexpr double table[4][6] = {
            {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
        return table[i][j];
    }
};

// sum_j c(j) x(j) over J terms, zero coefficients skipped and +-1 not multiplied: with c
// known at compile time, only the needed multiplications and additions remain.
template <int J, typename T, class Coefficient, class Value>
__device__ __forceinline__ T combine(Coefficient c, Value x) {
    T sum = T(0);
    bool empty = true;
#pragma unroll
    for (int j = 0; j < J; ++j) {
        const double cj = c(j);
        if (cj == 0) continue;
        const T term = cj == 1 ? x(j) : cj == -1 ? -x(j) : T(cj) * x(j);
        sum = empty ? term : sum + term;
        empty = false;
    }
    return sum;
}

// out = L in R^T for constant L (I x J) and R (O x K), in (J x K): a transform's two sides.
template <int I, int J, int K, int O, typename T, class Left, class Right>
__device__ __forceinline__ void sandwich(Left left, const T (&in)[J][K], Right right,
                                         T (&out)[I][O]) {
    T half[I][K];  // L in
#pragma unroll
    for (int i = 0; i < I; ++i)
#pragma unroll
        for (int k = 0; k < K; ++k)
            half[i][k] =
                combine<J, T>([&](int j) { return left(i, j); }, [&](int j) { return in[j][k]; });
#pragma unroll
    for (int i = 0; i < I; ++i)
#pragma unroll
        for (int o = 0; o < O; ++o)
            out[i][o] = combine<K, T>([&](int k) { return right(o, k); },
                                      [&](int k) { return half[i][k]; });
}

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

// U[xi][m][j] = (G g G^T)[xi] for filter f = (m, j): g = w[m][j] (flip = 0: m = k, j = c),
// or g = w[j][m] rotated by 180 degrees (flip = 1: m = c, j = k, the backward-data filter).
template <int M, typename T>
__device__ __forceinline__ void filter_transform(const T* w, T* u, int rows, int red, int flip,
                                                 long long f) {
    using X = Matrices<M>;
    constexpr int N = X::kN;
    const long long filters = (long long)rows * red;
    const int m = (int)(f / red), j = (int)(f % red);
    const T* g = flip ? w + ((long long)j * rows + m) * 9 : w + f * 9;
    T gg[3][3];
#pragma unroll
    for (int r = 0; r < 3; ++r)
#pragma unroll
        for (int s = 0; s < 3; ++s)
            gg[r][s] = flip ? g[(2 - r) * 3 + (2 - s)] : g[r * 3 + s];
    T out[N][N];
    sandwich([](int a, int b) { return X::g(a, b); }, gg, [](int a, int b) { return X::g(a, b); },
             out);
#pragma unroll
    for (int a = 0; a < N; ++a)
#pragma unroll
        for (int b = 0; b < N; ++b)
            u[(N * a + b) * filters + f] = out[a][b];
}

// V[xi][c][t] = (B^T d B)[xi], d the n x n patch of tile t in channel c (zeros outside).
template <int M, typename T>
__device__ __forceinline__ void input_transform(const T* x, T* v, int n0, int n_count, int C, int H,
                                                int W, int ph, int pw, int TH, int TW,
                                                long long index) {
    using X = Matrices<M>;
    constexpr int N = X::kN;
    const long long tiles = (long long)n_count * TH * TW;
    const int c = (int)(index / tiles);
    const long long t = index % tiles;
    const TileIndex tile(t, n0, TH, TW);
    const T* plane = x + ((long long)tile.n * C + c) * H * W;
    T d[N][N];
    load_patch(plane, H, W, M * tile.i - ph, M * tile.j - pw, d);
    T out[N][N];
    sandwich([](int a, int b) { return X::bt(a, b); }, d, [](int a, int b) { return X::bt(a, b); },
             out);
#pragma unroll
    for (int a = 0; a < N; ++a)
#pragma unroll
        for (int b = 0; b < N; ++b)
            v[((long long)(N * a + b) * C + c) * tiles + t] = out[a][b];
}

// The m x m outputs of tile t in channel k: A^T Z[.][k][t] A (+ b[k] when has_bias), the
// parts inside (P, Q).
template <int M, typename T>
__device__ __forceinline__ void output_transform(const T* z, const T* b, T* y, int n0, int n_count,
                                                 int K, int P, int Q, int TH, int TW, int has_bias,
                                                 long long index) {
    using X = Matrices<M>;
    constexpr int N = X::kN;
    const long long tiles = (long long)n_count * TH * TW;
    const int k = (int)(index / tiles);
    const long long t = index % tiles;
    const TileIndex tile(t, n0, TH, TW);
    T in[N][N];
#pragma unroll
    for (int a = 0; a < N; ++a)
#pragma unroll
        for (int e = 0; e < N; ++e)
            in[a][e] = z[((long long)(N * a + e) * K + k) * tiles + t];
    T out[M][M];
    sandwich([](int a, int e) { return X::at(a, e); }, in, [](int a, int e) { return X::at(a, e); },
             out);
    const T bias = has_bias ? b[k] : T(0);
    T* plane = y + ((long long)tile.n * K + k) * P * Q;
#pragma unroll
    for (int a = 0; a < M; ++a) {
        const int p = M * tile.i + a;
        if (p >= P) continue;
#pragma unroll
        for (int e = 0; e < M; ++e) {
            const int q = M * tile.j + e;
            if (q < Q) plane[(long long)p * Q + q] = has_bias ? out[a][e] + bias : out[a][e];
        }
    }
}

// D[xi][t][k] = (A dy_t A^T)[xi], dy_t the m x m outputs of tile t in channel k (zero past
// P, Q). One thread per (tile, k), k fastest.
template <int M, typename T>
__device__ __forceinline__ void output_gradient_transform(const T* dy, T* d, int n0, int n_count,
                                                          int K, int P, int Q, int TH, int TW,
                                                          long long index) {
    using X = Matrices<M>;
    constexpr int N = X::kN;
    const long long tiles = (long long)n_count * TH * TW;
    const int k = (int)(index % K);
    const long long t = index / K;
    const TileIndex tile(t, n0, TH, TW);
    const T* plane = dy + ((long long)tile.n * K + k) * P * Q;
    T g[M][M];
    load_patch(plane, P, Q, M * tile.i, M * tile.j, g);
    T out[N][N];  // A = (A^T)^T on both sides
    sandwich([](int a, int e) { return X::at(e, a); }, g, [](int a, int e) { return X::at(e, a); },
             out);
#pragma unroll
    for (int a = 0; a < N; ++a)
#pragma unroll
        for (int b = 0; b < N; ++b)
            d[((long long)(N * a + b) * tiles + t) * K + k] = out[a][b];
}

// dw[k][c] = G^T E[.][c][k] G for filter f = (k, c), with E = (accumulate ? e : 0) plus the
// `splits` slices of `partial` in split order: the sums winograd_sum_splits would have stored
// in e, bit for bit. The loop over the splits is the outer one, so that each of its steps
// issues all n^2 loads at once.
template <int M, typename T>
__device__ __forceinline__ void filter_gradient(const T* partial, const T* e, T* dw, int K, int C,
                                                int splits, bool accumulate, long long f) {
    using X = Matrices<M>;
    constexpr int N = X::kN;
    const int k = (int)(f / C), c = (int)(f % C);
    const long long size = (long long)N * N * C * K;
    auto at = [&](int a, int b) { return ((long long)(N * a + b) * C + c) * K + k; };
    T in[N][N];
#pragma unroll
    for (int a = 0; a < N; ++a)
#pragma unroll
        for (int b = 0; b < N; ++b)
            in[a][b] = accumulate ? e[at(a, b)] : T(0);
    for (int split = 0; split < splits; ++split) {
        const T* slice = partial + split * size;
#pragma unroll
        for (int a = 0; a < N; ++a)
#pragma unroll
            for (int b = 0; b < N; ++b)
                in[a][b] += slice[at(a, b)];
    }
    T out[3][3];  // G^T = (G)^T on both sides
    sandwich([](int r, int a) { return X::g(a, r); }, in, [](int r, int a) { return X::g(a, r); },
             out);
#pragma unroll
    for (int r = 0; r < 3; ++r)
#pragma unroll
        for (int s = 0; s < 3; ++s)
            dw[f * 9 + r * 3 + s] = out[r][s];
}

// The points GEMMs out[xi] = a[xi] b[xi], each operand row-major: a (M x red), b (red x
// cols). The forward's are U V (M = rows, red = channels in, cols = T); backward-filter's
// V D (M = C, red = T, cols = K), with the reduction split. blockIdx.z = split * points + xi.
template <typename T>
struct Batched {
    const T* lhs;  // a
    const T* rhs;  // b
    int M;
    long long red, cols;
    long long xi;   // this block's Winograd point, blockIdx.z % points (worked out once)
    bool vector_a;  // red a multiple of 4: four along a row of a are one aligned vector
    __device__ T a(int m, long long kk) const { return lhs[(xi * M + m) * red + kk]; }
    __device__ const T* a_vector(int m, long long kk) const {
        return vector_a ? &lhs[(xi * M + m) * red + kk] : nullptr;
    }
    __device__ long long column(long long col) const { return col; }
    __device__ void b4(long long kk, long long col, long long end, T (&out)[4]) const {
#pragma unroll
        for (int i = 0; i < 4; ++i)
            out[i] = kk + i < end ? rhs[(xi * red + kk + i) * cols + col] : T(0);
    }
};

// Split blockIdx.z / points reduces over [split * chunk, (split + 1) * chunk) into its own
// (M, cols) slice blockIdx.z of `out`; chunk is a multiple of the reduction step (or all of
// it: one split).
template <typename T, class Tile>
__device__ void batched_gemm(const T* a, const T* b, T* out, int M, long long red, long long cols,
                             long long chunk, int points, int vector_loads) {
    const Batched<T> problem{a, b, M, red, cols, blockIdx.z % points, vector_loads != 0};
    const long long begin = blockIdx.z / points * chunk, end = min(begin + chunk, red);
    T* slice = out + (long long)blockIdx.z * M * cols;
    gemm::implicit_gemm_tile<T, Tile>(
        problem, M, cols, begin, end,
        [&](int m, long long col, T value) { slice[(long long)m * cols + col] = value; });
}

}  // namespace winograd

// The transform kernels, F(2x2, 3x3) as winograd_* and F(4x4, 3x3) as winograd4_*: one
// kernel per tile size, so that each gets the registers its own transform needs (F(4x4)'s
// 6x6 arrays would otherwise set F(2x2)'s occupancy).

template <typename T>
__global__ void winograd_filter_transform(const T* __restrict__ w, T* __restrict__ u, int rows,
                                          int red, int flip) {
    GPUCNN_GRID_STRIDE_LOOP(f, (long long)rows * red) {
        winograd::filter_transform<2>(w, u, rows, red, flip, f);
    }
}

template <typename T>
__global__ void winograd_input_transform(const T* __restrict__ x, T* __restrict__ v, int n0,
                                         int n_count, int C, int H, int W, int ph, int pw, int TH,
                                         int TW) {
    GPUCNN_GRID_STRIDE_LOOP(index, (long long)n_count * TH * TW * C) {
        winograd::input_transform<2>(x, v, n0, n_count, C, H, W, ph, pw, TH, TW, index);
    }
}

template <typename T>
__global__ void winograd_output_transform(const T* __restrict__ z, const T* __restrict__ b,
                                          T* __restrict__ y, int n0, int n_count, int K, int P,
                                          int Q, int TH, int TW, int has_bias) {
    GPUCNN_GRID_STRIDE_LOOP(index, (long long)n_count * TH * TW * K) {
        winograd::output_transform<2>(z, b, y, n0, n_count, K, P, Q, TH, TW, has_bias, index);
    }
}

template <typename T>
__global__ void winograd_output_gradient_transform(const T* __restrict__ dy, T* __restrict__ d,
                                                   int n0, int n_count, int K, int P, int Q, int TH,
                                                   int TW) {
    GPUCNN_GRID_STRIDE_LOOP(index, (long long)n_count * TH * TW * K) {
        winograd::output_gradient_transform<2>(dy, d, n0, n_count, K, P, Q, TH, TW, index);
    }
}

template <typename T>
__global__ void winograd_filter_gradient(const T* __restrict__ partial, const T* __restrict__ e,
                                         T* __restrict__ dw, int K, int C, int splits,
                                         int accumulate) {
    GPUCNN_GRID_STRIDE_LOOP(f, (long long)K * C) {
        winograd::filter_gradient<2>(partial, e, dw, K, C, splits, accumulate != 0, f);
    }
}

template <typename T>
__global__ void winograd4_filter_transform(const T* __restrict__ w, T* __restrict__ u, int rows,
                                           int red, int flip) {
    GPUCNN_GRID_STRIDE_LOOP(f, (long long)rows * red) {
        winograd::filter_transform<4>(w, u, rows, red, flip, f);
    }
}

template <typename T>
__global__ void winograd4_input_transform(const T* __restrict__ x, T* __restrict__ v, int n0,
                                          int n_count, int C, int H, int W, int ph, int pw, int TH,
                                          int TW) {
    GPUCNN_GRID_STRIDE_LOOP(index, (long long)n_count * TH * TW * C) {
        winograd::input_transform<4>(x, v, n0, n_count, C, H, W, ph, pw, TH, TW, index);
    }
}

template <typename T>
__global__ void winograd4_output_transform(const T* __restrict__ z, const T* __restrict__ b,
                                           T* __restrict__ y, int n0, int n_count, int K, int P,
                                           int Q, int TH, int TW, int has_bias) {
    GPUCNN_GRID_STRIDE_LOOP(index, (long long)n_count * TH * TW * K) {
        winograd::output_transform<4>(z, b, y, n0, n_count, K, P, Q, TH, TW, has_bias, index);
    }
}

template <typename T>
__global__ void winograd4_output_gradient_transform(const T* __restrict__ dy, T* __restrict__ d,
                                                    int n0, int n_count, int K, int P, int Q,
                                                    int TH, int TW) {
    GPUCNN_GRID_STRIDE_LOOP(index, (long long)n_count * TH * TW * K) {
        winograd::output_gradient_transform<4>(dy, d, n0, n_count, K, P, Q, TH, TW, index);
    }
}

template <typename T>
__global__ void winograd4_filter_gradient(const T* __restrict__ partial, const T* __restrict__ e,
                                          T* __restrict__ dw, int K, int C, int splits,
                                          int accumulate) {
    GPUCNN_GRID_STRIDE_LOOP(f, (long long)K * C) {
        winograd::filter_gradient<4>(partial, e, dw, K, C, splits, accumulate != 0, f);
    }
}

// out[split * points + xi] = a[xi] b[xi] over the split's part of the reduction (see
// winograd::batched_gemm): the forward's Z = U V (one split) and backward-filter's partial
// E = V D. vector_loads: red is a multiple of 4.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    winograd_gemm(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, int M,
                  long long red, long long cols, long long chunk, int points, int vector_loads) {
    winograd::batched_gemm<T, gemm::Wide>(a, b, out, M, red, cols, chunk, points, vector_loads);
}

template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    winograd_gemm_narrow(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out,
                         int M, long long red, long long cols, long long chunk, int points,
                         int vector_loads) {
    winograd::batched_gemm<T, gemm::Narrow>(a, b, out, M, red, cols, chunk, points, vector_loads);
}

// E = (accumulate ? E : 0) + the splits' slices in split order: called for every pass over
// the batch but the last (which *_filter_gradient sums), so E sums the passes in order too.
template <typename T>
__global__ void winograd_sum_splits(const T* __restrict__ partial, T* __restrict__ e, int splits,
                                    long long size, int accumulate) {
    sum_splits(partial, e, splits, size, accumulate != 0);
}
