// y[m, n] = sum_k x[m, k] * W[n, k] for the few rows of a decode step (rows <= M), where a GEMM's tiles leave
// bandwidth unused: the step is bound by reading every weight once, so the kernel is built to stream W at the copy
// rate. One warp per output column n reads W's row n in 16-byte loads, U of them in flight per lane before any is
// used, and the rows of x beside them (every warp of the SM reads the same x, which stays in L1). Accumulation in
// fp32, one rounding to the output type (the model dtype, or fp32 for the logits), as the GEMM it replaces.
// Needs k to be a multiple of 16 bytes of T and 16-byte aligned x and W (the host checks); y row-major [rows, n].
#include "common.cuh"

template <typename T, typename O, int M>
__device__ void skinny_gemm(const T* __restrict__ x, int rows, const T* __restrict__ w, int n, int k, O* __restrict__ y) {
    constexpr int V = Vec16<T>::N, U = 4, STRIDE = 32 * V;
    const int lane = threadIdx.x & 31;
    const long long col = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (col >= n) return;
    const T* wr = w + col * k;
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; m++) acc[m] = 0.f;

    int c = lane * V;
    for (; c + (U - 1) * STRIDE < k; c += U * STRIDE) {
        float wv[U][V];
#pragma unroll
        for (int u = 0; u < U; u++) load16(wr + c + u * STRIDE, wv[u]);
#pragma unroll
        for (int m = 0; m < M; m++) {
            if (m < rows) {
#pragma unroll
                for (int u = 0; u < U; u++) {
                    float xv[V];
                    load16(x + (long long)m * k + c + u * STRIDE, xv);
#pragma unroll
                    for (int i = 0; i < V; i++) acc[m] = fmaf(wv[u][i], xv[i], acc[m]);
                }
            }
        }
    }
    for (; c < k; c += STRIDE) {
        float wv[V];
        load16(wr + c, wv);
#pragma unroll
        for (int m = 0; m < M; m++) {
            if (m < rows) {
                float xv[V];
                load16(x + (long long)m * k + c, xv);
#pragma unroll
                for (int i = 0; i < V; i++) acc[m] = fmaf(wv[i], xv[i], acc[m]);
            }
        }
    }
#pragma unroll
    for (int m = 0; m < M; m++) acc[m] = warp_sum(acc[m]);
    if (lane == 0) {
#pragma unroll
        for (int m = 0; m < M; m++)
            if (m < rows) y[(long long)m * n + col] = from_float<O>(acc[m]);
    }
}

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
#define SKINNY_GEMM_ENTRY_POINTS(S, T) SKINNY_GEMM_ENTRY(S, T, 1) SKINNY_GEMM_ENTRY(S, T, 2) SKINNY_GEMM_ENTRY(S, T, 4)
CELER_FOR_DTYPES(SKINNY_GEMM_ENTRY_POINTS)
