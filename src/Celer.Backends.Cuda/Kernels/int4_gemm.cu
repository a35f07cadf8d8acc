// 4-bit weight-only (W4A16) layers: GPTQ, AWQ and compressed-tensors W4A16 weights repacked at load into one layout:
//   w[n, k / 8] uint32, row n holding output column n's codes, code of input column c at bits 4·(c % 8) of word c / 8;
//   sz[n, groups] float2 (scale, zero point), group of column c = c / group_size (act-order checkpoints have their columns
//   sorted by group at load, and the layer's input gathered into the same order: gather_columns);
//   weight[n, c] = (code − zero) · scale, exact in fp32.
// int4_gemv: decode steps of up to 8 rows, one warp per output column streaming its packed row (32 codes per 16-byte
// load) and every row of x beside it: a word's 8 codes share one group (group sizes are multiples of 8), so a lane sums
// (code − zero) · x over the word and scales the sum once. Larger steps dequantize the weight into the model dtype
// (int4_dequantize) for cuBLASLt's GEMM.
//
// The tensor-core layout (16-bit models, k a multiple of 128, groups of a power of two ≥ 32 or per channel) is read by
// int4_gemm_tc (steps of up to 64 rows) and int4_gemm_tiled (any rows; CudaBackend.Int4.cs times both, and cuBLASLt
// on the dequantized weight, per shape and row bucket), skinny_gemm.cu's mma.sync scheme with the weight dequantized in registers:
// within each 128-k block of a row, word 4t + u holds the 8 codes of k 32u + 8t … 32u + 8t + 7 (what lane t of a quad
// needs for 32-k chunk u, so its one 16-byte load covers four chunks), their nibbles in the order k 0, 2, 4, 6, 1, 3,
// 5, 7, so that (word >> 4j) & 0x000F000F holds the pair k 2j, 2j + 1 in the two 16-bit halves: OR-ed with the
// exponent of 128 (bf16) or 1024 (fp16) it is the pair 128 + code exactly, and one subtraction and one multiplication
// of 16-bit pairs make (code − zero) · scale, rounded to the model dtype as a dequantized weight would be. Its scales
// and zero points are one 32-bit word per row and group: the scale in the model dtype in the low half, 128 + zero
// (1024 + zero) in the high half (sb below), half the bytes of the float2 and no conversion per word.
#include "common.cuh"

// The magic of the tensor-core layout: 2^7 for bf16 (7 mantissa bits), 2^10 for fp16 (10).
template <typename T> struct Int4Magic { static constexpr float value = 1024.f; };
template <> struct Int4Magic<__nv_bfloat16> { static constexpr float value = 128.f; };

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

// (scale, zero) of a tensor-core-layout weight's word: scale bits | (magic + zero) bits << 16, in T.
template <typename T> __device__ __forceinline__ float2 int4_unpack_sb(unsigned sb) {
    if constexpr (sizeof(T) == 2) {
        unsigned short lo = (unsigned short)(sb & 0xFFFFu), hi = (unsigned short)(sb >> 16);
        return make_float2(to_float(*reinterpret_cast<const T*>(&lo)), to_float(*reinterpret_cast<const T*>(&hi)) - Int4Magic<T>::value);
    } else {
        return make_float2(0.f, 0.f);   // fp32 models never take the tensor-core layout
    }
}

