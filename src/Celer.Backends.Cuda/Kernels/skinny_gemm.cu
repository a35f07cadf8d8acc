// y[m, n] = sum_k x[m, k] * W[n, k] for the few rows of a decode step (rows <= M), where a GEMM's tiles leave
// bandwidth unused: the step is bound by reading every weight once, so the kernel is built to stream W at the copy
// rate. One warp per output column n reads W's row n in 16-byte loads, U of them in flight per lane before any is
// used, and the rows of x beside them (every warp of the SM reads the same x, which stays in L1). Accumulation in
// fp32, one rounding to the output type (the model dtype, or fp32 for the logits), as the GEMM it replaces.
// silu and gelu_tanh come from elementwise.cu, flash_mma from flash_attention.cu (earlier in the translation unit).
// Needs k to be a multiple of 16 bytes of T and 16-byte aligned x and W (the host checks); y row-major [rows, n].
#include "common.cuh"

// The warp's dot products of its R weight rows wr[r] with the (up to M) rows of x: acc[r][m], summed over the warp
// (every lane gets the sums). Each row's sum is accumulated in the same order whatever R is. The first weight loads
// are issued before the wait on the previous kernel (celer_pdl_begin, called here): weights are never written by a
// kernel, so they stream while the kernel before this one (a norm, an activation) finishes.
template <typename T, int M, int R>
__device__ __forceinline__ void skinny_dots(const T* __restrict__ x, int rows, const T* const (&wr)[R], int k, float (&acc)[R][M]) {
    constexpr int V = Vec16<T>::N, U = 4, STRIDE = 32 * V;
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int m = 0; m < M; m++) acc[r][m] = 0.f;

    int c = lane * V;
    float wv[R][U][V];
    auto load = [&]() {
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int u = 0; u < U; u++) load16(wr[r] + c + u * STRIDE, wv[r][u]);
    };
    bool full = c + (U - 1) * STRIDE < k;
    if (full) load();
    celer_pdl_begin();
    while (full) {
#pragma unroll
        for (int m = 0; m < M; m++) {
            if (m < rows) {
#pragma unroll
                for (int u = 0; u < U; u++) {
                    float xv[V];
                    load16(x + (long long)m * k + c + u * STRIDE, xv);
#pragma unroll
                    for (int r = 0; r < R; r++)
#pragma unroll
                        for (int i = 0; i < V; i++) acc[r][m] = fmaf(wv[r][u][i], xv[i], acc[r][m]);
                }
            }
        }
        c += U * STRIDE;
        full = c + (U - 1) * STRIDE < k;
        if (full) load();
    }
    for (; c < k; c += STRIDE) {
        float wt[R][V];
#pragma unroll
        for (int r = 0; r < R; r++) load16(wr[r] + c, wt[r]);
#pragma unroll
        for (int m = 0; m < M; m++) {
            if (m < rows) {
                float xv[V];
                load16(x + (long long)m * k + c, xv);
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int i = 0; i < V; i++) acc[r][m] = fmaf(wt[r][i], xv[i], acc[r][m]);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int m = 0; m < M; m++) acc[r][m] = warp_sum(acc[r][m]);
}

template <typename T, typename O, int M>
__device__ void skinny_gemm(const T* __restrict__ x, int rows, const T* __restrict__ w, int n, int k, O* __restrict__ y) {
    const int lane = threadIdx.x & 31;
    const long long col = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (col >= n) return;   // before any global access: no wait owed (skinny_dots waits)
    const T* const wr[1] = {w + col * k};
    float acc[1][M];
    skinny_dots<T, M, 1>(x, rows, wr, k, acc);
    if (lane == 0) {
#pragma unroll
        for (int m = 0; m < M; m++)
            if (m < rows) y[(long long)m * n + col] = from_float<O>(acc[0][m]);
    }
}

