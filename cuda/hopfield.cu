// Discrete Hopfield networks: local fields, synchronous steps, energies, asynchronous recall.
//
// Names: n neurons; W (n, n) symmetric with a zero diagonal; Y (batch, n) states in {-1, +1},
// one state per row; F (batch, n) local fields, F[b, j] = xi_j = sum_i W[j, i] Y[b, i]
// (W is symmetric, so row j of W is column j). The update rule keeps a neuron's state when
// its field is exactly 0:  y_j <- +1 if xi_j > 0, -1 if xi_j < 0, y_j if xi_j = 0.
// With Hebbian weights every value here is an integer, exact in float while below 2^24 (the
// host checks), so the kernels reproduce the NumPy path bit for bit. Energies are summed in
// double in a fixed order.
//
// Kernels and launches:
//   hopfield_product_gemm   batch > 64: the GEMM tile of gemm_tile.cuh (rows = states, columns
//                           = neurons), grid (ceil(n / 128), ceil(batch / 128), splits), 256
//                           threads; with too few tiles to fill the GPU the reduction over
//                           neurons is split and hopfield_finish_splits sums the splits.
//   hopfield_product_skinny 2 <= batch <= 64: W is read once and the states once per block, see
//                           the kernel; grid (ceil(n / columns a block), 1, splits), 256 threads,
//                           split and summed as the GEMM tile's.
//   hopfield_product_vector batch 1: W is read once, a warp per row j (grid-stride over rows),
//                           lanes stride along the row with 16-byte loads (8 or 4 when n is not
//                           a multiple of 4), a fixed shuffle tree sums the dot product. 256
//                           threads.
//   hopfield_product_mma    float networks whose weights are integers of at most 2048 (the host
//                           keeps W16, W in float16, for them): the tensor cores' m16n8k16
//                           MMA, exact there (see hopfield::mma); grid (ceil(n / 512),
//                           ceil(batch / 32), splits), 256 threads; opt-in for now.
//   All four end in the same epilogue: the fields (sync = 0) or the synchronous step (sync = 1).
//   hopfield_check_states   stores the host's token in a flag when any state value is neither
//                           +1 nor -1 (the input check, in one launch); grid-stride, 256
//                           threads.
//   hopfield_energy         E[b] = -1/2 sum_j Y[b, j] F[b, j]; a block per state (grid-stride),
//                           256 threads, a fixed-order tree in double.
//   hopfield_recall_async   a block per state (grid-stride), 256 threads: sequential sweeps
//                           from the fields F = Y W one of the products made, see below.
//   hopfield_sweep_recompute  the plain version, for the benchmark's comparison and as a check:
//                           one sweep, a block per state, each step recomputing its field as a
//                           full dot product (O(n^2) per sweep instead of O(n * flips)).
#include "common.cuh"
#include "gemm_tile.cuh"

