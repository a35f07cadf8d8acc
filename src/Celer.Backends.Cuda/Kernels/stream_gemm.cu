// y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]) for decode steps of up to 64 rows, built to stream W at the copy rate.
// A decode step reads every weight once and does little arithmetic per byte, so what matters is how many bytes each SM
// keeps in flight. cuBLAS reads the 8B shape's weights at ~85 % of copy at 32 rows; skinny_gemm.cu's tensor-core kernel
// loads fragments straight from global memory, so a warp waits on every load it uses. Here W moves through shared
// memory in a cp.async pipeline of 3 or 4 stages (the tiles of all but one in flight per block, several blocks per SM), as
// Marlin and the split-k GEMMs of decode-oriented libraries do. A stage is BN rows of W by BK of k: the k step sets how
// many contiguous bytes of each weight row one request stream reads (128 to 512).
//
// Roles are swapped against a prefill GEMM: W's rows (output columns) are the MMA's 16-row A operand and the step's
// rows are its 8-wide B operand, so a 1-row step wastes MMA lanes (free: the tensor cores are idle anyway) instead of
// tile rows of W. A block computes BN = 64 WT output columns (4 warps x WT tiles of 16) for all MR rows of the bucket
// over its share of k. Where n / BN blocks are too few to fill the card (the 8B shape's o_proj: 64), the grid's y
// dimension splits k: each block writes its fp32 partial tile, and the block that arrives last at the tile's counter sums the
// partials in split order (the result does not depend on which block is last), adds the bias, rounds once and
// resets the counter for the next launch (CUDA graphs replay these launches).
//
// Weights never change while kernels run, so a block requests its first stages of W before griddepcontrol.wait
// (stream_prefetch_weights): with programmatic dependent launch they load while the kernel before it (a norm, the
// attention) finishes, instead of every GEMM starting from an empty pipeline after it. Only x waits.
//
// Entry points stream_gemm_<T>_m<MR>_n<BN>_k<BK>[_f32] (T = f16 / bf16, MR = 16 / 32 / 64 rows, (BN, BK) one of
// stream_gemm_configs; _f32: fp32 output and bias, the logits), block = STREAM_THREADS, dynamic shared memory =
// stream_gemm_shared_bytes[config][MR / 32] (mostly above 48 KB), grid = (ceil(n / BN), splits):
//   (x [rows, k], rows <= MR, w [n, k], n, k, bias [n] or null, y [rows, n], partial, counters)
//   partial:  fp32 [splits, ceil(n / BN), MR, BN] scratch (splits > 1 only)
//   counters: int [ceil(n / BN)], zero before the first launch; every launch leaves them zero (splits > 1 only)
// k must be a multiple of BK and x, w 16-byte aligned (the host checks).
#include "common.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define STREAM_THREADS 128   // 4 warps

// Pipeline depth per k step: 3 stages of 512-byte rows keep a block within the shared memory of two blocks per SM.
#define stream_stages(BK) ((BK) >= 256 ? 3 : 4)
// A shared row is BK + 8 elements: an odd multiple of 16 bytes, so ldmatrix's 8 rows hit distinct banks.
#define stream_gemm_smem(BN, BK, MR) (stream_stages(BK) * ((BN) + (MR)) * ((BK) + 8) * 2)

#ifndef FLASH_EMULATE
extern __shared__ __align__(128) unsigned char flash_dynamic_smem[];   // the same declaration as flash_decode.cu's
#endif

// What the host reads before launching (CudaKernels.ReadInt): the (BN, BK) configurations compiled, and each one's
// dynamic shared memory per row bucket 16, 32, 64.
#define STREAM_CONFIGS(M) M(64, 64) M(128, 64) M(64, 128) M(64, 256)
#define STREAM_CONFIG_PAIR(BN, BK) BN, BK,
#define STREAM_CONFIG_SMEM(BN, BK) stream_gemm_smem(BN, BK, 16), stream_gemm_smem(BN, BK, 32), stream_gemm_smem(BN, BK, 64),
extern "C" __device__ const int stream_gemm_configs[] = {STREAM_CONFIGS(STREAM_CONFIG_PAIR)};
extern "C" __device__ const int stream_gemm_shared_bytes[] = {STREAM_CONFIGS(STREAM_CONFIG_SMEM)};

