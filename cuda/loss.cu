// The losses, each a row kernel, the shared mean and a backward: softmax cross-entropy (the
// loss every classifier trains with), the squared error and the multiclass hinge.
//
// logits and probabilities are (N, C), C-contiguous; target is (N,) class indices (int64).
// Forward, per row i, in the NumPy path's order of operations:
//     m = max_j logits[i, j]                (NaN if the row holds one)
//     shifted_j = logits[i, j] - m
//     log_sum = log(sum_j exp(shifted_j))
//     probabilities[i, j] = exp(shifted_j - log_sum)
//     row_loss[i] = -(shifted_t - log_sum),  t = target[i]   (NaN if t is not in [0, C))
// then loss = sum_i row_loss[i] / N. Backward: grad[i, j] = (probabilities[i, j] - [j == t]) / N.
//
// On the GPU these replace about seventeen CuPy operations (a launch each) per training step
// with three launches. Launch shapes: the row kernel, any grid of 256-thread blocks, one warp
// per row (grid-stride over rows), lanes striding through the row and shuffle trees in a
// fixed order; the mean, one block of 256 threads (each sums a fixed stride of rows, then a
// shared-memory tree): the same bits on every run. The backward, a 1-D grid-stride loop.
// A target outside [0, C) gives its row a NaN loss (the host checks targets unless told that
// the caller has); it is never used as an index.
//
// The squared error (MSE), per row i, with d the target row (a float row, or onehot(t) when
// labels are given): diff[i, j] = pred[i, j] - d[i, j], row_loss[i] = 1/2 sum_j diff^2, and
// loss_mean's mean; backward grad = diff / N. The multiclass hinge (Weston-Watkins), per
// row i with t = target[i]: violations[i, j] = max(0, pred[i, j] - pred[i, t] + margin) for
// j != t (NaN kept), 0 at t, row_loss[i] = sum_j violations[i, j]; backward grad[i, j] =
// [violations[i, j] > 0] / N, and minus the row's count of those at t. Same launch shapes as
// softmax cross-entropy's; a label outside [0, C) gives its row NaNs, never an index.
//
// Also here, for training loops: accumulate_scores adds a batch's loss * N and its number of
// rows whose argmax is the label into a float64 pair on the device (one block, a warp per
// row), so that fit reads its running scores back only when it shows them.
#include "common.cuh"

namespace loss {

constexpr int kMeanThreads = 256;  // the mean's block size (launched with exactly this)

// The larger of a and b, NaN if either is NaN (fmax would drop a NaN, NumPy's max keeps it).
template <typename T>
__device__ __forceinline__ T max_keeping_nan(T a, T b) {
    return (b != b || b > a) ? b : a;
}

// A quiet NaN (NVRTC has no NAN macro).
__device__ __forceinline__ float quiet_nan(float) {
    return __int_as_float(0x7fc00000);
}
__device__ __forceinline__ double quiet_nan(double) {
    return __longlong_as_double(0x7ff8000000000000LL);
}

// The sum of value over the warp's lanes, in the same butterfly order every run (every lane
// gets it).
template <typename T>
__device__ __forceinline__ T warp_sum(T value) {
    for (int offset = 16; offset > 0; offset /= 2)
        value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

}  // namespace loss

template <typename T>
__global__ void softmax_cross_entropy_forward(const T* __restrict__ logits,
                                              const long long* __restrict__ target,
                                              T* __restrict__ probabilities,
                                              T* __restrict__ row_loss, long long N, int C) {
    const int lane = threadIdx.x % 32;
    const long long warps = (long long)gridDim.x * blockDim.x / 32;
    for (long long i = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32; i < N; i += warps) {
        const T* row = logits + i * C;
        T m = row[0];
        for (int j = lane; j < C; j += 32)
            m = loss::max_keeping_nan(m, row[j]);
        for (int offset = 16; offset > 0; offset /= 2)
            m = loss::max_keeping_nan(m, __shfl_xor_sync(0xffffffffu, m, offset));
        T sum = T(0);
        for (int j = lane; j < C; j += 32)
            sum += exp(row[j] - m);
        sum = loss::warp_sum(sum);
        const T log_sum = log(sum);
        T* out = probabilities + i * C;
        for (int j = lane; j < C; j += 32)
            out[j] = exp((row[j] - m) - log_sum);
        if (lane == 0) {
            const long long t = target[i];
            row_loss[i] = t >= 0 && t < C ? -((row[t] - m) - log_sum) : loss::quiet_nan(T(0));
        }
    }
}

// loss[0] = (row_loss[0] + ... + row_loss[N - 1]) / N, in a fixed order, for every loss
// here. One block of loss::kMeanThreads threads.
template <typename T>
__global__ void loss_mean(const T* __restrict__ row_loss, T* __restrict__ loss, int N) {
    __shared__ T partial[loss::kMeanThreads];
    T sum = T(0);
    for (int i = threadIdx.x; i < N; i += loss::kMeanThreads)
        sum += row_loss[i];
    partial[threadIdx.x] = sum;
    __syncthreads();
    for (int half = loss::kMeanThreads / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) loss[0] = partial[0] / T(N);
}

// grad = (probabilities - onehot(target)) / N over all N * C elements; the NumPy path rounds
// the same two operations, so both give the same bits.
template <typename T>
__global__ void softmax_cross_entropy_backward(const T* __restrict__ probabilities,
                                               const long long* __restrict__ target,
                                               T* __restrict__ grad, long long total, int N,
                                               int C) {
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const T p = probabilities[i];
        grad[i] = (i % C == target[i / C] ? p - T(1) : p) / T(N);
    }
}

