// Sparse mixture-of-experts MLP (Mixtral, Qwen2-MoE, Qwen3-MoE, gpt-oss) the way vLLM's fused_moe computes it, in five launches
// (three for a step of few pairs: moe_gemv below takes both GEMMs and the sum without the align pass)
// whose grids depend only on the row count, top-k and the expert count, so that a CUDA graph can record them (no host
// sync; blocks past the real tile count exit):
//   moe_route        per row: fp32 softmax of the router logits, top-k (ties: the lower id), optionally renormalized,
//                    weights rounded to T -> topk_ids / topk_weights [rows, top_k] (pair p = row * top_k + slot)
//   moe_align        one block: the pairs grouped by expert into a list padded per expert to the GEMM's row tile BM
//                    (sorted[slot] = pair, or `pairs` in padding), the expert of each tile and the tile count
//   moe_gemm_gate_up per tile: its BM gathered x rows x the expert's gate and up rows, silu(gate) * up in the epilogue
//                    -> inter [pairs, I] in T (gate, up and silu rounded to T as silu_mul rounds them)
//   moe_gemm_down    per tile: its inter rows x the expert's down rows, times the pair's routing weight -> fp32 [pairs, hidden]
//   moe_sum          output[r] = the row's top_k fp32 results summed in slot order, rounded once to T
// Weights: gate_up [experts * 2I, hidden] (expert e's gate rows at e * 2I, its up rows at e * 2I + I), down
// [experts * hidden, I]. gpt-oss adds biases in the same layouts (gate_up_bias [experts * 2I], down_bias
// [experts * hidden]; nullptr: none) and its clamped SwiGLU (swiglu_limit > 0; 0: SiLU * up). The tensor-core GEMM (sm_80+, 16-bit models) needs hidden and I to be multiples of 8 and
// 16-byte aligned tensors (cp.async moves 16-byte chunks); the host takes the CUDA-core GEMM otherwise (fp32 models).
// gpt-oss's MXFP4 experts can stay packed on the card (bf16 models, the *_mxfp4 entry points): the same layouts with
// each weight row as k / 2 bytes of E2M1 codes and k / 32 E8M0 scale bytes (mxfp4_decode8 below), decoded in registers
// into exactly the bf16 weight that decoding at load gives, so both GEMMs compute what they compute on that weight.
// FP8 experts (E4M3 codes with fp32 scales, the *_fp8 entry points, 16-bit models) are decoded the same way, into
// code * scale rounded to T: the weight that dequantizing at load gives. Their inputs stay in T (W8A16, as vLLM's FP8
// Marlin MoE computes).
#include "common.cuh"

#define MOE_MAX_EXPERTS 512   // the router's logits of a row live in registers, 16 per lane
#define MOE_THREADS 128       // GEMM blocks: four warps

// ---- routing ----

// One warp per row. Experts are ranked by their logits (softmax is monotonic, and the logits have no rounding of their
// own), ties by the lower id as torch.topk; the weights are the fp32 softmax probabilities. A NaN logit (a diverged
// row, or a padded row of a recorded graph whose activations were never written) ranks as -inf: the ids stay valid
// experts whatever the row holds, since the align kernel and the GEMMs index buffers by them.
template <typename T>
__device__ void moe_route(const T* __restrict__ logits, int rows, int experts, int top_k, int normalize,
                          int* __restrict__ topk_ids, float* __restrict__ topk_weights) {
    celer_pdl_begin();
    constexpr int PER = MOE_MAX_EXPERTS / 32;
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;   // the whole warp
    const T* l = logits + (long long)row * experts;
    float v[PER];
    float mx = NEG_INF;
#pragma unroll
    for (int i = 0; i < PER; i++) {
        const int e = lane + 32 * i;
        v[i] = e < experts ? to_float(l[e]) : NEG_INF;
        if (v[i] != v[i]) v[i] = NEG_INF;
        mx = fmaxf(mx, v[i]);
    }
    mx = warp_max(mx);
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < PER; i++)
        if (lane + 32 * i < experts) sum += expf(v[i] - mx);
    sum = warp_sum(sum);

    unsigned taken = 0;   // bit i: expert lane + 32 i is chosen
    float my_weight = 0.f;
    int my_id = 0;
    for (int s = 0; s < top_k; s++) {
        float best = NEG_INF;
        int best_id = 0x7fffffff;
#pragma unroll
        for (int i = 0; i < PER; i++) {
            const int e = lane + 32 * i;
            if (e < experts && !(taken >> i & 1u) && (v[i] > best || (v[i] == best && e < best_id))) {
                best = v[i];
                best_id = e;
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, best, o);
            const int oid = __shfl_xor_sync(0xffffffffu, best_id, o);
            if (ov > best || (ov == best && oid < best_id)) {
                best = ov;
                best_id = oid;
            }
        }
        if ((best_id & 31) == lane) taken |= 1u << (best_id >> 5);
        if (lane == s) {
            my_weight = expf(best - mx) / sum;
            my_id = best_id;
        }
    }
    if (normalize) my_weight /= warp_sum(lane < top_k ? my_weight : 0.f);
    if (lane < top_k) {
        topk_ids[(long long)row * top_k + lane] = my_id;
        topk_weights[(long long)row * top_k + lane] = round_to<T>(my_weight);
    }
}

// ---- align ----

// One block (any multiple of 32 threads). A pair's rank within its expert comes from a shared-memory atomic, so the
// order inside an expert's run varies from run to run; the results do not (a row's products do not depend on its place
// in the tile). Expert e's run starts at offset[e] (a multiple of bm) and takes ceil(count[e] / bm) tiles.
extern "C" __global__ void moe_align(const int* __restrict__ topk_ids, int pairs, int experts, int bm, int* __restrict__ rank,
                                     int* __restrict__ sorted, int* __restrict__ tile_expert, int* __restrict__ num_tiles) {
    celer_pdl_begin();
    __shared__ int count[MOE_MAX_EXPERTS];
    __shared__ int offset[MOE_MAX_EXPERTS + 1];
    const int tid = threadIdx.x, lane = tid & 31;
    for (int e = tid; e < experts; e += blockDim.x) count[e] = 0;
    __syncthreads();
    for (int p = tid; p < pairs; p += blockDim.x) rank[p] = atomicAdd(&count[topk_ids[p]], 1);
    __syncthreads();
    if (tid < 32) {
        // Exclusive scan of the padded counts: each lane sums a run of experts, the warp scans the 32 sums.
        const int per = (experts + 31) / 32, e0 = min(experts, lane * per), e1 = min(experts, e0 + per);
        int local = 0;
        for (int e = e0; e < e1; e++) local += (count[e] + bm - 1) / bm * bm;
        int inclusive = local;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const int n = __shfl_up_sync(0xffffffffu, inclusive, o);
            if (lane >= o) inclusive += n;
        }
        int run = inclusive - local;
        for (int e = e0; e < e1; e++) {
            offset[e] = run;
            run += (count[e] + bm - 1) / bm * bm;
        }
        if (lane == 31) {
            offset[experts] = inclusive;
            *num_tiles = inclusive / bm;
        }
    }
    __syncthreads();
    for (int p = tid; p < pairs; p += blockDim.x) sorted[offset[topk_ids[p]] + rank[p]] = p;
    for (int e = tid; e < experts; e += blockDim.x) {
        for (int s = offset[e] + count[e]; s < offset[e + 1]; s++) sorted[s] = pairs;
        for (int t = offset[e] / bm; t < offset[e + 1] / bm; t++) tile_expert[t] = e;
    }
}

