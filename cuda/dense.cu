// The dense (fully connected) layer's three products on the GEMM tile of gemm_tile.cuh.
//
// Names: x (N, I), w (O, I), y / dy (N, O), dx (N, I), dw (O, I), all C-contiguous:
//     forward          y  = x w^T + b     M = N  COLS = O  RED = I   A = x      B = w^T
//     backward-data    dx = dy w          M = N  COLS = I  RED = O   A = dy     B = w
//     backward-filter  dw = dy^T x        M = O  COLS = I  RED = N   A = dy^T   B = x
// Each is C (M x COLS, row-major) = A (M x RED) B (RED x COLS) with A and B read through
// strides, A[m, kk] = a[m * a_row + kk * a_red] and B[kk, col] = b[kk * b_red + col * b_col],
// so one kernel serves all three (the bias gradient is conv2d_backward_bias's, on dy as
// (N, O, 1, 1)). On a GPU the eager path uses cuBLAS; these kernels run where cuBLAS cannot:
// inside a CUDA graph capture (CuPy refuses cuBLAS there) and on the emulator.
//
// Launch: grid (ceil(COLS / 128), ceil(M / rows), splits), 256 threads, rows 128 for
// dense_gemm and 32 for dense_gemm_narrow (M <= 64). A reduction too long for the tiles
// alone to fill the GPU is split over blockIdx.z: split z covers [z * chunk, (z + 1) * chunk)
// (chunk a multiple of the 8-deep step) and writes slice z of a (splits, M, COLS) workspace,
// which dense_sum_splits adds up in split order, adding the bias: the same bits every run.
// With one split the tile writes C itself, bias included. Strides and sizes are 64-bit; M
// fits int (checked on the host). T is float or double.
#include "common.cuh"
#include "gemm_tile.cuh"

namespace dense {

template <typename T>
struct Strided {
    const T* A;
    const T* B;
    long long a_row, a_red, b_red, b_col;
    bool vector_a;  // a_red == 1 and a_row % 4 == 0: A (m, kk .. kk + 3) is one aligned vector
    bool vector_b;  // b_red == 1 and b_col % 4 == 0: likewise B (kk .. kk + 3, col)
    __device__ T a(int m, long long kk) const { return A[m * a_row + kk * a_red]; }
    __device__ const T* a_vector(int m, long long kk) const {
        return vector_a ? &A[m * a_row + kk] : nullptr;
    }
    __device__ long long column(long long col) const { return col * b_col; }
    __device__ void b4(long long kk, long long column, long long end, T (&out)[4]) const {
        if (vector_b && kk + 3 < end) {
            load4(&B[column + kk], out);
            return;
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
            out[i] = kk + i < end ? B[column + (kk + i) * b_red] : T(0);
    }
};

template <typename T, class Tile>
__device__ void gemm(const T* A, const T* B, const T* bias, T* out, int M, long long cols,
                     long long reduction, long long a_row, long long a_red, long long b_red,
                     long long b_col, long long chunk) {
    const Strided<T> problem{A,
                             B,
                             a_row,
                             a_red,
                             b_red,
                             b_col,
                             a_red == 1 && a_row % 4 == 0,
                             b_red == 1 && b_col % 4 == 0};
    const long long begin = blockIdx.z * chunk, end = min(begin + chunk, reduction);
    const bool split = gridDim.z > 1;
    T* slice = out + (long long)blockIdx.z * M * cols;
    gemm::implicit_gemm_tile<T, Tile>(
        problem, M, cols, begin, end, [&](int m, long long col, T value) {
            if (split)
                slice[m * cols + col] = value;
            else
                out[m * cols + col] = bias != nullptr ? value + bias[col] : value;
        });
}

}  // namespace dense

// C (or, with splits, slice z of the workspace) = A B over split z's share of the reduction;
// bias (one per column, or null) is added where there is one split.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    dense_gemm(const T* __restrict__ A, const T* __restrict__ B, const T* __restrict__ bias,
               T* __restrict__ out, int M, long long cols, long long reduction, long long a_row,
               long long a_red, long long b_red, long long b_col, long long chunk) {
    dense::gemm<T, gemm::Wide>(A, B, bias, out, M, cols, reduction, a_row, a_red, b_red, b_col,
                               chunk);
}

template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    dense_gemm_narrow(const T* __restrict__ A, const T* __restrict__ B, const T* __restrict__ bias,
                      T* __restrict__ out, int M, long long cols, long long reduction,
                      long long a_row, long long a_red, long long b_red, long long b_col,
                      long long chunk) {
    dense::gemm<T, gemm::Narrow>(A, B, bias, out, M, cols, reduction, a_row, a_red, b_red, b_col,
                                 chunk);
}

// out[m, col] = the splits' partial[.][m, col] in split order, plus bias[col] (bias may be
// null); grid-stride over the M * cols elements, 256 threads a block. A running column
// index replaces a division per element.
template <typename T>
__global__ void dense_sum_splits(const T* __restrict__ partial, const T* __restrict__ bias,
                                 T* __restrict__ out, int splits, long long size, long long cols) {
    const long long stride = (long long)blockDim.x * gridDim.x;
    const long long first = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    const long long step = stride % cols;
    long long col = first % cols;
    for (long long i = first; i < size; i += stride) {
        const T sum = split_sum(partial, splits, size, i);
        out[i] = bias != nullptr ? sum + bias[col] : sum;
        col += step;
        if (col >= cols) col -= cols;
    }
}
