// Tensor-core causal paged attention (FlashAttention-2 style) over a flat batch that mixes prefill chunks and
// decode rows of many sequences, for 16-bit (bf16 / f16) or fp8 (e4m3 / e5m2) KV caches. Requires sm_80+ (mma.sync,
// ldmatrix, cp.async).
//
// Entry points: flash_attention_<T>_hd<HD> (the cache holds T) and flash_attention_<T>_<C>_hd<HD> (fp8 cache), for
// T in {bf16, f16}, C in {e4m3, e5m2} (__nv_fp8_e4m3 / __nv_fp8_e5m2), HD in {16, 32, 64, 80, 96, 128, 256}. All take
//   (q, k_cache, v_cache, tiles, positions, block_tables, max_blocks_per_seq, block_size, num_heads, num_kv_heads,
//    scale, sliding_window, out, partial_acc, partial_ml, k_scale, v_scale, softcap, sinks, key_lo)
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
//   positions        [rows] the last key each query row sees: its absolute position (causal), or what the host passes
//                    for bidirectional attention. It sees keys [lo, p], lo = key_lo[row] when key_lo is given, else
//                    sliding_window > 0 ? max(0, p - sliding_window + 1) : 0
//   key_lo           [rows] or nullptr: each row's first key, non-decreasing along a tile (a bidirectional window's
//                    rows see [max(0, q - W + 1), min(seq_len - 1, q + W - 1)], which no single window expresses)
//   out              [rows, num_heads, head_dim] normalized output (written when splits == 1)
//   partial_acc      [rows, num_heads, splits, head_dim] fp32 unnormalized accumulator (written when splits > 1)
//   partial_ml       [rows, num_heads, splits, 2] fp32 (running max m of scale*q.k in natural-log units, sum l);
//                    m = -inf, l = 0 when the split saw no visible key; merge_splits combines the splits.
//                    With an fp8 cache k is the dequantized key (k_scale included) and partial_acc already includes
//                    v_scale, so merge_splits needs no change.
//
// Host contract:
//   * grid = (num_tiles, num_kv_heads, splits), block = FLASH_THREADS (128) threads, dynamic shared memory
//     flash_attention_shared_bytes[i] (i = the head_dim's index in 16, 32, 64, 80, 96, 128, 256; above 48 KB for some:
//     the host raises the function's limit).
//   * A tile holds n * group <= BLOCK_M MMA rows (BLOCK_M = flash_attention_block_m[i]: 128, or 64 at head_dim 256;
//     group = num_heads / num_kv_heads, 1..16): cut every sequence's rows of the batch into tiles of
//     n = min(remaining rows, BLOCK_M / group) consecutive rows. MMA row m of a tile is (query row r0 + m / group,
//     head kv_head * group + m % group).
//   * The tile's key range [lo(first row), position(last row)] is cut into BLOCK_N-aligned tiles of keys (BLOCK_N =
//     64 for head_dim <= 80, 32 for 96 and 128, 16 for 256, for 16-bit and fp8 caches alike); split z takes a contiguous run of
//     ceil(key tiles / splits) of them (possibly none: then it writes m = -inf, l = 0, acc = 0).
//   * q, k_cache and v_cache must be 16-byte aligned (cp.async moves 16-byte chunks; an fp8 row of head_dim bytes is
//     a whole number of chunks for every head_dim above).
//
// Scheme: 4 warps x MT m-tiles of 16 MMA rows (MT = 2 up to head_dim 128: each K and V fragment read from shared
// memory feeds two MMAs). Q (BLOCK_M x head_dim) is staged in shared memory (and, for head_dim <= 64, kept in
// registers as mma A fragments). K and V tiles of BLOCK_N keys are gathered through the block table with cp.async
// (zero-filled outside the tile's key range, so no garbage can reach the P.V product); a tile's cache slots are looked
// up once, one thread per key, into shared memory, for both gathers. S = Q.K^T and O += P.V use mma.sync m16n8k16
// with fp32 accumulation; softmax is online in registers in log2 units (one FFMA and one ex2.approx per score), with
// the running max raised only when it grows by more than 2^8 (see flash_tile_softmax); P goes from the S accumulator
// fragment straight into the A fragment of P.V. Pipeline: three stages of a key tile's K and V, so two tiles load
// while one is computed, with one barrier per key tile.
// fp8 caches: the MMAs still run on T. A tile's fp8 bytes are cp.async'd into the upper half of each row's own
// 16-bit shared storage, and after the barrier that publishes them each warp converts its rows in place to T (exact:
// every e4m3 / e5m2 value is representable in f16 and in bf16); k_scale is folded into the score scale and v_scale
// into the output, so the result is that of the dequantized cache float(fp8) * scale. Same shared memory and BLOCK_N
// as the 16-bit cache; one more barrier per key tile.
#include "common.cuh"
#ifndef FLASH_EMULATE
#include <cuda_fp8.h>
#endif