// ---- MXFP4 weights ----
// A row of codes holds value 2i in the low nibble of byte i and value 2i + 1 in its high nibble (E2M1: sign, two
// exponent bits of bias 1, one mantissa bit), and the row's scale bytes one E8M0 exponent s (2^(s − 127)) per 32
// values. A code in the top nibble of a 16-bit half, shifted into bf16's fields as (h & 0x8000) | (h >> 6 & 0x01C0),
// is its value times 2^-126 (code 1, 0.5, becomes the subnormal 2^-127), so one multiplication by 2^(s − 1) (a
// normal bf16 for s ≤ 128; larger exponents take 2^126 and 2^(s − 127) in turn) gives value · 2^(s − 127) without
// rounding: the bf16 weight Mxfp4.DecodeRowToBf16 makes at load, two values per 16-bit-pair operation.
__device__ __forceinline__ __nv_bfloat162 mxfp4_bf16x2(unsigned bits) { return *reinterpret_cast<const __nv_bfloat162*>(&bits); }

// The 8 values of one 32-bit word of codes (value i at bits 4i … 4i + 3) as four bf16 pairs (values 2j, 2j + 1)
// under the block's scale exponent s.
__device__ __forceinline__ void mxfp4_decode8(unsigned word, unsigned s, unsigned (&out)[4]) {
    const unsigned even = word << 4;   // value 2j's code in the top nibble of byte j (the word has 2j + 1's there)
    const bool wide = s > 128;
    const unsigned e = wide ? 253 : s + 126;   // bf16 exponent field of 2^(s − 1), or of 2^126 first
    const __nv_bfloat162 scale = mxfp4_bf16x2((e << 7) | (e << 23)), rest = mxfp4_bf16x2(((s << 7) | (s << 23)));
#pragma unroll
    for (int j = 0; j < 4; j++) {
        // Byte 1: byte j of `even`, byte 3: byte j of `word`; each half's top nibble is then one value's code.
        const unsigned u = __byte_perm(even, word, (j << 4) | ((4 + j) << 12));
        __nv_bfloat162 h = __hmul2(mxfp4_bf16x2((u & 0x80008000u) | ((u >> 6) & 0x01C001C0u)), scale);
        if (wide) h = __hmul2(h, rest);   // 2^(s − 127): s − 127 ≥ 2, a normal bf16
        out[j] = *reinterpret_cast<const unsigned*>(&h);
    }
}

// ---- FP8 weights ----
// E4M3 codes, one byte a value, with fp32 scales as CudaBackend.Fp8 loads them: one per weight row (ws_ld 0: per-channel
// scales, or a per-tensor scale repeated), or one per 128 x 128 block of the stacked weight, the grid's rows ws_ld apart.
#define MOE_FP8_BLOCK 128

// How the grouped GEMMs read a weight row: MOE_W16 as T values; MXFP4, FP8 and 4-bit integers (MOE_INT4, below) as codes
// decoded in registers, 8 or 4 values per 32-bit word (32 or 16 per 16-byte vector), under the scale of the block (the
// group) each value belongs to.
#define MOE_W16 0
#define MOE_MXFP4 1
#define MOE_FP8 2
template <int F> struct MoeCodes;
template <> struct MoeCodes<MOE_MXFP4> {
    using Scale = unsigned;
    static constexpr int PER_WORD = 8;
    static constexpr unsigned NONE = 127;   // the scale of padding (2^0; code 0 is 0 under any scale)
    // The scale of value kk of weight row r (rows of k values).
    static __device__ __forceinline__ Scale scale(const void* ws, int, long long r, int k, int kk) {
        return static_cast<const unsigned char*>(ws)[r * (k >> 5) + (kk >> 5)];
    }
    // A word of codes as T pairs (values 2j, 2j + 1 in out[j]).
    template <typename T> static __device__ __forceinline__ void decode(unsigned word, Scale s, unsigned (&out)[PER_WORD / 2]) {
        mxfp4_decode8(word, s, out);
    }
};
template <> struct MoeCodes<MOE_FP8> {
    using Scale = float;
    static constexpr int PER_WORD = 4;
    static constexpr float NONE = 0.f;
    static __device__ __forceinline__ Scale scale(const void* ws, int ld, long long r, int, int kk) {
        const float* s = static_cast<const float*>(ws);
        return ld == 0 ? s[r] : s[r / MOE_FP8_BLOCK * ld + kk / MOE_FP8_BLOCK];
    }
    // One code's value times its scale, in fp32 (the CUDA-core GEMM of fp32 models).
    static __device__ __forceinline__ float value(unsigned char code, Scale s) {
        float v, unused;
        flash_f16x2_to_f32(flash_fp8x4_to<__half, FLASH_E4M3>(code).x, v, unused);
        return v * s;
    }
    template <typename T> static __device__ __forceinline__ void decode(unsigned word, Scale s, unsigned (&out)[PER_WORD / 2]) {
        const uint2 h = flash_fp8x4_to<__half, FLASH_E4M3>(word);   // exact: every E4M3 value is an f16
        const unsigned halves[2] = {h.x, h.y};
#pragma unroll
        for (int j = 0; j < 2; j++) {
            float lo, hi;
            flash_f16x2_to_f32(halves[j], lo, hi);
            const T pair[2] = {from_float<T>(lo * s), from_float<T>(hi * s)};
            out[j] = *reinterpret_cast<const unsigned*>(pair);
        }
    }
};

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
// ---- 4-bit integer weights (GPTQ, AWQ, compressed-tensors W4A16) ----
// Codes 8 to a 32-bit word along the row, a word's values 0 … 7 in its nibbles 0, 4, 1, 5, 2, 6, 3, 7 (int4_gemm.cu's
// tensor-core nibble order, so that int4_dequant8, from that file of the same translation unit, decodes them into the
// pairs 2j, 2j + 1), and one 32-bit word per row and group of the row's values: the scale in T in the low half, the
// magic (Int4Magic) + zero point in T in the high half. Groups are a power of two from 32 values, so that a 16-byte
// vector of codes has one scale (per-channel scales are repeated over the widest such group dividing k at load); ws_ld
// is its log2. Each value decodes to (code − zero) · scale rounded once to T: the weight dequantized at load.
#define MOE_INT4 3
template <> struct MoeCodes<MOE_INT4> {
    using Scale = unsigned;
    static constexpr int PER_WORD = 8;
    static constexpr unsigned NONE = 0;   // scale 0 and magic 0: padding decodes to 0 whatever its codes
    static __device__ __forceinline__ Scale scale(const void* ws, int shift, long long r, int k, int kk) {
        return static_cast<const unsigned*>(ws)[r * (k >> shift) + (kk >> shift)];
    }
    template <typename T> static __device__ __forceinline__ void decode(unsigned word, Scale s, unsigned (&out)[PER_WORD / 2]) {
        int4_dequant8<T>(word, s, out);
    }
};
#endif

// ---- grouped GEMM ----
// out[pair, n] for the BM pairs of tile blockIdx.x and columns [blockIdx.y * BN, +BN): the A row of pair p is
// a[(p / a_div) * k] (x: a_div = top_k; inter: 1), the B rows are the expert's weight rows (nn.Linear layout [n, k]).
// GATED (gate_up): B holds BN gate rows and the BN matching up rows, out = inter (T) [pairs, n] with n = I.
// Otherwise (down): out = fp32 [pairs, n] with n = hidden, scaled by pair_weights[p].

#define MOE_SWIGLU_ALPHA 1.702f   // gpt-oss's alpha, a constant of its modeling code (ExpertOptions.SwigluAlpha)

