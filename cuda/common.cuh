// Device helpers shared by gpucnn's kernels. The loader inlines this file into each .cu that
// includes it, so CuPy's cache (keyed on the source text) sees every edit.
#pragma once

// A 1-D grid-stride loop over [0, n) with a 64-bit index: correct for any grid size, so the
// host may launch fewer blocks than there are elements (and the tests launch very few to
// prove it).
#define GPUCNN_GRID_STRIDE_LOOP(i, n)                                             \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)
