// RMSNorm as transformers computes it in fp32: x * rsqrt(mean(x^2) + eps) * weight.
#include "common.cuh"

// Grid: rows (a row is `size` long; per-head norms pass rows * heads). y may alias x.
extern "C" __global__ void rms_norm(const float* x, const void* weight, int dtype, int size, float eps, float* y) {
    long long base = (long long)blockIdx.x * size;
    float ss = 0.f;
    for (int c = threadIdx.x; c < size; c += blockDim.x) { float v = x[base + c]; ss += v * v; }
    float inv = rsqrtf(block_sum(ss) / size + eps);
    for (int c = threadIdx.x; c < size; c += blockDim.x)
        y[base + c] = x[base + c] * inv * load_as_float(weight, c, dtype);
}

// Fused residual: residual += x; x = rmsnorm(residual) * weight.
extern "C" __global__ void add_rms_norm(float* x, float* residual, const void* weight, int dtype, int size, float eps) {
    long long base = (long long)blockIdx.x * size;
    float ss = 0.f;
    for (int c = threadIdx.x; c < size; c += blockDim.x) {
        float v = residual[base + c] + x[base + c];
        residual[base + c] = v;
        ss += v * v;
    }
    float inv = rsqrtf(block_sum(ss) / size + eps);
    for (int c = threadIdx.x; c < size; c += blockDim.x)
        x[base + c] = residual[base + c] * inv * load_as_float(weight, c, dtype);
}