// The squared error's rows: dense (N, C) targets, or labels (N,) when dense is null.
template <typename T>
__global__ void mse_forward(const T* __restrict__ pred, const T* __restrict__ dense,
                            const long long* __restrict__ labels, T* __restrict__ diff,
                            T* __restrict__ row_loss, long long N, int C) {
    const int lane = threadIdx.x % 32;
    const long long warps = (long long)gridDim.x * blockDim.x / 32;
    for (long long i = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32; i < N; i += warps) {
        const long long t = dense == nullptr ? labels[i] : -1;
        const bool valid = dense != nullptr || (t >= 0 && t < C);
        T sum = T(0);
        for (int j = lane; j < C; j += 32) {
            const T d = dense != nullptr ? dense[i * C + j] : T(j == t);
            const T value = valid ? pred[i * C + j] - d : loss::quiet_nan(T(0));
            diff[i * C + j] = value;
            sum += value * value;
        }
        sum = loss::warp_sum(sum);
        if (lane == 0) row_loss[i] = T(0.5) * sum;
    }
}

// out = in / N over n elements (the squared error's gradient from diff).
template <typename T>
__global__ void loss_divide(const T* __restrict__ in, T* __restrict__ out, long long n, int N) {
    GPUCNN_GRID_STRIDE_LOOP(i, n) {
        out[i] = in[i] / T(N);
    }
}

template <typename T>
__global__ void hinge_forward(const T* __restrict__ pred, const long long* __restrict__ target,
                              T* __restrict__ violations, T* __restrict__ row_loss, long long N,
                              int C, T margin) {
    const int lane = threadIdx.x % 32;
    const long long warps = (long long)gridDim.x * blockDim.x / 32;
    for (long long i = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32; i < N; i += warps) {
        const long long t = target[i];
        const bool valid = t >= 0 && t < C;
        const T correct = valid ? pred[i * C + t] : loss::quiet_nan(T(0));
        T sum = T(0);
        for (int j = lane; j < C; j += 32) {
            const T v = (pred[i * C + j] - correct) + margin;
            const T violation = j == t ? T(0) : ((v != v || v > T(0)) ? v : T(0));
            violations[i * C + j] = violation;
            sum += violation;
        }
        sum = loss::warp_sum(sum);
        if (lane == 0) row_loss[i] = valid ? sum : loss::quiet_nan(T(0));
    }
}

// A warp per row: the active classes' count, then every gradient of the row.
template <typename T>
__global__ void hinge_backward(const T* __restrict__ violations,
                               const long long* __restrict__ target, T* __restrict__ grad,
                               long long N, int C) {
    const int lane = threadIdx.x % 32;
    const long long warps = (long long)gridDim.x * blockDim.x / 32;
    for (long long i = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32; i < N; i += warps) {
        const long long t = target[i];
        int count = 0;
        for (int j = lane; j < C; j += 32)
            count += violations[i * C + j] > T(0);
        count = loss::warp_sum(count);
        for (int j = lane; j < C; j += 32) {
            const T active = j == t ? -T(count) : T(violations[i * C + j] > T(0));
            grad[i * C + j] = active / T(N);
        }
    }
}

namespace loss {

// Whether (value, index) comes before (best, best_index) in NumPy's argmax order: NaN first,
// then the larger value, then the smaller index; best_index == end means "nothing yet".
template <typename T>
__device__ __forceinline__ bool argmax_before(T value, int index, T best, int best_index, int end) {
    if (index == end) return false;
    if (best_index == end) return true;
    const bool value_nan = value != value, best_nan = best != best;
    if (value_nan != best_nan) return value_nan;
    if (!value_nan && value != best) return value > best;
    return index < best_index;
}

}  // namespace loss

// A training loop's running scores, in place: totals[0] += loss[0] * N and totals[1] += the
// number of rows of pred (N, C) whose argmax (the first largest value, NaN counting as the
// largest, as NumPy's) is labels[row]. One block of loss::kMeanThreads threads, a warp per
// row (lanes scan a stride of the row, then a shuffle tree); integer counts, so the order of
// the sum cannot change it. In double: counts are exact up to 2^53.
template <typename T>
__global__ void accumulate_scores(const T* __restrict__ loss, const T* __restrict__ pred,
                                  const long long* __restrict__ labels, double* __restrict__ totals,
                                  int N, int C) {
    constexpr int kWarps = loss::kMeanThreads / 32;
    __shared__ int counts[kWarps];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int count = 0;
    for (int i = warp; i < N; i += kWarps) {
        const T* row = pred + (long long)i * C;
        T best = T(0);
        int best_index = C;  // none yet
        for (int j = lane; j < C; j += 32)
            if (loss::argmax_before(row[j], j, best, best_index, C)) best = row[j], best_index = j;
        for (int offset = 16; offset > 0; offset /= 2) {
            const T other = __shfl_xor_sync(0xffffffffu, best, offset);
            const int other_index = __shfl_xor_sync(0xffffffffu, best_index, offset);
            if (loss::argmax_before(other, other_index, best, best_index, C))
                best = other, best_index = other_index;
        }
        count += best_index == labels[i];
    }
    if (lane == 0) counts[warp] = count;
    __syncthreads();
    if (threadIdx.x == 0) {
        int total = 0;
        for (int w = 0; w < kWarps; ++w)
            total += counts[w];
        totals[0] = ieee::add(totals[0], ieee::mul((double)loss[0], (double)N));  // as NumPy
        totals[1] += total;
    }
}
