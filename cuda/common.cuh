// Device helpers shared by gpucnn's kernels. The loader inlines this file into each .cu that
// includes it, so CuPy's cache (keyed on the source text) sees every edit.
#pragma once

// A 1-D grid-stride loop over [0, n) with a 64-bit index: correct for any grid size, so the
// host may launch fewer blocks than there are elements (and the tests launch very few to
// prove it).
#define GPUCNN_GRID_STRIDE_LOOP(i, n)                                             \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// partial[0][i] + partial[1][i] + ... in split order, for slices of `size` elements: the second
// pass of a split reduction, the same bits on every run.
template <typename T>
__device__ __forceinline__ T split_sum(const T* __restrict__ partial, int splits, long long size,
                                       long long i, T sum = T(0)) {
    for (int split = 0; split < splits; ++split)
        sum += partial[split * size + i];
    return sum;
}

// out[i] = (accumulate ? out[i] : 0) + the splits' partial[.][i], for i < size.
template <typename T>
__device__ void sum_splits(const T* __restrict__ partial, T* __restrict__ out, int splits,
                           long long size, bool accumulate) {
    GPUCNN_GRID_STRIDE_LOOP(i, size) {
        out[i] = split_sum(partial, splits, size, i, accumulate ? out[i] : T(0));
    }
}

// Four consecutive elements from an address aligned to 4 elements: one 16-byte load (two
// for double). The emulator's sanitizer mode checks the alignment.
template <typename T>
__device__ __forceinline__ void load4(const T* address, T (&out)[4]) {
    if constexpr (sizeof(T) == 4) {
        const float4 v = *reinterpret_cast<const float4*>(address);
        out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
    } else {
        const double2 lo = reinterpret_cast<const double2*>(address)[0];
        const double2 hi = reinterpret_cast<const double2*>(address)[1];
        out[0] = lo.x, out[1] = lo.y, out[2] = hi.x, out[3] = hi.y;
    }
}

// values[0 .. N) to N consecutive elements at an address aligned to N elements (N = 2 or 4):
// one 8- or 16-byte store for float, one or two 16-byte stores for double. A warp's scalar
// stores to every other element would take twice the store wavefronts for the same bytes.
// The emulator's sanitizer mode checks the alignment.
template <int N, typename T>
__device__ __forceinline__ void store_vector(T* address, const T (&values)[N]) {
    static_assert(N == 2 || N == 4, "store_vector stores 2 or 4 elements");
    if constexpr (sizeof(T) == 4 && N == 4) {
        *reinterpret_cast<float4*>(address) =
            make_float4(values[0], values[1], values[2], values[3]);
    } else if constexpr (sizeof(T) == 4) {
        *reinterpret_cast<float2*>(address) = make_float2(values[0], values[1]);
    } else {
#pragma unroll
        for (int k = 0; k < N; k += 2)
            reinterpret_cast<double2*>(address)[k / 2] = make_double2(values[k], values[k + 1]);
    }
}

// Round-to-nearest products, sums and differences that the compiler may not contract into a
// fused multiply-add (nvcc and NVRTC contract a * b + c by default; the emulator is built with
// -ffp-contract=off, so it would not show the difference): for kernels that promise the NumPy
// path's exact bits, where NumPy rounds the product before the sum.
namespace ieee {

__device__ __forceinline__ float mul(float a, float b) {
    return __fmul_rn(a, b);
}
__device__ __forceinline__ double mul(double a, double b) {
    return __dmul_rn(a, b);
}
__device__ __forceinline__ float add(float a, float b) {
    return __fadd_rn(a, b);
}
__device__ __forceinline__ double add(double a, double b) {
    return __dadd_rn(a, b);
}
__device__ __forceinline__ float sub(float a, float b) {
    return __fsub_rn(a, b);
}
__device__ __forceinline__ double sub(double a, double b) {
    return __dsub_rn(a, b);
}

}  // namespace ieee