// The activation of one column from its gate and up sums (biases added): silu(gate) * up with silu rounded before the
// product, as silu_mul (silu from elementwise.cu); or gpt-oss's clamped SwiGLU (limit > 0): gate <= limit,
// -limit <= up <= limit, (up + 1) * gate * sigmoid(alpha * gate), its two factors rounded to T.
template <typename T>
__device__ __forceinline__ float moe_activate(float g, float u, float limit) {
    g = round_to<T>(g);
    u = round_to<T>(u);
    if (limit > 0.f) {
        g = fminf(g, limit);
        u = fminf(fmaxf(u, -limit), limit);
        return round_to<T>(u + 1.f) * round_to<T>(g / (1.f + expf(-MOE_SWIGLU_ALPHA * g)));
    }
    return round_to<T>(silu(g)) * u;
}

// The epilogue of one output pair (columns col, col + 1 of a row). v0/v1 (and u0/u1 when gated) are fp32 sums; bias is
// the expert's bias row (gated: n gate values, then n up values) or nullptr.
template <typename T, bool GATED>
__device__ __forceinline__ void moe_store(void* out, long long row_off, int col, int n, float weight, float v0, float v1,
                                          float u0, float u1, const T* bias, float limit) {
    if (bias != nullptr) {
        if (col < n) {
            v0 += to_float(bias[col]);
            if constexpr (GATED) u0 += to_float(bias[n + col]);
        }
        if (col + 1 < n) {
            v1 += to_float(bias[col + 1]);
            if constexpr (GATED) u1 += to_float(bias[n + col + 1]);
        }
    }
    if constexpr (GATED) {
        T* o = reinterpret_cast<T*>(out) + row_off;
        const float h0 = moe_activate<T>(v0, u0, limit);
        const float h1 = moe_activate<T>(v1, u1, limit);
        if (sizeof(T) == 2 && (n & 1) == 0 && col + 1 < n) {
            T pair[2] = {from_float<T>(h0), from_float<T>(h1)};
            *reinterpret_cast<unsigned*>(o + col) = *reinterpret_cast<const unsigned*>(pair);
        } else {
            if (col < n) o[col] = from_float<T>(h0);
            if (col + 1 < n) o[col + 1] = from_float<T>(h1);
        }
    } else {
        float* o = reinterpret_cast<float*>(out) + row_off;
        if ((n & 1) == 0 && col + 1 < n) {
            *reinterpret_cast<float2*>(o + col) = make_float2(weight * v0, weight * v1);
        } else {
            if (col < n) o[col] = weight * v0;
            if (col + 1 < n) o[col + 1] = weight * v1;
        }
    }
}

// Every grouped-GEMM entry point takes the same arguments (MOE_GEMM_ARGS), so the host has one argument list: w is the
// weights (or MXFP4 / FP8 codes), ws and ws_ld their scales (MoeCodes; nullptr and 0 for 16- and 32-bit weights).
#define MOE_GEMM_ARGS(T)                                                                                              \
    const T *a, int a_div, const int *sorted, const int *tile_expert, const int *num_tiles, int pairs, const void *w, \
        const void *ws, int ws_ld, int n, int k, const float *pair_weights, void *out, const T *bias, float limit

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define MOE_BK 32                  // k per pipeline stage
#define MOE_STAGES 3
#define MOE_ROW (MOE_BK + 8)       // shared row of 80 bytes: an odd multiple of 16, so ldmatrix's 8 rows hit distinct banks

// Tensor cores: mma.sync m16n8k16 with fp32 accumulation, A and B fragments by ldmatrix from shared tiles filled by a
// MOE_STAGES-deep cp.async pipeline. Warps WARPS_M x (4 / WARPS_M), each over (BM / WARPS_M) rows x (BN / WARPS_N)
// columns (x2 when gated). BM = 64: 2 x 2 warps of 32 x 32; BM = 16 (decode): 1 x 4 warps of 16 x 16.
// F (MoeCodes): wv is MXFP4 or FP8 codes with their scales in ws; the threads of a block decode each stage's weight
// rows (their codes and scales requested from global memory into registers FD stages ahead) into the same shared tile
// that the 16-bit weights reach by cp.async, so the fragments and the MMAs are the same.
template <typename T, int BM, int BN, int WARPS_M, bool GATED, int F = MOE_W16>
__device__ void moe_gemm_tc(const T* __restrict__ a, int a_div, const int* __restrict__ sorted, const int* __restrict__ tile_expert,
                            const int* __restrict__ num_tiles, int pairs, const void* __restrict__ wv,
                            const void* __restrict__ ws, int ws_ld, int n, int k, const float* __restrict__ pair_weights,
                            void* __restrict__ out, const T* __restrict__ bias, float limit) {
    celer_pdl_begin();
    const T* w = static_cast<const T*>(wv);
    constexpr int WARPS_N = 4 / WARPS_M, WM = BM / WARPS_M, WN = BN / WARPS_N, MT = WM / 16, NT = WN / 8;
    constexpr int H = GATED ? 2 : 1, NB = H * BN;                       // B rows per stage
    constexpr int CPR = MOE_BK / 8;                                     // 16-byte chunks per row per stage
    constexpr int A_IT = (BM * CPR + MOE_THREADS - 1) / MOE_THREADS, B_IT = NB * CPR / MOE_THREADS;
    static_assert(WM % 16 == 0 && NT % 2 == 0 && (NB * CPR) % MOE_THREADS == 0, "tile shape");
    alignas(16) __shared__ T sA[MOE_STAGES][BM * MOE_ROW];
    alignas(16) __shared__ T sB[MOE_STAGES][NB * MOE_ROW];
    __shared__ int sPair[BM];

    const int tile = blockIdx.x;
    if (tile >= *num_tiles) return;   // the grid covers the most tiles any routing can make
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int warp_m = warp / WARPS_N, warp_n = warp % WARPS_N;
    const int expert = tile_expert[tile], n0 = blockIdx.y * BN;
    for (int i = tid; i < BM; i += MOE_THREADS) sPair[i] = sorted[(long long)tile * BM + i];
    __syncthreads();

    // Each thread's rows of A and B (nullptr: padding, zero-filled) and chunk column, fixed over the k loop.
    const T* a_src[A_IT];
    int a_dst[A_IT];
#pragma unroll
    for (int it = 0; it < A_IT; it++) {
        const int i = tid + it * MOE_THREADS, r = i / CPR, c = i % CPR;
        const int p = i < BM * CPR ? sPair[r] : pairs;
        a_src[it] = p < pairs ? a + (long long)(p / a_div) * k + c * 8 : nullptr;
        a_dst[it] = i < BM * CPR ? r * MOE_ROW + c * 8 : -1;
    }
    const T* b_src[B_IT];
#pragma unroll
    for (int it = 0; it < B_IT; it++) {
        const int i = tid + it * MOE_THREADS, r = i / CPR, c = i % CPR;
        const int col = n0 + r % BN, half = r / BN;
        b_src[it] = F == MOE_W16 && col < n ? w + ((long long)expert * H * n + (long long)half * n + col) * k + c * 8 : nullptr;
    }

    const int k_tiles = (k + MOE_BK - 1) / MOE_BK;
    // Codes: FPT threads per weight row of the tile, each decoding FW words of its part of the row's stage.
    constexpr bool CODES = F != MOE_W16;
    using C = MoeCodes<CODES ? F : MOE_FP8>;
    constexpr int STAGE_BYTES = MOE_BK / C::PER_WORD * 4;                // a row's codes per stage: 16 (MXFP4) or 32 (FP8)
    constexpr int FPT = MOE_THREADS / NB, FW = STAGE_BYTES / 4 / FPT;
    static_assert(!CODES || (sizeof(T) == 2 && MOE_THREADS % NB == 0 && FW * C::PER_WORD % 8 == 0 && FW <= 8),
                  "a thread decodes whole 16-byte pieces of a row's stage");
    const int f_row = tid / FPT, f_part = tid % FPT;
    const unsigned char* f_codes = nullptr;
    long long f_r = 0;   // the weight row f_row decodes
    if constexpr (CODES) {
        const int col = n0 + f_row % BN, half = f_row / BN;
        if (col < n) {
            f_r = (long long)expert * H * n + (long long)half * n + col;
            f_codes = static_cast<const unsigned char*>(wv) + f_r * (k / (4 * C::PER_WORD) * 16) + f_part * 4 * FW;
        }
    }
    // Stage kt's codes and scale (zeros past n: code 0 is 0).
    auto fetch = [&](unsigned (&q)[FW], typename C::Scale& scale, int kt) {
        if (f_codes != nullptr && kt < k_tiles) {
            const unsigned char* src = f_codes + (long long)kt * STAGE_BYTES;
            if constexpr (FW >= 4) {
#pragma unroll
                for (int i = 0; i < FW; i += 4) {
                    const uint4 v = __ldcs(reinterpret_cast<const uint4*>(src + 4 * i));
                    q[i] = v.x, q[i + 1] = v.y, q[i + 2] = v.z, q[i + 3] = v.w;
                }
            } else if constexpr (FW == 2) {
                const uint2 v = __ldcs(reinterpret_cast<const uint2*>(src));
                q[0] = v.x, q[1] = v.y;
            } else {
                q[0] = __ldcs(reinterpret_cast<const unsigned*>(src));
            }
            scale = C::scale(ws, ws_ld, f_r, k, kt * MOE_BK);
        } else {
#pragma unroll
            for (int i = 0; i < FW; i++) q[i] = 0;
            scale = C::NONE;
        }
    };
    // FD stages of codes in flight per thread, two as cp.async's stages: four measured slower at batch 32 on gpt-oss-20b's
    // shape (H200: 4.05 s against 3.75 s for 256 tokens, eb452ce and 895c91c; the barriers of the stage loop bound it).
    constexpr int FD = CODES ? MOE_STAGES - 1 : 1;
    unsigned f_q[FD][FW];
    typename C::Scale f_s[FD];
    if constexpr (CODES) {
#pragma unroll
        for (int s = 0; s < FD; s++) fetch(f_q[s], f_s[s], s);
    }
    auto load = [&](int stage, int kt) {
        const int k0 = kt * MOE_BK;
#pragma unroll
        for (int it = 0; it < A_IT; it++) {
            if (a_dst[it] < 0) continue;
            const int kc = k0 + (tid + it * MOE_THREADS) % CPR * 8;
            const bool ok = a_src[it] != nullptr && kc < k;
            flash_cp_async16(&sA[stage][a_dst[it]], ok ? a_src[it] + k0 : a, ok ? 16 : 0);
        }
        if constexpr (!CODES) {
#pragma unroll
            for (int it = 0; it < B_IT; it++) {
                const int i = tid + it * MOE_THREADS, kc = k0 + i % CPR * 8;
                const bool ok = b_src[it] != nullptr && kc < k;
                flash_cp_async16(&sB[stage][(i / CPR) * MOE_ROW + i % CPR * 8], ok ? b_src[it] + k0 : w, ok ? 16 : 0);
            }
        }
    };

    float acc[H][MT][NT][4];
#pragma unroll
    for (int h = 0; h < H; h++)
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int j = 0; j < NT; j++) acc[h][i][j][0] = acc[h][i][j][1] = acc[h][i][j][2] = acc[h][i][j][3] = 0.f;