// out[n, k] in T: one thread per packed word (8 values), in either layout (tc: the tensor-core one, whose sz are the
// 32-bit words of int4_unpack_sb).
template <typename T>
__device__ void int4_dequantize(const unsigned* __restrict__ w, const void* __restrict__ sz, int groups, int group_size,
                                int tc, int n, int k, T* __restrict__ out) {
    celer_pdl_begin();
    const int words = k >> 3;
    const long long total = (long long)n * words;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        const long long row = i / words;
        const int p = (int)(i - row * words);
        // tc: word 4t + u of each 16-word block holds k 32u + 8t …, nibble j the k (j % 4) * 2 + j / 4 of those 8.
        const int c = tc ? (p & ~15) * 8 + (p & 3) * 32 + ((p >> 2) & 3) * 8 : p * 8;
        const long long at = row * groups + c / group_size;
        const float2 s = tc ? int4_unpack_sb<T>(reinterpret_cast<const unsigned*>(sz)[at]) : reinterpret_cast<const float2*>(sz)[at];
        const unsigned word = w[i];
        float v[8];
#pragma unroll
        for (int j = 0; j < 8; j++) v[tc ? (j & 3) * 2 + (j >> 2) : j] = ((float)((word >> (4 * j)) & 15u) - s.y) * s.x;
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
    extern "C" __global__ void int4_dequantize_##S(const unsigned* w, const void* sz, int groups, int group_size,       \
                                                   int tc, int n, int k, T* out) {                                    \
        int4_dequantize<T>(w, sz, groups, group_size, tc, n, k, out);                                                  \
    }                                                                                                                 \
    extern "C" __global__ void gather_columns_##S(const T* x, const int* order, int k, T* out) {                      \
        gather_columns<T>(x, order, k, out);                                                                           \
    }
CELER_FOR_DTYPES(INT4_ENTRY_POINTS)

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
// Warps per block (W of the entry points), each over its share of k: 8 for steps of up to 8 rows (a 4096-wide layer's loads all in flight at
// once: batch 1 303 tok/s against 4 warps' 269 on the 8B shape), 4 above, where the accumulators of more row tiles
// make 8 warps' blocks too big to keep two per SM (batch 16: 4 warps 1.29 s, 8 warps 1.55 s).

