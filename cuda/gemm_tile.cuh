// A 64 x 64 tile of a GEMM whose operands are gathered on the fly: the engine of the
// convolution kernels (implicit GEMM) and of the Hopfield network's batched products.
//
// C (M x COLS) = A (M x RED) B (RED x COLS). A "problem" object says how to read them:
//     T a(int m, long long kk)                       A's element (m, kk)
//     Pair<T> a_pair(int m, long long kk, long long end)  A (m, kk) and (m, kk + 1), zero past
//                                                    end; a vector load where the layout allows
//     Column column(long long col)                   per-column state, decoded once per thread
//     T b(long long kk, const Column& column)        B's element (kk, col)
// and a store(row, col, value) callable receives every in-range element of the tile.
//
// Launch: grid (ceil(COLS / 64), ceil(M / 64), any), 256 threads. A block owns a 64 x 64 tile;
// thread (ty, tx) = (t / 16, t % 16) owns the 4 x 4 outputs at rows ty + 16 i and columns
// tx + 16 j (strided, so shared-memory reads are conflict-free and stores coalesced). The
// reduction walks [red_begin, red_end) in steps of 8 through two shared-memory buffers: while
// the block multiplies one step, each thread holds the next step's A pair and B pair in
// registers, so global loads overlap the arithmetic; one barrier per step.
#pragma once

namespace gemm {

constexpr int kTile = 64;      // rows and columns of C per block
constexpr int kStep = 8;       // reduction step held in shared memory
constexpr int kThreads = 256;  // 16 x 16 threads, 4 x 4 outputs each
constexpr int kPerThread = 4;
static_assert(kThreads == 16 * 16 && kTile == 16 * kPerThread, "16 x 16 threads, 4 x 4 each");
static_assert(kTile * kStep == 2 * kThreads, "each thread loads one A pair and two B values");

template <typename T>
struct Pair {
    T first, second;
};

template <typename T>
__device__ __forceinline__ Pair<T> load_vector_pair(const T* address) {
    // One 8-byte (float2) or 16-byte (double2) load: `address` must be aligned to it (the
    // emulator's sanitizer mode checks).
    if constexpr (sizeof(T) == 4) {
        const float2 v = *reinterpret_cast<const float2*>(address);
        return Pair<T>{v.x, v.y};
    } else {
        const double2 v = *reinterpret_cast<const double2*>(address);
        return Pair<T>{v.x, v.y};
    }
}

// A's elements (m, kk) and (m, kk + 1), zero past the reduction's end.
template <typename T, class Problem>
__device__ __forceinline__ Pair<T> scalar_pair(const Problem& problem, int m, long long kk,
                                               long long end) {
    return Pair<T>{kk < end ? problem.a(m, kk) : T(0), kk + 1 < end ? problem.a(m, kk + 1) : T(0)};
}

// One 64 x 64 tile of C = A B over reduction indices [red_begin, red_end); the result goes to
// store(row, column, value) for every in-range element.
template <typename T, class Problem, class Store>
__device__ void implicit_gemm_tile(const Problem& problem, int M, long long cols,
                                   long long red_begin, long long red_end, const Store& store) {
    __shared__ T a_tile[2][kStep][kTile];  // a_tile[buffer][kk][row]
    __shared__ T b_tile[2][kStep][kTile];  // b_tile[buffer][kk][column]
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    const int row0 = blockIdx.y * kTile;
    const long long col0 = blockIdx.x * (long long)kTile;

    // This thread's loads: A at row a_row, reduction offsets a_kk and a_kk + 1; B in column
    // b_col at reduction offsets b_kk and b_kk + 4.
    const int a_row = t / 4, a_kk = (t % 4) * 2;
    const int b_col = t % kTile, b_kk = t / kTile;
    const bool a_row_valid = row0 + a_row < M;
    const bool b_col_valid = col0 + b_col < cols;
    // (column 0 exists whenever the launch has work: it stands in for out-of-range columns)
    const auto column = problem.column(b_col_valid ? col0 + b_col : 0);

    T a_next[2], b_next[2];
    auto load = [&](long long red0) {
        const Pair<T> pair =
            a_row_valid ? problem.a_pair(row0 + a_row, red0 + a_kk, red_end) : Pair<T>{T(0), T(0)};
        a_next[0] = pair.first;
        a_next[1] = pair.second;
        for (int i = 0; i < 2; ++i) {
            const long long bk = red0 + b_kk + 4 * i;
            b_next[i] = b_col_valid && bk < red_end ? problem.b(bk, column) : T(0);
        }
    };
    auto stash = [&](int buffer) {
        a_tile[buffer][a_kk][a_row] = a_next[0];
        a_tile[buffer][a_kk + 1][a_row] = a_next[1];
        b_tile[buffer][b_kk][b_col] = b_next[0];
        b_tile[buffer][b_kk + 4][b_col] = b_next[1];
    };

    T acc[kPerThread][kPerThread];
    for (int i = 0; i < kPerThread; ++i)
        for (int j = 0; j < kPerThread; ++j)
            acc[i][j] = T(0);

    int buffer = 0;
    load(red_begin);
    stash(buffer);
    __syncthreads();
    for (long long red0 = red_begin; red0 < red_end; red0 += kStep) {
        const bool more = red0 + kStep < red_end;
        if (more) load(red0 + kStep);  // in flight while this step multiplies
        for (int kk = 0; kk < kStep; ++kk) {
            T a[kPerThread], b[kPerThread];
            for (int i = 0; i < kPerThread; ++i)
                a[i] = a_tile[buffer][kk][ty + 16 * i];
            for (int j = 0; j < kPerThread; ++j)
                b[j] = b_tile[buffer][kk][tx + 16 * j];
            for (int i = 0; i < kPerThread; ++i)
                for (int j = 0; j < kPerThread; ++j)
                    acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        // The other buffer was last read in the previous step, which the barrier at its end
        // has closed for every thread: it is free to fill.
        if (more) stash(buffer ^ 1);
        __syncthreads();
        buffer ^= 1;
    }
    for (int i = 0; i < kPerThread; ++i) {
        const int row = row0 + ty + 16 * i;
        if (row >= M) continue;
        for (int j = 0; j < kPerThread; ++j) {
            const long long col = col0 + tx + 16 * j;
            if (col < cols) store(row, col, acc[i][j]);
        }
    }
}

}  // namespace gemm