#pragma unroll
    for (int s = 0; s < MOE_STAGES - 1; s++) {
        if (s < k_tiles) load(s, s);
        flash_cp_async_commit();   // empty groups too: the wait below counts groups
    }
    for (int kt = 0; kt < k_tiles; kt++) {
        flash_cp_async_wait<MOE_STAGES - 2>();
        __syncthreads();   // tile kt is in; every warp is done with the stage the next load overwrites
        if (kt + MOE_STAGES - 1 < k_tiles) load((kt + MOE_STAGES - 1) % MOE_STAGES, kt + MOE_STAGES - 1);
        flash_cp_async_commit();
        if constexpr (CODES) {
            unsigned q[FW];
#pragma unroll
            for (int i = 0; i < FW; i++) q[i] = f_q[0][i];
            const typename C::Scale scale = f_s[0];
#pragma unroll
            for (int s = 0; s + 1 < FD; s++) {
#pragma unroll
                for (int i = 0; i < FW; i++) f_q[s][i] = f_q[s + 1][i];
                f_s[s] = f_s[s + 1];
            }
            fetch(f_q[FD - 1], f_s[FD - 1], kt + FD);
            // The stage's slot was last read MOE_STAGES iterations ago (the barrier above closed that).
            T* dst = sB[kt % MOE_STAGES] + f_row * MOE_ROW + f_part * FW * C::PER_WORD;
            constexpr int WPS = 8 / C::PER_WORD;   // words per 16-byte store (8 values)
#pragma unroll
            for (int i = 0; i < FW; i += WPS) {
                unsigned d[4];
#pragma unroll
                for (int j = 0; j < WPS; j++) {
                    unsigned part[C::PER_WORD / 2];
                    C::template decode<T>(q[i + j], scale, part);
#pragma unroll
                    for (int e = 0; e < C::PER_WORD / 2; e++) d[j * C::PER_WORD / 2 + e] = part[e];
                }
                shared_store16(dst + C::PER_WORD * i, make_uint4(d[0], d[1], d[2], d[3]));
            }
            __syncthreads();   // every row of the stage is decoded
        }
        const T* tA = sA[kt % MOE_STAGES];
        const T* tB = sB[kt % MOE_STAGES];
#pragma unroll
        for (int kk = 0; kk < MOE_BK / 16; kk++) {
            unsigned af[MT][4];
#pragma unroll
            for (int i = 0; i < MT; i++)
                flash_ldsm_x4(af[i], tA + (warp_m * WM + i * 16 + (lane & 15)) * MOE_ROW + (2 * kk + (lane >> 4)) * 8);
#pragma unroll
            for (int h = 0; h < H; h++) {
#pragma unroll
                for (int j = 0; j < NT / 2; j++) {
                    unsigned b[4];
                    flash_ldsm_x4(b, tB + (h * BN + warp_n * WN + 16 * j + (lane & 7) + ((lane >> 4) << 3)) * MOE_ROW
                                         + (2 * kk + ((lane >> 3) & 1)) * 8);
#pragma unroll
                    for (int i = 0; i < MT; i++) {
                        flash_mma<T>(acc[h][i][2 * j], af[i], b[0], b[1]);
                        flash_mma<T>(acc[h][i][2 * j + 1], af[i], b[2], b[3]);
                    }
                }
            }
        }
    }
    flash_cp_async_wait_all();

    // C fragment: element e of lane (g, t) is row g + 8 (e / 2), column 2t + e % 2.
    const T* expert_bias = bias != nullptr ? bias + (long long)expert * H * n : nullptr;