__device__ __forceinline__ unsigned int4_word(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// The 8 codes of one tensor-core-layout word as four 16-bit pairs (k 2j, 2j + 1) of (code − zero) · scale; sb is the
// word's (scale, magic + zero) pair.
template <typename T, typename T2, unsigned MAGIC>
__device__ __forceinline__ void int4_dequant8(unsigned word, unsigned sb, unsigned (&out)[4]) {
    unsigned s = __byte_perm(sb, 0, 0x1010), b = __byte_perm(sb, 0, 0x3232);   // each half twice
    const T2 scale = *reinterpret_cast<T2*>(&s), bias = *reinterpret_cast<T2*>(&b);
#pragma unroll
    for (int j = 0; j < 4; j++) {
        unsigned v = ((word >> (4 * j)) & 0x000F000Fu) | MAGIC;
        T2 h = __hmul2(__hsub2(*reinterpret_cast<T2*>(&v), bias), scale);
        out[j] = *reinterpret_cast<unsigned*>(&h);
    }
}
template <typename T> __device__ __forceinline__ void int4_dequant8(unsigned word, unsigned sb, unsigned (&out)[4]);
template <> __device__ __forceinline__ void int4_dequant8<__nv_bfloat16>(unsigned word, unsigned sb, unsigned (&out)[4]) {
    int4_dequant8<__nv_bfloat16, __nv_bfloat162, 0x43004300u>(word, sb, out);
}
template <> __device__ __forceinline__ void int4_dequant8<__half>(unsigned word, unsigned sb, unsigned (&out)[4]) {
    int4_dequant8<__half, __half2, 0x64006400u>(word, sb, out);
}

// A block of NW warps computes 16 output columns (A: the weight's rows g and g + 8 of the quad's lane) for
// up to M rows (B: x's rows, 8 per tile), each warp over its share of the 128-k blocks, summed in shared memory.
template <typename T, typename O, int M, int NW, int U, bool HOIST>
__device__ void int4_gemm_tc(const T* __restrict__ x, int rows, const unsigned* __restrict__ w, const unsigned* __restrict__ sz,
                             int groups, int group_shift, int n, int k, O* __restrict__ y) {
    celer_pdl_begin();
    constexpr int TILES = M / 8;   // row tiles of 8; U: 128-k blocks in flight per lane
    __shared__ float partial[NW][TILES][4][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const long long n0 = (long long)blockIdx.x * 16;
    const int blocks = k / 128, per = (blocks + NW - 1) / NW;
    const int b0 = min(blocks, warp * per), b1 = min(blocks, b0 + per);
    // Columns past n (the last block) are computed from row n - 1 and dropped.
    const long long ra = min(n0 + g, (long long)n - 1), rb = min(n0 + g + 8, (long long)n - 1);
    const unsigned* wa = w + ra * (k >> 3) + 4 * t;
    const unsigned* wb = w + rb * (k >> 3) + 4 * t;
    const unsigned* sa = sz + ra * groups;
    const unsigned* sb = sz + rb * groups;
    float acc[TILES][4];
#pragma unroll
    for (int j = 0; j < TILES; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    // HOIST: groups of 128 or more (per channel included) give a 128-k block one scale word per row, requested with
    // the block's codes so that both loads are in flight together (ncu at batch 1: most stalls waited on L1TEX);
    // narrower groups read theirs per 32-k chunk.
    const bool wide = HOIST && group_shift >= 7;

    for (int b = b0; b < b1; b += U) {
        uint4 va[U], vb[U];
        unsigned ga[U], gb[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (b + u < b1) {
                va[u] = __ldcs(reinterpret_cast<const uint4*>(wa + (long long)(b + u) * 16));
                vb[u] = __ldcs(reinterpret_cast<const uint4*>(wb + (long long)(b + u) * 16));
                if (wide) {
                    const int group = ((b + u) * 128) >> group_shift;
                    ga[u] = sa[group];
                    gb[u] = sb[group];
                }
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (b + u < b1) {
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    const int kc = (b + u) * 128 + q * 32;   // this 32-k chunk
                    unsigned da[4], db[4];
                    int4_dequant8<T>(int4_word(va[u], q), wide ? ga[u] : sa[kc >> group_shift], da);
                    int4_dequant8<T>(int4_word(vb[u], q), wide ? gb[u] : sb[kc >> group_shift], db);
#pragma unroll
                    for (int j = 0; j < TILES; j++) {
                        const int m = j * 8 + g;
                        const uint4 vx = m < rows ? *reinterpret_cast<const uint4*>(x + (long long)m * k + kc + 8 * t) : make_uint4(0, 0, 0, 0);
#pragma unroll
                        for (int s = 0; s < 2; s++) {
                            const unsigned a[4] = {da[2 * s], db[2 * s], da[2 * s + 1], db[2 * s + 1]};
                            flash_mma<T>(acc[j], a, int4_word(vx, 2 * s), int4_word(vx, 2 * s + 1));
                        }
                    }
                }
            }
        }
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
                for (int v = 0; v < NW; v++) sum += partial[v][j][i][lane];
                // C fragment: element i of lane (g, t) is row (n) g + 8 * (i / 2), column (m) 2t + i % 2.
                const int m = j * 8 + 2 * t + (i & 1);
                const long long col = n0 + g + 8 * (i >> 1);
                if (m < rows && col < n) y[(long long)m * n + col] = from_float<O>(sum);
            }
        }
    }
}

// Steps of up to 16 rows: two 128-k blocks in flight per lane with their scale words, and at most 64 registers so
// that four 8-warp blocks fit an SM (H200, 8B shape in GPTQ 4-bit, 256 tokens: batch 1 291 -> 317 tok/s, batch 16
// 3,073 -> 3,621; with four blocks in flight and no register cap batch 16 fell to 2,504). 32 and 64 rows keep four
// blocks in flight and read their scales per chunk, unmeasured the other way.
#define INT4_TC_ENTRY(S, T, O, OS, M, W, U, HOIST, MIN_BLOCKS)                                                        \
    extern "C" __global__ void __launch_bounds__(W * 32, MIN_BLOCKS) int4_gemm_tc_##S##_##OS##_m##M(                  \
        const T* x, int rows, const unsigned* w, const unsigned* sz, int groups, int group_shift, int n, int k, O* y) { \
        int4_gemm_tc<T, O, M, W, U, HOIST>(x, rows, w, sz, groups, group_shift, n, k, y);                              \
    }
#define INT4_TC_ENTRY_POINTS(S, T)                                                                                    \
    INT4_TC_ENTRY(S, T, T, same, 8, 8, 2, true, 4) INT4_TC_ENTRY(S, T, T, same, 16, 4, 2, true, 4)                    \
    INT4_TC_ENTRY(S, T, T, same, 32, 4, 4, false, 1) INT4_TC_ENTRY(S, T, T, same, 64, 4, 4, false, 1)                 \
    INT4_TC_ENTRY(S, T, float, f32, 8, 8, 2, true, 4) INT4_TC_ENTRY(S, T, float, f32, 16, 4, 2, true, 4)              \
    INT4_TC_ENTRY(S, T, float, f32, 32, 4, 4, false, 1) INT4_TC_ENTRY(S, T, float, f32, 64, 4, 4, false, 1)
