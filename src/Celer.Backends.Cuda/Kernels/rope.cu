// Rotary embedding (rotate-half layout: HF's rotate_half pairs (i, i + rotary_dim/2)) and the step's split of the
// fused q/k/v projection: q out, k and v into the paged KV cache.
#include "common.cuh"

#define MAX_HEAD_DIM 512

// cos_sin[p * half + i] = (cos, sin)(p * inv_freq[i]) * attention_scaling for every position the model serves,
// computed once at load (vLLM's cos_sin_cache). The angle is the fp32 product position * inv_freq[i], as
// transformers forms it, and yarn's attention factor scales cos and sin.
extern "C" __global__ void rope_table(const float* inv_freq, int half, int max_positions, float attention_scaling,
                                      float2* cos_sin) {
    celer_pdl_begin();
    long long n = (long long)max_positions * half;
    for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < n; j += (long long)gridDim.x * blockDim.x) {
        float angle = (float)(j / half) * inv_freq[j % half];
        cos_sin[j] = make_float2(cosf(angle) * attention_scaling, sinf(angle) * attention_scaling);
    }
}

// One warp per (row, head) item, PREPARE_WARPS items per block over a grid-stride loop: query head h < heads takes the
// optional per-head RMSNorm (Qwen3's q_norm, LlamaRMSNorm-style; or with gemma_norm Gemma 3's: x * inv * (1 + w),
// rounded once), RoPE, out to q_out. The next kv_heads heads do the same for the keys (k_norm) and store into k_cache
// at the row's slot; the last kv_heads heads copy the values into v_cache. A block per (row, head) with a block-wide
// reduction made a 32k-token prefill step launch a million blocks of 64 threads, and block scheduling, not memory,
// bound it (1.26 ms per layer of Qwen3-0.6B, ten times the bytes it moves); a warp's items need only __syncwarp.
// Slot -1 marks a padding row whose keys and values are not stored. Cache layout:
// [num_blocks, block_size, num_kv_heads, head_dim] of C, one for keys and one for values. An FP8 cache C stores
// value / scale (k_scale for keys, v_scale for values; 1 for a cache in the model dtype).
#define PREPARE_WARPS 4

// Multi-axis RoPE (Qwen2-VL's M-RoPE, the Qwen vision towers' 2-D RoPE): rope_positions holds `axes` positions per row,
// and frequency pair i rotates by axis 0's position below section0, axis 1's below section0 + section1, else axis 2's.
// rope_positions null: every pair rotates by the row's position.
struct RopeAxes {
    const int* positions;
    int section0, section1, axes;
    __device__ __forceinline__ int position(int row, int pair, int row_position) const {
        if (positions == nullptr) return row_position;
        int axis = pair < section0 ? 0 : pair < section0 + section1 ? 1 : 2;
        return positions[row * axes + axis];
    }
};

// PER consecutive elements, moved as one aligned load or store (2 to 16 bytes).
template <typename T, int PER> struct alignas(sizeof(T) * PER) PrepareVec { T v[PER]; };

template <typename T, int PER> __device__ __forceinline__ void load_vec(const T* p, float (&out)[PER]) {
    PrepareVec<T, PER> x = *reinterpret_cast<const PrepareVec<T, PER>*>(p);
    for (int j = 0; j < PER; j++) out[j] = to_float(x.v[j]);
}

template <typename T, int PER> __device__ __forceinline__ void store_vec(T* p, const float (&in)[PER]) {
    PrepareVec<T, PER> x;
    for (int j = 0; j < PER; j++) x.v[j] = from_float<T>(in[j]);
    *reinterpret_cast<PrepareVec<T, PER>*>(p) = x;
}