// mma.sync on bf16, ldmatrix and cp.async need sm_80: on older cards (sm_75) none of this file is compiled and the
// host uses the CUDA-core kernel of attention.cu.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define FLASH_WARPS 4                     // each warp owns 16 MMA rows per m-tile
#define FLASH_THREADS (FLASH_WARPS * 32)
#define FLASH_LOG2E 1.4426950408889634f
#define FLASH_LN2 0.6931471805599453f

#ifndef FLASH_EMULATE
extern __shared__ __align__(128) unsigned char flash_dynamic_smem[];   // this file's and flash_decode.cu's kernels
#endif

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

// The keys [lo, pos] of MMA row m of a tile whose query rows start at r0 (row m is query row r0 + m / group): pos is the
// row's last key, lo its first, from key_lo when given (a bidirectional window's, which the host computes per row), else
// the window's below pos; rows from mrows on are padding and see no key (lo > pos).
__device__ __forceinline__ void flash_row_range(const int* positions, const int* key_lo, int r0, int group, int mrows, int m,
                                                int sliding_window, int& pos, int& lo) {
    if (m < mrows) {
        pos = positions[r0 + m / group];
        lo = key_lo ? key_lo[r0 + m / group] : sliding_window > 0 ? max(0, pos - sliding_window + 1) : 0;
    } else {
        pos = -1;
        lo = 0x7fffffff;
    }
}

