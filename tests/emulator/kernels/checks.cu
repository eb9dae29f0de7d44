// Small kernels that pin down the emulator's CUDA semantics (tests/emulator/test_emulator.py).
// Each is valid CUDA: the tests also compile this file with NVRTC.

// Tree reduction in shared memory, one block per row: needs a real block barrier.
template <typename T>
__global__ void block_reduce(const T* __restrict__ x, T* __restrict__ out, int n) {
    __shared__ T partial[256];
    const int t = threadIdx.x;
    partial[t] = t < n ? x[blockIdx.x * n + t] : T(0);
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (t < stride) partial[t] += partial[t + stride];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = partial[0];
}

// The same reduction with the barriers forgotten: a race the emulator must not hide.
extern "C" __global__ void racy_block_reduce(const float* x, float* out, int n) {
    __shared__ float partial[256];
    const int t = threadIdx.x;
    partial[t] = t < n ? x[blockIdx.x * n + t] : 0.0f;
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (t < stride) partial[t] += partial[t + stride];
    }
    if (t == 0) out[blockIdx.x] = partial[0];
}

// Thread 0 stores its own slot and then a zero over thread 1's: two threads' stores to one
// shared element, in no order CUDA defines. Resumed in thread order, thread 1 stores last and
// hides the race; in reverse order thread 0 does, and out[1] is 0.
extern "C" __global__ void racy_overlapping_stores(float* out) {
    __shared__ float slots[64];
    const int t = threadIdx.x;
    slots[t] = t + 1.0f;
    if (t == 0) slots[1] = 0.0f;
    __syncthreads();
    out[t] = slots[t];
}

// Every thread reports the value its block's thread 0 put in shared memory.
extern "C" __global__ void shared_is_per_block(int* out) {
    __shared__ int owner;
    if (threadIdx.x == 0) owner = blockIdx.x;
    __syncthreads();
    int spin = 0;
    for (int i = 0; i < 1000; ++i)
        spin += i;  // give other blocks time to run
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = owner + (spin == 499500 ? 0 : 1000000);
}

// Reverse each row through dynamic shared memory.
extern "C" __global__ void reverse_rows(const float* x, float* y, int n) {
    extern __shared__ float row[];
    const int t = threadIdx.x;
    if (t < n) row[t] = x[blockIdx.x * n + t];
    __syncthreads();
    if (t < n) y[blockIdx.x * n + t] = row[n - 1 - t];
}

// Atomics under contention, across blocks that run in parallel.
extern "C" __global__ void histogram(const int* values, long long n, unsigned int* bins,
                                     int* largest, int* cas_counter) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        atomicAdd(&bins[values[i]], 1u);
        atomicMax(largest, values[i]);
        int seen = *cas_counter, assumed;
        do {
            assumed = seen;
            seen = atomicCAS(cas_counter, assumed, assumed + 1);
        } while (seen != assumed);
    }
}

// Warp-level sums: shuffle-down to lane 0, and an xor butterfly that leaves the sum in every
// lane; plus a ballot of the positive entries.
extern "C" __global__ void warp_sums(const float* x, float* down, float* butterfly,
                                     unsigned int* ballots) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = x[i], w = x[i];
    for (int offset = 16; offset > 0; offset /= 2) {
        v += __shfl_down_sync(0xffffffffu, v, offset);
        w += __shfl_xor_sync(0xffffffffu, w, offset);
    }
    const unsigned int ballot = __ballot_sync(0xffffffffu, x[i] > 0.0f);
    if (threadIdx.x % 32 == 0) {
        down[i / 32] = v;
        ballots[i / 32] = ballot;
    }
    butterfly[i] = w;
}

// Writes one element past the end of y: AddressSanitizer must catch it.
extern "C" __global__ void write_past_end(float* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 1.0f;
}

// Indexes a static shared array out of its bounds when launched with more than 32 threads.
extern "C" __global__ void shared_out_of_bounds(int* y) {
    __shared__ int slots[32];
    slots[threadIdx.x] = threadIdx.x;
    __syncthreads();
    y[threadIdx.x] = slots[0];
}

// Half a warp waits at __syncthreads, the other half at __syncwarp: a deadlock.
extern "C" __global__ void divergent_barriers(int* y) {
    if (threadIdx.x < 16) {
        __syncthreads();
    } else {
        __syncwarp();
    }
    y[threadIdx.x] = 1;
}

// A 3-D block and grid: every thread writes its own coordinates.
extern "C" __global__ void coordinates(int* out) {
    const int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int i = block * blockDim.x * blockDim.y * blockDim.z + thread;
    out[4 * i + 0] = threadIdx.x;
    out[4 * i + 1] = threadIdx.y;
    out[4 * i + 2] = threadIdx.z;
    out[4 * i + 3] = blockIdx.x + 10 * blockIdx.y + 100 * blockIdx.z;
}
