#include "common.cuh"

// The input side of an FP8 W8A8 linear layer: each row of x (the model dtype) as E4M3 codes of x / s, rounded to
// nearest even and saturated to ±448 as vLLM's scaled_fp8_quant kernels do, with the scale s of the layer's scheme
// written where cuBLASLt's scaled FP8 matmul reads it:
//   mode 0, dynamic per token: s = max(absmax(row) / 448, min_scale), scales[row] (an outer vector over the rows)
//   mode 1, static per tensor: s = static_scale, written to scales[row] too, so every W8A8 GEMM takes the same modes
//   mode 2, dynamic per token group of 128: s = max(absmax(group), min_scale) / 448, scales[group * rows + row] (the
//           1D block layout: one column of scales per group, the rows contiguous)
// The division is IEEE (no fast math), so the codes are those of the CPU reference (Fp8Activations) bit for bit.
// Grid: one block of 256 threads per row.
#define FP8_QUANT_THREADS 256
#define FP8_QUANT_GROUP 128

// The maximum of v over a block of THREADS threads (shared: THREADS / 32 floats), in every thread. A caller that
// reduces again with the same shared array must barrier first.
template <int THREADS>
__device__ __forceinline__ float block_max(float v, float* shared) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, offset));
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < THREADS / 32 ? shared[lane] : 0.f;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, offset));
    return v;
}

// The scales of the dynamic modes and the code of a value, shared with fp8_skinny_gemm.cu's in-block quantization so
// both give the same codes and scales.
__device__ __forceinline__ float fp8_token_scale(float amax, float min_scale) { return fmaxf(amax / 448.f, min_scale); }
__device__ __forceinline__ float fp8_group_scale(float amax, float min_scale) { return fmaxf(amax, min_scale) / 448.f; }
__device__ __forceinline__ __nv_fp8_e4m3 fp8_code(float v, float s) { return __nv_fp8_e4m3(v / s); }

template <typename T>
__device__ void quantize_fp8(const T* x, int k, long long rows, int mode, float static_scale, float min_scale,
                             __nv_fp8_e4m3* q, float* scales) {
    celer_pdl_begin();
    __shared__ float warp_max[FP8_QUANT_THREADS / 32];
    const long long row = blockIdx.x;
    const T* in = x + row * k;
    __nv_fp8_e4m3* out = q + row * k;
    if (mode == 2) {
        // One warp per group: 128 values, four per lane.
        const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
        for (int g = warp; g * FP8_QUANT_GROUP < k; g += FP8_QUANT_THREADS / 32) {
            const int begin = g * FP8_QUANT_GROUP, end = min(k, begin + FP8_QUANT_GROUP);
            float v[FP8_QUANT_GROUP / 32];
            float amax = 0.f;
#pragma unroll
            for (int i = 0; i < FP8_QUANT_GROUP / 32; i++) {
                const int c = begin + i * 32 + lane;
                v[i] = c < end ? to_float(in[c]) : 0.f;
                amax = fmaxf(amax, fabsf(v[i]));
            }
#pragma unroll
            for (int offset = 16; offset > 0; offset >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffff, amax, offset));
            const float s = fp8_group_scale(amax, min_scale);
#pragma unroll
            for (int i = 0; i < FP8_QUANT_GROUP / 32; i++) {
                const int c = begin + i * 32 + lane;
                if (c < end) out[c] = fp8_code(v[i], s);
            }
            if (lane == 0) scales[(long long)g * rows + row] = s;
        }
        return;
    }

    float s = static_scale;
    if (mode == 0) {
        float amax = 0.f;
        for (int c = threadIdx.x; c < k; c += FP8_QUANT_THREADS) amax = fmaxf(amax, fabsf(to_float(in[c])));
        s = fp8_token_scale(block_max<FP8_QUANT_THREADS>(amax, warp_max), min_scale);
    }
    for (int c = threadIdx.x; c < k; c += FP8_QUANT_THREADS) out[c] = fp8_code(to_float(in[c]), s);
    if (threadIdx.x == 0) scales[row] = s;
}

#define FP8_QUANT_ENTRY_POINTS(S, T)                                                                                 \
    extern "C" __global__ void __launch_bounds__(FP8_QUANT_THREADS)                                                  \
        quantize_fp8_##S(const T* x, int k, long long rows, int mode, float static_scale, float min_scale,          \
                         __nv_fp8_e4m3* q, float* scales) {                                                          \
        quantize_fp8<T>(x, k, rows, mode, static_scale, min_scale, q, scales);                                      \
    }
FP8_QUANT_ENTRY_POINTS(f32, float)
FP8_QUANT_ENTRY_POINTS(f16, __half)
FP8_QUANT_ENTRY_POINTS(bf16, __nv_bfloat16)