namespace hopfield {

constexpr int kThreads = 256;
// The skinny product: every thread holds kSkinnyAccumulators fields (kStates states by
// 64 / kStates columns, kStates at most 32) and has kSkinnyLoads loads of W in flight; the
// states of a chunk of neurons sit in kSkinnySharedBytes of shared memory.
constexpr int kSkinnyAccumulators = 64;
constexpr int kSkinnyLoads = 8;
constexpr int kSkinnySharedBytes = 16384;

// Its launch bounds: two blocks an SM for float, whose 64 fields and 8 loads in flight then
// fit 128 registers without a spill on sm_70 to sm_90 (kernel_resources.py; ptxas took 168
// on sm_90 unbounded: one block of 8 warps an SM, too few to keep W's loads in flight).
// Double's fields alone take 128 registers: no minimum.
template <typename T>
struct SkinnyBounds {
    static constexpr int blocks = sizeof(T) == 4 ? 2 : 1;
};

template <typename T>
__device__ __forceinline__ T next_state(T field, T state) {
    return field > T(0) ? T(1) : (field < T(0) ? T(-1) : state);
}

// Writes a field, or the synchronous update it implies.
template <typename T>
__device__ __forceinline__ void finish(T* out, const T* Y, long long index, T field, int sync) {
    out[index] = sync ? next_state(field, Y[index]) : field;
}

// The epilogue the products share: field (b, j) into split blockIdx.z's slice of out
// (splits, batch, n) when the reduction over neurons is split, else into out as the field or
// the synchronous step it implies (finish).
template <typename T>
struct Epilogue {
    T* out;
    const T* Y;
    int n, batch, sync;
    __device__ __forceinline__ void operator()(int b, long long j, T field) const {
        const long long index = (long long)b * n + j;
        if (gridDim.z > 1)
            out[(long long)blockIdx.z * batch * n + index] = field;
        else
            finish(out, Y, index, field, sync);
    }
};

// C = Y W: A = Y (batch x n, rows contiguous), B = W (n x n, rows contiguous).
template <typename T>
struct Product {
    const T* W;
    const T* Y;
    int n;
    bool vector_a;  // n a multiple of 4: four along a state are one aligned vector
    __device__ T a(int b, long long i) const { return Y[(long long)b * n + i]; }
    __device__ const T* a_vector(int b, long long i) const {
        return vector_a ? &Y[(long long)b * n + i] : nullptr;
    }
    __device__ long long column(long long j) const { return j; }
    __device__ void b4(long long i, long long j, long long end, T (&out)[4]) const {
#pragma unroll
        for (int k = 0; k < 4; ++k)
            out[k] = i + k < end ? W[(i + k) * n + j] : T(0);
    }
};

// Sum over the block of one double per thread, in a fixed order; every thread gets the total.
__device__ double block_sum(double value, double* scratch) {
    scratch[threadIdx.x] = value;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) scratch[threadIdx.x] += scratch[threadIdx.x + stride];
        __syncthreads();
    }
    const double total = scratch[0];
    __syncthreads();  // scratch is reused by the next call
    return total;
}

// -1/2 sum_j y_j h_j over one state, summed by the whole block. Each thread keeps four
// partial sums (elements j = t + k blockDim, k mod 4 apart), so four iterations' loads are
// in flight together: a batch-1 energy is one block over the whole state, and one load
// after another took ~30 us at n = 16384. Fixed order, so the same bits on every run.
template <typename T>
__device__ double state_energy(const T* y, const T* h, int n, double* scratch) {
    constexpr int kChains = 4;
    double partial[kChains] = {0.0, 0.0, 0.0, 0.0};
    for (int j0 = threadIdx.x; j0 < n; j0 += kChains * blockDim.x) {
#pragma unroll
        for (int k = 0; k < kChains; ++k) {
            const int j = j0 + k * blockDim.x;
            if (j < n) partial[k] += (double)y[j] * (double)h[j];
        }
    }
    return -0.5 * block_sum((partial[0] + partial[1]) + (partial[2] + partial[3]), scratch);
}

// V consecutive elements from an address aligned to V elements, as one vector load.
template <int V, typename T>
__device__ __forceinline__ void load_vector(const T* address, T (&out)[V]) {
    if constexpr (V == 4) {
        load4(address, out);
    } else if constexpr (V == 2) {
        const gemm::Pair<T> pair = gemm::load_vector_pair(address);
        out[0] = pair.first, out[1] = pair.second;
    } else {
        out[0] = *address;
    }
}

// This lane's share of row . y: lane reads elements [V * (lane + 32 k), + V) of the row and
// of the state as V-wide vectors (both 4V-byte aligned), two iterations at a time, so each
// lane has two vectors of W in flight.
template <int V, typename T>
__device__ __forceinline__ T row_dot(const T* row, const T* y, int n, int lane) {
    T acc = T(0);
#pragma unroll 2
    for (int i = V * lane; i < n; i += 32 * V) {
        T w[V], v[V];
        load_vector<V>(row + i, w);
        load_vector<V>(y + i, v);
#pragma unroll
        for (int k = 0; k < V; ++k)
            acc += w[k] * v[k];
    }
    return acc;
}

