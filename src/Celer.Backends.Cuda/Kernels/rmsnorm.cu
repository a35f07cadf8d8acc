// RMSNorm as transformers computes it: the statistics in fp32, x * rsqrt(mean(x^2) + eps) rounded to the model
// dtype, then times the weight (LlamaRMSNorm: weight * hidden_states.to(input_dtype)).
//
// Grid: rows; block: threads over the row. When the row is a whole number of 16-byte vectors and at most
// RMS_VECS_PER_THREAD of them per thread, each thread loads its vectors once and keeps them in registers between the
// statistics and the output (one pass over memory); otherwise the element-wise path reads the row twice.
#include "common.cuh"

#define RMS_VECS_PER_THREAD 4

template <typename T> __device__ __forceinline__ bool rms_vectorized(int size) {
    return size % Vec16<T>::N == 0 && size / Vec16<T>::N <= RMS_VECS_PER_THREAD * (int)blockDim.x;
}

// The vectorized paths' second half: the row's vectors v (this thread's, as loaded) times the inverse RMS, rounded to
// T, times the weight, stored to the row at out.
template <typename T>
__device__ __forceinline__ void rms_scale_store(float (&v)[RMS_VECS_PER_THREAD][Vec16<T>::N], float inv, const T* weight, int size, T* out) {
    constexpr int V = Vec16<T>::N;
#pragma unroll
    for (int k = 0; k < RMS_VECS_PER_THREAD; k++) {
        const int c = (threadIdx.x + k * blockDim.x) * V;
        if (c < size) {
            float w[V];
            load16(weight + c, w);
#pragma unroll
            for (int i = 0; i < V; i++) v[k][i] = round_to<T>(v[k][i] * inv) * w[i];
            store16(out + c, v[k]);
        }
    }
}

// y may alias x.
template <typename T>
__device__ void rms_norm(const T* x, const T* weight, int size, float eps, T* y) {
    celer_pdl_begin();
    constexpr int V = Vec16<T>::N;
    const long long base = (long long)blockIdx.x * size;
    float ss = 0.f;
    if (rms_vectorized<T>(size)) {
        float v[RMS_VECS_PER_THREAD][V];
#pragma unroll
        for (int k = 0; k < RMS_VECS_PER_THREAD; k++) {
            const int c = (threadIdx.x + k * blockDim.x) * V;
            if (c < size) {
                load16(x + base + c, v[k]);
#pragma unroll
                for (int i = 0; i < V; i++) ss += v[k][i] * v[k][i];
            }
        }
        rms_scale_store(v, rsqrtf(block_sum(ss) / size + eps), weight, size, y + base);
        return;
    }
    for (int c = threadIdx.x; c < size; c += blockDim.x) { float v = to_float(x[base + c]); ss += v * v; }
    const float inv = rsqrtf(block_sum(ss) / size + eps);
    for (int c = threadIdx.x; c < size; c += blockDim.x)
        y[base + c] = from_float<T>(round_to<T>(to_float(x[base + c]) * inv) * to_float(weight[c]));
}

// The vectorized paths' first half of add_rms_norm: residual += x (rounded to T, as the model adds them in its dtype),
// stored; v holds this thread's sums. Returns the row's inverse RMS.
template <typename T>
__device__ __forceinline__ float add_rms_hold(float (&v)[RMS_VECS_PER_THREAD][Vec16<T>::N], const T* x, T* residual, int size, float eps) {
    constexpr int V = Vec16<T>::N;
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < RMS_VECS_PER_THREAD; k++) {
        const int c = (threadIdx.x + k * blockDim.x) * V;
        if (c < size) {
            float a[V];
            load16(residual + c, v[k]);
            load16(x + c, a);
#pragma unroll
            for (int i = 0; i < V; i++) {
                v[k][i] = round_to<T>(v[k][i] + a[i]);
                ss += v[k][i] * v[k][i];
            }
            store16(residual + c, v[k]);
        }
    }
    return rsqrtf(block_sum(ss) / size + eps);
}

// Fused residual: residual += x (rounded to T); x = rmsnorm(residual) * weight.
template <typename T>
__device__ void add_rms_norm(T* x, T* residual, const T* weight, int size, float eps) {
    celer_pdl_begin();
    const long long base = (long long)blockIdx.x * size;
    if (rms_vectorized<T>(size)) {
        float v[RMS_VECS_PER_THREAD][Vec16<T>::N];
        rms_scale_store(v, add_rms_hold(v, x + base, residual + base, size, eps), weight, size, x + base);
        return;
    }
    float ss = 0.f;
    for (int c = threadIdx.x; c < size; c += blockDim.x) {
        T v = from_float<T>(to_float(residual[base + c]) + to_float(x[base + c]));
        residual[base + c] = v;
        float f = to_float(v);
        ss += f * f;
    }
    const float inv = rsqrtf(block_sum(ss) / size + eps);
    for (int c = threadIdx.x; c < size; c += blockDim.x)
        x[base + c] = from_float<T>(round_to<T>(to_float(residual[base + c]) * inv) * to_float(weight[c]));
}

