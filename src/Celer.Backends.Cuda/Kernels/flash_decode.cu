// Tensor-core paged attention for query tiles of at most 16 MMA rows: a decode row with its GQA group of query heads,
// or the few rows of a short chunk (speculative tokens). Same contract and arithmetic as flash_attention.cu, whose
// PTX wrappers, shared-memory layout and fp8 conversion it uses; built for the case that kernel serves badly.
//
// Why a second kernel: a decode tile fills 16 of flash_attention's 64 MMA rows, so one warp computes while all four
// wait on each K and V tile in turn, and a block keeps one tile (16 KB at head_dim 128) in flight. Decode attention
// is a stream of the KV cache; the card needs ~50-100 KB in flight per SM to reach its bandwidth. Here every warp
// streams its own 16-key tiles through a STAGES-deep cp.async pipeline and needs no block barrier until the end,
// where the four warps' partial softmax states are merged in shared memory.
//
// Entry points: flash_decode_<T>_hd<HD> and flash_decode_<T>_<C>_hd<HD>, the suffixes of flash_attention.cu, with its
// parameter list. Host contract (differences from flash_attention.cu):
//   * grid = (num_tiles, num_kv_heads, splits), block = DECODE_THREADS (128), dynamic shared memory
//     decode_smem_bytes<HD>(), published as flash_decode_shared_bytes (above 48 KB: raise the function's
//     CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES).
//   * A tile is all n query rows of one sequence with n * group <= 16.
//   * The tile's key range [lo(first row), position(last row)] is cut into 16-aligned tiles of 16 keys; split z takes
//     a contiguous run of ceil(key tiles / splits) of them, and warp w of the block every fourth of those from w on.
#include "common.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800   // as flash_attention.cu: sm_80 and later
#define DECODE_WARPS 4
#define DECODE_THREADS (DECODE_WARPS * 32)
#define DECODE_ROWS 16   // MMA rows of a tile
#define DECODE_KEYS 16   // keys per warp tile: one k-step of P.V

// Tiles in flight per warp (a tile = 16 keys of K and of V): 3 keep ~2 x 8 KB per warp loading at head_dim 128.
// sm_86/87/89 blocks hold at most 99 KB of shared memory, one KB short of 3 stages at head_dim 128: 2 stages there
// (head_dim 256 does not fit at all; the host sends its decode rows to flash_attention).
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 860 || __CUDA_ARCH__ == 870 || __CUDA_ARCH__ == 890)
#define DECODE_SMALL_SHARED_MEMORY 1
#else
#define DECODE_SMALL_SHARED_MEMORY 0
#endif
template <int HD> __host__ __device__ constexpr int decode_stages() { return HD < 128 || (HD == 128 && !DECODE_SMALL_SHARED_MEMORY) ? 3 : 2; }

// Dynamic shared memory: the Q tile plus each warp's STAGES (K, V) tile pairs, 16-bit rows as flash_row_elems;
// after the loop the same bytes hold the fp32 merge area (per warp: 16 rows x HD accumulators, 16 x (m, l)).
template <int HD> __host__ __device__ constexpr int decode_smem_bytes() {
    constexpr int tile = DECODE_ROWS * flash_row_elems<HD>() * 2;
    constexpr int tiles = tile * (1 + DECODE_WARPS * decode_stages<HD>() * 2);
    constexpr int merge = DECODE_WARPS * DECODE_ROWS * (HD + 2) * 4;
    return tiles > merge ? tiles : merge;
}

