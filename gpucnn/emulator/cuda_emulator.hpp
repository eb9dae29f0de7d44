// gpucnn's CUDA emulator: the device-side API a .cu file sees when it is compiled for the CPU.
//
// The build (gpucnn/emulator/build.py) compiles one translation unit:
//     #include "cuda_emulator.hpp"      <- this file: CUDA builtins for host C++20
//     #line 1 "<kernel>.cu"
//     ...the very same source NVRTC compiles...
//     #include "runtime.inc"            <- the block scheduler and the C entry points
//     kernel table                      <- one entry per name expression
//
// Execution model (CUDA's, not an imitation of it):
// - a block's threads are fibers on one OS thread; __syncthreads() and the warp intrinsics
//   are real barriers: a fiber stops there until every live thread (or lane) has arrived;
// - blocks run one at a time on each of several OS threads, so atomics are real atomics;
// - __shared__ variables are thread_local: one copy per OS thread, i.e. per running block;
//   `extern __shared__` (dynamic) memory is a per-block buffer sized at launch.
#pragma once

// Everything from the standard library comes first: below, `asm` is redefined.
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cassert>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

#define GPUCNN_EMULATOR 1

// ----------------------------------------------------------------------------- qualifiers
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __constant__
// Block scope thread_local implies static: one instance per OS thread, which runs one block
// at a time. (`extern __shared__ T x[];` is rewritten by the build, see build.py.)
#define __shared__ thread_local

// Constructs the CPU cannot run fail to compile, with a message that says so.
// (_Pragma takes a single string literal: keep it on one line.)
// clang-format off
#define GPUCNN_EMU_NO_PTX _Pragma("GCC error \"gpucnn emulator: inline PTX cannot run on the CPU; keep a portable path behind #ifdef GPUCNN_EMULATOR\"")
// clang-format on
#define asm GPUCNN_EMU_NO_PTX
#define __asm__ GPUCNN_EMU_NO_PTX
namespace nvcuda {
namespace wmma {
struct matrix_a;
struct matrix_b;
struct accumulator;
struct row_major;
struct col_major;
template <class Use, int M, int N, int K, class T = void, class Layout = void>
struct fragment {
    static_assert(sizeof(Use*) == 0,
                  "gpucnn emulator: tensor-core wmma cannot run on the CPU; keep a portable "
                  "path behind #ifdef GPUCNN_EMULATOR");
};
}  // namespace wmma
}  // namespace nvcuda

// ----------------------------------------------------------------------------- dim3 & co
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
        : x(x_), y(y_), z(z_) {}
};

#define GPUCNN_EMU_VECTOR2(T, N, A)        \
    struct __attribute__((aligned(A))) N { \
        T x, y;                            \
    };                                     \
    inline N make_##N(T x, T y) {          \
        return N{x, y};                    \
    }
#define GPUCNN_EMU_VECTOR4(T, N, A)         \
    struct __attribute__((aligned(A))) N {  \
        T x, y, z, w;                       \
    };                                      \
    inline N make_##N(T x, T y, T z, T w) { \
        return N{x, y, z, w};               \
    }
GPUCNN_EMU_VECTOR2(float, float2, 8)
GPUCNN_EMU_VECTOR4(float, float4, 16)
GPUCNN_EMU_VECTOR2(double, double2, 16)
GPUCNN_EMU_VECTOR4(double, double4, 32)
GPUCNN_EMU_VECTOR2(int, int2, 8)
GPUCNN_EMU_VECTOR4(int, int4, 16)
#undef GPUCNN_EMU_VECTOR2
#undef GPUCNN_EMU_VECTOR4

namespace gpucnn_emu {

constexpr int kWarpSize = 32;

struct Fiber;
struct Block;

// The fiber (CUDA thread) running now on this OS thread, and its block.
extern thread_local Fiber* current_fiber;
extern thread_local Block* current_block;

struct Fiber {
    uint3 thread_idx;
    unsigned int linear;  // x + y * Dx + z * Dx * Dy: the thread's rank, lane = linear % 32
};

struct Block {
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
    unsigned char* dynamic_shared;
};

// Suspend the calling fiber until the barrier releases it (defined in runtime.inc).
void block_barrier();
// The running block's dynamic shared memory (what `extern __shared__` arrays point at).
unsigned char* dynamic_shared_memory();
void warp_barrier(unsigned int mask);
// Per-warp exchange slots for shuffles and votes: 32 lanes x 8 bytes.
unsigned long long* warp_slots();

template <class T>
T warp_exchange(unsigned int mask, T value, int source_lane) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>,
                  "gpucnn emulator: warp shuffles move at most 8 trivially copyable bytes");
    unsigned long long* slots = warp_slots();
    const int lane = static_cast<int>(current_fiber->linear % kWarpSize);
    std::memcpy(&slots[lane], &value, sizeof(T));
    warp_barrier(mask);  // every lane has written its value
    T result;
    std::memcpy(&result, &slots[source_lane], sizeof(T));
    warp_barrier(mask);  // every lane has read before any lane writes again
    return result;
}