#pragma unroll
    for (int i = 0; i < MT; i++) {
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            const int p = sPair[warp_m * WM + i * 16 + g + 8 * hr];
            if (p >= pairs) continue;
            const float weight = GATED ? 1.f : pair_weights[p];
#pragma unroll
            for (int j = 0; j < NT; j++) {
                const int col = n0 + warp_n * WN + j * 8 + 2 * t;
                moe_store<T, GATED>(out, (long long)p * n, col, n, weight, acc[0][i][j][2 * hr], acc[0][i][j][2 * hr + 1],
                                    acc[H - 1][i][j][2 * hr], acc[H - 1][i][j][2 * hr + 1], expert_bias, limit);
            }
        }
    }
}

#define MOE_GEMM_TC_ENTRY(S, T, BM, WARPS_M)                                                                          \
    extern "C" __global__ void __launch_bounds__(MOE_THREADS) moe_gemm_gate_up_m##BM##_##S(MOE_GEMM_ARGS(T)) {       \
        moe_gemm_tc<T, BM, 64, WARPS_M, true>(a, a_div, sorted, tile_expert, num_tiles, pairs, w, ws, ws_ld, n, k,      \
                                              pair_weights, out, bias, limit);                                       \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(MOE_THREADS) moe_gemm_down_m##BM##_##S(MOE_GEMM_ARGS(T)) {          \
        moe_gemm_tc<T, BM, 64, WARPS_M, false>(a, a_div, sorted, tile_expert, num_tiles, pairs, w, ws, ws_ld, n, k,     \
                                               pair_weights, out, bias, limit);                                      \
    }
#define MOE_GEMM_TC_ENTRY_POINTS(S, T) MOE_GEMM_TC_ENTRY(S, T, 16, 1) MOE_GEMM_TC_ENTRY(S, T, 64, 2)
MOE_GEMM_TC_ENTRY_POINTS(f16, __half)
MOE_GEMM_TC_ENTRY_POINTS(bf16, __nv_bfloat16)

// ---- MXFP4 and FP8, 16-row tiles: B fragments decoded straight from the codes ----
// A decode step leaves a few rows per expert, so its 16-row tiles are bound by how fast they stream codes. Through the
// shared tile above they stream slowly (gpt-oss-20b's gate/up at batch 32 read its codes at 0.73 TB/s on the H200: four
// warps decode a 32-k stage, meet at a barrier, run a few MMAs each, meet again). Here each warp owns 8 * NT columns
// (of each half, gated) over the whole k, with no shared memory and no barrier: the four lanes of a column's quad
// (t = lane & 3) take consecutive 16-byte vectors of its row (32 MXFP4 or 16 FP8 values, a block of VB), four vectors
// per iteration, each one 16-byte load and one scale, with the next iteration's loads in flight while this one
// computes. MMA step i of an iteration gives the MMA's k = 2t, 2t + 1, 2t + 8, 2t + 9 to values 4i … 4i + 3 of lane t's
// block, and A's fragments (x's rows g and g + 8, read from global memory: every warp of the tile reads the same rows,
// so L1 serves most) follow the same map, so each product pairs one weight with its own input: the sums of the 16-bit
// tile kernel over the same decoded weights, added in another order.
#define MOE_QUAD 4   // lanes of a column's quad: vectors per iteration

template <typename T, int F, bool GATED, int NT>
__device__ void moe_gemm_m16_codes(const T* __restrict__ a, int a_div, const int* __restrict__ sorted,
                                   const int* __restrict__ tile_expert, const int* __restrict__ num_tiles, int pairs,
                                   const unsigned char* __restrict__ w, const void* __restrict__ ws, int ws_ld, int n, int k,
                                   const float* __restrict__ pair_weights, void* __restrict__ out,
                                   const T* __restrict__ bias, float limit) {
    celer_pdl_begin();
    using C = MoeCodes<F>;
    constexpr int H = GATED ? 2 : 1, BN = MOE_THREADS / 32 * 8 * NT;
    constexpr int VB = 4 * C::PER_WORD, XV = VB / 8;   // values per vector; x's 16-byte vectors per block
    const int tile = blockIdx.x;
    if (tile >= *num_tiles) return;   // the grid covers the most tiles any routing can make
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int c0 = blockIdx.y * BN + (threadIdx.x >> 5) * 8 * NT;
    if (c0 >= n) return;   // the whole warp
    const int expert = tile_expert[tile], blocks = k / VB;
    const int p_lo = sorted[(long long)tile * 16 + g], p_hi = sorted[(long long)tile * 16 + 8 + g];
    const T* x_lo = p_lo < pairs ? a + (long long)(p_lo / a_div) * k : nullptr;   // nullptr: a padding row, zeros
    const T* x_hi = p_hi < pairs ? a + (long long)(p_hi / a_div) * k : nullptr;
    // Weight row of column c0 + 8 j + g in half h (gate, up): expert * H * n + h * n + column; -1 past n (zeros).
    long long row[H][NT];
#pragma unroll
    for (int h = 0; h < H; h++)
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const int col = c0 + 8 * j + g;
            row[h][j] = col < n ? (long long)expert * H * n + (long long)h * n + col : -1;
        }
    // Block b of every row the lane reads (code 0 and x = 0 past k).
    auto fetch = [&](uint4 (&q)[H][NT], typename C::Scale (&s)[H][NT], int b) {
#pragma unroll
        for (int h = 0; h < H; h++)
#pragma unroll
            for (int j = 0; j < NT; j++) {
                if (row[h][j] >= 0 && b < blocks) {
                    q[h][j] = __ldcs(reinterpret_cast<const uint4*>(w + (row[h][j] * blocks + b) * 16));
                    s[h][j] = C::scale(ws, ws_ld, row[h][j], k, b * VB);
                } else {
                    q[h][j] = make_uint4(0, 0, 0, 0);
                    s[h][j] = C::NONE;
                }
            }
    };
    auto load_x = [&](uint4 (&v)[XV], const T* x, int b) {
#pragma unroll
        for (int i = 0; i < XV; i++)
            v[i] = x != nullptr && b < blocks ? *reinterpret_cast<const uint4*>(x + b * VB + 8 * i) : make_uint4(0, 0, 0, 0);
    };

    float acc[H][NT][4];
#pragma unroll
    for (int h = 0; h < H; h++)
#pragma unroll
        for (int j = 0; j < NT; j++) acc[h][j][0] = acc[h][j][1] = acc[h][j][2] = acc[h][j][3] = 0.f;
    uint4 q[H][NT];
    typename C::Scale s[H][NT];
    fetch(q, s, t);
    for (int b = t; b < blocks + t; b += MOE_QUAD) {   // the same trip count in every lane
        uint4 next_q[H][NT];
        typename C::Scale next_s[H][NT];
        fetch(next_q, next_s, b + MOE_QUAD);
        uint4 xl[XV], xh[XV];
        load_x(xl, x_lo, b);
        load_x(xh, x_hi, b);
#pragma unroll
        for (int word = 0; word < 4; word++) {   // values word * PER_WORD …: MMA steps word * PER_WORD / 4 …
            constexpr int STEPS = C::PER_WORD / 4;
            unsigned af[STEPS][4];
#pragma unroll
            for (int st = 0; st < STEPS; st++) {
                const int v = word * C::PER_WORD + 4 * st;   // the step's first value in the block
                const uint4 l = xl[v / 8], u = xh[v / 8];
                const bool low = v % 8 == 0;
                af[st][0] = low ? l.x : l.z, af[st][1] = low ? u.x : u.z, af[st][2] = low ? l.y : l.w, af[st][3] = low ? u.y : u.w;
            }
#pragma unroll
            for (int h = 0; h < H; h++)
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    const unsigned words[4] = {q[h][j].x, q[h][j].y, q[h][j].z, q[h][j].w};
                    unsigned d[C::PER_WORD / 2];
                    C::template decode<T>(words[word], s[h][j], d);
#pragma unroll
                    for (int st = 0; st < STEPS; st++) flash_mma<T>(acc[h][j], af[st], d[2 * st], d[2 * st + 1]);
                }
        }
