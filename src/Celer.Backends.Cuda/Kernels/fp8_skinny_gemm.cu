// The FP8 W8A8 linear layer of a decode step of 1 to 8 rows on tensor cores (sm_89+: mma.sync m16n8k32 on E4M3),
// where cuBLASLt's FP8 tiles read the E4M3 weights far below the copy rate: y[m, n] = sum over k of xq[m, k] · wq[n, k]
// with both operands' scales, as skinny_gemm.cu streams a 16-bit weight. The input comes quantized as cuBLASLt's does
// (fp8_quant.cu: by quantize_fp8, or by the norm or activation that wrote it): its codes xq [rows, k] and scales xs (per
// row: xs[m]; per group of 128: xs[g · xs_ld + m]). Quantizing once per layer matters: when every block quantized the rows itself, that work was
// repeated by each of a layer's hundreds of blocks and grew with the rows (gate_up at 8 rows took 99 µs against 32 at
// one), and it ran after the wait on the previous kernel, with the weight stream idle.
// The weight codes go to the MMA as stored. A block of TC_WARPS warps computes 16 output columns for up to 8 rows (W's
// 16 rows as A, the input rows as B: the MMA's 8 columns), each warp over its own run of 64-k chunks (whole 128-groups
// with block scales), summed through shared memory at the end. As in skinny_gemm.cu's tensor-core kernel the fragments
// come straight from 16-byte loads: lane (g, t) loads 16 codes of W rows g and g + 8 and of input row g at k offset 16t
// of a chunk, and MMA step s (two per chunk) takes logical k 4t..4t+3 from word 2s of those vectors and
// 16 + 4t..16 + 4t + 3 from word 2s + 1: A and B are permuted alike, so the dot products are unchanged. E4M3 products
// are exact in the fp32 accumulators, so this is the arithmetic of cuBLASLt's W8A8 GEMM up to summation order:
//   per-row scales:  y = (sum) · sw[n] · sx[m]
//   128 × 128 blocks: y = sum over k groups g of (sum over the group) · sw[n / 128, g] · sx[m, g], sw's grid rows
//                     ws_ld floats apart
// The weights stream through two register stages of FP8_TC_CHUNKS chunks: both are requested before the wait on the
// previous kernel (griddepcontrol.wait: weights are never written by a kernel, so they may be read early; meanwhile
// quantize_fp8 runs), and each stage is requested again as soon as its MMAs are issued, so a warp always has one
// stage's loads in flight while it computes the other. After the wait each warp copies its run of the input codes to
// shared memory (a row's 16 codes are read by 4 lanes of each of the block's warps' MMAs; from shared memory they cost
// no L2 round trip per chunk). Blocks of 4 or 8 warps are both compiled: more warps split k finer, which puts more of a
// small layer's bytes in flight at once; the tuner times both.
// Needs k to be a multiple of 16 and 16-byte aligned rows (the host checks); y row-major [rows, n] in the model dtype.
// Dynamic shared memory: rows × k codes (CudaBackend.Fp8SkinnyGemm sizes it).
#include "common.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 890
#define FP8_TC_CHUNKS 4   // 64-k chunks per register stage
#define FP8_BLOCK 128

#ifndef FLASH_EMULATE   // a host emulation (KernelEmulationTests) supplies its own
__device__ __forceinline__ void fp8_mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

