// Tensor-core causal paged attention (FlashAttention-2 style) over a flat batch that mixes prefill chunks and
// decode rows of many sequences, for 16-bit (bf16 / f16) or fp8 (e4m3 / e5m2) KV caches. Requires sm_80+ (mma.sync,
// ldmatrix, cp.async).
//
// Entry points: flash_attention_<T>_hd<HD> (the cache holds T) and flash_attention_<T>_<C>_hd<HD> (fp8 cache), for
// T in {bf16, f16}, C in {e4m3, e5m2} (__nv_fp8_e4m3 / __nv_fp8_e5m2), HD in {16, 32, 64, 80, 96, 128, 256}. All take
//   (q, k_cache, v_cache, tiles, positions, block_tables, max_blocks_per_seq, block_size, num_heads, num_kv_heads,
//    scale, sliding_window, out, partial_acc, partial_ml, k_scale, v_scale, softcap, sinks)
// k_scale / v_scale (float) are vLLM's per-tensor fp8 scales: a cached key byte b means float(b) * k_scale, a value
// byte float(b) * v_scale. The 16-bit-cache entry points ignore them (pass 1.0f). softcap > 0 (Gemma 2's
// attn_logit_softcapping) replaces each score scale * q.k by softcap * tanh(scale * q.k / softcap) before the mask; 0
// leaves the scores alone (one uniform branch per score). sinks (gpt-oss: [num_heads] of T, or nullptr) put each head's
// e^sink into its softmax denominator where a row is normalized (attention_normalizer; merge_splits for split rows).
//
// Layouts (row-major, contiguous; T = __nv_bfloat16 or __half; C = the cache element: T, or a 1-byte fp8 type):
//   q                [rows, num_heads, head_dim]                      RoPE applied, not pre-scaled
//   k_cache, v_cache [num_blocks, block_size, num_kv_heads, head_dim] of C; one layer; position p of sequence s lives
//                    in slot block_tables[s * max_blocks_per_seq + p / block_size] * block_size + p % block_size
//   tiles            [num_tiles, 3] = (sequence s, first query row r0, query rows n): rows r0..r0+n-1 belong to s and
//                    have non-decreasing positions (consecutive for causal rows; all equal for bidirectional attention,
//                    whose host passes seq_len - 1 for every row: only the first and last bound the tile's keys)
//   positions        [rows] absolute position of each query row; it sees keys [lo, p], lo = sliding_window > 0 ?
//                    max(0, p - sliding_window + 1) : 0
//   out              [rows, num_heads, head_dim] normalized output (written when splits == 1)
//   partial_acc      [rows, num_heads, splits, head_dim] fp32 unnormalized accumulator (written when splits > 1)
//   partial_ml       [rows, num_heads, splits, 2] fp32 (running max m of scale*q.k in natural-log units, sum l);
//                    m = -inf, l = 0 when the split saw no visible key; merge_splits combines the splits.
//                    With an fp8 cache k is the dequantized key (k_scale included) and partial_acc already includes
//                    v_scale, so merge_splits needs no change.
//
// Host contract:
//   * grid = (num_tiles, num_kv_heads, splits), block = FLASH_THREADS (128) threads, no dynamic shared memory
//     (static shared memory <= 48 KB for every instantiation; see FLASH_INSTANTIATE below).
//   * A tile holds n * group <= FLASH_BLOCK_M MMA rows (group = num_heads / num_kv_heads, 1..16): cut every
//     sequence's rows of the batch into tiles of n = min(remaining rows, FLASH_BLOCK_M / group) consecutive rows.
//     MMA row m of a tile is (query row r0 + m / group, head kv_head * group + m % group).
//   * The tile's key range [lo(first row), position(last row)] is cut into BLOCK_N-aligned tiles of keys (BLOCK_N =
//     64 for head_dim <= 128, 16 for 256, for 16-bit and fp8 caches alike); split z takes a contiguous run of
//     ceil(key tiles / splits) of them (possibly none: then it writes m = -inf, l = 0, acc = 0).
//   * q, k_cache and v_cache must be 16-byte aligned (cp.async moves 16-byte chunks; an fp8 row of head_dim bytes is
//     a whole number of chunks for every head_dim above).
//
// Scheme: 4 warps x 16 MMA rows. Q (64 x head_dim) is staged in shared memory (and, for head_dim <= 128, kept in
// registers as mma A fragments). K and V tiles of BLOCK_N keys are gathered through the block table with cp.async
// (zero-filled outside the tile's key range, so no garbage can reach the P.V product). S = Q.K^T and O += P.V use
// mma.sync m16n8k16 with fp32 accumulation; softmax is online in registers in log2 units (exp2f on scores
// pre-scaled by scale * log2(e)); P goes from the S accumulator fragment straight into the A fragment of P.V.
// Pipeline per key tile: V(j) loads while S(j) is computed, K(j+1) loads while P.V(j) is computed.
// fp8 caches: the MMAs still run on T. A tile's fp8 bytes are cp.async'd into the upper half of each row's own
// 16-bit shared storage, and after the barrier that publishes them each warp converts its rows in place to T (exact:
// every e4m3 / e5m2 value is representable in f16 and in bf16); k_scale is folded into the score scale and v_scale
// into the output, so the result is that of the dequantized cache float(fp8) * scale. Same shared memory and BLOCK_N
// as the 16-bit cache; two more barriers per key tile.
#include "common.cuh"
#ifndef FLASH_EMULATE
#include <cuda_fp8.h>
#endif

