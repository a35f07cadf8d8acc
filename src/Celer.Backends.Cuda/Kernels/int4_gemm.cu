// 4-bit weight-only (W4A16) layers: GPTQ, AWQ and compressed-tensors W4A16 weights repacked at load into one layout:
//   w[n, k / 8] uint32, row n holding output column n's codes, code of input column c at bits 4·(c % 8) of word c / 8;
//   sz[n, groups] float2 (scale, zero point), group of column c = c / group_size (act-order checkpoints have their columns
//   sorted by group at load, and the layer's input gathered into the same order: gather_columns);
//   weight[n, c] = (code − zero) · scale, exact in fp32.
// int4_gemv: decode steps of up to 8 rows, one warp per output column streaming its packed row (32 codes per 16-byte
// load) and every row of x beside it: a word's 8 codes share one group (group sizes are multiples of 8), so a lane sums
// (code − zero) · x over the word and scales the sum once. Larger steps dequantize the weight into the model dtype
// (int4_dequantize) for cuBLASLt's GEMM.
#include "common.cuh"

// The 8 values of x's row starting at column c (a multiple of 8, rows 16-byte aligned: k is a multiple of 8).
template <typename T> __device__ __forceinline__ void load8(const T* p, float (&v)[8]) {
    if constexpr (sizeof(T) == 4) {
        const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
        v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
    } else {
        load16<T>(p, v);
    }
}

template <typename T, typename O, int M>
__device__ void int4_gemv(const T* __restrict__ x, int rows, const unsigned* __restrict__ w, const float2* __restrict__ sz,
                          int groups, int group_size, int n, int k, O* __restrict__ y) {
    celer_pdl_begin();
    const int lane = threadIdx.x & 31;
    const long long col = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (col >= n) return;
    const int words = k >> 3;
    const unsigned* wr = w + col * words;
    const float2* szr = sz + col * groups;
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; m++) acc[m] = 0.f;

    auto word_into = [&](unsigned word, int c) {
        const float2 s = szr[c / group_size];
        float wq[8];
#pragma unroll
        for (int i = 0; i < 8; i++) wq[i] = (float)((word >> (4 * i)) & 15u) - s.y;
#pragma unroll
        for (int m = 0; m < M; m++) {
            if (m < rows) {
                float xv[8];
                load8<T>(x + (long long)m * k + c, xv);
                float d = 0.f;
#pragma unroll
                for (int i = 0; i < 8; i++) d = fmaf(wq[i], xv[i], d);
                acc[m] = fmaf(d, s.x, acc[m]);
            }
        }
    };

    if ((words & 3) == 0) {
        // 16-byte loads of four words, two in flight per lane; rows are 16-byte aligned.
        int q = lane * 4;
        for (; q + 128 < words; q += 256) {
            const uint4 a = __ldcs(reinterpret_cast<const uint4*>(wr + q)), b = __ldcs(reinterpret_cast<const uint4*>(wr + q + 128));
            word_into(a.x, q * 8); word_into(a.y, q * 8 + 8); word_into(a.z, q * 8 + 16); word_into(a.w, q * 8 + 24);
            word_into(b.x, (q + 128) * 8); word_into(b.y, (q + 128) * 8 + 8); word_into(b.z, (q + 128) * 8 + 16); word_into(b.w, (q + 128) * 8 + 24);
        }
        for (; q < words; q += 128) {
            const uint4 a = __ldcs(reinterpret_cast<const uint4*>(wr + q));
            word_into(a.x, q * 8); word_into(a.y, q * 8 + 8); word_into(a.z, q * 8 + 16); word_into(a.w, q * 8 + 24);
        }
    } else {
        for (int q = lane; q < words; q += 32) word_into(__ldcs(wr + q), q * 8);
    }

#pragma unroll
    for (int m = 0; m < M; m++) acc[m] = warp_sum(acc[m]);
    if (lane == 0) {
#pragma unroll
        for (int m = 0; m < M; m++)
            if (m < rows) y[(long long)m * n + col] = from_float<O>(acc[m]);
    }
}

// out[n, k] in T: one thread per packed word (8 values).
template <typename T>
__device__ void int4_dequantize(const unsigned* __restrict__ w, const float2* __restrict__ sz, int groups, int group_size,
                                int n, int k, T* __restrict__ out) {
    celer_pdl_begin();
    const int words = k >> 3;
    const long long total = (long long)n * words;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        const long long row = i / words;
        const int c = (int)(i - row * words) * 8;
        const float2 s = sz[row * groups + c / group_size];
        const unsigned word = w[i];
        float v[8];
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = ((float)((word >> (4 * j)) & 15u) - s.y) * s.x;
        T* o = out + row * k + c;
        if constexpr (sizeof(T) == 4) {
#pragma unroll
            for (int j = 0; j < 8; j++) o[j] = from_float<T>(v[j]);
        } else {
            store16<T>(o, v);
        }
    }
}

// out[r, j] = x[r, order[j]]: an act-order layer's input in the order its packed columns were sorted into.
template <typename T>
__device__ void gather_columns(const T* __restrict__ x, const int* __restrict__ order, int k, T* __restrict__ out) {
    celer_pdl_begin();
    const long long r = blockIdx.y;
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < k; j += gridDim.x * blockDim.x) out[r * k + j] = x[r * k + order[j]];
}

#define INT4_GEMV_ENTRY(S, T, O, OS, M)                                                                                \
    extern "C" __global__ void int4_gemv_##S##_##OS##_m##M(const T* x, int rows, const unsigned* w, const float2* sz,   \
                                                         int groups, int group_size, int n, int k, O* y) {             \
        int4_gemv<T, O, M>(x, rows, w, sz, groups, group_size, n, k, y);                                               \
    }
#define INT4_ENTRY_POINTS(S, T)                                                                                       \
    INT4_GEMV_ENTRY(S, T, T, same, 1) INT4_GEMV_ENTRY(S, T, T, same, 2) INT4_GEMV_ENTRY(S, T, T, same, 4)              \
    INT4_GEMV_ENTRY(S, T, T, same, 8) INT4_GEMV_ENTRY(S, T, float, f32, 1) INT4_GEMV_ENTRY(S, T, float, f32, 2)         \
    INT4_GEMV_ENTRY(S, T, float, f32, 4) INT4_GEMV_ENTRY(S, T, float, f32, 8)                                          \
    extern "C" __global__ void int4_dequantize_##S(const unsigned* w, const float2* sz, int groups, int group_size,     \
                                                   int n, int k, T* out) {                                            \
        int4_dequantize<T>(w, sz, groups, group_size, n, k, out);                                                      \
    }                                                                                                                 \
    extern "C" __global__ void gather_columns_##S(const T* x, const int* order, int k, T* out) {                      \
        gather_columns<T>(x, order, k, out);                                                                           \
    }
CELER_FOR_DTYPES(INT4_ENTRY_POINTS)