INT4_TC_ENTRY_POINTS(f16, __half)
INT4_TC_ENTRY_POINTS(bf16, __nv_bfloat16)

// int4_gemm_tiled: steps of more rows, in Marlin's manner. int4_gemm_tc gives each block 16 output columns and has
// every warp read x's rows from global memory, so a layer reads x once per 16 columns (gate_up of the 8B shape at 64
// rows: 940 MB through L2 for 59 MB of codes). Here a block of NW warps covers 16 · NW columns for a tile of BM rows,
// and one 128-k block per stage of a 4-deep cp.async pipeline brings everything the block reads into shared memory: x's
// tile (every warp reads it there), the weight rows' codes, and their scale words (1, 2 or 4 per row: groups of 128 and
// more, 64, 32), so three stages of loads are in flight while one is computed and no register waits on memory.
// The fragments are int4_gemm_tc's: the weight as A, dequantized in registers; x as B, 8 rows per MMA.
// Shared layout of a stage: x's row r at r · 256 bytes, its 16-byte chunk c at position c ^ 4 (r & 1), so that a
// quarter warp's reads (rows g, g + 1 × four chunks) hit all 32 banks; then the codes, weight row r's 64 bytes at r · 64;
// then the scale words, 16 bytes per weight row.
// Grid: x = column block × row tile (row tiles adjacent, so that they find the columns' codes in L2), y = split of k.
// With splits, each block writes its fp32 partial tile into `partials` (indexed by block), and the last of a tile's
// blocks to count itself in `counters` (zero, and zero again after) sums them in split order: the same sum whatever
// order the blocks ran in.
#define INT4_STAGES 4

// Stage bytes of int4_gemm_tiled: x's tile, the codes, the scale words (CudaBackend.Int4.cs: Int4TiledSharedBytes).
#define INT4_TILED_STAGE(BM, BN) ((BM) * 256 + (BN) * 64 + (BN) * 16)

#ifndef FLASH_EMULATE   // the emulation supplies its own
// `words` (1, 2 or 4) 32-bit words global -> shared; none read and zeros written when !live.
__device__ __forceinline__ void int4_cp_async_words(void* smem, const unsigned* gmem, int words, bool live) {
    const unsigned a = (unsigned)__cvta_generic_to_shared(smem);
    const int src = live ? 4 * words : 0;
    if (words == 4) asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" :: "r"(a), "l"(gmem), "r"(src) : "memory");
    else if (words == 2) asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" :: "r"(a), "l"(gmem), "r"(src) : "memory");
    else asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" :: "r"(a), "l"(gmem), "r"(src) : "memory");
}
#endif

