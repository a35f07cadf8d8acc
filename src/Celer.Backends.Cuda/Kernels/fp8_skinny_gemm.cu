// The FP8 W8A8 linear layer of a decode step of 1, 2 or 4 rows, where cuBLASLt's FP8 tiles read the E4M3 weights far
// below the copy rate: y[m, n] = sum over k of xq[m, k] · wq[n, k] with both operands' scales, as skinny_gemm.cu
// streams a 16-bit weight. The input quantization is part of the kernel: each block quantizes the step's rows of x (the
// model dtype) into shared memory with fp8_quant.cu's arithmetic (fp8_quantize_rows below; the same codes and scales,
// bit for bit), so a layer is one launch where cuBLASLt's path takes two. One warp per output column n reads W's row n
// in 16-byte loads (16 codes), four in flight per lane, the first four issued before the kernel waits on the previous
// one (griddepcontrol.wait: weights are never written by a kernel, so they may be read early), and the quantized rows
// from shared memory. E4M3 converts exactly to fp16 and each product of two codes is exact in fp32, so this is the
// arithmetic of a W8A8 tensor-core GEMM up to fp32 summation order:
//   per-row scales:  y = (sum) · sw[n] · sx[m]
//   128 × 128 blocks: y = sum over k groups g of (sum over the group) · sw[n / 128, g] · sx[m, g], sw's grid rows
//                     ws_ld floats apart
// Needs k to be a multiple of 16 and 16-byte aligned rows (the host checks); y row-major [rows, n] in the model dtype.
// Dynamic shared memory: fp8_skinny_smem_bytes(M, k) (M rows of k codes, then their scales).
#include "common.cuh"

#define FP8_BLOCK 128

__device__ __forceinline__ void decode_e4m3x16(const uint4& v, float (&f)[16]) {
    const __nv_fp8x2_storage_t* pairs = reinterpret_cast<const __nv_fp8x2_storage_t*>(&v);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        const __half2_raw raw = __nv_cvt_fp8x2_to_halfraw2(pairs[i], __NV_E4M3);
        const float2 t = __half22float2(*reinterpret_cast<const __half2*>(&raw));
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}

// Quantizes rows [0, rows) of x [*, k] as quantize_fp8 does (mode 0: dynamic per token, 1: static, 2: dynamic per group
// of 128), the codes to sq[m * k + c] and the scales to ss[m * groups + g] (modes 0 and 1: ss[m * groups]), by the whole
// block (256 threads), each thread 16 consecutive values at a time; ends with a barrier.
template <typename T, int M>
__device__ __forceinline__ void fp8_quantize_rows(const T* __restrict__ x, int rows, int k, int mode, float static_scale,
                                                  float min_scale, unsigned char* sq, float* ss) {
    __shared__ float warp_max[8];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int chunks = k / 16, groups = (k + FP8_BLOCK - 1) / FP8_BLOCK;
    // The codes of 16 values at c with scale s (IEEE division, saturating conversion: quantize_fp8's).
    auto store_codes = [&](const float (&v)[16], float s, unsigned char* dst) {
        uint4 packed;
        unsigned char* b = reinterpret_cast<unsigned char*>(&packed);
#pragma unroll
        for (int i = 0; i < 16; i++) b[i] = __nv_fp8_e4m3(v[i] / s).__x;
        *reinterpret_cast<uint4*>(dst) = packed;
    };
    auto load_chunk = [&](const T* row, int c, float (&v)[16]) {
        constexpr int V = Vec16<T>::N;
#pragma unroll
        for (int h = 0; h < 16 / V; h++) {
            float part[V];
            load16(row + c + h * V, part);
#pragma unroll
            for (int i = 0; i < V; i++) v[h * V + i] = part[i];
        }
    };
#pragma unroll
    for (int m = 0; m < M; m++) {
        if (m >= rows) break;
        const T* row = x + (long long)m * k;
        if (mode == 2) {
            // A group of 128 is 8 consecutive chunks: 8 consecutive lanes of one warp, whose absmax they share.
            for (int j0 = 0; j0 < chunks; j0 += 256) {
                const int j = j0 + tid;
                float v[16], amax = 0.f;
                if (j < chunks) {
                    load_chunk(row, j * 16, v);
#pragma unroll
                    for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(v[i]));
                }
#pragma unroll
                for (int offset = 1; offset < 8; offset <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
                const float s = fmaxf(amax, min_scale) / 448.f;
                if (j < chunks) {
                    store_codes(v, s, sq + (long long)m * k + j * 16);
                    if ((j & 7) == 0) ss[m * groups + j / 8] = s;
                }
            }
            continue;
        }
        float s = static_scale;
        if (mode == 0) {
            float amax = 0.f;
            for (int j = tid; j < chunks; j += 256) {
                float v[16];
                load_chunk(row, j * 16, v);
#pragma unroll
                for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(v[i]));
            }
#pragma unroll
            for (int offset = 16; offset > 0; offset >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
            if (lane == 0) warp_max[warp] = amax;
            __syncthreads();
            amax = warp_max[0];
#pragma unroll
            for (int w = 1; w < 8; w++) amax = fmaxf(amax, warp_max[w]);
            __syncthreads();   // warp_max is read before the next row writes it
            s = fmaxf(amax / 448.f, min_scale);
        }
        for (int j = tid; j < chunks; j += 256) {
            float v[16];
            load_chunk(row, j * 16, v);
            store_codes(v, s, sq + (long long)m * k + j * 16);
        }
        if (tid == 0) ss[m * groups] = s;
    }
    __syncthreads();
}