#pragma unroll
        for (int h = 0; h < H; h++)
#pragma unroll
            for (int j = 0; j < NT; j++) {
                q[h][j] = next_q[h][j];
                s[h][j] = next_s[h][j];
            }
    }

    // C fragment: element e of lane (g, t) is tile row g + 8 (e / 2), column 2t + e % 2 of the n8 tile.
    const T* expert_bias = bias != nullptr ? bias + (long long)expert * H * n : nullptr;
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const int p = hr == 0 ? p_lo : p_hi;
        if (p >= pairs) continue;
        const float weight = GATED ? 1.f : pair_weights[p];
#pragma unroll
        for (int j = 0; j < NT; j++)
            moe_store<T, GATED>(out, (long long)p * n, c0 + 8 * j + 2 * t, n, weight, acc[0][j][2 * hr], acc[0][j][2 * hr + 1],
                                acc[H - 1][j][2 * hr], acc[H - 1][j][2 * hr + 1], expert_bias, limit);
    }
}

// MXFP4 (bf16 models), FP8 and 4-bit integer (16-bit models) experts: w is the codes, ws their scales. 16-row tiles: 4 vectors of codes
// per lane and iteration either way (gate/up: 64 columns of each half per block, down: 128 columns); 64-row tiles:
// moe_gemm_tc decoding each stage into its shared tile.
#define MOE_CODES_ENTRY_POINTS(S, T, FMT, F)                                                                           \
    extern "C" __global__ void __launch_bounds__(MOE_THREADS) moe_gemm_gate_up_m16_##FMT##_##S(MOE_GEMM_ARGS(T)) {    \
        moe_gemm_m16_codes<T, F, true, 2>(a, a_div, sorted, tile_expert, num_tiles, pairs,                           \
                                          static_cast<const unsigned char*>(w), ws, ws_ld, n, k, pair_weights, out,   \
                                          bias, limit);                                                              \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(MOE_THREADS) moe_gemm_down_m16_##FMT##_##S(MOE_GEMM_ARGS(T)) {       \
        moe_gemm_m16_codes<T, F, false, 4>(a, a_div, sorted, tile_expert, num_tiles, pairs,                          \
                                           static_cast<const unsigned char*>(w), ws, ws_ld, n, k, pair_weights, out,  \
                                           bias, limit);                                                             \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(MOE_THREADS) moe_gemm_gate_up_m64_##FMT##_##S(MOE_GEMM_ARGS(T)) {    \
        moe_gemm_tc<T, 64, 64, 2, true, F>(a, a_div, sorted, tile_expert, num_tiles, pairs, w, ws, ws_ld, n, k,       \
                                           pair_weights, out, bias, limit);                                          \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(MOE_THREADS) moe_gemm_down_m64_##FMT##_##S(MOE_GEMM_ARGS(T)) {       \
        moe_gemm_tc<T, 64, 64, 2, false, F>(a, a_div, sorted, tile_expert, num_tiles, pairs, w, ws, ws_ld, n, k,      \
                                            pair_weights, out, bias, limit);                                         \
    }
MOE_CODES_ENTRY_POINTS(bf16, __nv_bfloat16, mxfp4, MOE_MXFP4)
MOE_CODES_ENTRY_POINTS(f16, __half, fp8, MOE_FP8)
MOE_CODES_ENTRY_POINTS(bf16, __nv_bfloat16, fp8, MOE_FP8)
MOE_CODES_ENTRY_POINTS(f16, __half, int4, MOE_INT4)
MOE_CODES_ENTRY_POINTS(bf16, __nv_bfloat16, int4, MOE_INT4)
#endif

// CUDA cores (fp32 models, cards before sm_80, unaligned shapes): tiles of MOE_SIMT_BM pairs x 32 columns (x2 gated)
// through shared memory in fp32, k in steps of 32; thread (row group, column) computes 4 rows of one column. FP8 weights
// enter the tile as code * scale rounded to T (no rounding in fp32 models): the weight dequantized at load.
#define MOE_SIMT_BM 16
template <typename T, bool GATED, int F = MOE_W16>
__device__ void moe_gemm_simt(const T* __restrict__ a, int a_div, const int* __restrict__ sorted, const int* __restrict__ tile_expert,
                              const int* __restrict__ num_tiles, int pairs, const void* __restrict__ wv, const void* __restrict__ ws,
                              int ws_ld, int n, int k, const float* __restrict__ pair_weights, void* __restrict__ out,
                              const T* __restrict__ bias, float limit) {
    celer_pdl_begin();
    static_assert(F == MOE_W16 || F == MOE_FP8, "the CUDA-core GEMM reads 16/32-bit or FP8 weights");
    constexpr int BM = MOE_SIMT_BM, BN = 32, BK = 32, H = GATED ? 2 : 1, RPT = BM * BN / MOE_THREADS;
    __shared__ float sA[BM][BK + 1];
    __shared__ float sB[H * BN][BK + 1];
    __shared__ int sPair[BM];
    const int tile = blockIdx.x;
    if (tile >= *num_tiles) return;
    const int tid = threadIdx.x, expert = tile_expert[tile], n0 = blockIdx.y * BN;
    if (tid < BM) sPair[tid] = sorted[(long long)tile * BM + tid];
    const int col = tid % BN, row0 = tid / BN;   // rows row0, row0 + 4, ...
    float acc[H][RPT];
#pragma unroll
    for (int h = 0; h < H; h++)
#pragma unroll
        for (int i = 0; i < RPT; i++) acc[h][i] = 0.f;
    for (int k0 = 0; k0 < k; k0 += BK) {
        __syncthreads();   // sPair is written / the previous step's tiles are read
        for (int i = tid; i < BM * BK; i += MOE_THREADS) {
            const int r = i / BK, c = i % BK, p = sPair[r];
            sA[r][c] = p < pairs && k0 + c < k ? to_float(a[(long long)(p / a_div) * k + k0 + c]) : 0.f;
        }
        for (int i = tid; i < H * BN * BK; i += MOE_THREADS) {
            const int r = i / BK, c = i % BK, nc = n0 + r % BN;
            const long long row = (long long)expert * H * n + (long long)(r / BN) * n + nc;
            float v = 0.f;
            if (nc < n && k0 + c < k) {
                if constexpr (F == MOE_FP8) {
                    v = round_to<T>(MoeCodes<MOE_FP8>::value(static_cast<const unsigned char*>(wv)[row * k + k0 + c],
                                                             MoeCodes<MOE_FP8>::scale(ws, ws_ld, row, k, k0 + c)));
                } else {
                    v = to_float(static_cast<const T*>(wv)[row * k + k0 + c]);
                }
            }
            sB[r][c] = v;
        }
        __syncthreads();
#pragma unroll 8
        for (int c = 0; c < BK; c++) {
#pragma unroll
            for (int h = 0; h < H; h++) {
                const float b = sB[h * BN + col][c];
#pragma unroll
                for (int i = 0; i < RPT; i++) acc[h][i] = fmaf(sA[row0 + i * (MOE_THREADS / BN)][c], b, acc[h][i]);
            }
        }
    }
    const int nc = n0 + col;
    if (nc >= n) return;
    const T* expert_bias = bias != nullptr ? bias + (long long)expert * H * n : nullptr;
    const float bg = expert_bias != nullptr ? to_float(expert_bias[nc]) : 0.f;
    const float bu = GATED && expert_bias != nullptr ? to_float(expert_bias[n + nc]) : 0.f;
#pragma unroll
    for (int i = 0; i < RPT; i++) {
        const int p = sPair[row0 + i * (MOE_THREADS / BN)];
        if (p >= pairs) continue;
        if constexpr (GATED) {
            reinterpret_cast<T*>(out)[(long long)p * n + nc] = from_float<T>(moe_activate<T>(acc[0][i] + bg, acc[H - 1][i] + bu, limit));
        } else {
            reinterpret_cast<float*>(out)[(long long)p * n + nc] = pair_weights[p] * (acc[0][i] + bg);
        }
    }
}