// mma.sync on bf16, ldmatrix and cp.async need sm_80: on older cards (sm_75) none of this file is compiled and the
// host uses the CUDA-core kernel of attention.cu.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define FLASH_BLOCK_M 64                  // MMA rows (query rows x heads of one GQA group) per thread block
#define FLASH_WARPS 4                     // each warp owns 16 MMA rows
#define FLASH_THREADS (FLASH_WARPS * 32)
#define FLASH_LOG2E 1.4426950408889634f
#define FLASH_LN2 0.6931471805599453f

// ---- PTX wrappers (a host emulation defines FLASH_EMULATE and supplies its own versions) ----
#ifndef FLASH_EMULATE
template <typename T> __device__ __forceinline__ unsigned flash_pack2(float lo, float hi);
template <> __device__ __forceinline__ unsigned flash_pack2<__nv_bfloat16>(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);   // .x (lo) is the low half, as mma expects
    return *reinterpret_cast<unsigned*>(&v);
}
template <> __device__ __forceinline__ unsigned flash_pack2<__half>(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<unsigned*>(&v);
}

// c += a (16x16, row) * b (16x8, col), fp32 accumulate.
template <typename T> __device__ __forceinline__ void flash_mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1);
template <> __device__ __forceinline__ void flash_mma<__nv_bfloat16>(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void flash_mma<__half>(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, r[i] holds its (lane/4, 2*(lane%4)+{0,1})
// element pair, or with .trans its (2*(lane%4)+{0,1}, lane/4) pair. The "memory" clobber keeps them after the
// barriers that publish the cp.async data.
__device__ __forceinline__ void flash_ldsm_x4(unsigned (&r)[4], const void* smem) {
    unsigned a = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a) : "memory");
}
__device__ __forceinline__ void flash_ldsm_x4_trans(unsigned (&r)[4], const void* smem) {
    unsigned a = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(a) : "memory");
}

// 16-byte global -> shared copy; src_bytes = 0 writes zeros without reading the source.
__device__ __forceinline__ void flash_cp_async16(void* smem, const void* gmem, int src_bytes) {
    unsigned a = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(a), "l"(gmem), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void flash_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void flash_cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }
// Waits until at most N of this thread's most recent commit groups are still in flight.
template <int N> __device__ __forceinline__ void flash_cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory"); }

// fp8 -> f16 helpers. FLASH_FP8_CVT: the hardware e4m3x2 -> f16x2 conversion exists (sm_90; sm_89 from CUDA 12.6 on,
// where cuda_fp8.h uses it too; NVRTC 11.8 rejects it for sm_89). Otherwise a bit-exact integer path is used.
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900 || (__CUDA_ARCH__ >= 890 && defined(__CUDACC_VER_MAJOR__) && \
    (__CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 6))))