inline int lane_id() {
    return static_cast<int>(current_fiber->linear % kWarpSize);
}

}  // namespace gpucnn_emu

#define threadIdx (::gpucnn_emu::current_fiber->thread_idx)
#define blockIdx (::gpucnn_emu::current_block->block_idx)
#define blockDim (::gpucnn_emu::current_block->block_dim)
#define gridDim (::gpucnn_emu::current_block->grid_dim)
#define warpSize 32

// ----------------------------------------------------------------------------- sync
inline void __syncthreads() {
    gpucnn_emu::block_barrier();
}
inline void __syncwarp(unsigned int mask = 0xffffffffu) {
    gpucnn_emu::warp_barrier(mask);
}
inline void __threadfence() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
}
inline void __threadfence_block() {
    std::atomic_thread_fence(std::memory_order_seq_cst);
}
inline unsigned int __activemask() {
    return 0xffffffffu;
}

template <class T>
T __shfl_sync(unsigned int mask, T var, int src_lane, int width = warpSize) {
    const int lane = gpucnn_emu::lane_id();
    return gpucnn_emu::warp_exchange(mask, var, (lane & ~(width - 1)) + (src_lane & (width - 1)));
}
template <class T>
T __shfl_up_sync(unsigned int mask, T var, unsigned int delta, int width = warpSize) {
    const int lane = gpucnn_emu::lane_id();
    const int shift = static_cast<int>(delta);
    const int source = (lane & (width - 1)) >= shift ? lane - shift : lane;
    return gpucnn_emu::warp_exchange(mask, var, source);
}
template <class T>
T __shfl_down_sync(unsigned int mask, T var, unsigned int delta, int width = warpSize) {
    const int lane = gpucnn_emu::lane_id();
    const int shift = static_cast<int>(delta);
    const int source = (lane & (width - 1)) + shift < width ? lane + shift : lane;
    return gpucnn_emu::warp_exchange(mask, var, source);
}
template <class T>
T __shfl_xor_sync(unsigned int mask, T var, int lane_mask, int width = warpSize) {
    const int lane = gpucnn_emu::lane_id();
    const int source = lane ^ lane_mask;
    const bool same_segment = (source & ~(width - 1)) == (lane & ~(width - 1));
    return gpucnn_emu::warp_exchange(mask, var, same_segment ? source : lane);
}

// Votes: every lane publishes its predicate, then each reads all 32 (absent lanes read 0).
inline unsigned int __ballot_sync(unsigned int mask, int predicate) {
    unsigned long long* slots = gpucnn_emu::warp_slots();
    const int lane = gpucnn_emu::lane_id();
    slots[lane] = predicate ? 1 : 0;
    gpucnn_emu::warp_barrier(mask);
    unsigned int ballot = 0;
    for (int i = 0; i < gpucnn_emu::kWarpSize; ++i)
        if ((mask >> i & 1u) && slots[i]) ballot |= 1u << i;
    gpucnn_emu::warp_barrier(mask);
    return ballot;
}
inline int __any_sync(unsigned int mask, int predicate) {
    return __ballot_sync(mask, predicate) != 0;
}
inline int __all_sync(unsigned int mask, int predicate) {
    return __ballot_sync(mask, predicate) == __ballot_sync(mask, 1);
}