// The keys a tile of n query rows from r0 sees: both ends of a row's range rise along the tile, so [lo of the first
// row, position of the last row].
__device__ __forceinline__ void flash_key_range(const int* positions, const int* key_lo, int r0, int n, int sliding_window,
                                                int& kmin, int& kmax) {
    kmax = positions[r0 + n - 1];
    kmin = key_lo ? key_lo[r0] : sliding_window > 0 ? max(0, positions[r0] - sliding_window + 1) : 0;
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

// A raw score s = q.k (fp8: of the unscaled cache values) in log2 units: s * scale_log2, or soft-capped (softcap > 0)
// cap_out * tanh(s * cap_in) with cap_in = scale / softcap (k_scale included for fp8) and cap_out = softcap * log2(e).
// (flash_decode.cu's scores; flash_attention_impl folds the plain scale into its exponent instead.)
__device__ __forceinline__ float flash_score(float s, float scale_log2, float softcap, float cap_in, float cap_out) {
    return softcap > 0.f ? cap_out * tanhf(s * cap_in) : s * scale_log2;
}

// 2^x in one MUFU instruction (ex2.approx, subnormal results flushed to 0: far below any weight that matters here).
// exp2f without fast math adds a range fix-up around it, which a prefill tile pays once per score.
#ifndef FLASH_EMULATE
__device__ __forceinline__ float flash_exp2(float x) {
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
    return r;
}
#endif

// The prefill kernel's shape per head size: m-tiles of 16 MMA rows per warp (two: every K and V fragment read from
// shared memory feeds two MMAs, and the gather, slot and softmax bookkeeping per key tile is spread over 128 rows;
// one at head_dim 256, whose accumulators would not fit twice), keys per tile (32 at head_dim 96 and 128: with 64,
// the two m-tiles' S and O accumulators, 192 registers at head_dim 128, made ptxas spill at its 255), and whether
// Q's fragments live in registers (head_dim <= 64; larger ones reload them from shared memory per k-step). The host
// reads flash_attention_block_m and flash_attention_shared_bytes.
template <int HD> __host__ __device__ constexpr int flash_mtiles() { return HD <= 128 ? 2 : 1; }
template <int HD> __host__ __device__ constexpr int flash_block_m() { return FLASH_WARPS * 16 * flash_mtiles<HD>(); }
template <int HD> __host__ __device__ constexpr int flash_block_n() { return HD <= 80 ? 64 : HD <= 128 ? 32 : 16; }
template <int HD> __host__ __device__ constexpr bool flash_q_regs() { return HD <= 64; }
// Dynamic shared memory: FLASH_STAGES stages of a key tile's K and V, Q's tile unless it is in registers (then Q is
// staged through the stages), and two buffers of the key tiles' cache slots.
#define FLASH_STAGES 3
template <int HD> __host__ __device__ constexpr int flash_smem_bytes() {
    return (FLASH_STAGES * 2 * flash_block_n<HD>() + (flash_q_regs<HD>() ? 0 : flash_block_m<HD>())) * flash_row_elems<HD>() * 2 +
           2 * flash_block_n<HD>() * (int)sizeof(int);
}

// Online softmax over one key tile for this thread's MT x 2 fragment rows. s holds raw scores (masked ones -inf);
// scores in log2 units are s * sl (sl = scale * log2(e), or 1 when soft-capping already turned them into log2 units).
// The running max m_run is raised only when a row's tile max passes it by more than FLASH_RESCALE (log2 units), and the
// o accumulators are rescaled only when some row of the warp raised it: a stale max leaves every weight
// 2^(s - m_run) <= 2^FLASH_RESCALE, fine in fp32 and in the 16-bit P, and l and o share it, so the result is the same.
// Most key tiles after the first few raise no max, and skip the rescale's DT x 4 multiplies per m-tile.
#define FLASH_RESCALE 8.f
template <int MT, int NT, int DT>
__device__ __forceinline__ void flash_tile_softmax(float (&s)[MT][NT][4], float sl, float (&m_run)[MT][2], float (&l_run)[MT][2],
                                                   float (&o)[MT][DT][4]) {
    float corr[MT][2];
    bool raise = false;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float mx = NEG_INF;
#pragma unroll
            for (int j = 0; j < NT; j++) mx = fmaxf(mx, fmaxf(s[mt][j][2 * i], s[mt][j][2 * i + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            mx *= sl;
            corr[mt][i] = 1.f;
            if (mx > m_run[mt][i] + FLASH_RESCALE) {   // -inf + 8 = -inf: a row's first visible key raises it
                corr[mt][i] = flash_exp2(m_run[mt][i] - mx);
                m_run[mt][i] = mx;
                raise = true;
            }
            const float base = m_run[mt][i] == NEG_INF ? 0.f : m_run[mt][i];   // nothing visible yet: avoid -inf - -inf
            float sum = 0.f;
#pragma unroll
            for (int j = 0; j < NT; j++) {
                s[mt][j][2 * i] = flash_exp2(fmaf(s[mt][j][2 * i], sl, -base));
                s[mt][j][2 * i + 1] = flash_exp2(fmaf(s[mt][j][2 * i + 1], sl, -base));
                sum += s[mt][j][2 * i] + s[mt][j][2 * i + 1];
            }
            l_run[mt][i] = l_run[mt][i] * corr[mt][i] + sum;
        }
    if (__any_sync(0xffffffffu, raise)) {
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int d = 0; d < DT; d++) {
                o[mt][d][0] *= corr[mt][0];
                o[mt][d][1] *= corr[mt][0];
                o[mt][d][2] *= corr[mt][1];
                o[mt][d][3] *= corr[mt][1];
            }
    }
}

// C = cache element type: T, or __nv_fp8_e4m3 / __nv_fp8_e5m2 (then k_scale / v_scale apply). The shape (MT, BN,
// Q_REGS) comes from the head size (flash_mtiles etc.); smem is the dynamic shared memory (flash_smem_bytes<HD>()).
template <typename T, typename C, int HD>
__device__ __forceinline__ void flash_attention_impl(
    const T* __restrict__ q, const C* __restrict__ k_cache, const C* __restrict__ v_cache,
    const int* __restrict__ tiles, const int* __restrict__ positions, const int* __restrict__ block_tables,
    int max_blocks_per_seq, int block_size, int num_heads, int num_kv_heads, float scale, int sliding_window,
    T* __restrict__ out, float* __restrict__ partial_acc, float* __restrict__ partial_ml, float k_scale, float v_scale,
    float softcap, const T* __restrict__ sinks, const int* __restrict__ key_lo, unsigned char* smem_raw) {
    celer_pdl_begin();
    constexpr int KIND = FlashCacheKind<C>::value;
    constexpr bool FP8 = KIND != 0;
    static_assert(FP8 ? sizeof(C) == 1 : sizeof(C) == sizeof(T), "cache element: T or a 1-byte fp8 type");
    constexpr int MT = flash_mtiles<HD>(), BM = flash_block_m<HD>(), BN = flash_block_n<HD>();
    constexpr bool Q_REGS = flash_q_regs<HD>();
    constexpr int CH = HD / 8;          // 16-byte chunks per row of T
    constexpr int RS = flash_row_elems<HD>();
    constexpr int KSTEPS = HD / 16;     // k-steps of Q.K^T
    constexpr int NT = BN / 8;          // n-tiles of S (keys)
    constexpr int DT = HD / 8;          // n-tiles of O (head dim)
    constexpr int KV_ELEMS = BN * RS;
    static_assert(HD % 16 == 0 && BN % 16 == 0, "head_dim and BLOCK_N must be multiples of 16");
    static_assert((BN * CH) % FLASH_THREADS == 0 && (BM * CH) % FLASH_THREADS == 0, "whole load rounds");
    static_assert(!Q_REGS || FLASH_STAGES * 2 * BN >= BM, "Q is staged through the K and V stages");
    static_assert(BN <= FLASH_THREADS, "one thread per key computes a tile's slots");

    // FLASH_STAGES stages of (K tile, V tile), then Q's tile unless it is in registers (then Q is staged through the
    // stages), then two buffers of key-tile cache slots.
    T* stages = reinterpret_cast<T*>(smem_raw);
    T* sQ = Q_REGS ? stages : stages + FLASH_STAGES * 2 * KV_ELEMS;
    int* sSlot = reinterpret_cast<int*>(stages + FLASH_STAGES * 2 * KV_ELEMS + (Q_REGS ? 0 : BM * RS));   // [2][BN]

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;   // fragment row group and thread-in-quad
    const int seq = tiles[blockIdx.x * 3], r0 = tiles[blockIdx.x * 3 + 1], n = tiles[blockIdx.x * 3 + 2];
    const int kv_head = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
    const int group = num_heads / num_kv_heads, mrows = n * group;
    const int* table = block_tables + (long long)seq * max_blocks_per_seq;
    const int warp_row0 = warp * 16 * MT;   // the warp's MT m-tiles are its consecutive MMA rows from here

    int kmin, kmax;
    flash_key_range(positions, key_lo, r0, n, sliding_window, kmin, kmax);
    const int tile_first = kmin / BN, tile_count = kmax / BN - tile_first + 1;
    const int per_split = (tile_count + splits - 1) / splits;
    const int jt_begin = tile_first + split * per_split, jt_end = min(tile_first + tile_count, jt_begin + per_split);

    // Warp-wide bounds over the real rows among this thread's fragment rows (g and g + 8 of each of the warp's m-tiles):
    // which key tiles to skip or mask. The rows' own ranges are looked up again in the few tiles that need a mask
    // (keeping them would hold 4 * MT registers across the loop, where head_dim 128 has none to spare).
    int w_max_pos = -1, w_min_lo = 0x7fffffff, w_min_pos = 0x7fffffff, w_max_lo = -1;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
            int pos, lo;
            flash_row_range(positions, key_lo, r0, group, mrows, warp_row0 + mt * 16 + g + 8 * i, sliding_window, pos, lo);
            if (pos >= 0) {   // padding rows see nothing (lo > pos)
                w_max_pos = max(w_max_pos, pos);
                w_min_lo = min(w_min_lo, lo);
                w_min_pos = min(w_min_pos, pos);
                w_max_lo = max(w_max_lo, lo);
            }
        }
#pragma unroll
    for (int o = 4; o < 32; o <<= 1) {
        w_max_pos = max(w_max_pos, __shfl_xor_sync(0xffffffffu, w_max_pos, o));
        w_min_lo = min(w_min_lo, __shfl_xor_sync(0xffffffffu, w_min_lo, o));
        w_min_pos = min(w_min_pos, __shfl_xor_sync(0xffffffffu, w_min_pos, o));
        w_max_lo = max(w_max_lo, __shfl_xor_sync(0xffffffffu, w_max_lo, o));
    }
    const bool warp_active = warp_row0 < mrows;

    // The cache slot of key k0 + tid of a tile (one thread per key), or -1 outside [kmin, kmax]: computed once per
    // tile into sSlot, where both the K and the V gather read it (instead of a block-table lookup per 16-byte chunk).
    const int bs_shift = (block_size & (block_size - 1)) == 0 ? __ffs(block_size) - 1 : -1;   // usual case: 2^k
    auto slot_of = [&](int p) {
        if (p < kmin || p > kmax) return -1;
        const int blk = bs_shift >= 0 ? p >> bs_shift : p / block_size;
        return table[blk] * block_size + (p - blk * block_size);
    };

    // Gathers the BN keys of a tile whose slots are in slots[] (one cache row per tile row, so a tile may span several
    // cache blocks); the caller commits. Rows outside [kmin, kmax] (slot -1) are zero-filled and never read from global
    // memory.
    // fp8: the HD bytes of tile row r go to bytes [HD, 2 HD) of row r's own storage (r * RS * 2 bytes on; the
    // swizzle / padding only moves chunks within a row), to be converted in place by convert_tile.
    constexpr int EPC = 16 / (int)sizeof(C);   // cache elements per 16-byte chunk
    constexpr int CHC = HD / EPC;              // chunks per cache row
    constexpr int LOADS = BN * CHC;
    const long long row_stride = (long long)num_kv_heads * HD;
    const C* k_head = k_cache + (long long)kv_head * HD;
    const C* v_head = v_cache + (long long)kv_head * HD;
    auto load_tile = [&](T* dst, const C* cache, const int* slots) {
#pragma unroll
        for (int it = 0; it < (LOADS + FLASH_THREADS - 1) / FLASH_THREADS; it++) {
            int i = tid + it * FLASH_THREADS, r = i / CHC, c = i % CHC;
            if (LOADS % FLASH_THREADS != 0 && i >= LOADS) break;
            const int slot = slots[r];
            const C* src = slot >= 0 ? cache + slot * row_stride + c * EPC : cache;
            if constexpr (FP8)
                flash_cp_async16(reinterpret_cast<char*>(dst) + (r * RS * 2 + HD + c * 16), src, slot >= 0 ? 16 : 0);
            else
                flash_cp_async16(dst + flash_off<HD>(r, c), src, slot >= 0 ? 16 : 0);
        }
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

    float o[MT][DT][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int d = 0; d < DT; d++) o[mt][d][0] = o[mt][d][1] = o[mt][d][2] = o[mt][d][3] = 0.f;
    float m_run[MT][2], l_run[MT][2];   // l_run: this thread's share of the row sum
#pragma unroll
    for (int mt = 0; mt < MT; mt++) m_run[mt][0] = m_run[mt][1] = NEG_INF, l_run[mt][0] = l_run[mt][1] = 0.f;
    // Scores leave the MMAs raw (fp8: of the unscaled cache values, so k_scale joins the scale); soft-capping maps
    // them to log2 units itself, after which the exponent's factor is 1.
    const float scale_k = FP8 ? scale * k_scale : scale;
    const float sl = softcap > 0.f ? 1.f : scale_k * FLASH_LOG2E;
    const float cap_in = softcap > 0.f ? scale_k / softcap : 0.f, cap_out = softcap * FLASH_LOG2E;

    // A key tile's K and V share a stage and a commit group; FLASH_STAGES - 1 tiles are in flight while one is computed.
    auto stage_k = [&](int jt) { return stages + (jt % FLASH_STAGES) * 2 * KV_ELEMS; };
    auto stage_v = [&](int jt) { return stages + (jt % FLASH_STAGES) * 2 * KV_ELEMS + KV_ELEMS; };
    auto load_stage = [&](int jt) {   // one commit group per call, empty past the split's last tile
        if (jt < jt_end) {
            load_tile(stage_k(jt), k_head, sSlot + (jt & 1) * BN);
            load_tile(stage_v(jt), v_head, sSlot + (jt & 1) * BN);
        }
        flash_cp_async_commit();
    };
    static_assert(FLASH_STAGES == 3, "the slot buffers below are written two tiles ahead of their gather");

    flash_stage_q<T, HD, BM, FLASH_THREADS>(sQ, q, r0, group, mrows, num_heads, kv_head, tid);
    flash_cp_async_commit();
    if (tid < BN) {
        if (jt_begin < jt_end) sSlot[(jt_begin & 1) * BN + tid] = slot_of(jt_begin * BN + tid);
        if (jt_begin + 1 < jt_end) sSlot[((jt_begin + 1) & 1) * BN + tid] = slot_of((jt_begin + 1) * BN + tid);
    }
    unsigned qf[Q_REGS ? MT : 1][Q_REGS ? KSTEPS : 1][4];
    if constexpr (Q_REGS) {
        flash_cp_async_wait_all();
        __syncthreads();
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int kk = 0; kk < KSTEPS; kk++)
                flash_ldsm_x4(qf[mt][kk], sQ + flash_off<HD>(warp_row0 + mt * 16 + (lane & 15), 2 * kk + (lane >> 4)));
    }
    __syncthreads();   // the first two tiles' slots are visible; with Q in registers, the stages are free again
    load_stage(jt_begin);
    load_stage(jt_begin + 1);
    __syncthreads();   // every thread has read both slot buffers: the third tile's may take the first's
    if (tid < BN && jt_begin + 2 < jt_end) sSlot[(jt_begin & 1) * BN + tid] = slot_of((jt_begin + 2) * BN + tid);

    for (int jt = jt_begin; jt < jt_end; jt++) {
        const int k0 = jt * BN;
        // Tile jt + 3's slots: the block-table read is issued here and stored after the barrier, so its latency
        // overlaps the wait. Its buffer's last reader, tile jt + 1's gather, was issued before this barrier.
        const int next_slot = tid < BN && jt + 3 < jt_end ? slot_of(k0 + 3 * BN + tid) : -1;
        flash_cp_async_wait<FLASH_STAGES - 2>();   // tile jt has landed (and Q); tile jt + 1 may still be loading
        __syncthreads();   // tile jt and tile jt + 2's slots are visible; every warp is done with tile jt - 1's stage
        load_stage(jt + 2);
        if (tid < BN && jt + 3 < jt_end) sSlot[((jt + 3) & 1) * BN + tid] = next_slot;
        T* sK = stage_k(jt);
        T* sV = stage_v(jt);
        if constexpr (FP8) {
            convert_tile(sK);
            convert_tile(sV);
            __syncthreads();   // tile jt in T for every warp
        }

        const bool compute = warp_active && k0 <= w_max_pos && k0 + BN - 1 >= w_min_lo;
        if (!compute) continue;
        float s[MT][NT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int j = 0; j < NT; j++) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KSTEPS; kk++) {
            unsigned a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                if constexpr (Q_REGS) {
                    a[mt][0] = qf[mt][kk][0]; a[mt][1] = qf[mt][kk][1]; a[mt][2] = qf[mt][kk][2]; a[mt][3] = qf[mt][kk][3];
                } else {
                    flash_ldsm_x4(a[mt], sQ + flash_off<HD>(warp_row0 + mt * 16 + (lane & 15), 2 * kk + (lane >> 4)));
                }
            }
#pragma unroll
            for (int jj = 0; jj < NT / 2; jj++) {
                // matrices: keys 0-7 | d 0-7, keys 0-7 | d 8-15, keys 8-15 | d 0-7, keys 8-15 | d 8-15
                unsigned b[4];
                flash_ldsm_x4(b, sK + flash_off<HD>(16 * jj + (lane & 7) + ((lane >> 4) << 3), 2 * kk + ((lane >> 3) & 1)));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    flash_mma<T>(s[mt][2 * jj], a[mt], b[0], b[1]);
                    flash_mma<T>(s[mt][2 * jj + 1], a[mt], b[2], b[3]);
                }
            }
        }

        // s[mt][j][e]: row g + 8 * (e >> 1) of m-tile mt, key k0 + 8 j + 2 t + (e & 1).
        if (softcap > 0.f) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int j = 0; j < NT; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) s[mt][j][e] = cap_out * tanhf(s[mt][j][e] * cap_in);
        }
        if (k0 < w_max_lo || k0 + BN - 1 > w_min_pos) {   // a key of this tile is outside some row's range
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    int pos, lo;
                    flash_row_range(positions, key_lo, r0, group, mrows, warp_row0 + mt * 16 + g + 8 * i, sliding_window, pos, lo);
#pragma unroll
                    for (int j = 0; j < NT; j++)
#pragma unroll
                        for (int e = 2 * i; e < 2 * i + 2; e++) {
                            const int key = k0 + 8 * j + 2 * t + (e & 1);
                            if (key < lo || key > pos) s[mt][j][e] = NEG_INF;
                        }
                }
        }

        flash_tile_softmax(s, sl, m_run, l_run, o);