template <typename T, int M, bool BLOCKS>
__device__ void fp8_skinny_gemm(const T* __restrict__ x, int rows, int mode, float static_scale, float min_scale,
                                const unsigned char* __restrict__ wq, const float* __restrict__ ws, int ws_ld, int n, int k,
                                T* __restrict__ y, unsigned char* smem) {
    constexpr int U = 4, STRIDE = 32 * 16;
    const int lane = threadIdx.x & 31, groups = (k + FP8_BLOCK - 1) / FP8_BLOCK;
    const long long col = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    // Warps past n take part in the block's quantization, then leave.
    const unsigned char* wr = wq + min(col, (long long)n - 1) * k;
    int c = lane * 16;
    uint4 w16[U];
    bool full = c + (U - 1) * STRIDE < k;
    if (full) {
#pragma unroll
        for (int u = 0; u < U; u++) w16[u] = __ldcs(reinterpret_cast<const uint4*>(wr + c + u * STRIDE));   // read once: streaming
    }
    celer_pdl_begin();
    unsigned char* sq = smem;
    float* ss = reinterpret_cast<float*>(smem + M * k);
    fp8_quantize_rows<T, M>(x, rows, k, mode, static_scale, min_scale, sq, ss);
    if (col >= n) return;

    const float* wgrid = BLOCKS ? ws + (col / FP8_BLOCK) * ws_ld : nullptr;
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; m++) acc[m] = 0.f;

    // One 16-code chunk at k offset c (inside one 128-group: 16 divides 128) into every row's sum.
    auto chunk = [&](const uint4& w, int at) {
        float wf[16];
        decode_e4m3x16(w, wf);
        const float group_scale = BLOCKS ? wgrid[at / FP8_BLOCK] : 1.f;
#pragma unroll
        for (int m = 0; m < M; m++) {
            if (m < rows) {
                float xf[16];
                decode_e4m3x16(*reinterpret_cast<const uint4*>(sq + m * k + at), xf);
                float d = 0.f;
#pragma unroll
                for (int i = 0; i < 16; i++) d = fmaf(wf[i], xf[i], d);
                acc[m] = BLOCKS ? fmaf(d, group_scale * ss[m * groups + at / FP8_BLOCK], acc[m]) : acc[m] + d;
            }
        }
    };

    while (full) {
#pragma unroll
        for (int u = 0; u < U; u++) chunk(w16[u], c + u * STRIDE);
        c += U * STRIDE;
        full = c + (U - 1) * STRIDE < k;
        if (full) {
#pragma unroll
            for (int u = 0; u < U; u++) w16[u] = __ldcs(reinterpret_cast<const uint4*>(wr + c + u * STRIDE));
        }
    }
    for (; c < k; c += STRIDE) chunk(__ldcs(reinterpret_cast<const uint4*>(wr + c)), c);

#pragma unroll
    for (int m = 0; m < M; m++) acc[m] = warp_sum(acc[m]);
    if (lane == 0) {
#pragma unroll
        for (int m = 0; m < M; m++)
            if (m < rows) y[(long long)m * n + col] = from_float<T>(BLOCKS ? acc[m] : acc[m] * ws[col] * ss[m * groups]);
    }
}

#define FP8_SKINNY_ENTRY(S, T, M, BLOCKS, NAME)                                                                       \
    extern "C" __global__ void __launch_bounds__(256) NAME(const T* x, int rows, int mode, float static_scale,        \
                                                           float min_scale, const unsigned char* wq, const float* ws,  \
                                                           int ws_ld, int n, int k, T* y) {                           \
        extern __shared__ __align__(16) unsigned char fp8_skinny_smem[];                                              \
        fp8_skinny_gemm<T, M, BLOCKS>(x, rows, mode, static_scale, min_scale, wq, ws, ws_ld, n, k, y, fp8_skinny_smem); \
    }
#define FP8_SKINNY_ENTRY_POINTS(S, T)                                                                                 \
    FP8_SKINNY_ENTRY(S, T, 1, false, fp8_skinny_gemm_##S##_m1) FP8_SKINNY_ENTRY(S, T, 2, false, fp8_skinny_gemm_##S##_m2) \
    FP8_SKINNY_ENTRY(S, T, 4, false, fp8_skinny_gemm_##S##_m4)                                                        \
    FP8_SKINNY_ENTRY(S, T, 1, true, fp8_skinny_gemm_blocks_##S##_m1)                                                  \
    FP8_SKINNY_ENTRY(S, T, 2, true, fp8_skinny_gemm_blocks_##S##_m2)                                                  \
    FP8_SKINNY_ENTRY(S, T, 4, true, fp8_skinny_gemm_blocks_##S##_m4)
CELER_FOR_DTYPES(FP8_SKINNY_ENTRY_POINTS)