// ----------------------------------------------------------------------------- atomics
template <class T>
T atomicAdd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_add(value);
}
template <class T>
T atomicSub(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_sub(value);
}
template <class T>
T atomicExch(T* address, T value) {
    return std::atomic_ref<T>(*address).exchange(value);
}
template <class T>
T atomicCAS(T* address, T compare, T value) {
    std::atomic_ref<T>(*address).compare_exchange_strong(compare, value);
    return compare;  // the old value, whether or not the swap happened
}
template <class T>
T atomicMax(T* address, T value) {
    static_assert(std::is_integral_v<T>, "CUDA's atomicMax takes integers");
    std::atomic_ref<T> ref(*address);
    T old = ref.load();
    while (old < value && !ref.compare_exchange_weak(old, value)) {
    }
    return old;
}
template <class T>
T atomicMin(T* address, T value) {
    static_assert(std::is_integral_v<T>, "CUDA's atomicMin takes integers");
    std::atomic_ref<T> ref(*address);
    T old = ref.load();
    while (value < old && !ref.compare_exchange_weak(old, value)) {
    }
    return old;
}
template <class T>
T atomicAnd(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_and(value);
}
template <class T>
T atomicOr(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_or(value);
}
template <class T>
T atomicXor(T* address, T value) {
    return std::atomic_ref<T>(*address).fetch_xor(value);
}

// ----------------------------------------------------------------------------- math
// CUDA overloads the math functions for float; C's versions would compute in double.
using std::ceil;
using std::exp;
using std::fabs;
using std::floor;
using std::fma;
using std::isfinite;
using std::isinf;
using std::isnan;
using std::log;
using std::pow;
using std::sqrt;
using std::tanh;

#define GPUCNN_EMU_MINMAX(T)  \
    inline T min(T a, T b) {  \
        return b < a ? b : a; \
    }                         \
    inline T max(T a, T b) {  \
        return a < b ? b : a; \
    }
GPUCNN_EMU_MINMAX(int)
GPUCNN_EMU_MINMAX(unsigned int)
GPUCNN_EMU_MINMAX(long long)
GPUCNN_EMU_MINMAX(unsigned long long)
#undef GPUCNN_EMU_MINMAX
inline float min(float a, float b) {
    return std::fmin(a, b);
}
inline float max(float a, float b) {
    return std::fmax(a, b);
}
inline double min(double a, double b) {
    return std::fmin(a, b);
}
inline double max(double a, double b) {
    return std::fmax(a, b);
}

inline float rsqrtf(float x) {
    return 1.0f / std::sqrt(x);
}
inline double rsqrt(double x) {
    return 1.0 / std::sqrt(x);
}
inline float __expf(float x) {
    return std::exp(x);
}
inline float __logf(float x) {
    return std::log(x);
}
inline float __fdividef(float a, float b) {
    return a / b;
}
// The round-to-nearest arithmetic intrinsics: plain IEEE operations here (the emulator is
// built without FMA contraction).
inline float __fmul_rn(float a, float b) {
    return a * b;
}
inline double __dmul_rn(double a, double b) {
    return a * b;
}
inline float __fadd_rn(float a, float b) {
    return a + b;
}
inline double __dadd_rn(double a, double b) {
    return a + b;
}
inline float __fsub_rn(float a, float b) {
    return a - b;
}
inline double __dsub_rn(double a, double b) {
    return a - b;
}
inline float __fmaf_rn(float a, float b, float c) {
    return std::fma(a, b, c);
}
inline double __fma_rn(double a, double b, double c) {
    return std::fma(a, b, c);
}
inline float __saturatef(float x) {
    return std::fmin(std::fmax(x, 0.0f), 1.0f);
}
inline int __float_as_int(float x) {
    return std::bit_cast<int>(x);
}
inline float __int_as_float(int x) {
    return std::bit_cast<float>(x);
}
inline unsigned int __float_as_uint(float x) {
    return std::bit_cast<unsigned int>(x);
}
inline float __uint_as_float(unsigned int x) {
    return std::bit_cast<float>(x);
}
inline long long __double_as_longlong(double x) {
    return std::bit_cast<long long>(x);
}
inline double __longlong_as_double(long long x) {
    return std::bit_cast<double>(x);
}
inline int __popc(unsigned int x) {
    return std::popcount(x);
}
inline int __popcll(unsigned long long x) {
    return std::popcount(x);
}
inline int __clz(int x) {
    return std::countl_zero(static_cast<unsigned int>(x));
}
inline int __ffs(int x) {
    return x == 0 ? 0 : std::countr_zero(static_cast<unsigned int>(x)) + 1;
}
template <class T>
T __ldg(const T* address) {
    return *address;
}
