// Causal paged attention over a flat batch (prefill chunks and decodes mixed) on the CUDA cores: the path for fp32
// models, head sizes the tensor-core kernel (flash_attention.cu) does not take, and GQA groups larger than its tile.
// Cache layout: [num_blocks, block_size, num_kv_heads, head_dim] in the model dtype T, one for keys and one for values.
#include "common.cuh"

#define MAX_PER_LANE 8   // head_dim <= 256: each lane holds head_dim / 32 values of a vector
#define MAX_GROUP 8      // query heads of one GQA group handled by one block (larger groups take several blocks)
#define WARPS 4

// Causal paged attention, grouped by KV head and split along the context (flash-decoding):
//   grid = (query rows, kv heads x group chunks, splits), block = WARPS warps.
// A row sees keys [first, positions[row]]: first from key_lo[row] when given (the host's, for a bidirectional window),
// else the sliding window's below the row's position (0 without one).
// A block takes the (up to MAX_GROUP) query heads that share one KV head, so each K and V row is loaded once for
// the whole group, and one slice of the row's visible positions. Each warp walks a strided subset of that slice
// with an online softmax per head (running max m, sum l, accumulator acc); lanes split head_dim so loads are
// coalesced. Warps merge in shared memory. With one split the block writes the normalized output; with several it
// writes its partial (m, l, acc) and merge_splits combines them. softcap > 0 soft-caps each score (scale * q.k) to
// softcap * tanh(score / softcap) first (Gemma 2); 0 leaves it alone. sinks (gpt-oss, [num_heads] of T, or nullptr) add
// each head's e^sink to its softmax denominator where the row is normalized (here, or in merge_splits).
template <typename T, typename C>
__device__ void paged_attention(
    const T* q, const C* k_cache, const C* v_cache, const int* positions, const int* token_seq,
    const int* block_tables, int max_blocks_per_seq, int block_size, int num_heads, int num_kv_heads,
    int head_dim, float scale, int sliding_window, T* out, float* partial_acc, float* partial_ml, float k_scale,
    float v_scale, float softcap, const T* sinks, const int* key_lo) {
    celer_pdl_begin();
    int row = blockIdx.x, split = blockIdx.z, splits = gridDim.z;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int group = num_heads / num_kv_heads, chunks = (group + MAX_GROUP - 1) / MAX_GROUP;
    int kv_head = blockIdx.y / chunks, chunk = blockIdx.y % chunks;
    int head0 = kv_head * group + chunk * MAX_GROUP;
    int heads = min(MAX_GROUP, group - chunk * MAX_GROUP);
    int pos = positions[row];
    const int* table = block_tables + (long long)token_seq[row] * max_blocks_per_seq;
    int first = key_lo ? key_lo[row] : sliding_window > 0 ? max(0, pos - sliding_window + 1) : 0;
    int span = (pos - first + splits) / splits;             // ceil((pos - first + 1) / splits)
    int begin = first + split * span, end = min(pos + 1, begin + span);

    float qv[MAX_GROUP][MAX_PER_LANE], acc[MAX_GROUP][MAX_PER_LANE], m[MAX_GROUP], l[MAX_GROUP];
#pragma unroll
    for (int g = 0; g < MAX_GROUP; g++) {
        m[g] = NEG_INF; l[g] = 0.f;
        const T* qh = q + ((long long)row * num_heads + head0 + g) * head_dim;
#pragma unroll
        for (int i = 0; i < MAX_PER_LANE; i++) {
            int d = lane + 32 * i;
            qv[g][i] = g < heads && d < head_dim ? to_float(qh[d]) * scale * k_scale : 0.f;
            acc[g][i] = 0.f;
        }
    }
    long long kv_stride = (long long)num_kv_heads * head_dim;
    for (int p = begin + warp; p < end; p += WARPS) {
        long long slot = (long long)table[p / block_size] * block_size + p % block_size;
        const C* kp = k_cache + slot * kv_stride + (long long)kv_head * head_dim;
        const C* vp = v_cache + slot * kv_stride + (long long)kv_head * head_dim;
        float kr[MAX_PER_LANE], vr[MAX_PER_LANE];
#pragma unroll
        for (int i = 0; i < MAX_PER_LANE; i++) {
            int d = lane + 32 * i;
            kr[i] = d < head_dim ? to_float(kp[d]) : 0.f;
            vr[i] = d < head_dim ? to_float(vp[d]) * v_scale : 0.f;
        }
#pragma unroll
        for (int g = 0; g < MAX_GROUP; g++) {
            if (g >= heads) break;
            float s = 0.f;
#pragma unroll
            for (int i = 0; i < MAX_PER_LANE; i++) s += qv[g][i] * kr[i];
            s = warp_sum(s);
            if (softcap > 0.f) s = softcap * tanhf(s / softcap);   // Gemma 2's attn_logit_softcapping (0: off)
            float m_new = fmaxf(m[g], s);
            float correction = expf(m[g] - m_new), w = expf(s - m_new);
            l[g] = l[g] * correction + w;
#pragma unroll
            for (int i = 0; i < MAX_PER_LANE; i++) acc[g][i] = acc[g][i] * correction + w * vr[i];
            m[g] = m_new;
        }
    }

    // Merge the warps, one head at a time through shared memory.
    __shared__ float sm[WARPS], sl[WARPS];
    __shared__ float sacc[WARPS][MAX_PER_LANE * 32];
    for (int g = 0; g < heads; g++) {
        if (lane == 0) { sm[warp] = m[g]; sl[warp] = l[g]; }
#pragma unroll
        for (int i = 0; i < MAX_PER_LANE; i++) sacc[warp][lane + 32 * i] = acc[g][i];
        __syncthreads();
        if (warp == 0) {
            float gm = NEG_INF;
            for (int w = 0; w < WARPS; w++) gm = fmaxf(gm, sm[w]);
            float gl = 0.f, res[MAX_PER_LANE];
#pragma unroll
            for (int i = 0; i < MAX_PER_LANE; i++) res[i] = 0.f;
            for (int w = 0; w < WARPS; w++) {
                if (sl[w] == 0.f) continue;   // this warp saw no position
                float f = expf(sm[w] - gm);
                gl += sl[w] * f;
#pragma unroll
                for (int i = 0; i < MAX_PER_LANE; i++) res[i] += sacc[w][lane + 32 * i] * f;
            }
            long long oh = ((long long)row * num_heads + head0 + g);
            if (splits == 1) {
                const float inv = attention_normalizer(gm, gl, sinks, head0 + g);
#pragma unroll
                for (int i = 0; i < MAX_PER_LANE; i++) {
                    int d = lane + 32 * i;
                    if (d < head_dim) out[oh * head_dim + d] = from_float<T>(res[i] * inv);
                }
            } else {
                long long ps = oh * splits + split;
#pragma unroll
                for (int i = 0; i < MAX_PER_LANE; i++) {
                    int d = lane + 32 * i;
                    if (d < head_dim) partial_acc[ps * head_dim + d] = res[i];
                }
                if (lane == 0) { partial_ml[ps * 2] = gm; partial_ml[ps * 2 + 1] = gl; }
            }
        }
        __syncthreads();
    }
}