// add_rms_norm where an FP8 layer reads x next: x as add_rms_norm stores it, and its codes for that layer
// (fp8_quantize_held in fp8_quant.cu) from the values still in registers. The vectorized path only (the host checks).
template <typename T>
__device__ void add_rms_norm_fp8(T* x, T* residual, const T* weight, int size, float eps, const Fp8Codes& codes) {
    celer_pdl_begin();
    const long long base = (long long)blockIdx.x * size;
    float v[RMS_VECS_PER_THREAD][Vec16<T>::N];
    rms_scale_store(v, add_rms_hold(v, x + base, residual + base, size, eps), weight, size, x + base);
#pragma unroll
    for (int k = 0; k < RMS_VECS_PER_THREAD; k++)
#pragma unroll
        for (int i = 0; i < Vec16<T>::N; i++) v[k][i] = round_to<T>(v[k][i]);   // as stored
    fp8_quantize_held(v, size, blockIdx.x, codes);
}

// OLMo-2's RMSNorm (Olmo2RMSNorm: (weight * (x * rsqrt(mean(x^2) + eps))).to(dtype), one rounding, after the weight)
// in place over columns [offset, offset + size) of each row of x, rows `stride` apart: its q and k norms span the whole
// projection inside the fused q/k/v row, its post-norms whole rows. Grid: rows. Each thread writes only the elements it
// read, after the block's sum.
template <typename T>
__device__ void rms_norm_slice(T* x, int stride, int offset, const T* weight, int size, float eps) {
    celer_pdl_begin();
    T* row = x + (long long)blockIdx.x * stride + offset;
    float ss = 0.f;
    for (int c = threadIdx.x; c < size; c += blockDim.x) {
        const float v = to_float(row[c]);
        ss += v * v;
    }
    const float inv = rsqrtf(block_sum(ss) / size + eps);
    for (int c = threadIdx.x; c < size; c += blockDim.x) row[c] = from_float<T>(to_float(weight[c]) * (to_float(row[c]) * inv));
}

// Gemma's RMSNorm (Gemma2RMSNorm / Gemma3RMSNorm): x * rsqrt(mean(x^2) + eps) * (1 + w) in fp32, the weight widened
// before the 1 is added, rounded once to T. The vectorized paths' second half, as rms_scale_store.
template <typename T>
__device__ __forceinline__ void gemma_scale_store(float (&v)[RMS_VECS_PER_THREAD][Vec16<T>::N], float inv, const T* weight, int size, T* out) {
    constexpr int V = Vec16<T>::N;
#pragma unroll
    for (int k = 0; k < RMS_VECS_PER_THREAD; k++) {
        const int c = (threadIdx.x + k * blockDim.x) * V;
        if (c < size) {
            float w[V];
            load16(weight + c, w);
#pragma unroll
            for (int i = 0; i < V; i++) v[k][i] = v[k][i] * inv * (1.f + w[i]);
            store16(out + c, v[k]);
        }
    }
}

// y = gemma_norm(x) over rows of `size`; y may alias x. Grid: rows.
template <typename T>
__device__ void gemma_rms_norm(const T* x, const T* weight, int size, float eps, T* y) {
    celer_pdl_begin();
    constexpr int V = Vec16<T>::N;
    const long long base = (long long)blockIdx.x * size;
    float ss = 0.f;
    if (rms_vectorized<T>(size)) {
        float v[RMS_VECS_PER_THREAD][V];
#pragma unroll
        for (int k = 0; k < RMS_VECS_PER_THREAD; k++) {
            const int c = (threadIdx.x + k * blockDim.x) * V;
            if (c < size) {
                load16(x + base + c, v[k]);
#pragma unroll
                for (int i = 0; i < V; i++) ss += v[k][i] * v[k][i];
            }
        }
        gemma_scale_store(v, rsqrtf(block_sum(ss) / size + eps), weight, size, y + base);
        return;
    }
    for (int c = threadIdx.x; c < size; c += blockDim.x) { float v = to_float(x[base + c]); ss += v * v; }
    const float inv = rsqrtf(block_sum(ss) / size + eps);
    for (int c = threadIdx.x; c < size; c += blockDim.x)
        y[base + c] = from_float<T>(to_float(x[base + c]) * inv * (1.f + to_float(weight[c])));
}

