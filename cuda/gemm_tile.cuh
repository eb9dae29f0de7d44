// One tile of a GEMM whose operands are gathered on the fly: the engine of the convolution
// kernels (implicit GEMM) and of the Hopfield network's batched products.
//
// C (M x COLS) = A (M x RED) B (RED x COLS). A "problem" object says how to read them:
//     T a(int m, long long kk)                      A's element (m, kk)
//     const T* a_vector(int m, long long kk)        A (m, kk .. kk + 3) as one aligned 4-wide
//                                                   vector (kk is a multiple of 4), or null
//     Column column(long long col)                  per-column state, decoded once per thread
//     void b4(long long kk, const Column&, long long end, T (&out)[4])
//                                                   B (kk .. kk + 3, col), zero from end on
// and a store(row, col, value) callable receives every in-range element of the tile.
//
// Two tiles (Wide, Narrow), 256 threads each, 128 columns of C per block; Wide has 128 rows,
// Narrow 32, for problems with few rows (convolutions with few channels), where a 128-row
// tile would mostly multiply zeros. Launch: grid (ceil(COLS / 128), ceil(M / Tile::kRows),
// any). Thread (ty, tx) = (t / 16, t % 16) owns kRows / 16 rows by 8 columns of C: columns
// 4 tx + j and 64 + 4 tx + j (j < 4), rows likewise in groups of kRowGroup, so each
// reduction index costs a thread two 16-byte shared loads of B and one or two of A for up to
// 64 FMAs, and a warp's B loads touch 16 distinct vectors (no bank conflicts). The reduction
// walks [red_begin, red_end) in steps of 8 (red_begin a multiple of 4) through two
// shared-memory buffers: while the block multiplies one step, each thread holds its share of
// the next step's A and B in registers, so global loads overlap the arithmetic; one barrier
// per step.
#pragma once

#include "common.cuh"