#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            // The S accumulators of n-tiles 2kk, 2kk+1 are exactly the A fragment of P for keys 16kk..16kk+15.
            unsigned a[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++) flash_p_fragment<T>(s[mt], kk, a[mt]);
#pragma unroll
            for (int dd = 0; dd < HD / 16; dd++) {
                // transposed matrices: keys 0-7 | d 0-7, keys 8-15 | d 0-7, keys 0-7 | d 8-15, keys 8-15 | d 8-15
                unsigned b[4];
                flash_ldsm_x4_trans(b, sV + flash_off<HD>(16 * kk + (lane & 15), 2 * dd + (lane >> 4)));
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    flash_mma<T>(o[mt][2 * dd], a[mt], b[0], b[1]);
                    flash_mma<T>(o[mt][2 * dd + 1], a[mt], b[2], b[3]);
                }
            }
        }
    }

    flash_cp_async_wait_all();   // the empty groups past the last tile (and an empty split's Q copy)

    // o[mt][d][e]: row g + 8 * (e >> 1) of m-tile mt, dim 8 d + 2 t + (e & 1).
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float l = l_run[mt][i];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const int m = warp_row0 + mt * 16 + g + 8 * i;
            if (m >= mrows) continue;
            const long long oh = (long long)(r0 + m / group) * num_heads + kv_head * group + m % group;
            if (splits == 1) {
                float inv = attention_normalizer(m_run[mt][i] * FLASH_LN2, l, sinks, kv_head * group + m % group);
                if constexpr (FP8) inv *= v_scale;   // P.V was computed on the unscaled fp8 values
                T* dst = out + oh * HD + 2 * t;
#pragma unroll
                for (int d = 0; d < DT; d++)
                    *reinterpret_cast<unsigned*>(dst + 8 * d) = flash_pack2<T>(o[mt][d][2 * i] * inv, o[mt][d][2 * i + 1] * inv);
            } else {
                const long long ps = oh * splits + split;
                float* dst = partial_acc + ps * HD + 2 * t;
#pragma unroll
                for (int d = 0; d < DT; d++) {
                    if constexpr (FP8)
                        *reinterpret_cast<float2*>(dst + 8 * d) =
                            make_float2(o[mt][d][2 * i] * v_scale, o[mt][d][2 * i + 1] * v_scale);
                    else
                        *reinterpret_cast<float2*>(dst + 8 * d) = make_float2(o[mt][d][2 * i], o[mt][d][2 * i + 1]);
                }
                if (t == 0) {
                    partial_ml[ps * 2] = l > 0.f ? m_run[mt][i] * FLASH_LN2 : NEG_INF;
                    partial_ml[ps * 2 + 1] = l;
                }
            }
        }
}