template <typename T, typename O, int BM, int NW>
__device__ void int4_gemm_tiled(const T* __restrict__ x, int rows, int row_tiles, const unsigned* __restrict__ w,
                                const unsigned* __restrict__ sz, int groups, int group_shift, int n, int k,
                                const T* __restrict__ bias, O* __restrict__ y, float* __restrict__ partials,
                                int* __restrict__ counters, unsigned char* smem) {
    celer_pdl_begin();
    constexpr int THREADS = NW * 32, TILES = BM / 8, BN = 16 * NW;
    constexpr int X_BYTES = BM * 256, W_BYTES = BN * 64, STAGE = INT4_TILED_STAGE(BM, BN);
    static_assert(BM * 16 % THREADS == 0 && BN * 4 % THREADS == 0 && BN <= THREADS, "tile shape");
    __shared__ int last_block;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int row0 = (blockIdx.x % row_tiles) * BM, col_block = blockIdx.x / row_tiles;
    if (row0 >= rows) return;   // a row tile past the step's rows (every split alike)
    const int splits = gridDim.y, blocks = k >> 7, per = (blocks + splits - 1) / splits;
    const int b0 = min(blocks, (int)blockIdx.y * per), b1 = min(blocks, b0 + per), stages = b1 - b0;
    const long long n0 = (long long)col_block * BN;
    // Scale words per row and 128-k block, and which of them a 32-k chunk q reads (q >> shift).
    const int words = 1 << max(0, 7 - group_shift), word_shift = min(group_shift, 7) - 5;

    // Each thread's copies, fixed over the k loop (a stage adds its k offset): x's rows (nullptr past the step's rows:
    // zeros) and their shared positions, the weight rows' chunks (rows past n load row n - 1; their columns are dropped),
    // and one row's scale words.
    constexpr int X_IT = BM * 16 / THREADS, W_IT = BN * 4 / THREADS;
    const T* x_src[X_IT];
    int x_dst[X_IT];
#pragma unroll
    for (int it = 0; it < X_IT; it++) {
        const int i = tid + it * THREADS, r = i >> 4, c = i & 15;
        x_src[it] = row0 + r < rows ? x + (long long)(row0 + r) * k + c * 8 : nullptr;
        x_dst[it] = (r * 16 + (c ^ ((r & 1) << 2))) * 16;
    }
    const unsigned* w_src[W_IT];
#pragma unroll
    for (int it = 0; it < W_IT; it++) {
        const int i = tid + it * THREADS;
        w_src[it] = w + min(n0 + (i >> 2), (long long)n - 1) * (k >> 3) + (i & 3) * 4;
    }
    const unsigned* s_src = sz + min(n0 + min(tid, BN - 1), (long long)n - 1) * groups;

    auto load_stage = [&](int slot, int s) {
        unsigned char* st = smem + slot * STAGE;
        const int kb = b0 + s;
        const bool live = s < stages;
#pragma unroll
        for (int it = 0; it < X_IT; it++) {
            const bool ok = live && x_src[it] != nullptr;
            flash_cp_async16(st + x_dst[it], ok ? x_src[it] + kb * 128 : x, ok ? 16 : 0);
        }
#pragma unroll
        for (int it = 0; it < W_IT; it++) flash_cp_async16(st + X_BYTES + (tid + it * THREADS) * 16, w_src[it] + (live ? kb * 16 : 0), live ? 16 : 0);
        if (tid < BN) int4_cp_async_words(st + X_BYTES + W_BYTES + tid * 16, s_src + (live ? (kb * 128) >> group_shift : 0), words, live);
    };

    float acc[TILES][4];
#pragma unroll
    for (int j = 0; j < TILES; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;

#pragma unroll
    for (int s = 0; s < INT4_STAGES - 1; s++) {
        load_stage(s, s);
        flash_cp_async_commit();   // empty groups too: the wait below counts groups
    }
    const int ra = warp * 16 + g;   // this lane's weight rows in the block: ra and ra + 8
    // This lane's x chunk of 32-k chunk q in row tile 0 (tile j is 8 rows = 2048 bytes further).
    int x_off[4];
#pragma unroll
    for (int q = 0; q < 4; q++) x_off[q] = (g * 16 + ((q * 4 + t) ^ ((g & 1) << 2))) * 16;
    for (int s = 0; s < stages; s++) {
        flash_cp_async_wait<INT4_STAGES - 2>();
        __syncthreads();   // stage s is in; every warp is done with the stage the next load overwrites
        load_stage((s + INT4_STAGES - 1) % INT4_STAGES, s + INT4_STAGES - 1);
        flash_cp_async_commit();
        const unsigned char* st = smem + (s % INT4_STAGES) * STAGE;
        const uint4 va = *reinterpret_cast<const uint4*>(st + X_BYTES + (ra * 4 + t) * 16);
        const uint4 vb = *reinterpret_cast<const uint4*>(st + X_BYTES + ((ra + 8) * 4 + t) * 16);
        const unsigned* sa = reinterpret_cast<const unsigned*>(st + X_BYTES + W_BYTES + ra * 16);
        const unsigned* sb = reinterpret_cast<const unsigned*>(st + X_BYTES + W_BYTES + (ra + 8) * 16);
#pragma unroll
        for (int q = 0; q < 4; q++) {
            unsigned da[4], db[4];
            int4_dequant8<T>(int4_word(va, q), sa[q >> word_shift], da);
            int4_dequant8<T>(int4_word(vb, q), sb[q >> word_shift], db);
#pragma unroll
            for (int j = 0; j < TILES; j++) {
                const uint4 vx = *reinterpret_cast<const uint4*>(st + x_off[q] + j * 2048);
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const unsigned f[4] = {da[2 * h], db[2 * h], da[2 * h + 1], db[2 * h + 1]};
                    flash_mma<T>(acc[j], f, int4_word(vx, 2 * h), int4_word(vx, 2 * h + 1));
                }
            }
        }
    }
    flash_cp_async_wait_all();   // the empty groups past the last stage

    // C fragment: element i of lane (g, t) is weight row (output column) g + 8 (i / 2), x row 2t + i % 2.
    auto store = [&](int j, int i, float v) {
        const int row = row0 + j * 8 + 2 * t + (i & 1);
        const long long col = n0 + ra + 8 * (i >> 1);
        if (row < rows && col < n) {
            if (bias != nullptr) v += to_float(bias[col]);
            y[(long long)row * n + col] = from_float<O>(v);
        }
    };
    if (splits == 1) {
#pragma unroll
        for (int j = 0; j < TILES; j++)
#pragma unroll
            for (int i = 0; i < 4; i++) store(j, i, acc[j][i]);
        return;
    }

    constexpr int TILE_FLOATS = TILES * 4 * THREADS;
    float* mine = partials + ((long long)blockIdx.y * gridDim.x + blockIdx.x) * TILE_FLOATS;
#pragma unroll
    for (int j = 0; j < TILES; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) mine[(j * 4 + i) * THREADS + tid] = acc[j][i];
    __threadfence();   // the partial tile is visible to every block before this one counts itself
    __syncthreads();
    if (tid == 0) last_block = atomicAdd(&counters[blockIdx.x], 1) == splits - 1;
    __syncthreads();
    if (!last_block) return;
    __threadfence();
#pragma unroll
    for (int j = 0; j < TILES; j++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float sum = 0.f;
            for (int s = 0; s < splits; s++)
                sum += __ldcg(partials + ((long long)s * gridDim.x + blockIdx.x) * TILE_FLOATS + (j * 4 + i) * THREADS + tid);
            store(j, i, sum);
        }
    if (tid == 0) counters[blockIdx.x] = 0;   // ready for the next launch (graph replays included)
}