// The common shapes (head_dim = 64 * PER, RoPE over the whole head or none): each lane holds PER consecutive elements of
// each half of the head, so element i and its rotary partner i + head_dim / 2 are the same lane's and the rotation
// needs no shared memory. Every load an item needs (its row's slot and position, the head, the norm weights) is issued
// before any is used, so an item waits for one round of global loads, then one for its cos/sin, and not for a chain of
// them: the general path below, which went through shared memory, was latency-bound (a 32k-token Qwen3-0.6B step spent
// ~17 ms in it, against ~4 ms to move its bytes).
template <typename T, typename C, int PER>
__device__ void prepare_attention_vec(const T* qkv, const int* positions, RopeAxes rope_axes, const int* slot_mapping,
                                      const float2* cos_sin, const T* q_norm, const T* k_norm, float eps, int gemma_norm,
                                      int rows, int num_heads, int num_kv_heads, int rotary_dim, T* q_out, C* k_cache,
                                      C* v_cache, float k_scale, float v_scale) {
    constexpr int HALF = 32 * PER, HEAD_DIM = 64 * PER;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int heads = num_heads + 2 * num_kv_heads;
    long long items = (long long)rows * heads;
    for (long long item = (long long)blockIdx.x * PREPARE_WARPS + warp; item < items; item += (long long)gridDim.x * PREPARE_WARPS) {
        int row = (int)(item / heads), h = (int)(item % heads);
        bool is_q = h < num_heads, is_v = h >= num_heads + num_kv_heads;
        const T* norm = is_v ? nullptr : is_q ? q_norm : k_norm;
        int slot = is_q ? 0 : slot_mapping[row];
        int position = rotary_dim != 0 && !is_v ? positions[row] : 0;
        float a[PER], b[PER], wa[PER], wb[PER];
        const T* src = qkv + item * HEAD_DIM + lane * PER;
        load_vec<T, PER>(src, a);
        load_vec<T, PER>(src + HALF, b);
        if (norm != nullptr) {
            load_vec<T, PER>(norm + lane * PER, wa);
            load_vec<T, PER>(norm + HALF + lane * PER, wb);
        }
        if (slot < 0) continue;   // a padding row's keys and values: the whole warp skips the item together
        if (is_v) {
            float inv = 1.f / v_scale;
            for (int j = 0; j < PER; j++) { a[j] *= inv; b[j] *= inv; }
            C* dst = v_cache + ((long long)slot * num_kv_heads + (h - num_heads - num_kv_heads)) * HEAD_DIM + lane * PER;
            store_vec<C, PER>(dst, a);
            store_vec<C, PER>(dst + HALF, b);
            continue;
        }
        if (norm != nullptr) {
            float ss = 0.f;
            for (int j = 0; j < PER; j++) ss += a[j] * a[j] + b[j] * b[j];
            float inv = rsqrtf(warp_sum(ss) / HEAD_DIM + eps);
            for (int j = 0; j < PER; j++) {
                if (gemma_norm) {
                    a[j] = round_to<T>(a[j] * inv * (1.f + wa[j]));
                    b[j] = round_to<T>(b[j] * inv * (1.f + wb[j]));
                } else {
                    a[j] = round_to<T>(round_to<T>(a[j] * inv) * wa[j]);
                    b[j] = round_to<T>(round_to<T>(b[j] * inv) * wb[j]);
                }
            }
        }
        if (rotary_dim != 0) {
            // One axis (every model but Qwen2-VL's): the row's cos/sin are PER consecutive entries from one base.
            const float2* cs = cos_sin + (long long)position * HALF + lane * PER;
            for (int j = 0; j < PER; j++) {
                int pair = lane * PER + j;
                float2 t = rope_axes.positions == nullptr ? cs[j] : cos_sin[(long long)rope_axes.position(row, pair, position) * HALF + pair];
                float x = a[j], y = b[j];
                a[j] = x * t.x - y * t.y;
                b[j] = y * t.x + x * t.y;
            }
        }
        if (is_q) {
            T* dst = q_out + ((long long)row * num_heads + h) * HEAD_DIM + lane * PER;
            store_vec<T, PER>(dst, a);
            store_vec<T, PER>(dst + HALF, b);
        } else {
            // Keys are rounded to the model dtype first, as a 16-bit cache would hold them, then scaled into C.
            float inv = 1.f / k_scale;
            for (int j = 0; j < PER; j++) { a[j] = round_to<T>(a[j]) * inv; b[j] = round_to<T>(b[j]) * inv; }
            C* dst = k_cache + ((long long)slot * num_kv_heads + (h - num_heads)) * HEAD_DIM + lane * PER;
            store_vec<C, PER>(dst, a);
            store_vec<C, PER>(dst + HALF, b);
        }
    }
}

