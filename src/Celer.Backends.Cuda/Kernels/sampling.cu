// Sampling on the GPU with the engine's semantics (Celer.Engine.Sampler): one thread block per logits row.
//   sample_rows:   allowed_token_ids mask, the row's logits edits in the host's order (bad words, min_tokens,
//                  logit_bias, penalties), then greedy argmax (lowest id on ties) or temperature, min_p, top_k,
//                  top_p and an inverse-CDF draw at the uniform the sequence's own generator gave on the host.
//   logprobs_rows: raw logprobs (log-softmax of the untouched row): the chosen token's with its rank, and the
//                  top tokens (descending, lower id first on ties), in the same fp32 arithmetic as the host.
// Only token ids and the requested logprobs go back to the host.
#include "common.cuh"

#define SAMPLE_THREADS 1024
#define EDIT_MASK 0
#define EDIT_ADD 1
#define EDIT_SUBTRACT 2
#define EDIT_REPETITION 3

// Matches Celer.Models.Backend.DeviceSamplingRow (sequential layout, 48 bytes).
struct SampleRow {
    float temperature;   // 0: greedy
    float top_p;         // 1: off
    float min_p;         // 0: off
    int top_k;           // 0: off
    double uniform;      // the sequence generator's draw in [0, 1), for random rows
    int edits_start, edits_count;
    int allowed_start, allowed_count;   // allowed_count 0: every token allowed
    int fallback;        // the token when every logit is masked (the host's FullyMaskedFallback)
    int token_bitmask;   // 0: no grammar; k: the row's allowed tokens are bitmask k - 1 of apply_token_bitmask
};

// Matches Celer.Models.Backend.LogitEdit.
struct LogitEdit {
    int token;
    int op;
    float value;
};

__device__ __forceinline__ float block_max_f(float v, float* scratch) {
    v = warp_max(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = lane < (blockDim.x >> 5) ? scratch[lane] : NEG_INF;
    return warp_max(t);
}

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double block_sum_d(double v, double* scratch) {
    v = warp_sum_d(v);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double t = lane < (blockDim.x >> 5) ? scratch[lane] : 0.0;
    return warp_sum_d(t);
}

// Exclusive prefix sum over the block (thread order); every thread gets its own prefix.
__device__ __forceinline__ double block_exclusive_scan_d(double v, double* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double inclusive = v;
    for (int o = 1; o < 32; o <<= 1) {
        double n = __shfl_up_sync(0xffffffffu, inclusive, o);
        if (lane >= o) inclusive += n;
    }
    __syncthreads();
    if (lane == 31) scratch[warp] = inclusive;
    __syncthreads();
    if (warp == 0) {
        double s = lane < (blockDim.x >> 5) ? scratch[lane] : 0.0;
        for (int o = 1; o < 32; o <<= 1) {
            double n = __shfl_up_sync(0xffffffffu, s, o);
            if (lane >= o) s += n;
        }
        scratch[lane] = s;   // inclusive prefix of the warps
    }
    __syncthreads();
    return inclusive - v + (warp > 0 ? scratch[warp - 1] : 0.0);
}

// (value, id) of the largest value, the lowest id on ties; NaN never wins.
__device__ __forceinline__ void better(float& v, int& id, float ov, int oid) {
    if (ov > v || (ov == v && oid < id)) { v = ov; id = oid; }
}

__device__ __forceinline__ void block_argmax(float& v, int& id, float* sv, int* si) {
    for (int o = 16; o > 0; o >>= 1) better(v, id, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, id, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) { sv[warp] = v; si[warp] = id; }
    __syncthreads();
    v = NEG_INF; id = 0x7fffffff;
    if (lane < (blockDim.x >> 5)) { v = sv[lane]; id = si[lane]; }
    for (int o = 16; o > 0; o >>= 1) better(v, id, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, id, o));
}

__device__ __forceinline__ bool contains_sorted(const int* ids, int count, int id) {
    int lo = 0, hi = count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) >> 1;
        if (ids[mid] == id) return true;
        if (ids[mid] < id) lo = mid + 1; else hi = mid - 1;
    }
    return false;
}