// Gemma's residual step, fused (Gemma2DecoderLayer): x = gemma_norm(x) with post_weight (the sublayer output's own
// norm, rounded to T); residual += x (rounded to T); x = gemma_norm(residual) with next_weight (the next sublayer's
// input norm). Grid: rows. Each thread reads back only the elements it wrote, so the two block sums are the only sync.
template <typename T>
__device__ void gemma_add_rms_norm(T* x, T* residual, const T* post_weight, const T* next_weight, int size, float eps) {
    celer_pdl_begin();
    constexpr int V = Vec16<T>::N;
    const long long base = (long long)blockIdx.x * size;
    float ss = 0.f;
    if (rms_vectorized<T>(size)) {
        float v[RMS_VECS_PER_THREAD][V];
#pragma unroll
        for (int k = 0; k < RMS_VECS_PER_THREAD; k++) {
            const int c = (threadIdx.x + k * blockDim.x) * V;
            if (c < size) {
                load16(x + base + c, v[k]);
#pragma unroll
                for (int i = 0; i < V; i++) ss += v[k][i] * v[k][i];
            }
        }
        const float inv_post = rsqrtf(block_sum(ss) / size + eps);
        ss = 0.f;
#pragma unroll
        for (int k = 0; k < RMS_VECS_PER_THREAD; k++) {
            const int c = (threadIdx.x + k * blockDim.x) * V;
            if (c < size) {
                float w[V], r[V];
                load16(post_weight + c, w);
                load16(residual + base + c, r);
#pragma unroll
                for (int i = 0; i < V; i++) {
                    v[k][i] = round_to<T>(r[i] + round_to<T>(v[k][i] * inv_post * (1.f + w[i])));
                    ss += v[k][i] * v[k][i];
                }
                store16(residual + base + c, v[k]);
            }
        }
        gemma_scale_store(v, rsqrtf(block_sum(ss) / size + eps), next_weight, size, x + base);
        return;
    }
    for (int c = threadIdx.x; c < size; c += blockDim.x) { float v = to_float(x[base + c]); ss += v * v; }
    const float inv_post = rsqrtf(block_sum(ss) / size + eps);
    ss = 0.f;
    for (int c = threadIdx.x; c < size; c += blockDim.x) {
        const float h = round_to<T>(to_float(x[base + c]) * inv_post * (1.f + to_float(post_weight[c])));
        const T v = from_float<T>(to_float(residual[base + c]) + h);
        residual[base + c] = v;
        const float f = to_float(v);
        ss += f * f;
    }
    const float inv = rsqrtf(block_sum(ss) / size + eps);
    for (int c = threadIdx.x; c < size; c += blockDim.x)
        x[base + c] = from_float<T>(to_float(residual[base + c]) * inv * (1.f + to_float(next_weight[c])));
}

#define RMSNORM_ENTRY_POINTS(S, T)                                                                                   \
    extern "C" __global__ void rms_norm_slice_##S(T* x, int stride, int offset, const T* weight, int size, float eps) { \
        rms_norm_slice<T>(x, stride, offset, weight, size, eps);                                                    \
    }                                                                                                                \
    extern "C" __global__ void rms_norm_##S(const T* x, const T* weight, int size, float eps, T* y) {                \
        rms_norm<T>(x, weight, size, eps, y);                                                                       \
    }                                                                                                                \
    extern "C" __global__ void add_rms_norm_##S(T* x, T* residual, const T* weight, int size, float eps) {           \
        add_rms_norm<T>(x, residual, weight, size, eps);                                                            \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(FP8_HELD_THREADS) add_rms_norm_fp8_##S(T* x, T* residual,          \
                                                    const T* weight, int size, float eps, Fp8Codes codes) {          \
        add_rms_norm_fp8<T>(x, residual, weight, size, eps, codes);                                                 \
    }                                                                                                                \
    extern "C" __global__ void gemma_rms_norm_##S(const T* x, const T* weight, int size, float eps, T* y) {          \
        gemma_rms_norm<T>(x, weight, size, eps, y);                                                                 \
    }                                                                                                                \
    extern "C" __global__ void gemma_add_rms_norm_##S(T* x, T* residual, const T* post_weight, const T* next_weight, \
                                                      int size, float eps) {                                         \
        gemma_add_rms_norm<T>(x, residual, post_weight, next_weight, size, eps);                                    \
    }
CELER_FOR_DTYPES(RMSNORM_ENTRY_POINTS)
