// The FP8 W8A8 GEMM of a decode step of 1, 2 or 4 rows, where cuBLASLt's FP8 tiles read the E4M3 weights far below
// the copy rate: y[m, n] = sum over k of xq[m, k] · wq[n, k] with both operands' scales, as skinny_gemm.cu streams a
// 16-bit weight. One warp per output column n reads W's row n in 16-byte loads (16 codes), four in flight per lane,
// and the rows of the quantized input beside them (shared by every warp, from L1). E4M3 converts exactly to fp16 and
// each product of two codes is exact in fp32, so this is the arithmetic of a W8A8 tensor-core GEMM up to fp32
// summation order:
//   per-row scales:  y = (sum) · sw[n] · sx[m]
//   128 × 128 blocks: y = sum over k groups g of (sum over the group) · sw[n / 128, g] · sx[g, m], sw's grid rows
//                     ws_ld floats apart, sx's groups xs_stride floats apart (the layout fp8_quant.cu writes)
// Needs k to be a multiple of 16 and 16-byte aligned rows (the host checks); y row-major [rows, n] in the model dtype.
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

template <typename O, int M, bool BLOCKS>
__device__ void fp8_skinny_gemm(const unsigned char* __restrict__ xq, const float* __restrict__ xs, int rows, int xs_stride,
                                const unsigned char* __restrict__ wq, const float* __restrict__ ws, int ws_ld, int n, int k,
                                O* __restrict__ y) {
    celer_pdl_begin();
    constexpr int U = 4, STRIDE = 32 * 16;
    const int lane = threadIdx.x & 31;
    const long long col = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (col >= n) return;
    const unsigned char* wr = wq + col * k;
    const float* wgrid = BLOCKS ? ws + (col / FP8_BLOCK) * ws_ld : nullptr;
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; m++) acc[m] = 0.f;

    // One 16-code chunk at k offset c (inside one 128-group: 16 divides 128) into every row's sum.
    auto chunk = [&](const uint4& w16, int c) {
        float wf[16];
        decode_e4m3x16(w16, wf);
        const float group_scale = BLOCKS ? wgrid[c / FP8_BLOCK] : 1.f;
#pragma unroll
        for (int m = 0; m < M; m++) {
            if (m < rows) {
                float xf[16];
                decode_e4m3x16(*reinterpret_cast<const uint4*>(xq + (long long)m * k + c), xf);
                float d = 0.f;
#pragma unroll
                for (int i = 0; i < 16; i++) d = fmaf(wf[i], xf[i], d);
                acc[m] = BLOCKS ? fmaf(d, group_scale * xs[(long long)(c / FP8_BLOCK) * xs_stride + m], acc[m]) : acc[m] + d;
            }
        }
    };

    int c = lane * 16;
    for (; c + (U - 1) * STRIDE < k; c += U * STRIDE) {
        uint4 w16[U];
#pragma unroll
        for (int u = 0; u < U; u++) w16[u] = __ldcs(reinterpret_cast<const uint4*>(wr + c + u * STRIDE));   // read once: streaming
#pragma unroll
        for (int u = 0; u < U; u++) chunk(w16[u], c + u * STRIDE);
    }
    for (; c < k; c += STRIDE) chunk(__ldcs(reinterpret_cast<const uint4*>(wr + c)), c);

#pragma unroll
    for (int m = 0; m < M; m++) acc[m] = warp_sum(acc[m]);
    if (lane == 0) {
#pragma unroll
        for (int m = 0; m < M; m++)
            if (m < rows) y[(long long)m * n + col] = from_float<O>(BLOCKS ? acc[m] : acc[m] * ws[col] * xs[m]);
    }
}

#define FP8_SKINNY_ENTRY(S, O, M, BLOCKS, NAME)                                                                       \
    extern "C" __global__ void NAME(const unsigned char* xq, const float* xs, int rows, int xs_stride,                \
                                    const unsigned char* wq, const float* ws, int ws_ld, int n, int k, O* y) {         \
        fp8_skinny_gemm<O, M, BLOCKS>(xq, xs, rows, xs_stride, wq, ws, ws_ld, n, k, y);                              \
    }
#define FP8_SKINNY_ENTRY_POINTS(S, O)                                                                                 \
    FP8_SKINNY_ENTRY(S, O, 1, false, fp8_skinny_gemm_##S##_m1) FP8_SKINNY_ENTRY(S, O, 2, false, fp8_skinny_gemm_##S##_m2) \
    FP8_SKINNY_ENTRY(S, O, 4, false, fp8_skinny_gemm_##S##_m4)                                                        \
    FP8_SKINNY_ENTRY(S, O, 1, true, fp8_skinny_gemm_blocks_##S##_m1)                                                  \
    FP8_SKINNY_ENTRY(S, O, 2, true, fp8_skinny_gemm_blocks_##S##_m2)                                                  \
    FP8_SKINNY_ENTRY(S, O, 4, true, fp8_skinny_gemm_blocks_##S##_m4)
FP8_SKINNY_ENTRY_POINTS(f32, float)
FP8_SKINNY_ENTRY_POINTS(f16, __half)
FP8_SKINNY_ENTRY_POINTS(bf16, __nv_bfloat16)
