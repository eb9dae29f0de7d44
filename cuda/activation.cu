// Element-wise activations and inverted dropout, forward and backward.
//
// Every array is flat, C-contiguous, n elements; one thread per element (a 1-D grid-stride
// loop, 64-bit indices). Each kernel performs the NumPy path's operations in its order, in T,
// each rounded on its own (common.cuh's ieee::, never a fused multiply-add), so that those
// without a transcendental function give the same values (relu, dropout and every backward);
// sigmoid and tanh differ from NumPy's by the last bit of exp and tanh at most. On the GPU each
// replaces two to sixteen CuPy operations (a launch each).
//
//     relu_forward      y = x > 0 ? x : 0, NaN kept               (NumPy: maximum(x, 0))
//     relu_backward     dx = dy * (x > 0)                          (0 * NaN and -0 as NumPy)
//     sigmoid_forward   e = exp(-|x|); y = x >= 0 ? 1 / (1 + e) : e / (1 + e)
//     sigmoid_backward  dx = dy * y * (1 - y)
//     tanh_backward     dx = dy * (1 - y * y)
//     dropout_forward   keep element i when u_i >= p, u_i uniform in [0, 1) from a counter-based
//                       generator (SplitMix64's finaliser of i * golden + key, key the
//                       finaliser of seed * golden + step): mask = keep ? scale : 0,
//                       y = x * mask, scale = 1 / (1 - p) rounded to T. The same mask as the
//                       NumPy path. The step is read from a counter on the device, which the
//                       launch advances (see the kernel), so a CUDA graph that replays it
//                       draws a new mask each time.
//     dropout_backward  dx = dy * mask
#include "common.cuh"

namespace activation {

__device__ __forceinline__ unsigned long long splitmix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

constexpr unsigned long long kGolden = 0x9E3779B97F4A7C15ull;

}  // namespace activation

template <typename T>
__global__ void relu_forward(const T* __restrict__ x, T* __restrict__ y, long long n) {
    GPUCNN_GRID_STRIDE_LOOP(i, n) {
        const T v = x[i];
        y[i] = (v > T(0) || v != v) ? v : T(0);
    }
}

template <typename T>
__global__ void relu_backward(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx,
                              long long n) {
    GPUCNN_GRID_STRIDE_LOOP(i, n) {
        dx[i] = ieee::mul(dy[i], T(x[i] > T(0)));
    }
}

template <typename T>
__global__ void sigmoid_forward(const T* __restrict__ x, T* __restrict__ y, long long n) {
    GPUCNN_GRID_STRIDE_LOOP(i, n) {
        const T v = x[i];
        const T e = exp(-fabs(v));  // in (0, 1]: never overflows
        y[i] = v >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
}

template <typename T>
__global__ void sigmoid_backward(const T* __restrict__ dy, const T* __restrict__ y,
                                 T* __restrict__ dx, long long n) {
    GPUCNN_GRID_STRIDE_LOOP(i, n) {
        dx[i] = ieee::mul(ieee::mul(dy[i], y[i]), ieee::sub(T(1), y[i]));
    }
}

template <typename T>
__global__ void tanh_forward(const T* __restrict__ x, T* __restrict__ y, long long n) {
    GPUCNN_GRID_STRIDE_LOOP(i, n) {
        y[i] = tanh(x[i]);
    }
}

template <typename T>
__global__ void tanh_backward(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx,
                              long long n) {
    GPUCNN_GRID_STRIDE_LOOP(i, n) {
        dx[i] = ieee::mul(dy[i], ieee::sub(T(1), ieee::mul(y[i], y[i])));
    }
}

// p in [0, 1) as a double (the NumPy path compares float64 uniforms with it); scale is
// 1 / (1 - p) already rounded to T. counter[0] is the step; counter[1] counts the blocks that
// are done with it (0 between launches). Each block reads the step, draws its elements, then
// counts itself in; the last block in, which every other block's read precedes, advances the
// step and resets the count (the threadfence-reduction pattern; integer atomics, so the
// result is the same every run). Launch at least one block, even for n = 0, so the step
// always advances.
template <typename T>
__global__ void dropout_forward(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ mask,
                                long long n, unsigned long long seed, unsigned long long* counter,
                                double p, T scale) {
    __shared__ unsigned long long key;
    if (threadIdx.x == 0) key = activation::splitmix64(seed * activation::kGolden + counter[0]);
    __syncthreads();
    GPUCNN_GRID_STRIDE_LOOP(i, n) {
        const unsigned long long bits =
            activation::splitmix64((unsigned long long)i * activation::kGolden + key);
        const double u = (double)(bits >> 11) * 0x1.0p-53;
        const T keep = u >= p ? scale : T(0);
        mask[i] = keep;
        y[i] = ieee::mul(x[i], keep);
    }
    if (threadIdx.x == 0) {
        __threadfence();
        if (atomicAdd(&counter[1], 1ull) == gridDim.x - 1ull) {
            counter[0] += 1;
            counter[1] = 0;
        }
    }
}

template <typename T>
__global__ void dropout_backward(const T* __restrict__ dy, const T* __restrict__ mask,
                                 T* __restrict__ dx, long long n) {
    GPUCNN_GRID_STRIDE_LOOP(i, n) {
        dx[i] = ieee::mul(dy[i], mask[i]);
    }
}