__device__ __forceinline__ unsigned fp8_word(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

template <typename T, bool BLOCKS, int TC_WARPS>
__device__ void fp8_skinny_gemm_tc(const unsigned char* __restrict__ xq, const float* __restrict__ xs, int xs_ld, int rows,
                                   const unsigned char* __restrict__ wq, const float* __restrict__ ws, int ws_ld, int n,
                                   int k, T* __restrict__ y, unsigned char* sq) {
    constexpr int U = FP8_TC_CHUNKS;
    __shared__ float partial[TC_WARPS][4][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const long long n0 = (long long)blockIdx.x * 16;
    const int chunks = (k + 63) / 64;
    int per = (chunks + TC_WARPS - 1) / TC_WARPS;
    if (BLOCKS) per = (per + 1) & ~1;   // whole 128-groups
    const int c0 = min(chunks, warp * per), c1 = min(chunks, c0 + per);
    // Columns past n (the last block) are computed from row n - 1 and dropped.
    const unsigned char* wa = wq + min(n0 + g, (long long)n - 1) * k + 16 * t;
    const unsigned char* wb = wq + min(n0 + g + 8, (long long)n - 1) * k + 16 * t;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    // A lane's 16 codes of chunk c lie wholly inside k or wholly past it (k is a multiple of 16).
    auto in_k = [&](int c) { return 64 * c + 16 * t < k; };
    // One register stage: chunks c .. c + U - 1 of W's two rows (zeros past the warp's run or k: no load).
    auto load = [&](uint4 (&va)[U], uint4 (&vb)[U], int c) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const bool ok = c + u < c1 && in_k(c + u);
            va[u] = ok ? __ldcs(reinterpret_cast<const uint4*>(wa + 64LL * (c + u))) : zero;   // read once: streaming
            vb[u] = ok ? __ldcs(reinterpret_cast<const uint4*>(wb + 64LL * (c + u))) : zero;
        }
    };
    uint4 a0[U], b0[U], a1[U], b1[U];
    load(a0, b0, c0);
    load(a1, b1, c0 + U);
    celer_pdl_begin();
    // The warp's run of every row's codes, 16 bytes per lane at a time; only this warp reads them.
    const int pieces = 4 * (c1 - c0);
    for (int i = lane; i < rows * pieces; i += 32) {
        const int m = i / pieces, at = 64 * c0 + 16 * (i % pieces);
        if (at < k) *reinterpret_cast<uint4*>(sq + m * k + at) = *reinterpret_cast<const uint4*>(xq + (long long)m * k + at);
    }
    __syncwarp();

    float acc[4] = {0.f, 0.f, 0.f, 0.f}, part[4] = {0.f, 0.f, 0.f, 0.f};
    auto compute = [&](const uint4 (&va)[U], const uint4 (&vb)[U], int c) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int cu = c + u;
            if (cu < c1) {
                const uint4 vx = g < rows && in_k(cu) ? *reinterpret_cast<const uint4*>(sq + g * k + 64 * cu + 16 * t) : zero;
#pragma unroll
                for (int st = 0; st < 2; st++) {
                    const unsigned a[4] = {fp8_word(va[u], 2 * st), fp8_word(vb[u], 2 * st), fp8_word(va[u], 2 * st + 1), fp8_word(vb[u], 2 * st + 1)};
                    fp8_mma(BLOCKS ? part : acc, a, fp8_word(vx, 2 * st), fp8_word(vx, 2 * st + 1));
                }
                if (BLOCKS && ((cu & 1) == 1 || cu == chunks - 1)) {
                    // C fragment: element i is column n0 + g + 8 (i / 2) (one 128-row block of W), row 2t + i % 2.
                    const int group = cu / 2;
                    const float wscale = ws[(n0 / FP8_BLOCK) * ws_ld + group];
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        const int m = 2 * t + (i & 1);
                        acc[i] = fmaf(part[i], wscale * (m < rows ? xs[(long long)group * xs_ld + m] : 0.f), acc[i]);
                        part[i] = 0.f;
                    }
                }
            }
        }
    };
    for (int c = c0; c < c1; c += 2 * U) {
        compute(a0, b0, c);
        load(a0, b0, c + 2 * U);
        compute(a1, b1, c + U);
        load(a1, b1, c + 3 * U);
    }

#pragma unroll
    for (int i = 0; i < 4; i++) partial[warp][i][lane] = acc[i];
    __syncthreads();
    if (warp == 0) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float sum = 0.f;
#pragma unroll
            for (int v = 0; v < TC_WARPS; v++) sum += partial[v][i][lane];
            const int m = 2 * t + (i & 1);
            const long long col = n0 + g + 8 * (i >> 1);
            if (m < rows && col < n) y[(long long)m * n + col] = from_float<T>(BLOCKS ? sum : sum * ws[col] * xs[m]);
        }
    }
}

#define FP8_SKINNY_TC_ENTRY(S, T, BLOCKS, W, NAME)                                                                    \
    extern "C" __global__ void __launch_bounds__(W * 32) NAME(const unsigned char* xq, const float* xs, int xs_ld,   \
        int rows, const unsigned char* wq, const float* ws, int ws_ld, int n, int k, T* y) {                          \
        extern __shared__ __align__(16) unsigned char fp8_skinny_smem[];                                              \
        fp8_skinny_gemm_tc<T, BLOCKS, W>(xq, xs, xs_ld, rows, wq, ws, ws_ld, n, k, y, fp8_skinny_smem);              \
    }
// fp8_skinny_gemm_tc{4,8}[_blocks]_<dtype>: warps per block, block scales.
#define FP8_SKINNY_TC_ENTRY_POINTS(S, T)                                                                              \
    FP8_SKINNY_TC_ENTRY(S, T, false, 4, fp8_skinny_gemm_tc4_##S) FP8_SKINNY_TC_ENTRY(S, T, true, 4, fp8_skinny_gemm_tc4_blocks_##S) \
    FP8_SKINNY_TC_ENTRY(S, T, false, 8, fp8_skinny_gemm_tc8_##S) FP8_SKINNY_TC_ENTRY(S, T, true, 8, fp8_skinny_gemm_tc8_blocks_##S)
#ifndef FLASH_EMULATE   // the emulation calls fp8_skinny_gemm_tc with shared memory of its own
CELER_FOR_DTYPES(FP8_SKINNY_TC_ENTRY_POINTS)
#endif
#endif
