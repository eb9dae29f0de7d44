// The SGD update, in place: one thread per parameter element (a grid-stride loop, 64-bit
// indices, 256 threads a block), PyTorch's formulation:
//     g = grad + weight_decay * param                  (when weight_decay != 0)
//     v = momentum * v + g;  g = nesterov ? g + momentum * v : v      (when momentum != 0)
//     param = param - lr * g
// param, grad and velocity are flat arrays of n elements (velocity may be null without
// momentum). Every product and sum is rounded on its own (no fused multiply-add), in the
// NumPy path's order, so both give the same bits. T is float or double.
#include "common.cuh"

template <typename T>
__global__ void sgd_update(T* __restrict__ param, const T* __restrict__ grad,
                           T* __restrict__ velocity, long long n, T lr, T momentum, T weight_decay,
                           int nesterov) {
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
