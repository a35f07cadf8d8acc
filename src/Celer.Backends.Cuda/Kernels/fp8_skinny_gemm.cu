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
// Dynamic shared memory: M rows of k codes, then M · ceil(k / 128) scales (CudaBackend.Fp8SkinnyGemm sizes it).
// fp8_quant.cu's scale and code helpers come before this file in the translation unit.
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
// block (THREADS threads), each thread 16 consecutive values at a time; ends with a barrier. The rows go together: each
// pass issues every row's loads of a chunk before using them and the per-token maxima share one round of barriers, so
// the prologue costs about the same latency at four rows as at one (it runs while the first weight loads are in flight).
template <typename T, int M, int THREADS>
__device__ __forceinline__ void fp8_quantize_rows(const T* __restrict__ x, int rows, int k, int mode, float static_scale,
                                                  float min_scale, unsigned char* sq, float* ss) {
    __shared__ float warp_max[M][THREADS / 32];
    const int tid = threadIdx.x;
    const int chunks = k / 16, groups = (k + FP8_BLOCK - 1) / FP8_BLOCK;
    // The codes of 16 values at c with scale s (quantize_fp8's fp8_code).
    auto store_codes = [&](const float (&v)[16], float s, unsigned char* dst) {
        uint4 packed;
        unsigned char* b = reinterpret_cast<unsigned char*>(&packed);
#pragma unroll
        for (int i = 0; i < 16; i++) b[i] = fp8_code(v[i], s).__x;
        *reinterpret_cast<uint4*>(dst) = packed;
    };
    auto load_chunk = [&](int m, int c, float (&v)[16]) {
        constexpr int V = Vec16<T>::N;
        const T* row = x + (long long)m * k;
#pragma unroll
        for (int h = 0; h < 16 / V; h++) {
            float part[V];
            load16(row + c + h * V, part);
#pragma unroll
            for (int i = 0; i < V; i++) v[h * V + i] = part[i];
        }
    };
    if (mode == 2) {
        // A group of 128 is 8 consecutive chunks: 8 consecutive lanes of one warp, whose absmax they share.
        for (int j0 = 0; j0 < chunks; j0 += THREADS) {
            const int j = j0 + tid;
#pragma unroll
            for (int m = 0; m < M; m++) {
                if (m >= rows) break;
                float v[16], amax = 0.f;
                if (j < chunks) {
                    load_chunk(m, j * 16, v);
#pragma unroll
                    for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(v[i]));
                }
#pragma unroll
                for (int offset = 1; offset < 8; offset <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
                const float s = fp8_group_scale(amax, min_scale);
                if (j < chunks) {
                    store_codes(v, s, sq + (long long)m * k + j * 16);
                    if ((j & 7) == 0) ss[m * groups + j / 8] = s;
                }
            }
        }
        __syncthreads();
        return;
    }

    float s[M];
#pragma unroll
    for (int m = 0; m < M; m++) s[m] = static_scale;
    if (mode == 0) {
        float amax[M];
#pragma unroll
        for (int m = 0; m < M; m++) amax[m] = 0.f;
        for (int j = tid; j < chunks; j += THREADS) {
#pragma unroll
            for (int m = 0; m < M; m++) {
                if (m < rows) {
                    float v[16];
                    load_chunk(m, j * 16, v);
#pragma unroll
                    for (int i = 0; i < 16; i++) amax[m] = fmaxf(amax[m], fabsf(v[i]));
                }
            }
        }
        // One shared array per row: no barrier between the rows' reductions.
#pragma unroll
        for (int m = 0; m < M; m++)
            if (m < rows) s[m] = fp8_token_scale(block_max<THREADS>(amax[m], warp_max[m]), min_scale);
    }
    for (int j = tid; j < chunks; j += THREADS) {
#pragma unroll
        for (int m = 0; m < M; m++) {
            if (m < rows) {
                float v[16];
                load_chunk(m, j * 16, v);
                store_codes(v, s[m], sq + (long long)m * k + j * 16);
            }
        }
    }
    if (tid == 0) {
#pragma unroll
        for (int m = 0; m < M; m++)
            if (m < rows) ss[m * groups] = s[m];
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
    fp8_quantize_rows<T, M, 256>(x, rows, k, mode, static_scale, min_scale, sq, ss);
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

// The tensor-core variant (sm_89+: mma.sync m16n8k32 on E4M3): the weight codes go to the MMA as stored, where the
// CUDA-core kernel above converts both operands' codes to fp32 one by one (about five instructions per code, which at
// one row leaves the kernel short of the copy rate). A block of TC_WARPS warps computes 16 output columns for up to 8
// rows (W's 16 rows as A, the quantized rows as B: the MMA's 8 columns), each warp over its own run of 64-k chunks
// (whole 128-groups with block scales), summed through shared memory at the end. As in skinny_gemm.cu's tensor-core
// kernel the fragments come straight from 16-byte loads: lane (g, t) loads 16 codes of W rows g and g + 8 and of input
// row g at k offset 16t of a chunk, and MMA step s (two per chunk) takes logical k 4t..4t+3 from word 2s of those
// vectors and 16 + 4t..16 + 4t + 3 from word 2s + 1: A and B are permuted alike, so the dot products are unchanged.
// Block scales: each 128-group is summed on its own and added times its weight and input scales; per-row scales
// multiply the sum.
// The weights stream through two register stages of FP8_TC_CHUNKS chunks: both are requested before the wait on the
// previous kernel and the input quantization, and each stage is requested again as soon as its MMAs are issued, so a
// warp always has one stage's loads in flight while it computes the other (with one stage, every round trip to memory
// left the warp idle: a k = 4096 layer was four of them back to back). 4 or 8 warps per block are both compiled: more
// warps split k finer, which puts more of a small layer's bytes in flight at once; the tuner times both.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 890
#define FP8_TC_CHUNKS 4

__device__ __forceinline__ void fp8_mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned fp8_word(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

template <typename T, int M, bool BLOCKS, int TC_WARPS>
__device__ void fp8_skinny_gemm_tc(const T* __restrict__ x, int rows, int mode, float static_scale, float min_scale,
                                   const unsigned char* __restrict__ wq, const float* __restrict__ ws, int ws_ld, int n,
                                   int k, T* __restrict__ y, unsigned char* smem) {
    constexpr int U = FP8_TC_CHUNKS;
    __shared__ float partial[TC_WARPS][4][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const long long n0 = (long long)blockIdx.x * 16;
    const int chunks = (k + 63) / 64, groups = (k + FP8_BLOCK - 1) / FP8_BLOCK;
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
    load(a0, b0, c0);   // weights before the wait, as the CUDA-core kernel
    load(a1, b1, c0 + U);
    celer_pdl_begin();
    unsigned char* sq = smem;
    float* ss = reinterpret_cast<float*>(smem + M * k);
    fp8_quantize_rows<T, M, TC_WARPS * 32>(x, rows, k, mode, static_scale, min_scale, sq, ss);

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
                        acc[i] = fmaf(part[i], wscale * (m < rows ? ss[m * groups + group] : 0.f), acc[i]);
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
            if (m < rows && col < n) y[(long long)m * n + col] = from_float<T>(BLOCKS ? sum : sum * ws[col] * ss[m * groups]);
        }
    }
}

#define FP8_SKINNY_TC_ENTRY(S, T, M, BLOCKS, W, NAME)                                                                 \
    extern "C" __global__ void __launch_bounds__(W * 32) NAME(const T* x, int rows, int mode, float static_scale,    \
        float min_scale, const unsigned char* wq, const float* ws, int ws_ld, int n, int k, T* y) {                   \
        extern __shared__ __align__(16) unsigned char fp8_skinny_smem[];                                              \
        fp8_skinny_gemm_tc<T, M, BLOCKS, W>(x, rows, mode, static_scale, min_scale, wq, ws, ws_ld, n, k, y, fp8_skinny_smem); \
    }
// fp8_skinny_gemm_tc{4,8}[_blocks]_<dtype>_m{1,2,4,8}: warps per block, block scales, rows.
#define FP8_SKINNY_TC_WARPS(S, T, W)                                                                                  \
    FP8_SKINNY_TC_ENTRY(S, T, 1, false, W, fp8_skinny_gemm_tc##W##_##S##_m1)                                          \
    FP8_SKINNY_TC_ENTRY(S, T, 2, false, W, fp8_skinny_gemm_tc##W##_##S##_m2)                                          \
    FP8_SKINNY_TC_ENTRY(S, T, 4, false, W, fp8_skinny_gemm_tc##W##_##S##_m4)                                          \
    FP8_SKINNY_TC_ENTRY(S, T, 8, false, W, fp8_skinny_gemm_tc##W##_##S##_m8)                                          \
    FP8_SKINNY_TC_ENTRY(S, T, 1, true, W, fp8_skinny_gemm_tc##W##_blocks_##S##_m1)                                    \
    FP8_SKINNY_TC_ENTRY(S, T, 2, true, W, fp8_skinny_gemm_tc##W##_blocks_##S##_m2)                                    \
    FP8_SKINNY_TC_ENTRY(S, T, 4, true, W, fp8_skinny_gemm_tc##W##_blocks_##S##_m4)                                    \
    FP8_SKINNY_TC_ENTRY(S, T, 8, true, W, fp8_skinny_gemm_tc##W##_blocks_##S##_m8)
#define FP8_SKINNY_TC_ENTRY_POINTS(S, T) FP8_SKINNY_TC_WARPS(S, T, 4) FP8_SKINNY_TC_WARPS(S, T, 8)
CELER_FOR_DTYPES(FP8_SKINNY_TC_ENTRY_POINTS)
#endif
