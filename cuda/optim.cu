// The SGD update, in place, PyTorch's formulation:
//     g = grad + weight_decay * param                  (when weight_decay != 0)
//     v = momentum * v + g;  g = nesterov ? g + momentum * v : v      (when momentum != 0)
//     param = param - lr * g
// Every product and sum is rounded on its own (no fused multiply-add), in the NumPy path's
// order, so both give the same bits. T is float or double.
#include "common.cuh"

// One parameter: a grid-stride loop over its n elements (64-bit indices). param, grad and
// velocity are flat arrays (velocity may be null without momentum).
template <typename T>
__device__ void sgd_update_tensor(T* __restrict__ param, const T* __restrict__ grad,
                                  T* __restrict__ velocity, long long n, T lr, T momentum,
                                  T weight_decay, int nesterov) {
    GPUCNN_GRID_STRIDE_LOOP(i, n) {
        const T p = param[i];
        T g = grad[i];
        if (weight_decay != T(0)) g = ieee::add(g, ieee::mul(weight_decay, p));
        if (momentum != T(0)) {
            const T v = ieee::add(ieee::mul(momentum, velocity[i]), g);
            velocity[i] = v;
            g = nesterov ? ieee::add(g, ieee::mul(momentum, v)) : v;
        }
        param[i] = ieee::sub(p, ieee::mul(lr, g));
    }
}

// Up to sixteen parameters a launch (PyTorch's multi_tensor_apply, in small): a network's
// update was a launch per parameter, each ~25-37 us of host time on an H100's host, for
// kernels of a few microseconds. Each parameter's arrays are arguments of their own, not a
// table in device memory: the launch needs no host-to-device copy, and the launch helper and
// the emulator check every array. An unused slot has size 0 (and null pointers); the
// parameters must not overlap in memory (the host updates overlapping ones a launch each).
// 256 threads a block.
// clang-format off: a slot a line, (param, grad, velocity, size)
template <typename T>
__global__ void sgd_update(
    T lr, T momentum, T weight_decay, int nesterov,
    T* __restrict__ p0, const T* __restrict__ g0, T* __restrict__ v0, long long n0,
    T* __restrict__ p1, const T* __restrict__ g1, T* __restrict__ v1, long long n1,
    T* __restrict__ p2, const T* __restrict__ g2, T* __restrict__ v2, long long n2,
    T* __restrict__ p3, const T* __restrict__ g3, T* __restrict__ v3, long long n3,
    T* __restrict__ p4, const T* __restrict__ g4, T* __restrict__ v4, long long n4,
    T* __restrict__ p5, const T* __restrict__ g5, T* __restrict__ v5, long long n5,
    T* __restrict__ p6, const T* __restrict__ g6, T* __restrict__ v6, long long n6,
    T* __restrict__ p7, const T* __restrict__ g7, T* __restrict__ v7, long long n7,
    T* __restrict__ p8, const T* __restrict__ g8, T* __restrict__ v8, long long n8,
    T* __restrict__ p9, const T* __restrict__ g9, T* __restrict__ v9, long long n9,
    T* __restrict__ p10, const T* __restrict__ g10, T* __restrict__ v10, long long n10,
    T* __restrict__ p11, const T* __restrict__ g11, T* __restrict__ v11, long long n11,
    T* __restrict__ p12, const T* __restrict__ g12, T* __restrict__ v12, long long n12,
    T* __restrict__ p13, const T* __restrict__ g13, T* __restrict__ v13, long long n13,
    T* __restrict__ p14, const T* __restrict__ g14, T* __restrict__ v14, long long n14,
    T* __restrict__ p15, const T* __restrict__ g15, T* __restrict__ v15, long long n15) {
    sgd_update_tensor(p0, g0, v0, n0, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p1, g1, v1, n1, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p2, g2, v2, n2, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p3, g3, v3, n3, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p4, g4, v4, n4, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p5, g5, v5, n5, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p6, g6, v6, n6, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p7, g7, v7, n7, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p8, g8, v8, n8, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p9, g9, v9, n9, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p10, g10, v10, n10, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p11, g11, v11, n11, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p12, g12, v12, n12, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p13, g13, v13, n13, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p14, g14, v14, n14, lr, momentum, weight_decay, nesterov);
    sgd_update_tensor(p15, g15, v15, n15, lr, momentum, weight_decay, nesterov);
}
// clang-format on