// ---- decode: one warp per (pair, output column) ----
// For steps of a few pairs (decode of a few rows, no more pairs than experts): a tile would be mostly padding, and its
// block streams one expert's 64 columns over the whole k alone, so a step of few tiles keeps few loads in flight (at
// batch 1 on Qwen3-30B's shape the tiles read the experts at ~1.2 TB/s). Here each (pair, column) is one warp streaming
// its weight row(s) in 16-byte loads: every SM is loading. No align pass: a pair finds its expert in topk_ids. The down
// pass also adds each row's top_k pairs (moe_gemv_down_sum), so a step of few rows is three launches and the pairs'
// fp32 results never reach memory. Same roundings and outputs as the tile kernels and moe_sum. The host takes this path
// only when k is a multiple of 16 bytes' elements and the tensors are 16-byte aligned.
#define MOE_GEMV_WARPS 4   // gate/up: warps (columns) per block
// The entry points' arguments, codes or not (as MOE_GEMM_ARGS: ws nullptr and ws_ld 0 for 16- and 32-bit weights).
#define MOE_GEMV_GATE_UP_ARGS(T)                                                                                      \
    const T *a, int a_div, const int *topk_ids, const void *w, const void *ws, int ws_ld, int n, int k, void *out,    \
        const T *bias, float limit
#define MOE_GEMV_DOWN_ARGS(T)                                                                                         \
    const T *inter, int top_k, const int *topk_ids, const void *w, const void *ws, int ws_ld, int n, int k,           \
        const float *pair_weights, T *out, const T *bias

// Codes (MoeCodes): a 16-byte vector q of codes under one scale, against its VB values of x (xv, 8 per 16-byte vector);
// the codes decode into the T weight, multiplied in fp32 as the 16-bit kernel multiplies it.
template <typename T, int F>
__device__ __forceinline__ float moe_dot_codes(const uint4& q, typename MoeCodes<F>::Scale scale, const uint4 (&xv)[MoeCodes<F>::PER_WORD / 2],
                                               float acc) {
    using C = MoeCodes<F>;
    const unsigned words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        unsigned d[C::PER_WORD / 2];
        C::template decode<T>(words[i], scale, d);
#pragma unroll
        for (int j = 0; j < C::PER_WORD / 2; j++) {
            const int pair = i * C::PER_WORD / 2 + j;   // values 2 pair, 2 pair + 1 of the vector
            const uint4 x4 = xv[pair / 4];
            const unsigned xs = pair % 4 == 0 ? x4.x : pair % 4 == 1 ? x4.y : pair % 4 == 2 ? x4.z : x4.w;
            const T* v = reinterpret_cast<const T*>(&d[j]);
            const T* xp = reinterpret_cast<const T*>(&xs);
            acc = fmaf(to_float(xp[0]), to_float(v[0]), acc);
            acc = fmaf(to_float(xp[1]), to_float(v[1]), acc);
        }
    }
    return acc;
}

// A lane's shares of x's dot products with H weight rows (weight rows r0 and r0 + n) over k: 16-bit rows in 16-byte
// vectors (lane l takes vectors l, l + 32, …), or rows of codes (F: w the codes, ws and ws_ld their scales), lane l
// taking the row's 16-byte vectors of codes l, l + 32, … (32 MXFP4 or 16 FP8 values each).
template <typename T, int H, int F>
__device__ __forceinline__ void moe_gemv_dot(const T* __restrict__ x, const void* __restrict__ w, const void* __restrict__ ws,
                                             int ws_ld, long long r0, int n, int k, int lane, float (&s)[H]) {
    if constexpr (F != MOE_W16) {
        using C = MoeCodes<F>;
        constexpr int VB = 4 * C::PER_WORD;
        const unsigned char* codes = static_cast<const unsigned char*>(w);
        const int blocks = k / VB;
        // One vector per iteration: two in flight per lane (more registers) measured 4 % slower at batch 1 on gpt-oss-20b's
        // MXFP4 shape (H200, 895c91c: 0.690 s against 0.664 s for 256 tokens).
        for (int b = lane; b < blocks; b += 32) {
            uint4 xv[VB / 8];
#pragma unroll
            for (int i = 0; i < VB / 8; i++) xv[i] = *reinterpret_cast<const uint4*>(x + b * VB + 8 * i);
#pragma unroll
            for (int h = 0; h < H; h++) {
                const long long r = r0 + (long long)h * n;
                s[h] = moe_dot_codes<T, F>(__ldcs(reinterpret_cast<const uint4*>(codes + (r * blocks + b) * 16)),
                                           C::scale(ws, ws_ld, r, k, b * VB), xv, s[h]);
            }
        }
    } else {
        constexpr int V = Vec16<T>::N;
        const T* w0 = static_cast<const T*>(w) + r0 * k;
#pragma unroll 4
        for (int i = lane * V; i < k; i += 32 * V) {
            float xv[V], wv[V];
            load16(x + i, xv);
#pragma unroll
            for (int h = 0; h < H; h++) {
                load16(w0 + (long long)h * n * k + i, wv);
#pragma unroll
                for (int j = 0; j < V; j++) s[h] = fmaf(xv[j], wv[j], s[h]);
            }
        }
    }
}

// gate/up: warp (pair blockIdx.y, column col) takes the expert's gate row and the matching up row; lane 0 adds the
// biases and writes the activation to inter [pairs, n].
template <typename T, int F>
__device__ void moe_gemv_gate_up(const T* __restrict__ a, int a_div, const int* __restrict__ topk_ids, const void* __restrict__ w,
                                 const void* __restrict__ ws, int ws_ld, int n, int k, void* __restrict__ out,
                                 const T* __restrict__ bias, float limit) {
    celer_pdl_begin();
    const int lane = threadIdx.x & 31, col = blockIdx.x * MOE_GEMV_WARPS + (threadIdx.x >> 5), p = blockIdx.y;
    if (col >= n) return;   // the whole warp
    const int expert = topk_ids[p];
    float s[2] = {0.f, 0.f};
    moe_gemv_dot<T, 2, F>(a + (long long)(p / a_div) * k, w, ws, ws_ld, (long long)expert * 2 * n + col, n, k, lane, s);
    float g = warp_sum(s[0]), u = warp_sum(s[1]);
    if (lane != 0) return;
    if (bias != nullptr) {
        g += to_float(bias[(long long)expert * 2 * n + col]);
        u += to_float(bias[(long long)expert * 2 * n + n + col]);
    }
    reinterpret_cast<T*>(out)[(long long)p * n + col] = from_float<T>(moe_activate<T>(g, u, limit));
}