// W's values for neurons i0 .. i0 + kGroup - 1 (zeros from end on) at a thread's kCols
// columns first + kStride c (zeros from n on): kGroup * kCols independent loads, each
// coalesced across the warp.
template <int kGroup, int kCols, int kStride, typename T>
__device__ __forceinline__ void load_weights(const T* __restrict__ W, int n, long long first,
                                             long long i0, long long end, T (&w)[kGroup][kCols]) {
#pragma unroll
    for (int g = 0; g < kGroup; ++g)
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
            const long long i = i0 + g, j = first + c * (long long)kStride;
            w[g][c] = i < end && j < n ? W[i * n + j] : T(0);
        }
}

// Where the skinny product stages state b of neuron k: rows of kBatch values, whose 4-value
// vectors are permuted by k (vector v of row k sits at v ^ (k % (kBatch / 4))). A warp
// stages 32 consecutive neurons of one state: in plain rows kBatch >= 32 values apart, all
// 32 stores fall in one bank; permuted, in 8 banks (4-way). The 16-byte loads stay aligned.
template <int kBatch>
__device__ __forceinline__ int staged(int k, int b) {
    constexpr int kVectors = kBatch / 4;
    return k * kBatch + ((b / 4) ^ (k % kVectors)) * 4 + b % 4;
}

// The skinny product for up to kBatch states (8, 16, 32 or 64), neurons [begin, end) of the
// reduction: a thread computes the fields of its half's kStates states (all of them but at
// 64) at columns j = first + kThreads / kHalves * c (c < kCols), passed to store(b, j,
// field) for b < batch and j < n. ys: kSkinnySharedBytes of shared memory, 16-byte aligned.
//
// Why this shape: a warp per row of W, reading every state along the row, reads the states
// from L2 once per row, batch times W's bytes in all: at batch 8, n = 16384, 8.6 GB, which
// bounded it to 1.54 ms on an H100 (5.6 TB/s of L2) where reading W takes 0.37. Here a thread
// owns kCols columns and kStates states, and the block walks the neurons in chunks whose
// states it stages in shared memory (ys, laid out by staged): per neuron i a thread makes
// kCols loads of W's row i (W is symmetric, so row i is column i), each coalesced across the
// warp, and kStates / 4 broadcast 16-byte shared loads, for kStates * kCols multiply-adds.
// The states are read once per block: 16384 / kBatch columns a block, so 8 (batch 8) to 64
// (batch 64) times in all at n = 16384, against 16384 times. The neurons go by groups
// (kGroup), whose W values are loaded while the group before is multiplied: kSkinnyLoads
// loads in flight a thread.
//
// The shared memory's return path decides the 64-state shape (session 29). An SM issues 4
// warp multiply-adds a cycle but returns 128 bytes of shared memory a cycle, so a warp's
// broadcast 16-byte load (512 bytes to its lanes, packed twice for one address) takes 2
// cycles. One thread holding all 64 states loaded 16 vectors per neuron: per warp, 32
// cycles of loads against 16 of multiply-adds. The staging stores, 32-way bank conflicts
// in rows 64 values apart, added 8 more: at most 16 / 40 = 40% of the FMA rate, and the
// H100 measured 41% (n = 16384, batch 64; 1.61 ms). So 64 states run as two halves of the
// block (kHalves), each thread holding 32 states by 2 columns (16 cycles of loads for 16
// of multiply-adds), and the staged rows' vectors are permuted (staged), which makes the
// staging stores 4-way: at most 16 / 19 = 84% with W's two loads. Predicted: 0.9-1.2 ms.
template <int kBatch, typename T, class Store>
__device__ __forceinline__ void skinny_product(const T* __restrict__ W, const T* __restrict__ Y,
                                               int n, int batch, long long begin, long long end,
                                               T* __restrict__ ys, Store store) {
    constexpr int kHalves = kBatch == 64 ? 2 : 1;
    constexpr int kStates = kBatch / kHalves;  // states a thread holds
    constexpr int kCols = kSkinnyAccumulators / kStates;
    constexpr int kHalfThreads = kThreads / kHalves;
    // Neurons a group of loads covers: kSkinnyLoads loads in flight a thread, but half that
    // with 64 states, bound by arithmetic rather than memory (8 more registers spill at the
    // 128 that two blocks an SM leave, on sm_70).
    constexpr int kGroup = kSkinnyLoads / kCols / kHalves;
    constexpr int kChunk = kSkinnySharedBytes / (int)sizeof(T) / kBatch;  // neurons staged
    static_assert(kChunk % kGroup == 0, "a group never straddles two staged chunks");
    const int half = threadIdx.x / kHalfThreads;  // warp-uniform: the broadcasts stay uniform
    const int state0 = half * kStates;
    const long long first =
        (long long)blockIdx.x * kHalfThreads * kCols + threadIdx.x % kHalfThreads;
    T acc[kStates][kCols];
#pragma unroll
    for (int b = 0; b < kStates; ++b)
#pragma unroll
        for (int c = 0; c < kCols; ++c)
            acc[b][c] = T(0);
    T w[kGroup][kCols], next[kGroup][kCols];
    load_weights<kGroup, kCols, kHalfThreads>(W, n, first, begin, end, w);
#pragma unroll 1
    for (long long i0 = begin; i0 < end; i0 += kGroup) {
        const int k0 = (int)((i0 - begin) % kChunk);  // the group's first row in ys
        if (k0 == 0) {
            const int count = (int)min((long long)kChunk, end - i0);
            __syncthreads();  // the previous chunk's states are read
            // Loads run along the neurons of a state (coalesced); states past batch are zeros.
            for (int e = threadIdx.x; e < kChunk * kBatch; e += kThreads) {
                const int b = e / kChunk, k = e % kChunk;
                ys[staged<kBatch>(k, b)] =
                    b < batch && k < count ? Y[(long long)b * n + i0 + k] : T(0);
            }
            __syncthreads();
        }
        load_weights<kGroup, kCols, kHalfThreads>(W, n, first, i0 + kGroup, end, next);
#pragma unroll
        for (int g = 0; g < kGroup; ++g)
#pragma unroll
            for (int b = 0; b < kStates; b += 4) {
                T y[4];
                load4(&ys[staged<kBatch>(k0 + g, state0 + b)], y);
#pragma unroll
                for (int v = 0; v < 4; ++v)
#pragma unroll
                    for (int c = 0; c < kCols; ++c)
                        acc[b + v][c] += y[v] * w[g][c];
            }
#pragma unroll
        for (int g = 0; g < kGroup; ++g)
#pragma unroll
            for (int c = 0; c < kCols; ++c)
                w[g][c] = next[g][c];
    }
#pragma unroll
    for (int b = 0; b < kStates; ++b)
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
            const long long j = first + c * (long long)kHalfThreads;
            if (state0 + b < batch && j < n) store(state0 + b, j, acc[b][c]);
        }
}