// BM rows per tile × NW warps (16 · NW columns per block). At most 128 registers, so that two 8-warp blocks (or
// four of 4 warps, where shared memory allows) share an SM: ncu (8 warps, 64 rows) found one block of 144 registers per
// SM, whose warps waited 5 cycles between instructions with no other warp to issue.
#define INT4_TILED_ENTRY(S, T, O, OS, BM, NW)                                                                        \
    extern "C" __global__ void __launch_bounds__(NW * 32, 16 / NW) int4_gemm_tiled_##S##_##OS##_m##BM##_w##NW(                \
        const T* x, int rows, int row_tiles, const unsigned* w, const unsigned* sz, int groups, int group_shift, int n, \
        int k, const T* bias, O* y, float* partials, int* counters) {                                                 \
        int4_gemm_tiled<T, O, BM, NW>(x, rows, row_tiles, w, sz, groups, group_shift, n, k, bias, y, partials, counters, \
                                      flash_dynamic_smem);                                                            \
    }
#define INT4_TILED_ENTRY_OUT(S, T, O, OS)                                                                             \
    INT4_TILED_ENTRY(S, T, O, OS, 16, 4) INT4_TILED_ENTRY(S, T, O, OS, 16, 8) INT4_TILED_ENTRY(S, T, O, OS, 32, 4)    \
    INT4_TILED_ENTRY(S, T, O, OS, 32, 8) INT4_TILED_ENTRY(S, T, O, OS, 64, 4) INT4_TILED_ENTRY(S, T, O, OS, 64, 8)
#define INT4_TILED_ENTRY_POINTS(S, T) INT4_TILED_ENTRY_OUT(S, T, T, same) INT4_TILED_ENTRY_OUT(S, T, float, f32)
INT4_TILED_ENTRY_POINTS(f16, __half)
INT4_TILED_ENTRY_POINTS(bf16, __nv_bfloat16)
#endif
