// RMSNorm as transformers computes it: the statistics in fp32, x * rsqrt(mean(x^2) + eps) rounded to the model
// dtype, then times the weight (LlamaRMSNorm: weight * hidden_states.to(input_dtype)).
#include "common.cuh"

// Grid: rows; block: threads over the row. y may alias x.
template <typename T>
__device__ void rms_norm(const T* x, const T* weight, int size, float eps, T* y) {
    long long base = (long long)blockIdx.x * size;
    float ss = 0.f;
    for (int c = threadIdx.x; c < size; c += blockDim.x) { float v = to_float(x[base + c]); ss += v * v; }
    float inv = rsqrtf(block_sum(ss) / size + eps);
    for (int c = threadIdx.x; c < size; c += blockDim.x)
        y[base + c] = from_float<T>(round_to<T>(to_float(x[base + c]) * inv) * to_float(weight[c]));
}

// Fused residual: residual += x (rounded to T, as the model adds them in its dtype); x = rmsnorm(residual) * weight.
template <typename T>
__device__ void add_rms_norm(T* x, T* residual, const T* weight, int size, float eps) {
    long long base = (long long)blockIdx.x * size;
    float ss = 0.f;
    for (int c = threadIdx.x; c < size; c += blockDim.x) {
        T v = from_float<T>(to_float(residual[base + c]) + to_float(x[base + c]));
        residual[base + c] = v;
        float f = to_float(v);
        ss += f * f;
    }
    float inv = rsqrtf(block_sum(ss) / size + eps);
    for (int c = threadIdx.x; c < size; c += blockDim.x)
        x[base + c] = from_float<T>(round_to<T>(to_float(residual[base + c]) * inv) * to_float(weight[c]));
}

#define RMSNORM_ENTRY_POINTS(S, T)                                                                                   \
    extern "C" __global__ void rms_norm_##S(const T* x, const T* weight, int size, float eps, T* y) {                \
        rms_norm<T>(x, weight, size, eps, y);                                                                       \
    }                                                                                                                \
    extern "C" __global__ void add_rms_norm_##S(T* x, T* residual, const T* weight, int size, float eps) {           \
        add_rms_norm<T>(x, residual, weight, size, eps);                                                            \
    }
CELER_FOR_DTYPES(RMSNORM_ENTRY_POINTS)