// ------------------------------------------------------------------------- tensor cores
// Hebbian weights are integers. Where none exceeds 2048 in magnitude, float16 holds each of
// them exactly, as it does a state's +-1, so their products are exact, and the sums, exact
// integers below 2^24 in float32 (the host checks), come out the same in any order: the
// tensor cores' float16 MMA with float32 sums gives the float32 fields bit for bit, reading
// W at half the bytes.
namespace mma {

// PTX's mma.m16n8k16 (.row.col, float16 in, float32 sums) spreads its operands over a
// warp's lanes: lane (g, t) = (lane / 4, lane % 4) holds
//   A (16 x 16): a[0] = row g, columns 2t and 2t + 1; a[1] = row g + 8, the same columns;
//                a[2], a[3] = rows g and g + 8, columns 2t + 8 and 2t + 9;
//   B (16 x 8):  b[0] = rows 2t and 2t + 1 of column g; b[1] = rows 2t + 8 and 2t + 9;
//   C (16 x 8):  c[0], c[1] = row g, columns 2t and 2t + 1; c[2], c[3] = row g + 8;
// two float16 to a word, the lower row or column in the low half.
constexpr unsigned kPlusOne = 0x3c00u, kMinusOne = 0xbc00u;  // float16 +1 and -1

// A state value (+1, -1, or 0 for padding) as float16.
__device__ __forceinline__ unsigned half_of_state(float y) {
    return y > 0.0f ? kPlusOne : (y < 0.0f ? kMinusOne : 0u);
}

// Two state values as one A word: the first in the low half.
__device__ __forceinline__ unsigned pack_states(float low, float high) {
    return half_of_state(low) | half_of_state(high) << 16;
}

// A finite float16 as float (the portable MMA's inputs: W16 holds integers of at most 2048,
// the states +-1).
__device__ __forceinline__ float float_of_half(unsigned bits) {
    const int exponent = (int)(bits >> 10 & 31u);
    const unsigned mantissa = bits & 1023u;
    const float magnitude = exponent == 0 ? ldexpf((float)mantissa, -24)
                                          : ldexpf((float)(mantissa | 1024u), exponent - 25);
    return bits & 0x8000u ? -magnitude : magnitude;
}

// c += A B for one 16 x 8 tile, every lane of the warp taking part (not under divergence).
// On sm_80 and later, the tensor cores; elsewhere (the emulator, older GPUs, which the host
// never gives this kernel) the same sums from the fragments through shuffles.
__device__ __forceinline__ void multiply_add(const unsigned (&a)[4], const unsigned (&b)[2],
                                             float (&c)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(GPUCNN_EMULATOR)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int k = 0; k < 16; ++k) {
        // column k of A and row k of B sit with the lanes of t = k % 8 / 2, in word k / 8 of
        // their pair, in the half k % 2
        const int holder = k % 8 / 2, word = k / 8, shift = 16 * (k % 2);
        const unsigned row_g = __shfl_sync(0xffffffffu, a[2 * word], 4 * g + holder);
        const unsigned row_g8 = __shfl_sync(0xffffffffu, a[2 * word + 1], 4 * g + holder);
        const unsigned column_0 = __shfl_sync(0xffffffffu, b[word], 4 * (2 * t) + holder);
        const unsigned column_1 = __shfl_sync(0xffffffffu, b[word], 4 * (2 * t + 1) + holder);
        const float a_g = float_of_half(row_g >> shift & 0xffffu);
        const float a_g8 = float_of_half(row_g8 >> shift & 0xffffu);
        const float b_0 = float_of_half(column_0 >> shift & 0xffffu);
        const float b_1 = float_of_half(column_1 >> shift & 0xffffu);
        c[0] += a_g * b_0, c[1] += a_g * b_1, c[2] += a_g8 * b_0, c[3] += a_g8 * b_1;
    }
#endif
}

}  // namespace mma