// down and the sum: a block of top_k * cols warps over `cols` columns of row blockIdx.y (blockDim = 32 * top_k * cols,
// at most 1024); warp (column c, slot j) streams the expert's down row of its column against the pair's inter row, and
// one thread per column adds the slots' (sum + bias) * routing weight in slot order into out [rows, n], as moe_sum
// adds what the tile kernels write.
template <typename T, int F>
__device__ void moe_gemv_down_sum(const T* __restrict__ inter, int top_k, const int* __restrict__ topk_ids, const void* __restrict__ w,
                                  const void* __restrict__ ws, int ws_ld, int n, int k, const float* __restrict__ pair_weights,
                                  T* __restrict__ out, const T* __restrict__ bias) {
    celer_pdl_begin();
    __shared__ float part[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, cols = blockDim.x / 32 / top_k;
    const int slot = warp % top_k, col = blockIdx.x * cols + warp / top_k, row = blockIdx.y, p = row * top_k + slot;
    if (col < n) {   // the whole warp; no return: the block meets below
        const int expert = topk_ids[p];
        float s[1] = {0.f};
        moe_gemv_dot<T, 1, F>(inter + (long long)p * k, w, ws, ws_ld, (long long)expert * n + col, n, k, lane, s);
        float v = warp_sum(s[0]);
        if (lane == 0) {
            if (bias != nullptr) v += to_float(bias[(long long)expert * n + col]);
            part[warp] = pair_weights[p] * v;
        }
    }
    __syncthreads();
    const int c = blockIdx.x * cols + threadIdx.x;
    if (threadIdx.x < cols && c < n) {
        float total = 0.f;
        for (int j = 0; j < top_k; j++) total += part[threadIdx.x * top_k + j];
        out[(long long)row * n + c] = from_float<T>(total);
    }
}

// output[r, c] = sum over the row's top_k slots (in slot order) of pair_out, in fp32, rounded once. Grid: rows x
// column chunks of blockDim.x, so a decode step of one row spreads over as many SMs as its width allows (one block
// per row took ~6.5 us per launch at batch 1, 48 launches a step on Qwen3-30B-A3B).
template <typename T>
__device__ void moe_sum(const float* __restrict__ pair_out, int top_k, int hidden, T* __restrict__ out) {
    celer_pdl_begin();
    const long long row = blockIdx.x;
    const float* src = pair_out + row * top_k * hidden;
    for (int c = blockIdx.y * blockDim.x + threadIdx.x; c < hidden; c += gridDim.y * blockDim.x) {
        float s = 0.f;
        for (int j = 0; j < top_k; j++) s += src[(long long)j * hidden + c];
        out[row * hidden + c] = from_float<T>(s);
    }
}

// Qwen2-MoE's shared expert: out[r, :] += sigmoid(gate[r]) * x[r, :], in fp32, rounded once. Grid: rows.
template <typename T>
__device__ void add_sigmoid_gated(const T* __restrict__ x, const T* __restrict__ gate, int cols, T* __restrict__ out) {
    celer_pdl_begin();
    const long long row = blockIdx.x;
    const float s = 1.f / (1.f + expf(-to_float(gate[row])));
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const long long i = row * cols + c;
        out[i] = from_float<T>(to_float(out[i]) + s * to_float(x[i]));
    }
}

#define MOE_ENTRY_POINTS(S, T)                                                                                       \
    extern "C" __global__ void moe_route_##S(const T* logits, int rows, int experts, int top_k, int normalize,       \
                                             int* topk_ids, float* topk_weights) {                                   \
        moe_route<T>(logits, rows, experts, top_k, normalize, topk_ids, topk_weights);                               \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(MOE_THREADS) moe_gemm_gate_up_simt_##S(MOE_GEMM_ARGS(T)) {          \
        moe_gemm_simt<T, true>(a, a_div, sorted, tile_expert, num_tiles, pairs, w, ws, ws_ld, n, k,                     \
                               pair_weights, out, bias, limit);                                                       \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(MOE_THREADS) moe_gemm_down_simt_##S(MOE_GEMM_ARGS(T)) {             \
        moe_gemm_simt<T, false>(a, a_div, sorted, tile_expert, num_tiles, pairs, w, ws, ws_ld, n, k,                    \
                                pair_weights, out, bias, limit);                                                      \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(MOE_GEMV_WARPS * 32) moe_gemv_gate_up_##S(MOE_GEMV_GATE_UP_ARGS(T)) { \
        moe_gemv_gate_up<T, MOE_W16>(a, a_div, topk_ids, w, ws, ws_ld, n, k, out, bias, limit);                     \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(1024) moe_gemv_down_sum_##S(MOE_GEMV_DOWN_ARGS(T)) {                 \
        moe_gemv_down_sum<T, MOE_W16>(inter, top_k, topk_ids, w, ws, ws_ld, n, k, pair_weights, out, bias);          \
    }                                                                                                                \
    extern "C" __global__ void moe_sum_##S(const float* pair_out, int top_k, int hidden, T* out) {                    \
        moe_sum<T>(pair_out, top_k, hidden, out);                                                                   \
    }                                                                                                                \
    extern "C" __global__ void add_sigmoid_gated_##S(const T* x, const T* gate, int cols, T* out) {                  \
        add_sigmoid_gated<T>(x, gate, cols, out);                                                                   \
    }
CELER_FOR_DTYPES(MOE_ENTRY_POINTS)

#define MOE_GEMV_CODES_ENTRY_POINTS(S, T, FMT, F)                                                                      \
    extern "C" __global__ void __launch_bounds__(MOE_GEMV_WARPS * 32) moe_gemv_gate_up_##FMT##_##S(MOE_GEMV_GATE_UP_ARGS(T)) { \
        moe_gemv_gate_up<T, F>(a, a_div, topk_ids, w, ws, ws_ld, n, k, out, bias, limit);                            \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(1024) moe_gemv_down_sum_##FMT##_##S(MOE_GEMV_DOWN_ARGS(T)) {          \
        moe_gemv_down_sum<T, F>(inter, top_k, topk_ids, w, ws, ws_ld, n, k, pair_weights, out, bias);                \
    }
MOE_GEMV_CODES_ENTRY_POINTS(bf16, __nv_bfloat16, mxfp4, MOE_MXFP4)
MOE_GEMV_CODES_ENTRY_POINTS(f16, __half, fp8, MOE_FP8)
MOE_GEMV_CODES_ENTRY_POINTS(bf16, __nv_bfloat16, fp8, MOE_FP8)
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800   // int4_dequant8's 16-bit pair arithmetic
MOE_GEMV_CODES_ENTRY_POINTS(f16, __half, int4, MOE_INT4)
MOE_GEMV_CODES_ENTRY_POINTS(bf16, __nv_bfloat16, int4, MOE_INT4)
#endif

// FP8 experts on the CUDA-core GEMM (fp32 models; the tensor-core kernels and moe_gemv decode into 16-bit pairs).
#define MOE_SIMT_FP8_ENTRY_POINTS(S, T)                                                                              \
    extern "C" __global__ void __launch_bounds__(MOE_THREADS) moe_gemm_gate_up_simt_fp8_##S(MOE_GEMM_ARGS(T)) {      \
        moe_gemm_simt<T, true, MOE_FP8>(a, a_div, sorted, tile_expert, num_tiles, pairs, w, ws, ws_ld, n, k,          \
                                        pair_weights, out, bias, limit);                                             \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(MOE_THREADS) moe_gemm_down_simt_fp8_##S(MOE_GEMM_ARGS(T)) {         \
        moe_gemm_simt<T, false, MOE_FP8>(a, a_div, sorted, tile_expert, num_tiles, pairs, w, ws, ws_ld, n, k,         \
                                         pair_weights, out, bias, limit);                                            \
    }
CELER_FOR_DTYPES(MOE_SIMT_FP8_ENTRY_POINTS)
