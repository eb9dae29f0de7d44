// 2-D pooling: max (with argmax), average, L2 and global average; forward and backward.
//
// Layout: x (N, C, H, W), y / argmax / dy (N, C, P, Q), all C-contiguous. A "plane" is one
// (n, c) image: N * C planes of H * W inputs and P * Q outputs. Window (R, S), stride
// (stride_h, stride_w), padding (pad_h, pad_w); window (p, q) covers rows
// [p * stride_h - pad_h, + R) and columns [q * stride_w - pad_w, + S), clipped to the image
// (ceil_mode's overhang past the padding is never read). T is float or double.
//
// Launch: 1-D grids over the elements a kernel owns, walked by grid-stride loops (64-bit
// indices), 256 threads a block; the host caps the grid, so any grid size is correct.
//
// Ownership: forward kernels own one output element per loop step; backward kernels own one
// input element and gather from the windows that contain it, so each dx element is written
// exactly once: no zero-fill, no atomics, bit-for-bit reproducible. When windows do not
// overlap the gather visits a single window: it is then a direct write.
#include "common.cuh"

// Max pooling. Semantics (those of gpucnn.cpu.pool): start from the first in-bounds element
// (so an all -inf window still points inside the image), move on a strictly greater value
// (ties keep the first), and stop at the first NaN (which propagates). argmax holds
// h * W + w inside the plane.
template <typename T>
__global__ void maxpool2d_forward(const T* __restrict__ x, T* __restrict__ y,
                                  int* __restrict__ argmax, long long total, int H, int W,
                                  int P, int Q, int R, int S, int stride_h, int stride_w,
                                  int pad_h, int pad_w) {
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const int q = (int)(i % Q);
        const int p = (int)(i / Q % P);
        const long long plane = i / ((long long)P * Q);
        const T* image = x + plane * H * W;
        const int h0 = p * stride_h - pad_h, w0 = q * stride_w - pad_w;
        const int h_begin = max(h0, 0), h_end = min(h0 + R, H);
        const int w_begin = max(w0, 0), w_end = min(w0 + S, W);
        int best_index = h_begin * W + w_begin;
        T best = image[best_index];
        for (int h = h_begin; h < h_end && !isnan(best); ++h) {
            for (int w = w_begin; w < w_end; ++w) {
                const T value = image[h * W + w];
                if (value > best || isnan(value)) {
                    best = value;
                    best_index = h * W + w;
                    if (isnan(value)) break;
                }
            }
        }
        y[i] = best;
        argmax[i] = best_index;
    }
}

// dx[h, w] = sum of dy over the windows that contain (h, w) and chose it.
template <typename T>
__global__ void maxpool2d_backward(const T* __restrict__ dy, const int* __restrict__ argmax,
                                   T* __restrict__ dx, long long total, int H, int W, int P,
                                   int Q, int R, int S, int stride_h, int stride_w, int pad_h,
                                   int pad_w) {
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const int w = (int)(i % W);
        const int h = (int)(i / W % H);
        const long long plane = i / ((long long)H * W);
        const T* dy_plane = dy + plane * P * Q;
        const int* argmax_plane = argmax + plane * P * Q;
        const int self = h * W + w;
        const int p_end = end_window(h, stride_h, pad_h, P);
        const int q_end = end_window(w, stride_w, pad_w, Q);
        T sum = T(0);
        for (int p = first_window(h, R, stride_h, pad_h); p < p_end; ++p)
            for (int q = first_window(w, S, stride_w, pad_w); q < q_end; ++q)
                if (argmax_plane[p * Q + q] == self) sum += dy_plane[p * Q + q];
        dx[i] = sum;
    }
}

// The same result without the window geometry: one thread per plane walks its outputs in
// order. Slow with few planes, but deterministic; argmax values outside the plane are skipped
// rather than written through.
template <typename T>
__global__ void maxpool2d_backward_planes(const T* __restrict__ dy,
                                          const int* __restrict__ argmax, T* __restrict__ dx,
                                          long long planes, int plane_in, int plane_out) {
    GPUCNN_GRID_STRIDE_LOOP(plane, planes) {
        T* dx_plane = dx + plane * plane_in;
        for (int j = 0; j < plane_in; ++j) dx_plane[j] = T(0);
        for (int j = 0; j < plane_out; ++j) {
            const int target = argmax[plane * plane_out + j];
            if (target >= 0 && target < plane_in) dx_plane[target] += dy[plane * plane_out + j];
        }
    }
}

// Number of elements window (p, q) averages over: with count_include_pad the padding counts
// but the ceil_mode overhang past it does not (PyTorch's rule).
__device__ __forceinline__ int avg_divisor(int h0, int w0, int H, int W, int R, int S,
                                           int pad_h, int pad_w, int count_include_pad) {
    if (count_include_pad) return (min(h0 + R, H + pad_h) - h0) * (min(w0 + S, W + pad_w) - w0);
    return (min(h0 + R, H) - max(h0, 0)) * (min(w0 + S, W) - max(w0, 0));
}