// The MLP's gate/up projection and its activation in one pass: y[m, j] = act(gate) * up with gate = x[m] . W[j] and
// up = x[m] . W[d + j] (w stacks gate over up, [2d, k]), where the unfused step writes gate_up and reads it back in
// silu_mul / gelu_tanh_mul (one launch per layer more, which is latency at a few rows). One warp per output column j
// streams both of its weight rows; gate and up are rounded to T as the GEMM's output would be, then the activation
// and the product round as elementwise.cu's kernels do, so the result equals the unfused pair's bit for bit.
template <typename T, int M, bool GELU>
__device__ void skinny_gemm_gated(const T* __restrict__ x, int rows, const T* __restrict__ w, int d, int k, T* __restrict__ y) {
    const int lane = threadIdx.x & 31;
    const long long col = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (col >= d) return;   // before any global access: no wait owed (skinny_dots waits)
    const T* const wr[2] = {w + col * k, w + (d + col) * k};
    float acc[2][M];
    skinny_dots<T, M, 2>(x, rows, wr, k, acc);
    if (lane == 0) {
#pragma unroll
        for (int m = 0; m < M; m++) {
            if (m < rows) {
                const float g = round_to<T>(acc[0][m]), u = round_to<T>(acc[1][m]);
                y[(long long)m * d + col] = from_float<T>(round_to<T>(GELU ? gelu_tanh(g) : silu(g)) * u);
            }
        }
    }
}

// The tensor-core variant for 5-64 rows (sm_80+, 16-bit models): a block of SKINNY_TC_WARPS warps computes 16 output
// columns for all M rows with mma.sync m16n8k16 (W's 16 rows as A, x's rows as B, 8 per tile), each warp over its own
// share of k, summed through shared memory at the end. The fragments come straight from 16-byte global loads: each
// lane loads 8 consecutive k of W rows g and g + 8 and of x row g (g = lane / 4, t = lane % 4, at k offset 8t of a
// 32-k chunk), and the chunk's k order is permuted so that these are exactly the lane's fragment elements: MMA step
// s (of two per chunk) takes logical k 2t, 2t + 1 from 32-bit word 2s of the lane's vectors and 2t + 8, 2t + 9 from
// word 2s + 1. A and B are permuted alike, so the dot products are unchanged, and no shared-memory staging or
// ldmatrix is needed. Weights are loaded with the streaming hint (read once), x stays in L1/L2. k must be a
// multiple of 32.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define SKINNY_TC_WARPS 4