// Radix select over the non-negative weights (their fp32 bits order like the values), most significant byte
// first. With mass == false it finds the k-th largest weight; with mass == true the weight of the token at
// which the descending cumulative mass reaches `target` (top_p's last kept token), and the mass of all
// heavier tokens. Returns the weight's bits.
__device__ unsigned radix_select(const float* w, int vocab, bool mass, int k, double target, double* mass_above_out,
                                 unsigned* counts, double* masses) {
    unsigned prefix = 0, mask = 0;
    double mass_above = 0.0;
    int rank_above = 0;
    __shared__ unsigned chosen_digit;
    __shared__ double shared_above;
    __shared__ int shared_rank;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) { counts[b] = 0; masses[b] = 0.0; }
        __syncthreads();
        for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
            float v = w[i];
            unsigned bits = __float_as_uint(v);
            if (v > 0.f && (bits & mask) == prefix) {
                unsigned digit = (bits >> shift) & 0xffu;
                if (mass) atomicAdd(&masses[digit], (double)v);
                else atomicAdd(&counts[digit], 1u);
            }
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int digit = 255;
            for (; digit > 0; digit--) {
                if (mass ? mass_above + masses[digit] >= target : rank_above + (int)counts[digit] >= k) break;
                mass_above += masses[digit];
                rank_above += counts[digit];
            }
            chosen_digit = digit;
            shared_above = mass_above;
            shared_rank = rank_above;
        }
        __syncthreads();
        prefix |= chosen_digit << shift;
        mask |= 0xffu << shift;
        mass_above = shared_above;
        rank_above = shared_rank;
        __syncthreads();
    }
    *mass_above_out = mass_above;
    return prefix;
}

// Calls f(i, row[i]) for every i of the row, spread over the block. One block streams a whole vocabulary (128k
// fp32 logits = 512 KB) alone, so its loads must be wide and many: the aligned body goes in 16-byte loads, several
// in flight per thread (a scalar loop keeps ~4 KB in flight per block and reads a row in ~130 us on an H200).
template <typename F>
__device__ __forceinline__ void for_each_logit(const float* row, int vocab, F f) {
    const int head = min(vocab, (int)((16 - ((unsigned long long)row & 15)) & 15) / 4);
    for (int i = threadIdx.x; i < head; i += blockDim.x) f(i, row[i]);
    const int quads = (vocab - head) / 4;
    const float4* q = reinterpret_cast<const float4*>(row + head);
#pragma unroll 4
    for (int j = threadIdx.x; j < quads; j += blockDim.x) {
        const float4 v = q[j];
        const int i = head + 4 * j;
        f(i, v.x);
        f(i + 1, v.y);
        f(i + 2, v.z);
        f(i + 3, v.w);
    }
    for (int i = head + 4 * quads + threadIdx.x; i < vocab; i += blockDim.x) f(i, row[i]);
}

// Structured outputs: -inf in the logits themselves for every token whose bit is 0 in the row's grammar bitmask
// (ceil(vocab / 32) words per mask), before sampling and logprobs, as vLLM applies its grammar bitmask.
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS) apply_token_bitmask(
    float* logits, int vocab, const SampleRow* rows, const unsigned* bitmasks) {
    celer_pdl_begin();
    const int mask = rows[blockIdx.x].token_bitmask - 1;
    if (mask < 0) return;
    const unsigned* bits = bitmasks + (long long)mask * ((vocab + 31) >> 5);
    float* x = logits + (long long)blockIdx.x * vocab;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        if (((bits[i >> 5] >> (i & 31)) & 1u) == 0u) x[i] = NEG_INF;
    }
}

extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS) sample_rows(
    const float* logits, int vocab, const SampleRow* rows, const LogitEdit* edits, const int* allowed, float* work,
    int* tokens) {
    celer_pdl_begin();
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ double sd[32];
    __shared__ unsigned counts[256];
    __shared__ double masses[256];
    const SampleRow row = rows[blockIdx.x];
    const float* x = logits + (long long)blockIdx.x * vocab;
    float* w = work + (long long)blockIdx.x * vocab;

    // Greedy: the argmax of src, ties to the lower id; a row with no finite logit left takes its fallback token.
    auto greedy = [&](const float* src) {
        float best = NEG_INF;
        int id = 0x7fffffff;
        for_each_logit(src, vocab, [&](int i, float v) { better(best, id, v, i); });
        block_argmax(best, id, sv, si);
        if (threadIdx.x == 0) tokens[blockIdx.x] = best == NEG_INF ? row.fallback : id;
    };
    if (row.temperature == 0.f && row.allowed_count == 0 && row.edits_count == 0) {
        greedy(x);   // plain greedy (most decode rows): straight from the logits, no copy
        return;
    }

    for_each_logit(x, vocab, [&](int i, float v) {
        if (row.allowed_count > 0 && !contains_sorted(allowed + row.allowed_start, row.allowed_count, i)) v = NEG_INF;
        w[i] = v;
    });
    __syncthreads();
    // The edits run one after another, as the host applies them: the same token may be edited twice.
    if (threadIdx.x == 0) {
        for (int e = row.edits_start; e < row.edits_start + row.edits_count; e++) {
            LogitEdit edit = edits[e];
            float v = w[edit.token];
            if (edit.op == EDIT_MASK) v = NEG_INF;
            else if (edit.op == EDIT_ADD) v += edit.value;
            else if (edit.op == EDIT_SUBTRACT) v -= edit.value;
            else v = v > 0.f ? v / edit.value : v * edit.value;
            w[edit.token] = v;
        }
    }
    __syncthreads();

    if (row.temperature == 0.f) {
        greedy(w);
        return;
    }

    float local = NEG_INF;
    for_each_logit(w, vocab, [&](int i, float v) {
        v /= row.temperature;
        w[i] = v;
        local = fmaxf(local, v);
    });
    float m = block_max_f(local, sv);
    if (m == NEG_INF) {
        if (threadIdx.x == 0) tokens[blockIdx.x] = row.fallback;
        return;
    }
    // From here w holds exp(x - max): unnormalized probabilities with the largest exactly 1.
    for_each_logit(w, vocab, [&](int i, float v) {
        v = expf(v - m);
        w[i] = row.min_p > 0.f && v < row.min_p ? 0.f : v;
    });
    __syncthreads();
    double dummy;
    if (row.top_k > 0 && row.top_k < vocab) {
        float kth = __uint_as_float(radix_select(w, vocab, false, row.top_k, 0.0, &dummy, counts, masses));
        for_each_logit(w, vocab, [&](int i, float v) { if (v < kth) w[i] = 0.f; });
        __syncthreads();
    }

    // Each thread owns a contiguous run of ids, so prefix sums over the block follow id order.
    int chunk = (vocab + blockDim.x - 1) / blockDim.x;
    int begin = min(vocab, (int)threadIdx.x * chunk), end = min(vocab, begin + chunk);
    if (row.top_p < 1.f) {
        double local_total = 0.0;
        for_each_logit(w, vocab, [&](int, float v) { local_total += v; });
        double target = (double)row.top_p * block_sum_d(local_total, sd);
        double above;
        float cut = __uint_as_float(radix_select(w, vocab, true, 0, target, &above, counts, masses));
        // A token stays iff the mass ranked above it (heavier, or as heavy with a lower id) is below target.
        double ties_before = 0.0;
        for (int i = begin; i < end; i++) if (w[i] == cut) ties_before += 1.0;
        ties_before = block_exclusive_scan_d(ties_before, sd);
        for (int i = begin; i < end; i++) {
            float v = w[i];
            if (v < cut) w[i] = 0.f;
            else if (v == cut) {
                if (!(above + ties_before * (double)cut < target)) w[i] = 0.f;
                ties_before += 1.0;
            }
        }
        __syncthreads();
    }

    double mine = 0.0;
    int last_positive = -1;
    for (int i = begin; i < end; i++) if (w[i] > 0.f) { mine += w[i]; last_positive = i; }
    double before = block_exclusive_scan_d(mine, sd);
    double total = block_sum_d(mine, sd);
    double threshold = row.uniform * total;
    __shared__ int drawn;
    if (threadIdx.x == 0) drawn = 0x7fffffff;
    __syncthreads();
    if (before <= threshold && threshold < before + mine) {
        // The crossing is in this run; if the running sum rounds differently from the block's prefix, its end.
        double cumulative = before;
        int pick = last_positive;
        for (int i = begin; i < end; i++) {
            if (w[i] <= 0.f) continue;
            cumulative += w[i];
            if (cumulative > threshold) { pick = i; break; }
        }
        atomicMin(&drawn, pick);
    }
    __syncthreads();
    // Rounding left the threshold past the whole mass: the last token with a weight, as on the host. Ids fit a
    // float exactly (vocabularies are far below 2^24).
    float last = (float)last_positive;
    int ignored = 0;
    block_argmax(last, ignored, sv, si);
    if (threadIdx.x == 0) tokens[blockIdx.x] = drawn != 0x7fffffff ? drawn : (int)last;
}