#define FLASH_INSTANTIATE(TN, T, C, HD)                                                                               \
    extern "C" __global__ void __launch_bounds__(FLASH_THREADS) flash_attention_##TN##_hd##HD(                        \
        const T* q, const C* k_cache, const C* v_cache, const int* tiles, const int* positions,                       \
        const int* block_tables, int max_blocks_per_seq, int block_size, int num_heads, int num_kv_heads,             \
        float scale, int sliding_window, T* out, float* partial_acc, float* partial_ml, float k_scale,                \
        float v_scale, float softcap, const T* sinks, const int* key_lo) {                                            \
        flash_attention_impl<T, C, HD>(q, k_cache, v_cache, tiles, positions, block_tables, max_blocks_per_seq,       \
                                       block_size, num_heads, num_kv_heads, scale, sliding_window, out, partial_acc,  \
                                       partial_ml, k_scale, v_scale, softcap, sinks, key_lo, flash_dynamic_smem);     \
    }
// The MMA rows of a tile and the dynamic shared memory of each head_dim's instances, for the host, in the order of
// FLASH_INSTANTIATE_ALL (hd 16..128: 128 rows; 256: 64 rows. Shared memory from 18.5 KB at hd16 to 88.5 KB at hd80;
// hd128 80.3 KB: above the 48 KB default, which the host raises per function; within the 99 KB of sm_86/89).
extern "C" __device__ const int flash_attention_block_m[7] = {
    flash_block_m<16>(), flash_block_m<32>(), flash_block_m<64>(), flash_block_m<80>(), flash_block_m<96>(),
    flash_block_m<128>(), flash_block_m<256>()};