// Combines the splits of paged_attention and flash_attention: out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M),
// the denominator with the head's sink term when sinks != nullptr (attention_normalizer).
// Grid: (query rows, heads); block: threads over head_dim.
template <typename T>
__device__ void merge_splits(const float* partial_acc, const float* partial_ml, int num_heads, int head_dim,
                             int splits, T* out, const T* sinks) {
    celer_pdl_begin();
    long long oh = (long long)blockIdx.x * num_heads + blockIdx.y;
    float gm = NEG_INF;
    for (int s = 0; s < splits; s++) if (partial_ml[(oh * splits + s) * 2 + 1] > 0.f) gm = fmaxf(gm, partial_ml[(oh * splits + s) * 2]);
    float gl = 0.f;
    for (int s = 0; s < splits; s++) {
        float l = partial_ml[(oh * splits + s) * 2 + 1];
        if (l > 0.f) gl += l * expf(partial_ml[(oh * splits + s) * 2] - gm);
    }
    const float inv = attention_normalizer(gm, gl, sinks, blockIdx.y);
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float r = 0.f;
        for (int s = 0; s < splits; s++) {
            float l = partial_ml[(oh * splits + s) * 2 + 1];
            if (l > 0.f) r += partial_acc[(oh * splits + s) * head_dim + d] * expf(partial_ml[(oh * splits + s) * 2] - gm);
        }
        out[oh * head_dim + d] = from_float<T>(r * inv);
    }
}

#define ATTENTION_ENTRY_POINTS(S, T, C)                                                                              \
    extern "C" __global__ void __launch_bounds__(WARPS * 32) paged_attention_##S(                                    \
        const T* q, const C* k_cache, const C* v_cache, const int* positions, const int* token_seq,                  \
        const int* block_tables, int max_blocks_per_seq, int block_size, int num_heads, int num_kv_heads,            \
        int head_dim, float scale, int sliding_window, T* out, float* partial_acc, float* partial_ml, float k_scale, \
        float v_scale, float softcap, const T* sinks, const int* key_lo) {                                          \
        paged_attention<T, C>(q, k_cache, v_cache, positions, token_seq, block_tables, max_blocks_per_seq,          \
                              block_size, num_heads, num_kv_heads, head_dim, scale, sliding_window, out,            \
                              partial_acc, partial_ml, k_scale, v_scale, softcap, sinks, key_lo);                   \
    }
CELER_FOR_KV_DTYPES(ATTENTION_ENTRY_POINTS)

#define MERGE_ENTRY_POINTS(S, T)                                                                                     \
    extern "C" __global__ void merge_splits_##S(const float* partial_acc, const float* partial_ml, int num_heads,     \
                                                int head_dim, int splits, T* out, const T* sinks) {                 \
        merge_splits<T>(partial_acc, partial_ml, num_heads, head_dim, splits, out, sinks);                          \
    }
CELER_FOR_DTYPES(MERGE_ENTRY_POINTS)