constexpr int kMmaWarps = 8;     // a block's warps, side by side along the neurons
constexpr int kMmaStates = 32;   // a warp's states (rows of C): two MMA tiles of 16
constexpr int kMmaNeurons = 64;  // a warp's neurons (columns of C): eight MMA tiles of 8
constexpr int kMmaStep = 16;     // the reduction step: the MMA's k

}  // namespace hopfield

// Split blockIdx.z reduces over neurons [z * chunk, (z + 1) * chunk) (chunk a multiple of
// the reduction step). With one split the epilogue writes the fields or the step into out;
// with more, each split writes its partial fields into slice z of out (splits, batch, n)
// and hopfield_finish_splits adds them up.
template <typename T>
__global__ void __launch_bounds__(gemm::kThreads)
    hopfield_product_gemm(const T* __restrict__ W, const T* __restrict__ Y, T* __restrict__ out,
                          int n, int batch, int sync, long long chunk) {
    const hopfield::Product<T> problem{W, Y, n, n % 4 == 0};
    const long long begin = blockIdx.z * chunk, end = min(begin + chunk, (long long)n);
    gemm::implicit_gemm_tile<T, gemm::Wide>(problem, batch, n, begin, end,
                                            hopfield::Epilogue<T>{out, Y, n, batch, sync});
}