// The k steps [c0, c0 + steps) of this block's split.
template <int BK> __device__ __forceinline__ void stream_split(int k, int& c0, int& steps) {
    const int chunks = k / BK, per = (chunks + gridDim.y - 1) / gridDim.y;
    c0 = min(chunks, (int)blockIdx.y * per);
    steps = min(chunks, c0 + per) - c0;
}

// This thread's cp.async share of W's tile at k step c0 + step into one stage; rows past n are zero-filled unread.
template <typename T, int BN, int BK>
__device__ __forceinline__ void stream_load_w(const T* __restrict__ w, int n, int k, int c0, int step, T* stage) {
    constexpr int CPR = BK / 8;
#pragma unroll
    for (int it = 0; it < BN * CPR / STREAM_THREADS; it++) {
        const int i = threadIdx.x + it * STREAM_THREADS, r = i / CPR, c = i % CPR, row = blockIdx.x * BN + r;
        flash_cp_async16(stage + r * (BK + 8) + c * 8, w + (long long)(row < n ? row : 0) * k + (long long)(c0 + step) * BK + c * 8,
                         row < n ? 16 : 0);
    }
}

// The first stages of W but one, before the wait for the previous kernel: W is only ever read, so these loads cannot
// race with it. They join the first commit group (stream_gemm commits after x's first stage).
template <typename T, int BN, int BK>
__device__ __forceinline__ void stream_prefetch_weights(const T* __restrict__ w, int n, int k, unsigned char* smem) {
    int c0, steps;
    stream_split<BK>(k, c0, steps);
#pragma unroll
    for (int s = 0; s < stream_stages(BK) - 1; s++)
        if (s < steps) stream_load_w<T, BN, BK>(w, n, k, c0, s, reinterpret_cast<T*>(smem) + s * BN * (BK + 8));
}

template <typename T, typename O, int MR, int WT, int BK>
__device__ void stream_gemm(const T* __restrict__ x, int rows, const T* __restrict__ w, int n, int k, const O* __restrict__ bias,
                            O* __restrict__ y, float* __restrict__ partial, int* __restrict__ counters, unsigned char* smem) {
    stream_prefetch_weights<T, 64 * WT, BK>(w, n, k, smem);
    celer_pdl_begin();
    constexpr int BN = 64 * WT, STAGES = stream_stages(BK), ROW = BK + 8, NT = MR / 8, CPR = BK / 8;
    constexpr int X_IT = (MR * CPR + STREAM_THREADS - 1) / STREAM_THREADS;
    static_assert(MR % 16 == 0, "rows per bucket");
    T* sW = reinterpret_cast<T*>(smem);                                   // [STAGES][BN][ROW]
    T* sX = sW + STAGES * BN * ROW;                                       // [STAGES][MR][ROW]
    __shared__ int last;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int tile = blockIdx.x, n0 = tile * BN, splits = gridDim.y, z = blockIdx.y;
    int c0, steps;
    stream_split<BK>(k, c0, steps);

    // This thread's rows of x and chunk column, fixed over the k loop; rows past the step's are zero-filled unread.
    const T* x_src[X_IT];
    int x_dst[X_IT], x_bytes[X_IT];
#pragma unroll
    for (int it = 0; it < X_IT; it++) {
        const int i = tid + it * STREAM_THREADS, r = i / CPR, c = i % CPR;
        x_bytes[it] = r < rows ? 16 : 0;
        x_src[it] = x + (long long)(r < rows ? r : 0) * k + (long long)c0 * BK + c * 8;
        x_dst[it] = i < MR * CPR ? r * ROW + c * 8 : -1;
    }
    auto load_x = [&](int stage, int step) {
#pragma unroll
        for (int it = 0; it < X_IT; it++)
            if (x_dst[it] >= 0) flash_cp_async16(sX + stage * MR * ROW + x_dst[it], x_src[it] + step * BK, x_bytes[it]);
    };

    float acc[WT][NT][4];
#pragma unroll
    for (int i = 0; i < WT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < steps) load_x(s, s);
        flash_cp_async_commit();   // empty groups too: the wait below counts groups
    }
    for (int step = 0; step < steps; step++) {
        flash_cp_async_wait<STAGES - 2>();
        __syncthreads();   // stage `step` is in; every warp is done with the stage the next load overwrites
        const int next = step + STAGES - 1;
        if (next < steps) {
            stream_load_w<T, BN, BK>(w, n, k, c0, next, sW + (next % STAGES) * BN * ROW);
            load_x(next % STAGES, next);
        }
        flash_cp_async_commit();
        const T* tW = sW + (step % STAGES) * BN * ROW;
        const T* tX = sX + (step % STAGES) * MR * ROW;
#pragma unroll
        for (int kk = 0; kk < BK / 16; kk++) {
            unsigned a[WT][4];
#pragma unroll
            for (int i = 0; i < WT; i++)
                flash_ldsm_x4(a[i], tW + ((warp * WT + i) * 16 + (lane & 15)) * ROW + (2 * kk + (lane >> 4)) * 8);
#pragma unroll
            for (int j = 0; j < NT / 2; j++) {
                unsigned b[4];
                flash_ldsm_x4(b, tX + (16 * j + (lane & 7) + ((lane >> 4) << 3)) * ROW + (2 * kk + ((lane >> 3) & 1)) * 8);
#pragma unroll
                for (int i = 0; i < WT; i++) {
                    flash_mma<T>(acc[i][2 * j], a[i], b[0], b[1]);
                    flash_mma<T>(acc[i][2 * j + 1], a[i], b[2], b[3]);
                }
            }
        }
    }
    flash_cp_async_wait_all();
    // C fragment: element e of lane (g, t) in W tile i and B tile j is output column n0 + 16 (WT warp + i) + g + 8 (e / 2)
    // (A's row) and step row 8j + 2t + e % 2 (B's column).
    if (splits == 1) {
#pragma unroll
        for (int i = 0; i < WT; i++)
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int m = 8 * j + 2 * t + (e & 1), col = n0 + (warp * WT + i) * 16 + g + 8 * (e >> 1);
                    if (m < rows && col < n) y[(long long)m * n + col] = from_float<O>(acc[i][j][e] + (bias ? to_float(bias[col]) : 0.f));
                }
        return;
    }

    float* mine = partial + ((long long)z * gridDim.x + tile) * MR * BN;