template <typename T>
__global__ void avgpool2d_forward(const T* __restrict__ x, T* __restrict__ y, long long total,
                                  int H, int W, int P, int Q, int R, int S, int stride_h,
                                  int stride_w, int pad_h, int pad_w, int count_include_pad) {
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const int q = (int)(i % Q);
        const int p = (int)(i / Q % P);
        const T* image = x + i / ((long long)P * Q) * H * W;
        const int h0 = p * stride_h - pad_h, w0 = q * stride_w - pad_w;
        T sum = T(0);
        for (int h = max(h0, 0); h < min(h0 + R, H); ++h)
            for (int w = max(w0, 0); w < min(w0 + S, W); ++w) sum += image[h * W + w];
        y[i] = sum / T(avg_divisor(h0, w0, H, W, R, S, pad_h, pad_w, count_include_pad));
    }
}

template <typename T>
__global__ void avgpool2d_backward(const T* __restrict__ dy, T* __restrict__ dx,
                                   long long total, int H, int W, int P, int Q, int R, int S,
                                   int stride_h, int stride_w, int pad_h, int pad_w,
                                   int count_include_pad) {
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const int w = (int)(i % W);
        const int h = (int)(i / W % H);
        const T* dy_plane = dy + i / ((long long)H * W) * P * Q;
        const int p_end = end_window(h, stride_h, pad_h, P);
        const int q_end = end_window(w, stride_w, pad_w, Q);
        T sum = T(0);
        for (int p = first_window(h, R, stride_h, pad_h); p < p_end; ++p)
            for (int q = first_window(w, S, stride_w, pad_w); q < q_end; ++q)
                sum += dy_plane[p * Q + q] /
                       T(avg_divisor(p * stride_h - pad_h, q * stride_w - pad_w, H, W, R, S,
                                     pad_h, pad_w, count_include_pad));
        dx[i] = sum;
    }
}

// L2 pooling: y = sqrt(sum of x^2 over the window); padding contributes nothing.
template <typename T>
__global__ void l2pool2d_forward(const T* __restrict__ x, T* __restrict__ y, long long total,
                                 int H, int W, int P, int Q, int R, int S, int stride_h,
                                 int stride_w, int pad_h, int pad_w) {
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const int q = (int)(i % Q);
        const int p = (int)(i / Q % P);
        const T* image = x + i / ((long long)P * Q) * H * W;
        const int h0 = p * stride_h - pad_h, w0 = q * stride_w - pad_w;
        T sum = T(0);
        for (int h = max(h0, 0); h < min(h0 + R, H); ++h)
            for (int w = max(w0, 0); w < min(w0 + S, W); ++w) {
                const T value = image[h * W + w];
                sum += value * value;
            }
        y[i] = sqrt(sum);
    }
}

// dx = x * sum over the windows holding x of dy / y; a window with y = 0 (all zeros) passes
// no gradient.
template <typename T>
__global__ void l2pool2d_backward(const T* __restrict__ dy, const T* __restrict__ x,
                                  const T* __restrict__ y, T* __restrict__ dx, long long total,
                                  int H, int W, int P, int Q, int R, int S, int stride_h,
                                  int stride_w, int pad_h, int pad_w) {
    GPUCNN_GRID_STRIDE_LOOP(i, total) {
        const int w = (int)(i % W);
        const int h = (int)(i / W % H);
        const long long out_offset = i / ((long long)H * W) * P * Q;
        const int p_end = end_window(h, stride_h, pad_h, P);
        const int q_end = end_window(w, stride_w, pad_w, Q);
        T scale = T(0);
        for (int p = first_window(h, R, stride_h, pad_h); p < p_end; ++p)
            for (int q = first_window(w, S, stride_w, pad_w); q < q_end; ++q) {
                const T norm = y[out_offset + p * Q + q];
                if (norm > T(0)) scale += dy[out_offset + p * Q + q] / norm;
            }
        dx[i] = x[i] * scale;
    }
}

// Global average pooling: y[plane] = mean of the plane. One warp per plane: lanes stride
// through the plane, then a shuffle tree in a fixed order (deterministic) sums the lanes.
template <typename T>
__global__ void global_avgpool2d_forward(const T* __restrict__ x, T* __restrict__ y,
                                         long long planes, int plane_size) {
    const int lane = threadIdx.x % 32;
    const long long warps = (long long)gridDim.x * blockDim.x / 32;
    for (long long plane = (blockIdx.x * (long long)blockDim.x + threadIdx.x) / 32;
         plane < planes; plane += warps) {
        const T* image = x + plane * plane_size;
        T sum = T(0);
        for (int j = lane; j < plane_size; j += 32) sum += image[j];
        for (int offset = 16; offset > 0; offset /= 2)
            sum += __shfl_down_sync(0xffffffffu, sum, offset);
        if (lane == 0) y[plane] = sum / T(plane_size);
    }
}

template <typename T>
__global__ void global_avgpool2d_backward(const T* __restrict__ dy, T* __restrict__ dx,
                                          long long total, int plane_size) {
    GPUCNN_GRID_STRIDE_LOOP(i, total) { dx[i] = dy[i / plane_size] / T(plane_size); }
}