// The fields of a float network on the tensor cores (see hopfield::mma): C = Y W as MMA
// tiles, A = Y (states as rows, +-1 made float16 on the way), B = W (column j of B is row j
// of W16, which W's symmetry makes column j of W). W16 (n rows, pitch float16 a row, pitch a
// multiple of 16, zeros past n) holds W exactly. A warp owns 32 states by 64 neurons, a
// block 8 warps along the neurons; each step of 16 neurons a lane loads its fragments from
// global memory (W16's rows as words, two float16 at a time) and issues 16 MMAs. Split
// blockIdx.z reduces over neurons [z * chunk, (z + 1) * chunk), chunk a multiple of 16, as
// hopfield_product_gemm, with the same epilogue.
extern "C" __global__ void __launch_bounds__(hopfield::kThreads)
    hopfield_product_mma(const unsigned short* __restrict__ W16, const float* __restrict__ Y,
                         float* __restrict__ out, int n, int pitch, int batch, int sync,
                         long long chunk) {
    using namespace hopfield;
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int state0 = blockIdx.y * kMmaStates;
    const long long neuron0 = ((long long)blockIdx.x * kMmaWarps + threadIdx.x / 32) * kMmaNeurons;
    const long long begin = blockIdx.z * chunk, end = min(begin + chunk, (long long)n);
    float acc[2][8][4];
#pragma unroll
    for (int m = 0; m < 2; ++m)
#pragma unroll
        for (int c = 0; c < 8; ++c)
#pragma unroll
            for (int r = 0; r < 4; ++r)
                acc[m][c][r] = 0.0f;
    for (long long i0 = begin; i0 < end; i0 += kMmaStep) {
        // Word r of tile m: state row g + 8 (r % 2), neurons i0 + 2t + 8 (r / 2) and the next
        // (zeros past the split's end and past batch: padding multiplies to 0).
        unsigned a[2][4];
#pragma unroll
        for (int m = 0; m < 2; ++m)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int state = state0 + 16 * m + g + 8 * (r % 2);
                const long long i = i0 + 2 * t + 8 * (r / 2);
                float low = 0.0f, high = 0.0f;
                if (state < batch) {
                    const float* row = Y + (long long)state * n;
                    if (i < end) low = row[i];
                    if (i + 1 < end) high = row[i + 1];
                }
                a[m][r] = mma::pack_states(low, high);
            }
        // Word r of tile c: neurons i0 + 2t + 8r and the next of W16's row j (within the
        // pitch: i0 + 15 < pitch; past the split's end A is 0).
        unsigned b[8][2];
#pragma unroll
        for (int c = 0; c < 8; ++c) {
            const long long j = neuron0 + 8 * c + g;
#pragma unroll
            for (int r = 0; r < 2; ++r)
                b[c][r] =
                    j < n ? *reinterpret_cast<const unsigned*>(W16 + j * pitch + i0 + 2 * t + 8 * r)
                          : 0u;
        }
#pragma unroll
        for (int m = 0; m < 2; ++m)
#pragma unroll
            for (int c = 0; c < 8; ++c)
                mma::multiply_add(a[m], b[c], acc[m][c]);
    }
    const Epilogue<float> store{out, Y, n, batch, sync};
#pragma unroll
    for (int m = 0; m < 2; ++m)
#pragma unroll
        for (int c = 0; c < 8; ++c)
#pragma unroll
            for (int r = 0; r < 4; ++r) {  // C: row g + 8 (r / 2), column 2t + r % 2
                const int state = state0 + 16 * m + g + 8 * (r / 2);
                const long long j = neuron0 + 8 * c + 2 * t + r % 2;
                if (state < batch && j < n) store(state, j, acc[m][c][r]);
            }
}

// The fields (sync = 0) or the step (sync = 1) from the splits' partial fields, summed in
// split order: exact integers with Hebbian weights, so the same bits as one split.
template <typename T>
__global__ void hopfield_finish_splits(const T* __restrict__ partial, const T* __restrict__ Y,
                                       T* __restrict__ out, int splits, long long size, int sync) {
    GPUCNN_GRID_STRIDE_LOOP(i, size) {
        hopfield::finish(out, Y, i, split_sum(partial, splits, size, i), sync);
    }
}

// flags[slot] = token when any of the size values of Y is neither +1 nor -1 (NaN included),
// left as it was otherwise. The host gives each check a token of its own, so a slot needs no
// clearing first: an older check's token in it says nothing about this one. Every thread
// that finds a bad value stores the same token, so the order of the stores does not matter.
template <typename T>
__global__ void hopfield_check_states(const T* __restrict__ Y, long long size,
                                      long long* __restrict__ flags, int slot, long long token) {
    GPUCNN_GRID_STRIDE_LOOP(i, size) {
        const T y = Y[i];
        if (y != T(1) && y != T(-1)) flags[slot] = token;
    }
}