template <typename T, typename C, int HD, bool Q_REGS>
__device__ __forceinline__ void flash_decode_impl(
    const T* __restrict__ q, const C* __restrict__ k_cache, const C* __restrict__ v_cache,
    const int* __restrict__ tiles, const int* __restrict__ positions, const int* __restrict__ block_tables,
    int max_blocks_per_seq, int block_size, int num_heads, int num_kv_heads, float scale, int sliding_window,
    T* __restrict__ out, float* __restrict__ partial_acc, float* __restrict__ partial_ml, float k_scale, float v_scale,
    float softcap, const T* __restrict__ sinks, const int* __restrict__ key_lo, unsigned char* smem_raw) {
    celer_pdl_begin();
    constexpr int KIND = FlashCacheKind<C>::value;
    constexpr bool FP8 = KIND != 0;
    constexpr int RS = flash_row_elems<HD>(), KSTEPS = HD / 16, DT = HD / 8;
    constexpr int STAGES = decode_stages<HD>();
    constexpr int TILE = DECODE_ROWS * RS;   // elements of one 16-row tile
    static_assert(HD % 16 == 0, "head_dim must be a multiple of 16");

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    T* sQ = reinterpret_cast<T*>(smem_raw);
    T* sKV = sQ + TILE + warp * STAGES * 2 * TILE;   // this warp's stages, K then V of each

    const int seq = tiles[blockIdx.x * 3], r0 = tiles[blockIdx.x * 3 + 1], n = tiles[blockIdx.x * 3 + 2];
    const int kv_head = blockIdx.y, split = blockIdx.z, splits = gridDim.z;
    const int group = num_heads / num_kv_heads, mrows = n * group;
    const int* table = block_tables + (long long)seq * max_blocks_per_seq;

    int kmin, kmax;
    flash_key_range(positions, key_lo, r0, n, sliding_window, kmin, kmax);
    const int u_first = kmin / DECODE_KEYS, u_count = kmax / DECODE_KEYS - u_first + 1;
    const int per_split = (u_count + splits - 1) / splits;
    const int u_begin = u_first + split * per_split, u_end = min(u_first + u_count, u_begin + per_split);
    const int mine = u_end - u_begin > warp ? (u_end - u_begin - warp + DECODE_WARPS - 1) / DECODE_WARPS : 0;

    int rpos[2], rlo[2];   // this thread's fragment rows g and g + 8
#pragma unroll
    for (int i = 0; i < 2; i++) flash_row_range(positions, key_lo, r0, group, mrows, g + 8 * i, sliding_window, rpos[i], rlo[i]);

    // Q tile, one cp.async group of its own.
    flash_stage_q<T, HD, DECODE_ROWS, DECODE_THREADS>(sQ, q, r0, group, mrows, num_heads, kv_head, tid);
    flash_cp_async_commit();

    // Gathers the warp's key tile u (keys 16u..16u+15) into stage buffer `stage`; rows outside [kmin, kmax] are
    // zero-filled without reading global memory. fp8: the bytes go to the upper half of each row's storage.
    constexpr int EPC = 16 / (int)sizeof(C), CHC = HD / EPC, LOADS = DECODE_KEYS * CHC;
    const long long head_off = (long long)kv_head * HD;
    const int bs_shift = (block_size & (block_size - 1)) == 0 ? __ffs(block_size) - 1 : -1;
    auto load_tile = [&](int stage, int u) {
        T* dk = sKV + stage * 2 * TILE;
        T* dv = dk + TILE;
#pragma unroll
        for (int it = 0; it < (LOADS + 31) / 32; it++) {
            const int i = lane + 32 * it, r = i / CHC, c = i % CHC, p = u * DECODE_KEYS + r;
            if (LOADS % 32 != 0 && i >= LOADS) break;
            const bool ok = p >= kmin && p <= kmax;
            long long off = 0;
            if (ok) {
                const int blk = bs_shift >= 0 ? p >> bs_shift : p / block_size;
                const long long slot = (long long)table[blk] * block_size + (p - blk * block_size);
                off = slot * num_kv_heads * HD + head_off + c * EPC;
            }
            if constexpr (FP8) {
                flash_cp_async16(reinterpret_cast<char*>(dk) + (r * RS * 2 + HD + c * 16), k_cache + off, ok ? 16 : 0);
                flash_cp_async16(reinterpret_cast<char*>(dv) + (r * RS * 2 + HD + c * 16), v_cache + off, ok ? 16 : 0);
            } else {
                flash_cp_async16(dk + flash_off<HD>(r, c), k_cache + off, ok ? 16 : 0);
                flash_cp_async16(dv + flash_off<HD>(r, c), v_cache + off, ok ? 16 : 0);
            }
        }
    };

    // The pipeline starts before Q has landed; every stage commits a group, empty or not, so the counts below hold.
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < mine) load_tile(s, u_begin + warp + DECODE_WARPS * s);
        flash_cp_async_commit();
    }
    flash_cp_async_wait<STAGES - 1>();   // the oldest group: this thread's part of Q
    __syncthreads();

    unsigned qf[Q_REGS ? KSTEPS : 1][4];
    if constexpr (Q_REGS) {
#pragma unroll
        for (int kk = 0; kk < KSTEPS; kk++) flash_ldsm_x4(qf[kk], sQ + flash_off<HD>(lane & 15, 2 * kk + (lane >> 4)));
    }

    float o[DT][4];