#define FLASH_FP8_CVT 1
// Two e4m3 values (the low byte is the first) -> f16x2 (the first in the low half).
__device__ __forceinline__ unsigned flash_cvt_e4m3x2(unsigned short x) {
    unsigned r;
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;\n" : "=r"(r) : "h"(x));
    return r;
}
#else
#define FLASH_FP8_CVT 0
#endif
__device__ __forceinline__ unsigned flash_mul_f16x2(unsigned a, unsigned b) {   // subnormals are kept (no ftz)
    unsigned r;
    asm("mul.rn.f16x2 %0, %1, %2;\n" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
__device__ __forceinline__ void flash_f16x2_to_f32(unsigned h, float& lo, float& hi) {
    asm("{\n.reg .b16 l, h;\nmov.b32 {l, h}, %2;\ncvt.f32.f16 %0, l;\ncvt.f32.f16 %1, h;\n}\n"
        : "=f"(lo), "=f"(hi) : "r"(h));
}
#endif

// Cache element kinds: 0 = the cache holds T; FLASH_E4M3 / FLASH_E5M2 = fp8.
#define FLASH_E4M3 1
#define FLASH_E5M2 2
template <typename C> struct FlashCacheKind { static constexpr int value = 0; };
template <> struct FlashCacheKind<__nv_fp8_e4m3> { static constexpr int value = FLASH_E4M3; };
template <> struct FlashCacheKind<__nv_fp8_e5m2> { static constexpr int value = FLASH_E5M2; };
template <typename T> struct FlashIsHalf { static constexpr bool value = false; };
template <> struct FlashIsHalf<__half> { static constexpr bool value = true; };

// Four fp8 values (the bytes of w, lowest first) -> four T values (x = first two, .x holding the first in its low
// half), exactly float(fp8): NaN stays NaN and e5m2 +-inf stays +-inf.
template <typename T, int KIND> __device__ __forceinline__ uint2 flash_fp8x4_to(unsigned w) {
    unsigned h[2];   // f16x2 of bytes 0,1 and 2,3
#pragma unroll
    for (int i = 0; i < 2; i++) {
        if constexpr (KIND == FLASH_E5M2) {
            h[i] = __byte_perm(w, 0u, i ? 0x3424 : 0x1404);   // e5m2 is the high byte of the f16 of the same value
        } else {
#if FLASH_FP8_CVT
            h[i] = flash_cvt_e4m3x2((unsigned short)(i ? w >> 16 : w & 0xffffu));
#else
            const unsigned t = __byte_perm(w, 0u, i ? 0x3424 : 0x1404);   // each 16-bit lane: byte << 8
            // s.eeee.mmm -> f16 s.0eeee.mmm0000000 = value * 2^-8 (e4m3 subnormals land on f16 subnormals), then an
            // exact * 256. The NaN code S.1111.111 (it would give 480) becomes 0x7fff.
            const unsigned x = (t & 0x80008000u) | ((t >> 1) & 0x3f803f80u);
            const unsigned nan = ((t & 0x7f007f00u) + 0x01000100u) & 0x80008000u;
            h[i] = flash_mul_f16x2(x, 0x5c005c00u) | (nan - (nan >> 15));
#endif
        }
    }
    if constexpr (FlashIsHalf<T>::value) {
        return make_uint2(h[0], h[1]);
    } else {
        // f16 -> f32 is exact and leaves the low 16 bits zero (<= 3 mantissa bits), so bf16 is the high half.
        float a, b, c, d;
        flash_f16x2_to_f32(h[0], a, b);
        flash_f16x2_to_f32(h[1], c, d);
        return make_uint2(__byte_perm(__float_as_uint(a), __float_as_uint(b), 0x7632),
                          __byte_perm(__float_as_uint(c), __float_as_uint(d), 0x7632));
    }
}

// Elements per shared-memory row of a [rows, HD] tile, and the element offset of 16-byte chunk c of row r. ldmatrix
// and the cp.async stores touch 8 consecutive rows at one chunk column: when a row is a multiple of 128 bytes the
// chunk index is XOR-swizzled with r % 8 (no extra bytes); otherwise rows are padded by 16 bytes, which makes the
// row stride an odd multiple of 16 bytes modulo 128 for every head_dim used here. Both are conflict-free.
template <int HD> __host__ __device__ constexpr int flash_row_elems() { return (HD / 8) % 8 == 0 ? HD : HD + 8; }
template <int HD> __device__ __forceinline__ int flash_off(int r, int c) {
    if constexpr ((HD / 8) % 8 == 0) return r * HD + ((c ^ (r & 7)) << 3);
    else return r * (HD + 8) + (c << 3);
}

// ---- pieces shared with flash_decode.cu ----

// Position and window start of MMA row m of a tile whose query rows start at r0 (row m is query row r0 + m / group);
// rows from mrows on are padding and see no key (lo > pos).
__device__ __forceinline__ void flash_row_range(const int* positions, int r0, int group, int mrows, int m, int sliding_window,
                                                int& pos, int& lo) {
    if (m < mrows) {
        pos = positions[r0 + m / group];
        lo = sliding_window > 0 ? max(0, pos - sliding_window + 1) : 0;
    } else {
        pos = -1;
        lo = 0x7fffffff;
    }
}

// The keys a tile of n query rows from r0 sees: positions rise along the tile, so [lo of the first row, position of
// the last row].
__device__ __forceinline__ void flash_key_range(const int* positions, int r0, int n, int sliding_window, int& kmin, int& kmax) {
    const int p_first = positions[r0];
    kmax = positions[r0 + n - 1];
    kmin = sliding_window > 0 ? max(0, p_first - sliding_window + 1) : 0;
}

// Stages ROWS MMA rows of Q in shared memory with cp.async by THREADS threads: row m = (query row r0 + m / group,
// head kv_head * group + m % group); padding rows (m >= mrows) are zero. The caller commits the group.
template <typename T, int HD, int ROWS, int THREADS>
__device__ __forceinline__ void flash_stage_q(T* sQ, const T* q, int r0, int group, int mrows, int num_heads, int kv_head, int tid) {
    constexpr int CH = HD / 8;
#pragma unroll
    for (int it = 0; it < (ROWS * CH + THREADS - 1) / THREADS; it++) {
        const int i = tid + it * THREADS, m = i / CH, c = i % CH;
        if ((ROWS * CH) % THREADS != 0 && i >= ROWS * CH) break;
        const T* src = q;
        if (m < mrows) src = q + ((long long)(r0 + m / group) * num_heads + kv_head * group + m % group) * HD + c * 8;
        flash_cp_async16(sQ + flash_off<HD>(m, c), src, m < mrows ? 16 : 0);
    }
}

// Online softmax over NT n-tiles of 8 keys for this thread's two fragment rows (a row's 8 keys of an n-tile are
// spread over the 4 threads of a quad). s holds scaled, masked scores in log2 units and becomes exp2(s - running
// max); the running max m_run, this thread's share of the row sum l_run and the DT accumulator tiles o are rescaled.
template <int NT, int DT>
__device__ __forceinline__ void flash_online_softmax(float (&s)[NT][4], float (&m_run)[2], float (&l_run)[2], float (&o)[DT][4]) {
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float mx = m_run[i];
#pragma unroll
        for (int j = 0; j < NT; j++) mx = fmaxf(mx, fmaxf(s[j][2 * i], s[j][2 * i + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float base = mx == NEG_INF ? 0.f : mx;   // all masked so far: avoid -inf - -inf
        const float corr = exp2f(m_run[i] - base);
        m_run[i] = mx;
        float sum = 0.f;
#pragma unroll
        for (int j = 0; j < NT; j++) {
            s[j][2 * i] = exp2f(s[j][2 * i] - base);
            s[j][2 * i + 1] = exp2f(s[j][2 * i + 1] - base);
            sum += s[j][2 * i] + s[j][2 * i + 1];
        }
        l_run[i] = l_run[i] * corr + sum;
#pragma unroll
        for (int d = 0; d < DT; d++) {
            o[d][2 * i] *= corr;
            o[d][2 * i + 1] *= corr;
        }
    }
}

// The A fragment of P for keys 16 kk .. 16 kk + 15: exactly the S accumulators of n-tiles 2 kk and 2 kk + 1, packed.
template <typename T, int NT>
__device__ __forceinline__ void flash_p_fragment(const float (&s)[NT][4], int kk, unsigned (&a)[4]) {
    a[0] = flash_pack2<T>(s[2 * kk][0], s[2 * kk][1]);
    a[1] = flash_pack2<T>(s[2 * kk][2], s[2 * kk][3]);
    a[2] = flash_pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
    a[3] = flash_pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

// fp8 caches: one warp converts ROWS rows of a staged tile, from row0 on, to T in place. Row r's HD fp8 bytes were
// staged in bytes [HD, 2 HD) of its own 16-bit storage (r * RS * 2 bytes on; the swizzle / padding only moves chunks
// within a row), so the warp reads every byte of its rows, __syncwarp, then writes. Callers publish the result.
template <typename T, int KIND, int HD, int ROWS>
__device__ __forceinline__ void flash_convert_rows(T* tile, int row0, int lane) {
    constexpr int CH = HD / 8, RS = flash_row_elems<HD>();
    constexpr int IT = ROWS * CH / 32;   // 8-value pieces per lane
    static_assert(ROWS * CH == 32 * IT, "whole pieces per lane");
    const char* bytes = reinterpret_cast<const char*>(tile);
    uint2 raw[IT];
#pragma unroll
    for (int k = 0; k < IT; k++) {
        const int j = lane + 32 * k, r = row0 + j / CH, c = j % CH;
        raw[k] = *reinterpret_cast<const uint2*>(bytes + (r * RS * 2 + HD + c * 8));
    }
    __syncwarp();
#pragma unroll
    for (int k = 0; k < IT; k++) {
        const int j = lane + 32 * k, r = row0 + j / CH, c = j % CH;
        const uint2 lo = flash_fp8x4_to<T, KIND>(raw[k].x), hi = flash_fp8x4_to<T, KIND>(raw[k].y);
        *reinterpret_cast<uint4*>(tile + flash_off<HD>(r, c)) = make_uint4(lo.x, lo.y, hi.x, hi.y);
    }
}

// BN = keys per tile. Q_REGS: Q fragments live in registers (Q is staged through the K/V buffers, so 2 * BN >= 64);
// otherwise Q stays in its own shared buffer and fragments are reloaded per k-step (saves HD/4 registers).
// C = cache element type: T, or __nv_fp8_e4m3 / __nv_fp8_e5m2 (then k_scale / v_scale apply).
// A raw score s = q.k (fp8: of the unscaled cache values) in log2 units: s * scale_log2, or soft-capped (softcap > 0)
// cap_out * tanh(s * cap_in) with cap_in = scale / softcap (k_scale included for fp8) and cap_out = softcap * log2(e).
__device__ __forceinline__ float flash_score(float s, float scale_log2, float softcap, float cap_in, float cap_out) {
    return softcap > 0.f ? cap_out * tanhf(s * cap_in) : s * scale_log2;
}

template <typename T, typename C, int HD, int BN, bool Q_REGS>
__device__ __forceinline__ void flash_attention_impl(
    const T* __restrict__ q, const C* __restrict__ k_cache, const C* __restrict__ v_cache,
    const int* __restrict__ tiles, const int* __restrict__ positions, const int* __restrict__ block_tables,
    int max_blocks_per_seq, int block_size, int num_heads, int num_kv_heads, float scale, int sliding_window,
    T* __restrict__ out, float* __restrict__ partial_acc, float* __restrict__ partial_ml, float k_scale, float v_scale,
    float softcap, const T* __restrict__ sinks) {
    celer_pdl_begin();
    constexpr int KIND = FlashCacheKind<C>::value;
    constexpr bool FP8 = KIND != 0;
    static_assert(FP8 ? sizeof(C) == 1 : sizeof(C) == sizeof(T), "cache element: T or a 1-byte fp8 type");
    constexpr int CH = HD / 8;          // 16-byte chunks per row of T
    constexpr int RS = flash_row_elems<HD>();
    constexpr int KSTEPS = HD / 16;     // k-steps of Q.K^T
    constexpr int NT = BN / 8;          // n-tiles of S (keys)
    constexpr int DT = HD / 8;          // n-tiles of O (head dim)
    constexpr int KV_ELEMS = BN * RS;
    static_assert(HD % 16 == 0 && BN % 16 == 0, "head_dim and BLOCK_N must be multiples of 16");
    static_assert((BN * CH) % FLASH_THREADS == 0 && (FLASH_BLOCK_M * CH) % FLASH_THREADS == 0, "whole load rounds");
    static_assert(!Q_REGS || 2 * BN >= FLASH_BLOCK_M, "Q is staged through the K and V buffers");

    alignas(128) __shared__ T smem[2 * KV_ELEMS + (Q_REGS ? 0 : FLASH_BLOCK_M * RS)];
    T* sK = smem;
    T* sV = smem + KV_ELEMS;
    T* sQ = Q_REGS ? smem : smem + 2 * KV_ELEMS;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;   // fragment row group and thread-in-quad
    const int seq = tiles[blockIdx.x * 3], r0 = tiles[blockIdx.x * 3 + 1], n = tiles[blockIdx.x * 3 + 2];
    const int kv_head = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
    const int group = num_heads / num_kv_heads, mrows = n * group;
    const int* table = block_tables + (long long)seq * max_blocks_per_seq;

    int kmin, kmax;
    flash_key_range(positions, r0, n, sliding_window, kmin, kmax);
    const int tile_first = kmin / BN, tile_count = kmax / BN - tile_first + 1;
    const int per_split = (tile_count + splits - 1) / splits;
    const int jt_begin = tile_first + split * per_split, jt_end = min(tile_first + tile_count, jt_begin + per_split);

    // This thread's two fragment rows (g and g + 8 of the warp's 16). Padding rows see nothing (lo > pos).
    int rpos[2], rlo[2];
#pragma unroll
    for (int i = 0; i < 2; i++) flash_row_range(positions, r0, group, mrows, warp * 16 + g + 8 * i, sliding_window, rpos[i], rlo[i]);
    // Warp-wide bounds over real rows: which key tiles the warp can skip, and which need no per-element mask.
    int w_max_pos = max(rpos[0], rpos[1]), w_min_lo = min(rlo[0], rlo[1]);
    int w_min_pos = min(rpos[0] < 0 ? 0x7fffffff : rpos[0], rpos[1] < 0 ? 0x7fffffff : rpos[1]);
    int w_max_lo = max(rlo[0] == 0x7fffffff ? -1 : rlo[0], rlo[1] == 0x7fffffff ? -1 : rlo[1]);
#pragma unroll
    for (int o = 4; o < 32; o <<= 1) {
        w_max_pos = max(w_max_pos, __shfl_xor_sync(0xffffffffu, w_max_pos, o));
        w_min_lo = min(w_min_lo, __shfl_xor_sync(0xffffffffu, w_min_lo, o));
        w_min_pos = min(w_min_pos, __shfl_xor_sync(0xffffffffu, w_min_pos, o));
        w_max_lo = max(w_max_lo, __shfl_xor_sync(0xffffffffu, w_max_lo, o));
    }
    const bool warp_active = warp * 16 < mrows;

    flash_stage_q<T, HD, FLASH_BLOCK_M, FLASH_THREADS>(sQ, q, r0, group, mrows, num_heads, kv_head, tid);
    flash_cp_async_commit();

    unsigned qf[Q_REGS ? KSTEPS : 1][4];
    if constexpr (Q_REGS) {
        flash_cp_async_wait_all();
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < KSTEPS; kk++) flash_ldsm_x4(qf[kk], sQ + flash_off<HD>(warp * 16 + (lane & 15), 2 * kk + (lane >> 4)));
        __syncthreads();   // the K/V buffers are reused
    }

    // Gathers keys k0..k0+BN-1 (one cache row per tile row; the slot is computed per row, so a tile may span
    // several cache blocks). Rows outside [kmin, kmax] are zero-filled and never read from global memory.
    // fp8: the HD bytes of tile row r go to bytes [HD, 2 HD) of row r's own storage (r * RS * 2 bytes on; the
    // swizzle / padding only moves chunks within a row), to be converted in place by convert_tile.
    constexpr int EPC = 16 / (int)sizeof(C);   // cache elements per 16-byte chunk
    constexpr int CHC = HD / EPC;              // chunks per cache row
    constexpr int LOADS = BN * CHC;
    const long long head_off = (long long)kv_head * HD;
    const int bs_shift = (block_size & (block_size - 1)) == 0 ? __ffs(block_size) - 1 : -1;   // usual case: 2^k
    auto load_tile = [&](T* dst, const C* cache, int k0) {
#pragma unroll
        for (int it = 0; it < (LOADS + FLASH_THREADS - 1) / FLASH_THREADS; it++) {
            int i = tid + it * FLASH_THREADS, r = i / CHC, c = i % CHC, p = k0 + r;
            if (LOADS % FLASH_THREADS != 0 && i >= LOADS) break;
            bool ok = p >= kmin && p <= kmax;
            const C* src = cache;
            if (ok) {
                int blk = bs_shift >= 0 ? p >> bs_shift : p / block_size;
                long long slot = (long long)table[blk] * block_size + (p - blk * block_size);
                src = cache + slot * num_kv_heads * HD + head_off + c * EPC;
            }
            if constexpr (FP8)
                flash_cp_async16(reinterpret_cast<char*>(dst) + (r * RS * 2 + HD + c * 16), src, ok ? 16 : 0);
            else
                flash_cp_async16(dst + flash_off<HD>(r, c), src, ok ? 16 : 0);
        }
        flash_cp_async_commit();
    };

    // fp8 only: converts a loaded tile to T in place. Warp w owns rows [w * BN / 4, (w + 1) * BN / 4), converted in two
    // rounds where the rows split evenly over the lanes (fewer live registers). Callers publish the result with a barrier.
    auto convert_tile = [&](T* tile) {
        constexpr int RW = BN / FLASH_WARPS;                     // rows per warp
        constexpr int PARTS = (RW / 2 * CH) % 32 == 0 ? 2 : 1;    // rounds
        static_assert(BN % FLASH_WARPS == 0, "whole rows per warp");
#pragma unroll
        for (int part = 0; part < PARTS; part++) flash_convert_rows<T, KIND, HD, RW / PARTS>(tile, warp * RW + part * (RW / PARTS), lane);
    };

    float o[DT][4];
#pragma unroll
    for (int d = 0; d < DT; d++) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
    float m_run[2] = {NEG_INF, NEG_INF}, l_run[2] = {0.f, 0.f};   // l_run: this thread's share of the row sum
    float scale_log2 = scale * FLASH_LOG2E;
    if constexpr (FP8) scale_log2 = scale * k_scale * FLASH_LOG2E;   // S is computed on the unscaled fp8 values
    const float cap_in = softcap > 0.f ? (FP8 ? scale * k_scale : scale) / softcap : 0.f, cap_out = softcap * FLASH_LOG2E;

    if (jt_begin < jt_end) load_tile(sK, k_cache, jt_begin * BN);
    for (int jt = jt_begin; jt < jt_end; jt++) {
        const int k0 = jt * BN;
        flash_cp_async_wait_all();
        __syncthreads();                     // K(jt) (and Q) visible; every warp is done with V(jt-1)
        load_tile(sV, v_cache, k0);
        if constexpr (FP8) {
            convert_tile(sK);
            __syncthreads();                 // K(jt) in T for every warp
        }

        const bool compute = warp_active && k0 <= w_max_pos && k0 + BN - 1 >= w_min_lo;
        float s[NT][4];
        unsigned pa[FP8 ? BN / 16 : 1][4];   // fp8: P already packed to T (half the registers across convert_tile)
        if (compute) {
#pragma unroll
            for (int j = 0; j < NT; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < KSTEPS; kk++) {
                unsigned a[4];
                if constexpr (Q_REGS) {
                    a[0] = qf[kk][0]; a[1] = qf[kk][1]; a[2] = qf[kk][2]; a[3] = qf[kk][3];
                } else {
                    flash_ldsm_x4(a, sQ + flash_off<HD>(warp * 16 + (lane & 15), 2 * kk + (lane >> 4)));
                }
#pragma unroll
                for (int jj = 0; jj < NT / 2; jj++) {
                    // matrices: keys 0-7 | d 0-7, keys 0-7 | d 8-15, keys 8-15 | d 0-7, keys 8-15 | d 8-15
                    unsigned b[4];
                    flash_ldsm_x4(b, sK + flash_off<HD>(16 * jj + (lane & 7) + ((lane >> 4) << 3), 2 * kk + ((lane >> 3) & 1)));
                    flash_mma<T>(s[2 * jj], a, b[0], b[1]);
                    flash_mma<T>(s[2 * jj + 1], a, b[2], b[3]);
                }
            }

            // s[j][e]: row g + 8 * (e >> 1), key k0 + 8 j + 2 t + (e & 1).
            const bool need_mask = k0 < w_max_lo || k0 + BN - 1 > w_min_pos;
#pragma unroll
            for (int j = 0; j < NT; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float v = flash_score(s[j][e], scale_log2, softcap, cap_in, cap_out);
                    if (need_mask) {
                        int key = k0 + 8 * j + 2 * t + (e & 1);
                        if (key < rlo[e >> 1] || key > rpos[e >> 1]) v = NEG_INF;
                    }
                    s[j][e] = v;
                }

            flash_online_softmax(s, m_run, l_run, o);
            if constexpr (FP8) {
#pragma unroll
                for (int kk = 0; kk < BN / 16; kk++) flash_p_fragment<T>(s, kk, pa[kk]);
            }
        }

        flash_cp_async_wait_all();
        __syncthreads();                     // V(jt) visible; every warp is done with K(jt)
        if (jt + 1 < jt_end) load_tile(sK, k_cache, k0 + BN);
        if constexpr (FP8) {
            convert_tile(sV);
            __syncthreads();                 // V(jt) in T for every warp
        }

        if (compute) {
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                // The S accumulators of n-tiles 2kk, 2kk+1 are exactly the A fragment of P for keys 16kk..16kk+15.
                unsigned a[4];
                if constexpr (FP8) {
                    a[0] = pa[kk][0]; a[1] = pa[kk][1]; a[2] = pa[kk][2]; a[3] = pa[kk][3];
                } else {
                    flash_p_fragment<T>(s, kk, a);
                }
#pragma unroll
                for (int dd = 0; dd < HD / 16; dd++) {
                    // transposed matrices: keys 0-7 | d 0-7, keys 8-15 | d 0-7, keys 0-7 | d 8-15, keys 8-15 | d 8-15
                    unsigned b[4];
                    flash_ldsm_x4_trans(b, sV + flash_off<HD>(16 * kk + (lane & 15), 2 * dd + (lane >> 4)));
                    flash_mma<T>(o[2 * dd], a, b[0], b[1]);
                    flash_mma<T>(o[2 * dd + 1], a, b[2], b[3]);
                }
            }
        }
    }

    flash_cp_async_wait_all();   // an empty split never waited for its Q copy

    // o[d][e]: row g + 8 * (e >> 1), dim 8 d + 2 t + (e & 1).
#pragma unroll
    for (int i = 0; i < 2; i++) {
        float l = l_run[i];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const int m = warp * 16 + g + 8 * i;
        if (m >= mrows) continue;
        const long long oh = (long long)(r0 + m / group) * num_heads + kv_head * group + m % group;
        if (splits == 1) {
            float inv = attention_normalizer(m_run[i] * FLASH_LN2, l, sinks, kv_head * group + m % group);
            if constexpr (FP8) inv *= v_scale;   // P.V was computed on the unscaled fp8 values
            T* dst = out + oh * HD + 2 * t;
#pragma unroll
            for (int d = 0; d < DT; d++)
                *reinterpret_cast<unsigned*>(dst + 8 * d) = flash_pack2<T>(o[d][2 * i] * inv, o[d][2 * i + 1] * inv);
        } else {
            const long long ps = oh * splits + split;
            float* dst = partial_acc + ps * HD + 2 * t;
#pragma unroll
            for (int d = 0; d < DT; d++) {
                if constexpr (FP8)
                    *reinterpret_cast<float2*>(dst + 8 * d) =
                        make_float2(o[d][2 * i] * v_scale, o[d][2 * i + 1] * v_scale);
                else
                    *reinterpret_cast<float2*>(dst + 8 * d) = make_float2(o[d][2 * i], o[d][2 * i + 1]);
            }
            if (t == 0) {
                partial_ml[ps * 2] = l > 0.f ? m_run[i] * FLASH_LN2 : NEG_INF;
                partial_ml[ps * 2 + 1] = l;
            }
        }
    }
}

#define FLASH_INSTANTIATE(TN, T, C, HD, BN, Q_REGS)                                                                   \
    extern "C" __global__ void __launch_bounds__(FLASH_THREADS) flash_attention_##TN##_hd##HD(                        \
        const T* q, const C* k_cache, const C* v_cache, const int* tiles, const int* positions,                       \
        const int* block_tables, int max_blocks_per_seq, int block_size, int num_heads, int num_kv_heads,             \
        float scale, int sliding_window, T* out, float* partial_acc, float* partial_ml, float k_scale,                \
        float v_scale, float softcap, const T* sinks) {                                                               \
        flash_attention_impl<T, C, HD, BN, Q_REGS>(q, k_cache, v_cache, tiles, positions, block_tables,               \
                                                   max_blocks_per_seq, block_size, num_heads, num_kv_heads, scale,     \
                                                   sliding_window, out, partial_acc, partial_ml, k_scale, v_scale,     \
                                                   softcap, sinks);                                                   \
    }
// Static shared memory (16-bit and fp8 caches alike): 2 * BN * row bytes (+ 64 rows of Q when Q is not kept in
// registers): hd16 6 KB, hd32 10 KB, hd64 16 KB, hd80 22 KB, hd96 26 KB, hd128 32 KB, hd256 48 KB.
// hd256 keeps Q in shared memory with BN = 16: Q in registers (64 more) with BN = 32 spills next to the 128 O
// registers. ptxas (NVRTC 11.8) registers, no spills, for hd 16/32/64/80/96/128/256:
//   16-bit cache: sm_80 95/137/166/168/213/243/241, sm_90 92/159/168/168/182/217/203.
//   fp8 cache (most over bf16/f16 x e4m3/e5m2): sm_80 94/119/168/168/168/223/231, sm_90 95/139/180/167/167/216/197.
#define FLASH_INSTANTIATE_ALL(TN, T, C)         \
    FLASH_INSTANTIATE(TN, T, C, 16, 64, true)   \
    FLASH_INSTANTIATE(TN, T, C, 32, 64, true)   \
    FLASH_INSTANTIATE(TN, T, C, 64, 64, true)   \
    FLASH_INSTANTIATE(TN, T, C, 80, 64, true)   \
    FLASH_INSTANTIATE(TN, T, C, 96, 64, true)   \
    FLASH_INSTANTIATE(TN, T, C, 128, 64, true)  \
    FLASH_INSTANTIATE(TN, T, C, 256, 16, false)
FLASH_INSTANTIATE_ALL(bf16, __nv_bfloat16, __nv_bfloat16)
FLASH_INSTANTIATE_ALL(f16, __half, __half)
FLASH_INSTANTIATE_ALL(bf16_e4m3, __nv_bfloat16, __nv_fp8_e4m3)
FLASH_INSTANTIATE_ALL(bf16_e5m2, __nv_bfloat16, __nv_fp8_e5m2)
FLASH_INSTANTIATE_ALL(f16_e4m3, __half, __nv_fp8_e4m3)
FLASH_INSTANTIATE_ALL(f16_e5m2, __half, __nv_fp8_e5m2)
#endif