// One state (batch 1): out = its fields (sync = 0) or its synchronous step (sync = 1).
template <typename T>
__global__ void __launch_bounds__(hopfield::kThreads)
    hopfield_product_vector(const T* __restrict__ W, const T* __restrict__ Y, T* __restrict__ out,
                            int n, int sync) {
    const int lane = threadIdx.x % 32;
    const long long warps = (long long)gridDim.x * blockDim.x / 32;
    for (long long j = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32; j < n; j += warps) {
        // Rows start 16-byte aligned when 4 divides n (8-byte when 2 does): each lane reads
        // them as vectors of that width.
        T field;
        if (n % 4 == 0)
            field = hopfield::row_dot<4>(W + j * n, Y, n, lane);
        else if (n % 2 == 0)
            field = hopfield::row_dot<2>(W + j * n, Y, n, lane);
        else
            field = hopfield::row_dot<1>(W + j * n, Y, n, lane);
        for (int offset = 16; offset > 0; offset /= 2)
            field += __shfl_down_sync(0xffffffffu, field, offset);
        if (lane == 0) hopfield::finish(out, Y, j, field, sync);
    }
}

// 2 <= batch <= 64 states (hopfield::skinny_product, instantiated for the smallest of 8, 16,
// 32 and 64 states that holds batch: every variant keeps 64 fields a thread, so the switch
// costs no registers), 256 threads a block, 16384 / that many columns a block. Split
// blockIdx.z reduces over neurons [z * chunk, (z + 1) * chunk), as hopfield_product_gemm.
template <typename T>
__global__ void __launch_bounds__(hopfield::kThreads, hopfield::SkinnyBounds<T>::blocks)
    hopfield_product_skinny(const T* __restrict__ W, const T* __restrict__ Y, T* __restrict__ out,
                            int n, int batch, int sync, long long chunk) {
    const long long begin = blockIdx.z * chunk, end = min(begin + chunk, (long long)n);
    __shared__ __align__(16) unsigned char staged[hopfield::kSkinnySharedBytes];
    T* ys = reinterpret_cast<T*>(staged);
    const hopfield::Epilogue<T> store{out, Y, n, batch, sync};
    if (batch <= 8)
        hopfield::skinny_product<8>(W, Y, n, batch, begin, end, ys, store);
    else if (batch <= 16)
        hopfield::skinny_product<16>(W, Y, n, batch, begin, end, ys, store);
    else if (batch <= 32)
        hopfield::skinny_product<32>(W, Y, n, batch, begin, end, ys, store);
    else
        hopfield::skinny_product<64>(W, Y, n, batch, begin, end, ys, store);
}

template <typename T>
__global__ void __launch_bounds__(hopfield::kThreads)
    hopfield_energy(const T* __restrict__ Y, const T* __restrict__ F, double* __restrict__ energy,
                    int n, int batch) {
    __shared__ double scratch[hopfield::kThreads];
    for (long long b = blockIdx.x; b < batch; b += gridDim.x) {
        const double e = hopfield::state_energy(Y + b * n, F + b * n, n, scratch);
        if (threadIdx.x == 0) energy[b] = e;
    }
}