namespace gemm {

constexpr int kCols = 128;     // columns of C per block
constexpr int kStep = 8;       // reduction step held in shared memory
constexpr int kThreads = 256;  // 16 x 16 threads
constexpr int kColsPerThread = kCols / 16;
constexpr int kPad = 4;  // A's shared rows are kRows + kPad long: the transposing stores
                         // of a warp then fall in distinct banks (and stay 16-byte aligned)

struct Wide {
    static constexpr int kRows = 128;
};
struct Narrow {
    static constexpr int kRows = 32;
};

// Kept for kernels that read rows two at a time (the Hopfield product for small batches).
template <typename T>
struct Pair {
    T first, second;
};

template <typename T>
__device__ __forceinline__ Pair<T> load_vector_pair(const T* address) {
    if constexpr (sizeof(T) == 4) {
        const float2 v = *reinterpret_cast<const float2*>(address);
        return Pair<T>{v.x, v.y};
    } else {
        const double2 v = *reinterpret_cast<const double2*>(address);
        return Pair<T>{v.x, v.y};
    }
}

// A's elements (m, kk .. kk + N - 1), zero from end on; one vector load when the problem
// offers one.
template <int N, typename T, class Problem>
__device__ __forceinline__ void load_a(const Problem& problem, int m, long long kk, long long end,
                                       T (&out)[N]) {
    if constexpr (N == 4) {
        const T* vector = kk + 3 < end ? problem.a_vector(m, kk) : nullptr;
        if (vector != nullptr) {
            load4(vector, out);
            return;
        }
    }
#pragma unroll
    for (int i = 0; i < N; ++i)
        out[i] = kk + i < end ? problem.a(m, kk + i) : T(0);
}

// One tile of C = A B over reduction indices [red_begin, red_end); the result goes to
// store(row, column, value) for every in-range element.
template <typename T, class Tile, class Problem, class Store>
__device__ void implicit_gemm_tile(const Problem& problem, int M, long long cols,
                                   long long red_begin, long long red_end, const Store& store) {
    constexpr int kRows = Tile::kRows;
    constexpr int kRowsPerThread = kRows / 16;
    constexpr int kRowGroup = kRowsPerThread < 4 ? kRowsPerThread : 4;
    constexpr int kALoads = kRows * kStep / kThreads;  // A elements each thread loads a step
    static_assert(kCols * kStep == 4 * kThreads, "each thread loads four B elements a step");
    __shared__ __align__(16) T a_tile[2][kStep][kRows + kPad];  // a_tile[buffer][kk][row]
    __shared__ __align__(16) T b_tile[2][kStep][kCols];         // b_tile[buffer][kk][column]
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    const int row0 = blockIdx.y * kRows;
    const long long col0 = blockIdx.x * (long long)kCols;

    // This thread's loads: A in row a_row at reduction offsets a_kk .. a_kk + kALoads - 1;
    // B in column b_col at offsets b_kk .. b_kk + 3.
    const int a_row = t / (kStep / kALoads), a_kk = t % (kStep / kALoads) * kALoads;
    const int b_col = t % kCols, b_kk = t / kCols * 4;
    const bool a_row_valid = row0 + a_row < M;
    const bool b_col_valid = col0 + b_col < cols;
    // (column 0 exists whenever the launch has work: it stands in for out-of-range columns)
    const auto column = problem.column(b_col_valid ? col0 + b_col : 0);

    T a_next[kALoads], b_next[4];
    auto load = [&](long long red0) {
        if (a_row_valid) {
            load_a(problem, row0 + a_row, red0 + a_kk, red_end, a_next);
        } else {
#pragma unroll
            for (int i = 0; i < kALoads; ++i)
                a_next[i] = T(0);
        }
        problem.b4(red0 + b_kk, column, b_col_valid ? red_end : red0 + b_kk, b_next);
    };
    auto stash = [&](int buffer) {
#pragma unroll
        for (int i = 0; i < kALoads; ++i)
            a_tile[buffer][a_kk + i][a_row] = a_next[i];
#pragma unroll
        for (int i = 0; i < 4; ++i)
            b_tile[buffer][b_kk + i][b_col] = b_next[i];
    };

    T acc[kRowsPerThread][kColsPerThread];
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
        for (int j = 0; j < kColsPerThread; ++j)
            acc[i][j] = T(0);

    // Row i of this thread's block of C is tile row row_of(i); column j is col_of(j).
    auto row_of = [&](int i) {
        return i / kRowGroup * (16 * kRowGroup) + ty * kRowGroup + i % kRowGroup;
    };
    auto col_of = [&](int j) { return j / 4 * 64 + tx * 4 + j % 4; };

    int buffer = 0;
    load(red_begin);
    stash(buffer);
    __syncthreads();
    for (long long red0 = red_begin; red0 < red_end; red0 += kStep) {
        const bool more = red0 + kStep < red_end;
        if (more) load(red0 + kStep);  // in flight while this step multiplies
#pragma unroll
        for (int kk = 0; kk < kStep; ++kk) {
            T a[kRowsPerThread], b[kColsPerThread];
#pragma unroll
            for (int i = 0; i < kRowsPerThread; ++i)
                a[i] = a_tile[buffer][kk][row_of(i)];
#pragma unroll
            for (int j = 0; j < kColsPerThread; ++j)
                b[j] = b_tile[buffer][kk][col_of(j)];
#pragma unroll
            for (int i = 0; i < kRowsPerThread; ++i)
#pragma unroll
                for (int j = 0; j < kColsPerThread; ++j)
                    acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        // The other buffer was last read in the previous step, which the barrier at its end
        // has closed for every thread: it is free to fill.
        if (more) stash(buffer ^ 1);
        __syncthreads();
        buffer ^= 1;
    }
#pragma unroll
    for (int i = 0; i < kRowsPerThread; ++i) {
        const int row = row0 + row_of(i);
        if (row >= M) continue;
#pragma unroll
        for (int j = 0; j < kColsPerThread; ++j) {
            const long long col = col0 + col_of(j);
            if (col < cols) store(row, col, acc[i][j]);
        }
    }
}

}  // namespace gemm
