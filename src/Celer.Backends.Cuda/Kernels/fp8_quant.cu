#include "common.cuh"

// The input side of an FP8 W8A8 linear layer: each row of x (the model dtype) as E4M3 codes of x / s, rounded to
// nearest even and saturated to ±448 as vLLM's scaled_fp8_quant kernels do, with the scale s of the layer's scheme
// written where cuBLASLt's scaled FP8 matmul reads it:
//   mode 0, dynamic per token: s = max(absmax(row) / 448, min_scale), scales[row] (an outer vector over the rows)
//   mode 1, static per tensor: s = static_scale, written to scales[row] too, so every W8A8 GEMM takes the same modes
//   mode 2, dynamic per token group of 128: s = max(absmax(group), min_scale) / 448, scales[group * rows + row] (the
//           1D block layout: one column of scales per group, the rows contiguous)
// The division is IEEE (no fast math), so the codes are those of the CPU reference (Fp8Activations) bit for bit.
// Grid: one block of 256 threads per row. Both the cuBLASLt path and fp8_skinny_gemm.cu read what this writes.
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

// The scales of the dynamic modes and the code of a value.
__device__ __forceinline__ float fp8_token_scale(float amax, float min_scale) { return fmaxf(amax / 448.f, min_scale); }
__device__ __forceinline__ float fp8_group_scale(float amax, float min_scale) { return fmaxf(amax, min_scale) / 448.f; }
__device__ __forceinline__ __nv_fp8_e4m3 fp8_code(float v, float s) { return __nv_fp8_e4m3(v / s); }

// The codes of 16 values with scale s, as one 16-byte store.
__device__ __forceinline__ void fp8_store16(const float (&v)[16], float s, unsigned char* dst) {
    uint4 packed;
    unsigned char* b = reinterpret_cast<unsigned char*>(&packed);
#pragma unroll
    for (int i = 0; i < 16; i++) b[i] = fp8_code(v[i], s).__x;
    *reinterpret_cast<uint4*>(dst) = packed;
}

// 16 consecutive values of a row as floats, in 16-byte loads.
template <typename T>
__device__ __forceinline__ void fp8_load16(const T* p, float (&v)[16]) {
    constexpr int V = Vec16<T>::N;
#pragma unroll
    for (int h = 0; h < 16 / V; h++) {
        float part[V];
        load16(p + h * V, part);
#pragma unroll
        for (int i = 0; i < V; i++) v[h * V + i] = part[i];
    }
}

// One row per block, each thread 16 consecutive values at a time (k is a multiple of 16 and rows are 16-byte aligned:
// the host checks), so a decode step's few rows take one round trip per pass. The row's values are read twice (its
// absmax, then its codes) rather than held, which keeps any k in the same registers.
template <typename T>
__device__ void quantize_fp8(const T* x, int k, long long rows, int mode, float static_scale, float min_scale,
                             unsigned char* q, float* scales) {
    celer_pdl_begin();
    __shared__ float warp_max[FP8_QUANT_THREADS / 32];
    const long long row = blockIdx.x;
    const T* in = x + row * k;
    unsigned char* out = q + row * k;
    const int chunks = k / 16;
    if (mode == 2) {
        // A group of 128 is 8 consecutive chunks: 8 consecutive lanes of one warp, whose absmax they share (a partial
        // last group's lanes past k count as 0).
        for (int j0 = 0; j0 < chunks; j0 += FP8_QUANT_THREADS) {
            const int j = j0 + threadIdx.x;
            float v[16], amax = 0.f;
            if (j < chunks) {
                fp8_load16(in + j * 16, v);
#pragma unroll
                for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(v[i]));
            }
#pragma unroll
            for (int offset = 1; offset < FP8_QUANT_GROUP / 16; offset <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
            const float s = fp8_group_scale(amax, min_scale);
            if (j < chunks) {
                fp8_store16(v, s, out + j * 16);
                if (j % (FP8_QUANT_GROUP / 16) == 0) scales[(long long)(j / (FP8_QUANT_GROUP / 16)) * rows + row] = s;
            }
        }
        return;
    }

    float s = static_scale;
    if (mode == 0) {
        float amax = 0.f;
        for (int j = threadIdx.x; j < chunks; j += FP8_QUANT_THREADS) {
            float v[16];
            fp8_load16(in + j * 16, v);
#pragma unroll
            for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(v[i]));
        }
        s = fp8_token_scale(block_max<FP8_QUANT_THREADS>(amax, warp_max), min_scale);
    }
    for (int j = threadIdx.x; j < chunks; j += FP8_QUANT_THREADS) {
        float v[16];
        fp8_load16(in + j * 16, v);
        fp8_store16(v, s, out + j * 16);
    }
    if (threadIdx.x == 0) scales[row] = s;
}

#define FP8_QUANT_ENTRY_POINTS(S, T)                                                                                 \
    extern "C" __global__ void __launch_bounds__(FP8_QUANT_THREADS)                                                  \
        quantize_fp8_##S(const T* x, int k, long long rows, int mode, float static_scale, float min_scale,          \
                         unsigned char* q, float* scales) {                                                          \
        quantize_fp8<T>(x, k, rows, mode, static_scale, min_scale, q, scales);                                      \
    }
FP8_QUANT_ENTRY_POINTS(f32, float)
FP8_QUANT_ENTRY_POINTS(f16, __half)
FP8_QUANT_ENTRY_POINTS(bf16, __nv_bfloat16)