// Asynchronous recall: up to max_sweeps sequential sweeps of every state, stopping a state at
// its first sweep without a change (converged). A sweep visits neurons j in the order
// orders[sweep * n + step] (or 0, 1, ..., n - 1 when orders is null), applying the update rule
// to one neuron at a time.
//
// A block owns one state at a time. Its fields h and its state y live in shared memory
// (dynamic, 2 n values) or, when they do not fit, in the block's slice of workspace (2 n
// values per block). h starts as the state's row of F = Y W, which the host computes for
// every state at once with the products above (a warp per row of W in each block, one
// coalesced load after another, was most of the time: each block read all of W at a few
// loads in flight). It is then kept exact incrementally: when neuron j flips to y_j',
// h += 2 y_j' W[j, :], so a sweep costs O(n + flips * n / threads), not O(n^2). Every thread
// reads h[j] and y[j] and reaches the same decision; a step without a flip writes nothing and
// needs no barrier. On a flip, a barrier lets every thread finish reading before anyone
// writes, and a second one publishes the new fields before the next step. Per state it writes
// the final state into Y, sweeps (sweeps run, the unchanged one included), converged, and the
// energy before the first sweep and after each sweep into energies[s * batch + b] (the last
// value repeated after a state stops). Nothing is read back to the host in between.
template <typename T>
__global__ void __launch_bounds__(hopfield::kThreads)
    hopfield_recall_async(const T* __restrict__ W, const T* __restrict__ F, T* __restrict__ Y,
                          const int* __restrict__ orders, double* __restrict__ energies,
                          int* __restrict__ sweeps, int* __restrict__ converged,
                          T* __restrict__ workspace, int n, int batch, int max_sweeps,
                          int fields_in_shared) {
    extern __shared__ __align__(16) unsigned char dynamic[];
    __shared__ double scratch[hopfield::kThreads];
    __shared__ int changed;
    for (long long b = blockIdx.x; b < batch; b += gridDim.x) {
        T* h = fields_in_shared ? reinterpret_cast<T*>(dynamic)
                                : workspace + (long long)blockIdx.x * 2 * n;
        T* y = h + n;
        T* state = Y + b * n;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            y[i] = state[i];
            h[i] = F[b * n + i];
        }
        __syncthreads();
        double energy = hopfield::state_energy(y, h, n, scratch);
        if (threadIdx.x == 0) energies[b] = energy;
        int sweep = 0, stable = 0;
        while (sweep < max_sweeps && !stable) {
            if (threadIdx.x == 0) changed = 0;
            __syncthreads();
            for (int step = 0; step < n; ++step) {
                const int j = orders ? orders[(long long)sweep * n + step] : step;
                const T flipped = hopfield::next_state(h[j], y[j]);
                if (flipped == y[j]) continue;  // the same decision in every thread
                __syncthreads();                // everyone has read h[j] and y[j]
                const T twice = T(2) * flipped;
                const T* row = W + (long long)j * n;
                for (int i = threadIdx.x; i < n; i += blockDim.x)
                    if (i != j) h[i] += twice * row[i];  // W[j, j] = 0: h[j] stays
                if (threadIdx.x == 0) {
                    y[j] = flipped;
                    changed = 1;
                }
                __syncthreads();  // the new fields and state are visible to the next step
            }
            ++sweep;
            stable = !changed;
            energy = hopfield::state_energy(y, h, n, scratch);  // its barriers publish `changed`
            if (threadIdx.x == 0) energies[(long long)sweep * batch + b] = energy;
        }
        if (threadIdx.x == 0) {
            for (int s = sweep + 1; s <= max_sweeps; ++s)
                energies[(long long)s * batch + b] = energy;
            sweeps[b] = sweep;
            converged[b] = stable;
        }
        for (int i = threadIdx.x; i < n; i += blockDim.x)
            state[i] = y[i];
        __syncthreads();  // shared memory is reused by the next state
    }
}

// One asynchronous sweep the plain way: for each neuron j (in `orders` or 0..n-1) the block
// computes xi_j = W[j, :] . y with a fixed-order reduction and applies the update rule. A
// block per state; y is updated in place in Y. Same result as one sweep of
// hopfield_recall_async (exact with Hebbian weights), at O(n^2) per sweep.
template <typename T>
__global__ void __launch_bounds__(hopfield::kThreads)
    hopfield_sweep_recompute(const T* __restrict__ W, T* __restrict__ Y,
                             const int* __restrict__ orders, int n, int batch) {
    __shared__ double scratch[hopfield::kThreads];
    for (long long b = blockIdx.x; b < batch; b += gridDim.x) {
        T* y = Y + b * n;
        for (int step = 0; step < n; ++step) {
            const int j = orders ? orders[step] : step;
            double partial = 0.0;
            for (int i = threadIdx.x; i < n; i += blockDim.x)
                partial += (double)W[(long long)j * n + i] * (double)y[i];
            const double field = hopfield::block_sum(partial, scratch);  // ends in a barrier
            if (threadIdx.x == 0) y[j] = hopfield::next_state(T(field), y[j]);
            __syncthreads();  // y[j] is read by the next step's dot product
        }
    }
}
