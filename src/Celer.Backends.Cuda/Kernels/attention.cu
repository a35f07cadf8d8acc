// Paged KV cache write and causal paged attention over a flat batch (prefill chunks and decodes mixed).
// Cache layout: [num_blocks, block_size, num_kv_heads, head_dim] fp32, one for keys and one for values.
#include "common.cuh"

// Grid: rows; block: threads over num_kv_heads * head_dim. Slot -1 marks a padding row.
extern "C" __global__ void write_kv(const float* k, const float* v, const int* slot_mapping, int width,
                                   float* k_cache, float* v_cache) {
    int slot = slot_mapping[blockIdx.x];
    if (slot < 0) return;
    long long src = (long long)blockIdx.x * width, dst = (long long)slot * width;
    for (int c = threadIdx.x; c < width; c += blockDim.x) {
        k_cache[dst + c] = k[src + c];
        v_cache[dst + c] = v[src + c];
    }
}

#define MAX_PER_LANE 8   // head_dim <= 256: each lane holds head_dim / 32 accumulators
#define WARPS 4

// One block per (query row, head). Each warp walks a strided subset of the row's visible kv positions with an
// online softmax (running max m, sum l, accumulator acc); lanes split head_dim so loads are coalesced. The
// warps' partial states are merged in shared memory at the end.
extern "C" __global__ void __launch_bounds__(WARPS * 32) paged_attention(
    const float* q, const float* k_cache, const float* v_cache, const int* positions, const int* token_seq,
    const int* block_tables, int max_blocks_per_seq, int block_size, int num_heads, int num_kv_heads,
    int head_dim, float scale, int sliding_window, float* out) {
    int row = blockIdx.x, head = blockIdx.y;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int kv_head = head / (num_heads / num_kv_heads);
    int pos = positions[row];
    const int* table = block_tables + (long long)token_seq[row] * max_blocks_per_seq;
    int first = sliding_window > 0 ? max(0, pos - sliding_window + 1) : 0;
    const float* qh = q + ((long long)row * num_heads + head) * head_dim;

    float qv[MAX_PER_LANE], acc[MAX_PER_LANE];
#pragma unroll
    for (int i = 0; i < MAX_PER_LANE; i++) {
        int d = lane + 32 * i;
        qv[i] = d < head_dim ? qh[d] * scale : 0.f;
        acc[i] = 0.f;
    }
    float m = NEG_INF, l = 0.f;
    long long kv_stride = (long long)num_kv_heads * head_dim;
    for (int p = first + warp; p <= pos; p += WARPS) {
        long long slot = (long long)table[p / block_size] * block_size + p % block_size;
        const float* kp = k_cache + slot * kv_stride + (long long)kv_head * head_dim;
        const float* vp = v_cache + slot * kv_stride + (long long)kv_head * head_dim;
        float s = 0.f;
#pragma unroll
        for (int i = 0; i < MAX_PER_LANE; i++) {
            int d = lane + 32 * i;
            if (d < head_dim) s += qv[i] * kp[d];
        }
        s = warp_sum(s);
        float m_new = fmaxf(m, s);
        float correction = expf(m - m_new), w = expf(s - m_new);
        l = l * correction + w;
#pragma unroll
        for (int i = 0; i < MAX_PER_LANE; i++) {
            int d = lane + 32 * i;
            if (d < head_dim) acc[i] = acc[i] * correction + w * vp[d];
        }
        m = m_new;
    }

    __shared__ float sm[WARPS], sl[WARPS];
    __shared__ float sacc[WARPS][MAX_PER_LANE * 32];
    if (lane == 0) { sm[warp] = m; sl[warp] = l; }
#pragma unroll
    for (int i = 0; i < MAX_PER_LANE; i++) sacc[warp][lane + 32 * i] = acc[i];
    __syncthreads();
    if (warp != 0) return;
    float gm = NEG_INF;
    for (int w = 0; w < WARPS; w++) gm = fmaxf(gm, sm[w]);
    float gl = 0.f;
    float res[MAX_PER_LANE];
#pragma unroll
    for (int i = 0; i < MAX_PER_LANE; i++) res[i] = 0.f;
    for (int w = 0; w < WARPS; w++) {
        if (sl[w] == 0.f) continue;   // this warp saw no position
        float f = expf(sm[w] - gm);
        gl += sl[w] * f;
#pragma unroll
        for (int i = 0; i < MAX_PER_LANE; i++) res[i] += sacc[w][lane + 32 * i] * f;
    }
    float* oh = out + ((long long)row * num_heads + head) * head_dim;
#pragma unroll
    for (int i = 0; i < MAX_PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d < head_dim) oh[d] = res[i] / gl;
    }
}