extern "C" __device__ const int flash_attention_shared_bytes[7] = {
    flash_smem_bytes<16>(), flash_smem_bytes<32>(), flash_smem_bytes<64>(), flash_smem_bytes<80>(),
    flash_smem_bytes<96>(), flash_smem_bytes<128>(), flash_smem_bytes<256>()};
#define FLASH_INSTANTIATE_ALL(TN, T, C)                                                                               \
    FLASH_INSTANTIATE(TN, T, C, 16) FLASH_INSTANTIATE(TN, T, C, 32) FLASH_INSTANTIATE(TN, T, C, 64)                  \
    FLASH_INSTANTIATE(TN, T, C, 80) FLASH_INSTANTIATE(TN, T, C, 96) FLASH_INSTANTIATE(TN, T, C, 128)                 \
    FLASH_INSTANTIATE(TN, T, C, 256)
FLASH_INSTANTIATE_ALL(bf16, __nv_bfloat16, __nv_bfloat16)
FLASH_INSTANTIATE_ALL(f16, __half, __half)
FLASH_INSTANTIATE_ALL(bf16_e4m3, __nv_bfloat16, __nv_fp8_e4m3)
FLASH_INSTANTIATE_ALL(bf16_e5m2, __nv_bfloat16, __nv_fp8_e5m2)
FLASH_INSTANTIATE_ALL(f16_e4m3, __half, __nv_fp8_e4m3)
FLASH_INSTANTIATE_ALL(f16_e5m2, __half, __nv_fp8_e5m2)
#endif
