// Device helpers shared by gpucnn's kernels. The loader inlines this file into each .cu that
// includes it, so CuPy's cache (keyed on the source text) sees every edit.
#pragma once

// A 1-D grid-stride loop over [0, n) with a 64-bit index: correct for any grid size, so the
// host may launch fewer blocks than there are elements (and the tests launch very few to
// prove it).
#define GPUCNN_GRID_STRIDE_LOOP(i, n)                                                     \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n);          \
         i += (long long)blockDim.x * gridDim.x)

// The first window index p whose window [p * stride - pad, p * stride - pad + size) contains
// coordinate c, and one past the last (clamped to the output size): the windows an input
// element contributes to, for the gathers of the backward passes.
__device__ __forceinline__ int first_window(int c, int size, int stride, int pad) {
    const int shifted = c + pad;
    return shifted < size ? 0 : (shifted - size) / stride + 1;
}
__device__ __forceinline__ int end_window(int c, int stride, int pad, int out) {
    return min((c + pad) / stride + 1, out);
}