// Raw logprobs of the rows `row_index[b]` of the logits: the chosen token's logprob and rank (1 + the number of
// strictly larger logprobs) and the num_top most likely tokens. Values are fp32 (x - max) - logsumexp as on the
// host, compared as those same values.
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS) logprobs_rows(
    const float* logits, int vocab, const int* row_index, const int* chosen, int num_top, float* chosen_logprob,
    int* chosen_rank, int* top_ids, float* top_logprobs) {
    celer_pdl_begin();
    __shared__ float sv[32];
    __shared__ int si[32];
    __shared__ double sd[32];
    const float* x = logits + (long long)row_index[blockIdx.x] * vocab;
    float local = NEG_INF;
    for_each_logit(x, vocab, [&](int, float v) { local = fmaxf(local, v); });
    float m = block_max_f(local, sv);
    double sum = 0.0;
    if (m != NEG_INF) for_each_logit(x, vocab, [&](int, float v) { sum += (double)expf(v - m); });
    sum = block_sum_d(sum, sd);
    float lse = m == NEG_INF ? 0.f : (float)log(sum);

    int c = chosen[blockIdx.x];
    float mine = (x[c] - m) - lse;
    double greater = 0.0;
    for_each_logit(x, vocab, [&](int, float v) { if ((v - m) - lse > mine) greater += 1.0; });
    greater = block_sum_d(greater, sd);
    if (threadIdx.x == 0) { chosen_logprob[blockIdx.x] = mine; chosen_rank[blockIdx.x] = 1 + (int)greater; }

    // The next of the top list is the best (value desc, id asc) below the previous one.
    float prev_v = __int_as_float(0x7f800000);
    int prev_id = -1;
    for (int t = 0; t < num_top; t++) {
        float best = NEG_INF;
        int id = 0x7fffffff;
        for_each_logit(x, vocab, [&](int i, float v) {
            v = (v - m) - lse;
            if (v < prev_v || (v == prev_v && i > prev_id)) better(best, id, v, i);
        });
        block_argmax(best, id, sv, si);
        if (id == 0x7fffffff) id = min(prev_id + 1, vocab - 1);   // the host asks for at most vocab tokens
        if (threadIdx.x == 0) {
            top_ids[blockIdx.x * num_top + t] = id;
            top_logprobs[blockIdx.x * num_top + t] = (x[id] - m) - lse;
        }
        prev_v = (x[id] - m) - lse;
        prev_id = id;
    }
}

// Async scheduling: a step launched before the previous step's ids reached the host feeds them from the device.
// pending holds pairs (row, r): token_ids[row] = sampled[r].
extern "C" __global__ void gather_sampled_tokens(int* token_ids, const int* pending, int count, const int* sampled) {
    celer_pdl_begin();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) token_ids[pending[2 * i]] = sampled[pending[2 * i + 1]];
}