#pragma unroll
    for (int d = 0; d < DT; d++) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
    float m_run[2] = {NEG_INF, NEG_INF}, l_run[2] = {0.f, 0.f};
    float scale_log2 = scale * FLASH_LOG2E;
    if constexpr (FP8) scale_log2 = scale * k_scale * FLASH_LOG2E;
    const float cap_in = softcap > 0.f ? (FP8 ? scale * k_scale : scale) / softcap : 0.f, cap_out = softcap * FLASH_LOG2E;

    for (int i = 0; i < mine; i++) {
        flash_cp_async_wait<STAGES - 2>();   // tile i has landed (the STAGES - 2 newer groups may still fly)
        __syncwarp();                        // ... for every lane; and every lane is done with tile i - 1's buffer
        T* sK = sKV + (i % STAGES) * 2 * TILE;
        T* sV = sK + TILE;
        if constexpr (FP8) {
            flash_convert_rows<T, KIND, HD, DECODE_ROWS>(sK, 0, lane);
            flash_convert_rows<T, KIND, HD, DECODE_ROWS>(sV, 0, lane);
            __syncwarp();
        }
        if (i + STAGES - 1 < mine) load_tile((i + STAGES - 1) % STAGES, u_begin + warp + DECODE_WARPS * (i + STAGES - 1));
        flash_cp_async_commit();

        const int k0 = (u_begin + warp + DECODE_WARPS * i) * DECODE_KEYS;
        float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int kk = 0; kk < KSTEPS; kk++) {
            unsigned a[4];
            if constexpr (Q_REGS) {
                a[0] = qf[kk][0]; a[1] = qf[kk][1]; a[2] = qf[kk][2]; a[3] = qf[kk][3];
            } else {
                flash_ldsm_x4(a, sQ + flash_off<HD>(lane & 15, 2 * kk + (lane >> 4)));
            }
            unsigned b[4];   // keys 0-7 | d 0-7, keys 0-7 | d 8-15, keys 8-15 | d 0-7, keys 8-15 | d 8-15
            flash_ldsm_x4(b, sK + flash_off<HD>((lane & 7) + ((lane >> 4) << 3), 2 * kk + ((lane >> 3) & 1)));
            flash_mma<T>(s[0], a, b[0], b[1]);
            flash_mma<T>(s[1], a, b[2], b[3]);
        }

        // s[j][e]: row g + 8 * (e >> 1), key k0 + 8 j + 2 t + (e & 1); masked outside the row's [lo, pos].
#pragma unroll
        for (int j = 0; j < 2; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = k0 + 8 * j + 2 * t + (e & 1);
                s[j][e] = key < rlo[e >> 1] || key > rpos[e >> 1] ? NEG_INF : flash_score(s[j][e], scale_log2, softcap, cap_in, cap_out);
            }
        flash_online_softmax(s, m_run, l_run, o);

        // P (16 rows x 16 keys) is the A fragment built from the two S accumulators; O += P.V.
        unsigned a[4];
        flash_p_fragment<T>(s, 0, a);