template <typename T, typename C>
__device__ void prepare_attention(const T* qkv, const int* positions, RopeAxes rope_axes, const int* slot_mapping,
                                  const float2* cos_sin, const T* q_norm, const T* k_norm, float eps, int gemma_norm, int rows,
                                  int num_heads, int num_kv_heads, int head_dim, int rotary_dim, T* q_out, C* k_cache,
                                  C* v_cache, float k_scale, float v_scale) {
    celer_pdl_begin();
    if (rotary_dim == head_dim || rotary_dim == 0) {
        switch (head_dim) {
            case 64: prepare_attention_vec<T, C, 1>(qkv, positions, rope_axes, slot_mapping, cos_sin, q_norm, k_norm, eps, gemma_norm, rows, num_heads, num_kv_heads, rotary_dim, q_out, k_cache, v_cache, k_scale, v_scale); return;
            case 128: prepare_attention_vec<T, C, 2>(qkv, positions, rope_axes, slot_mapping, cos_sin, q_norm, k_norm, eps, gemma_norm, rows, num_heads, num_kv_heads, rotary_dim, q_out, k_cache, v_cache, k_scale, v_scale); return;
            case 256: prepare_attention_vec<T, C, 4>(qkv, positions, rope_axes, slot_mapping, cos_sin, q_norm, k_norm, eps, gemma_norm, rows, num_heads, num_kv_heads, rotary_dim, q_out, k_cache, v_cache, k_scale, v_scale); return;
            default: break;
        }
    }
    __shared__ float smem[PREPARE_WARPS][MAX_HEAD_DIM];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float* x = smem[warp];
    int heads = num_heads + 2 * num_kv_heads, half = rotary_dim / 2;
    long long items = (long long)rows * heads;
    for (long long item = (long long)blockIdx.x * PREPARE_WARPS + warp; item < items; item += (long long)gridDim.x * PREPARE_WARPS) {
        int row = (int)(item / heads), h = (int)(item % heads);
        bool is_q = h < num_heads, is_v = h >= num_heads + num_kv_heads;
        const T* src = qkv + item * head_dim;
        T* q_dst = nullptr;
        C* cache_dst = nullptr;
        if (is_q) {
            q_dst = q_out + ((long long)row * num_heads + h) * head_dim;
        } else {
            int slot = slot_mapping[row];
            if (slot < 0) continue;   // the whole warp skips the item together
            int kv_head = is_v ? h - num_heads - num_kv_heads : h - num_heads;
            cache_dst = (is_v ? v_cache : k_cache) + ((long long)slot * num_kv_heads + kv_head) * head_dim;
        }
        if (is_v) {
            float inv = 1.f / v_scale;
            for (int d = lane; d < head_dim; d += 32) cache_dst[d] = from_float<C>(to_float(src[d]) * inv);
            continue;
        }

        for (int d = lane; d < head_dim; d += 32) x[d] = to_float(src[d]);
        const T* norm = is_q ? q_norm : k_norm;
        if (norm != nullptr) {
            float ss = 0.f;
            for (int d = lane; d < head_dim; d += 32) ss += x[d] * x[d];
            float inv = rsqrtf(warp_sum(ss) / head_dim + eps);
            if (gemma_norm) {
                for (int d = lane; d < head_dim; d += 32) x[d] = round_to<T>(x[d] * inv * (1.f + to_float(norm[d])));
            } else {
                for (int d = lane; d < head_dim; d += 32) x[d] = round_to<T>(round_to<T>(x[d] * inv) * to_float(norm[d]));
            }
        }
        __syncwarp();
        for (int i = lane; i < half; i += 32) {
            float a = x[i], b = x[i + half];
            float2 t = cos_sin[(long long)rope_axes.position(row, i, positions[row]) * half + i];
            x[i] = a * t.x - b * t.y;
            x[i + half] = b * t.x + a * t.y;
        }
        __syncwarp();
        if (is_q) {
            for (int d = lane; d < head_dim; d += 32) q_dst[d] = from_float<T>(x[d]);
        } else {
            // Keys are rounded to the model dtype first, as a 16-bit cache would hold them, then scaled into C.
            float inv = 1.f / k_scale;
            for (int d = lane; d < head_dim; d += 32) cache_dst[d] = from_float<C>(round_to<T>(x[d]) * inv);
        }
        __syncwarp();   // x is the next item's
    }
}

#define ROPE_ENTRY_POINTS(S, T, C)                                                                                   \
    extern "C" __global__ void prepare_attention_##S(                                                                \
        const T* qkv, const int* positions, const int* rope_positions, int section0, int section1, int axes,         \
        const int* slot_mapping, const float2* cos_sin, const T* q_norm, const T* k_norm, float eps, int gemma_norm, \
        int rows, int num_heads, int num_kv_heads, int head_dim, int rotary_dim, T* q_out, C* k_cache, C* v_cache,   \
        float k_scale, float v_scale) {                                                                              \
        prepare_attention<T, C>(qkv, positions, RopeAxes{rope_positions, section0, section1, axes}, slot_mapping,    \
                                cos_sin, q_norm, k_norm, eps, gemma_norm, rows, num_heads, num_kv_heads, head_dim,   \
                                rotary_dim, q_out, k_cache, v_cache, k_scale, v_scale);                              \
    }
CELER_FOR_KV_DTYPES(ROPE_ENTRY_POINTS)