__device__ __forceinline__ unsigned word(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

template <typename T, typename O, int M>
__device__ void skinny_gemm_tc(const T* __restrict__ x, int rows, const T* __restrict__ w, int n, int k, O* __restrict__ y) {
    constexpr int TILES = M / 8, U = 4;   // row tiles of 8; 32-k chunks per register stage
    __shared__ float partial[SKINNY_TC_WARPS][TILES][4][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const long long n0 = (long long)blockIdx.x * 16;
    const int chunks = k / 32, per = (chunks + SKINNY_TC_WARPS - 1) / SKINNY_TC_WARPS;
    const int c0 = min(chunks, warp * per), c1 = min(chunks, c0 + per);
    // Columns past n (the last block) are computed from row n - 1 and dropped.
    const T* wa = w + min(n0 + g, (long long)n - 1) * k + 8 * t;
    const T* wb = w + min(n0 + g + 8, (long long)n - 1) * k + 8 * t;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    // One register stage: chunks c .. c + U - 1 of W's two rows (zeros past the warp's run: no load). Two stages are in
    // flight: both requested before the wait (weights are never written by a kernel), each requested again as soon as
    // its MMAs are issued, so the warp computes one while the other loads (with one stage, every round trip to memory
    // left it idle).
    auto load = [&](uint4 (&va)[U], uint4 (&vb)[U], int c) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const bool ok = c + u < c1;
            va[u] = ok ? __ldcs(reinterpret_cast<const uint4*>(wa + (long long)(c + u) * 32)) : zero;
            vb[u] = ok ? __ldcs(reinterpret_cast<const uint4*>(wb + (long long)(c + u) * 32)) : zero;
        }
    };
    uint4 a0[U], b0[U], a1[U], b1[U];
    load(a0, b0, c0);
    load(a1, b1, c0 + U);
    celer_pdl_begin();
    float acc[TILES][4];
#pragma unroll
    for (int j = 0; j < TILES; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;

    auto compute = [&](const uint4 (&va)[U], const uint4 (&vb)[U], int c) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (c + u < c1) {
#pragma unroll
                for (int j = 0; j < TILES; j++) {
                    const int m = j * 8 + g;
                    const uint4 vx = m < rows ? *reinterpret_cast<const uint4*>(x + (long long)m * k + (c + u) * 32 + 8 * t) : zero;
#pragma unroll
                    for (int s = 0; s < 2; s++) {
                        const unsigned a[4] = {word(va[u], 2 * s), word(vb[u], 2 * s), word(va[u], 2 * s + 1), word(vb[u], 2 * s + 1)};
                        flash_mma<T>(acc[j], a, word(vx, 2 * s), word(vx, 2 * s + 1));
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
    for (int j = 0; j < TILES; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) partial[warp][j][i][lane] = acc[j][i];
    __syncthreads();
    if (warp == 0) {
#pragma unroll
        for (int j = 0; j < TILES; j++) {
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float sum = 0.f;
#pragma unroll
                for (int v = 0; v < SKINNY_TC_WARPS; v++) sum += partial[v][j][i][lane];
                // C fragment: element i of lane (g, t) is row (n) g + 8 * (i / 2), column (m) 2t + i % 2.
                const int m = j * 8 + 2 * t + (i & 1);
                const long long col = n0 + g + 8 * (i >> 1);
                if (m < rows && col < n) y[(long long)m * n + col] = from_float<O>(sum);
            }
        }
    }
}

#define SKINNY_GEMM_TC_ENTRY(S, T, M)                                                                               \
    extern "C" __global__ void __launch_bounds__(SKINNY_TC_WARPS * 32) skinny_gemm_tc_##S##_m##M(                    \
        const T* x, int rows, const T* w, int n, int k, T* y) {                                                      \
        skinny_gemm_tc<T, T, M>(x, rows, w, n, k, y);                                                                \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(SKINNY_TC_WARPS * 32) skinny_gemm_tc_##S##_m##M##_f32(              \
        const T* x, int rows, const T* w, int n, int k, float* y) {                                                  \
        skinny_gemm_tc<T, float, M>(x, rows, w, n, k, y);                                                            \
    }
#define SKINNY_GEMM_TC_ENTRY_POINTS(S, T)                                                                           \
    SKINNY_GEMM_TC_ENTRY(S, T, 8) SKINNY_GEMM_TC_ENTRY(S, T, 16) SKINNY_GEMM_TC_ENTRY(S, T, 32) SKINNY_GEMM_TC_ENTRY(S, T, 64)
SKINNY_GEMM_TC_ENTRY_POINTS(f16, __half)
SKINNY_GEMM_TC_ENTRY_POINTS(bf16, __nv_bfloat16)
#endif

// skinny_gemm_<dtype>_m<M> writes the model dtype; skinny_gemm_<dtype>_m<M>_f32 writes fp32 (the logits).
#define SKINNY_GEMM_ENTRY(S, T, M)                                                                                  \
    extern "C" __global__ void __launch_bounds__(256) skinny_gemm_##S##_m##M(const T* x, int rows, const T* w, int n,  \
                                                                           int k, T* y) {                          \
        skinny_gemm<T, T, M>(x, rows, w, n, k, y);                                                                 \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(256) skinny_gemm_##S##_m##M##_f32(const T* x, int rows, const T* w,   \
                                                                                 int n, int k, float* y) {         \
        skinny_gemm<T, float, M>(x, rows, w, n, k, y);                                                             \
    }
// skinny_gemm_gated_<dtype>_m<M>: SiLU; skinny_gemm_gated_gelu_<dtype>_m<M>: gelu(tanh) (Gemma's GeGLU).
#define SKINNY_GEMM_GATED_ENTRY(S, T, M)                                                                            \
    extern "C" __global__ void __launch_bounds__(256) skinny_gemm_gated_##S##_m##M(const T* x, int rows, const T* w,   \
                                                                                 int d, int k, T* y) {             \
        skinny_gemm_gated<T, M, false>(x, rows, w, d, k, y);                                                       \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(256) skinny_gemm_gated_gelu_##S##_m##M(const T* x, int rows,         \
                                                                                      const T* w, int d, int k, T* y) { \
        skinny_gemm_gated<T, M, true>(x, rows, w, d, k, y);                                                        \
    }
#define SKINNY_GEMM_ENTRY_POINTS(S, T)                                                                              \
    SKINNY_GEMM_ENTRY(S, T, 1) SKINNY_GEMM_ENTRY(S, T, 2) SKINNY_GEMM_ENTRY(S, T, 4)                                \
    SKINNY_GEMM_GATED_ENTRY(S, T, 1) SKINNY_GEMM_GATED_ENTRY(S, T, 2) SKINNY_GEMM_GATED_ENTRY(S, T, 4)
CELER_FOR_DTYPES(SKINNY_GEMM_ENTRY_POINTS)