#pragma unroll
        for (int dd = 0; dd < HD / 16; dd++) {
            unsigned b[4];   // transposed: keys 0-7 | d 0-7, keys 8-15 | d 0-7, keys 0-7 | d 8-15, keys 8-15 | d 8-15
            flash_ldsm_x4_trans(b, sV + flash_off<HD>(lane & 15, 2 * dd + (lane >> 4)));
            flash_mma<T>(o[2 * dd], a, b[0], b[1]);
            flash_mma<T>(o[2 * dd + 1], a, b[2], b[3]);
        }
    }
    flash_cp_async_wait_all();   // the trailing (empty) groups
    __syncthreads();             // every warp is done with its tiles: the merge area overlays them

    // Merge the warps: each writes its rows' (m, l) in log2 units and its unnormalized accumulators.
    float* m_acc = reinterpret_cast<float*>(smem_raw);             // [warp][row][HD]
    float* m_ml = m_acc + DECODE_WARPS * DECODE_ROWS * HD;         // [warp][row][2]
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float l = l_run[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const int row = warp * DECODE_ROWS + g + 8 * r;
#pragma unroll
        for (int d = 0; d < DT; d++) {
            m_acc[row * HD + 8 * d + 2 * t] = o[d][2 * r];
            m_acc[row * HD + 8 * d + 2 * t + 1] = o[d][2 * r + 1];
        }
        if (t == 0) {
            m_ml[row * 2] = l > 0.f ? m_run[r] : NEG_INF;
            m_ml[row * 2 + 1] = l;
        }
    }
    __syncthreads();

    const float out_scale = FP8 ? v_scale : 1.f;   // P.V ran on the unscaled fp8 values
    for (int i = tid; i < mrows * HD / 2; i += DECODE_THREADS) {   // a pair of dims per step
        const int row = i / (HD / 2), d = 2 * (i % (HD / 2));
        float mx = NEG_INF;
#pragma unroll
        for (int w = 0; w < DECODE_WARPS; w++) mx = fmaxf(mx, m_ml[(w * DECODE_ROWS + row) * 2]);
        float l = 0.f, acc0 = 0.f, acc1 = 0.f;
#pragma unroll
        for (int w = 0; w < DECODE_WARPS; w++) {
            const float lw = m_ml[(w * DECODE_ROWS + row) * 2 + 1];
            if (lw > 0.f) {
                const float f = exp2f(m_ml[(w * DECODE_ROWS + row) * 2] - mx);
                l += lw * f;
                acc0 += m_acc[(w * DECODE_ROWS + row) * HD + d] * f;
                acc1 += m_acc[(w * DECODE_ROWS + row) * HD + d + 1] * f;
            }
        }
        const long long oh = (long long)(r0 + row / group) * num_heads + kv_head * group + row % group;
        if (splits == 1) {
            const float inv = out_scale * attention_normalizer(mx * FLASH_LN2, l, sinks, kv_head * group + row % group);
            *reinterpret_cast<unsigned*>(out + oh * HD + d) = flash_pack2<T>(acc0 * inv, acc1 * inv);
        } else {
            const long long ps = oh * splits + split;
            *reinterpret_cast<float2*>(partial_acc + ps * HD + d) = make_float2(acc0 * out_scale, acc1 * out_scale);
            if (d == 0) {
                partial_ml[ps * 2] = l > 0.f ? mx * FLASH_LN2 : NEG_INF;
                partial_ml[ps * 2 + 1] = l;
            }
        }
    }
}

#define DECODE_INSTANTIATE(TN, T, C, HD)                                                                              \
    extern "C" __global__ void __launch_bounds__(DECODE_THREADS) flash_decode_##TN##_hd##HD(                          \
        const T* q, const C* k_cache, const C* v_cache, const int* tiles, const int* positions,                       \
        const int* block_tables, int max_blocks_per_seq, int block_size, int num_heads, int num_kv_heads,             \
        float scale, int sliding_window, T* out, float* partial_acc, float* partial_ml, float k_scale,                \
        float v_scale, float softcap, const T* sinks, const int* key_lo) {                                            \
        flash_decode_impl<T, C, HD, (HD <= 128)>(q, k_cache, v_cache, tiles, positions, block_tables,                 \
                                                 max_blocks_per_seq, block_size, num_heads, num_kv_heads, scale,      \
                                                 sliding_window, out, partial_acc, partial_ml, k_scale, v_scale,      \
                                                 softcap, sinks, key_lo, flash_dynamic_smem);                         \
    }
// The dynamic shared memory each head_dim's instances take, for the host, in the order of DECODE_INSTANTIATE_ALL.
extern "C" __device__ const int flash_decode_shared_bytes[7] = {
    decode_smem_bytes<16>(), decode_smem_bytes<32>(), decode_smem_bytes<64>(), decode_smem_bytes<80>(),
    decode_smem_bytes<96>(), decode_smem_bytes<128>(), decode_smem_bytes<256>()};
#define DECODE_INSTANTIATE_ALL(TN, T, C)                                                                              \
    DECODE_INSTANTIATE(TN, T, C, 16) DECODE_INSTANTIATE(TN, T, C, 32) DECODE_INSTANTIATE(TN, T, C, 64)               \
    DECODE_INSTANTIATE(TN, T, C, 80) DECODE_INSTANTIATE(TN, T, C, 96) DECODE_INSTANTIATE(TN, T, C, 128)              \
    DECODE_INSTANTIATE(TN, T, C, 256)
DECODE_INSTANTIATE_ALL(bf16, __nv_bfloat16, __nv_bfloat16)
DECODE_INSTANTIATE_ALL(f16, __half, __half)
DECODE_INSTANTIATE_ALL(bf16_e4m3, __nv_bfloat16, __nv_fp8_e4m3)
DECODE_INSTANTIATE_ALL(bf16_e5m2, __nv_bfloat16, __nv_fp8_e5m2)
DECODE_INSTANTIATE_ALL(f16_e4m3, __half, __nv_fp8_e4m3)
DECODE_INSTANTIATE_ALL(f16_e5m2, __half, __nv_fp8_e5m2)
#endif