#pragma unroll
    for (int i = 0; i < WT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) mine[(8 * j + 2 * t + (e & 1)) * BN + (warp * WT + i) * 16 + g + 8 * (e >> 1)] = acc[i][j][e];
    __threadfence();   // the partial is visible device-wide before this block is counted
    __syncthreads();
    if (tid == 0) last = atomicAdd(counters + tile, 1) == splits - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    const float* all = partial + (long long)tile * MR * BN;
    const long long split_stride = (long long)gridDim.x * MR * BN;
    for (int i = tid; i < rows * BN; i += STREAM_THREADS) {
        const int m = i / BN, c = i % BN, col = n0 + c;
        if (col >= n) continue;
        float sum = 0.f;
        for (int s = 0; s < splits; s++) sum += __ldcg(all + s * split_stride + m * BN + c);   // from L2: other SMs wrote it
        y[(long long)m * n + col] = from_float<O>(sum + (bias ? to_float(bias[col]) : 0.f));
    }
    if (tid == 0) counters[tile] = 0;
}

#define STREAM_GEMM_ENTRY(S, T, MR, BN, BK)                                                                           \
    extern "C" __global__ void __launch_bounds__(STREAM_THREADS) stream_gemm_##S##_m##MR##_n##BN##_k##BK(             \
        const T* x, int rows, const T* w, int n, int k, const T* bias, T* y, float* partial, int* counters) {         \
        stream_gemm<T, T, MR, BN / 64, BK>(x, rows, w, n, k, bias, y, partial, counters, flash_dynamic_smem);         \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(STREAM_THREADS) stream_gemm_##S##_m##MR##_n##BN##_k##BK##_f32(       \
        const T* x, int rows, const T* w, int n, int k, const float* bias, float* y, float* partial, int* counters) { \
        stream_gemm<T, float, MR, BN / 64, BK>(x, rows, w, n, k, bias, y, partial, counters, flash_dynamic_smem);     \
    }
#define STREAM_GEMM_ROW_BUCKETS(S, T, BN, BK) STREAM_GEMM_ENTRY(S, T, 16, BN, BK) STREAM_GEMM_ENTRY(S, T, 32, BN, BK) STREAM_GEMM_ENTRY(S, T, 64, BN, BK)
#define STREAM_GEMM_BF16(BN, BK) STREAM_GEMM_ROW_BUCKETS(bf16, __nv_bfloat16, BN, BK)
#define STREAM_GEMM_F16(BN, BK) STREAM_GEMM_ROW_BUCKETS(f16, __half, BN, BK)
STREAM_CONFIGS(STREAM_GEMM_F16)
STREAM_CONFIGS(STREAM_GEMM_BF16)
#endif
