// Runs the literal moe.cu kernels (routing, align, the tensor-core and CUDA-core grouped GEMMs, the sum) and
// add_sigmoid_gated on emulated threads (common.cuh = cuda_emulation.cuh; flash_attention.cu brings the mma.sync, ldmatrix
// and cp.async wrappers moe.cu shares) and compares them with a double-precision reference that rounds where the
// kernels round (weights to T, gate and up to T, silu to T, the product to T, the output once), also with gpt-oss's
// expert biases and clamped SwiGLU. Routing is checked exactly (ids; logits with ties among them), the align kernel's
// list by its invariants. MXFP4 experts run the *_mxfp4 kernels on random codes and scales against the same reference
// on the weights decoded from the format's definition (a table of the E2M1 values times 2^(s − 127)), and the decoder
// alone against that table for every code under scales across the E8M0 range. FP8 experts (E4M3 codes with fp32 scales
// per row or per 128 x 128 block, the grid's rows padded) run the *_fp8 kernels against the reference on code * scale
// rounded to T, with each code's value from the format's definition (cuda_emulation.cuh's fp8_decode). 4-bit integer
// experts (GPTQ / AWQ codes with a scale and zero point per row and group of 32, 64 or 128 values) run the *_int4
// kernels against the reference on (code − zero) · scale rounded once to T, the codes packed from their values here in
// the order moe.cu's MoeCodes<MOE_INT4> documents.
// Usage: moe_emulation_test [seed]
#include "common.cuh"
#include "elementwise.cu"        // silu
#include "flash_attention.cu"
#include "int4_gemm.cu"          // int4_dequant8, which moe.cu's 4-bit experts share
#include "moe.cu"
#include <algorithm>
#include <string>

// Every GEMM entry point takes the weights (or MXFP4 / FP8 codes), a scale pointer and the scale grid's row stride
// (MOE_GEMM_ARGS, MOE_GEMV_GATE_UP_ARGS, MOE_GEMV_DOWN_ARGS).
using GemmFn = void (*)(const void*, int, const int*, const int*, const int*, int, const void*, const void*, int, int, int,
                        const float*, void*, const void*, float);
using GateUpGemvFn = void (*)(const void*, int, const int*, const void*, const void*, int, int, int, void*, const void*, float);
using DownSumGemvFn = void (*)(const void*, int, const int*, const void*, const void*, int, int, int, const float*, void*,
                               const void*);
static GemmFn fp4_gemm(bool gated, int bm) {
    if (bm == 16) return (GemmFn)(gated ? moe_gemm_gate_up_m16_mxfp4_bf16 : moe_gemm_down_m16_mxfp4_bf16);
    return (GemmFn)(gated ? moe_gemm_gate_up_m64_mxfp4_bf16 : moe_gemm_down_m64_mxfp4_bf16);
}
struct GemvFns {
    GateUpGemvFn gate_up;
    DownSumGemvFn down_sum;
};
static const GemvFns kFp4Gemv = {(GateUpGemvFn)moe_gemv_gate_up_mxfp4_bf16, (DownSumGemvFn)moe_gemv_down_sum_mxfp4_bf16};

// The experts' weight format: 16/32-bit values, MXFP4, or FP8 with a scale per row or per 128 x 128 block.
enum class Codes { None, Mxfp4, Fp8Rows, Fp8Blocks, Int4 };
static const char* codes_name(Codes c) {
    return c == Codes::Mxfp4 ? "mxfp4" : c == Codes::Fp8Rows ? "fp8-row" : c == Codes::Fp8Blocks ? "fp8-blk" : c == Codes::Int4 ? "int4" : "";
}

// E2M1 by code (OCP microscaling formats: sign, two exponent bits of bias 1, one mantissa bit).
static const double kE2M1[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6};

// MXFP4 rows of k values: k / 2 random code bytes and k / 32 scale bytes per row, and the bf16 weight they mean.
struct Mxfp4Weight {
    std::vector<unsigned char> codes, scales;
    std::vector<__nv_bfloat16> decoded;
};
static Mxfp4Weight random_mxfp4(size_t rows, int k, std::mt19937& rng) {
    Mxfp4Weight w;
    w.codes.resize(rows * k / 2);
    w.scales.resize(rows * k / 32);
    w.decoded.resize(rows * k);
    for (auto& c : w.codes) c = (unsigned char)(rng() & 0xFF);
    for (auto& s : w.scales) s = (unsigned char)(121 + rng() % 5);   // 2^-6 … 2^-2: weights up to 0.375
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < k; c++) {
            const unsigned char byte = w.codes[r * k / 2 + c / 2];
            const int code = c % 2 == 0 ? byte & 0xF : byte >> 4;
            w.decoded[r * k + c] = from_float<__nv_bfloat16>((float)std::ldexp(kE2M1[code], w.scales[r * k / 32 + c / 32] - 127));
        }
    return w;
}

// E4M3 rows of k values: random codes (no NaN) and fp32 scales per row (ld 0) or per 128 x 128 block (grid rows ld
// apart, padded past the grid's columns), and the T weight they mean (code * scale in fp32, rounded once).
template <typename T> struct Fp8Weight {
    std::vector<unsigned char> codes;
    std::vector<float> scales;
    int ld = 0;
    std::vector<T> decoded;
};
template <typename T> static Fp8Weight<T> random_fp8(size_t rows, int k, bool blocks, std::mt19937& rng) {
    Fp8Weight<T> w;
    std::uniform_real_distribution<float> scale(1e-4f, 4e-4f);   // weights up to 448 * 4e-4 = 0.18
    w.codes.resize(rows * k);
    for (auto& c : w.codes) do c = (unsigned char)(rng() & 0xFF); while ((c & 0x7F) == 0x7F);
    const size_t grid_rows = blocks ? (rows + 127) / 128 : rows;
    const int grid_columns = (k + 127) / 128;
    w.ld = blocks ? grid_columns + 3 : 0;
    w.scales.assign(blocks ? grid_rows * w.ld : rows, NAN);   // padding is never read
    for (size_t r = 0; r < grid_rows; r++)
        for (int c = 0; c < (blocks ? grid_columns : 1); c++) w.scales[blocks ? r * w.ld + c : r] = scale(rng);
    w.decoded.resize(rows * k);
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < k; c++) {
            const float s = blocks ? w.scales[r / 128 * w.ld + c / 128] : w.scales[r];
            w.decoded[r * k + c] = from_float<T>((float)fp8_decode(w.codes[r * k + c], 1) * s);
        }
    return w;
}

// 4-bit integer rows of k values in groups of 2^shift: random codes, scales (in T) and zero points (0 … 15), packed as
// MoeCodes<MOE_INT4> reads them (value v of a word in nibble v / 2 + 4 (v % 2)), and the T weight they mean.
template <typename T> struct Int4Weight {
    std::vector<unsigned> codes, scales;
    int shift = 0;
    std::vector<T> decoded;
};
template <typename T> static Int4Weight<T> random_int4(size_t rows, int k, int shift, std::mt19937& rng) {
    Int4Weight<T> w;
    w.shift = shift;
    const int groups = k >> shift;
    CHECK(k % (1 << shift) == 0 && shift >= 5);
    std::uniform_real_distribution<float> scale(0.005f, 0.02f);   // weights up to 15 * 0.02 = 0.3
    const float magic = std::is_same<T, __nv_bfloat16>::value ? 128.f : 1024.f;
    std::vector<float> s(rows * groups);
    std::vector<int> z(rows * groups);
    w.scales.resize(rows * groups);
    for (size_t i = 0; i < s.size(); i++) {
        s[i] = to_float(from_float<T>(scale(rng)));
        z[i] = (int)(rng() % 16);
        w.scales[i] = to_bits<T>(s[i]) | ((unsigned)to_bits<T>(magic + z[i]) << 16);
    }
    w.codes.assign(rows * k / 8, 0);
    w.decoded.resize(rows * k);
    for (size_t r = 0; r < rows; r++)
        for (int c = 0; c < k; c++) {
            const int code = (int)(rng() % 16), v = c % 8;
            w.codes[(r * k + c) / 8] |= (unsigned)code << (4 * (v / 2 + 4 * (v % 2)));
            const size_t g = r * groups + (c >> shift);
            w.decoded[r * k + c] = from_float<T>((float)(code - z[g]) * s[g]);
        }
    return w;
}

template <typename T> struct Kernels;
#define KERNELS(S, T)                                                                                                 \
    template <> struct Kernels<T> {                                                                                   \
        static constexpr const char* name = #S;                                                                       \
        static void route(const T* l, int r, int e, int k, int n, int* ids, float* w) { moe_route_##S(l, r, e, k, n, ids, w); } \
        static void sum(const float* p, int k, int h, T* o) { moe_sum_##S(p, k, h, o); }                             \
        static void gated(const T* x, const T* g, int c, T* o) { add_sigmoid_gated_##S(x, g, c, o); }                \
        static GemmFn gemm(bool gated, int bm);                                                                       \
        static GemvFns gemv() { return {(GateUpGemvFn)moe_gemv_gate_up_##S, (DownSumGemvFn)moe_gemv_down_sum_##S}; } \
        static GemmFn fp8_gemm(bool gated, int bm);                                                                   \
        static GemvFns fp8_gemv();                                                                                    \
        static GemmFn int4_gemm(bool gated, int bm);                                                                  \
        static GemvFns int4_gemv();                                                                                   \
    };
CELER_FOR_DTYPES(KERNELS)
#define FP8_KERNELS(S, T)                                                                                             \
    GemmFn Kernels<T>::fp8_gemm(bool gated, int bm) {                                                                 \
        if (bm == 0) return (GemmFn)(gated ? moe_gemm_gate_up_simt_fp8_##S : moe_gemm_down_simt_fp8_##S);             \
        if (bm == 16) return (GemmFn)(gated ? moe_gemm_gate_up_m16_fp8_##S : moe_gemm_down_m16_fp8_##S);              \
        return (GemmFn)(gated ? moe_gemm_gate_up_m64_fp8_##S : moe_gemm_down_m64_fp8_##S);                            \
    }                                                                                                                 \
    GemvFns Kernels<T>::fp8_gemv() { return {(GateUpGemvFn)moe_gemv_gate_up_fp8_##S, (DownSumGemvFn)moe_gemv_down_sum_fp8_##S}; }
FP8_KERNELS(f16, __half)
FP8_KERNELS(bf16, __nv_bfloat16)
#define INT4_KERNELS(S, T)                                                                                            \
    GemmFn Kernels<T>::int4_gemm(bool gated, int bm) {                                                                \
        CHECK(bm > 0);                                                                                                \
        if (bm == 16) return (GemmFn)(gated ? moe_gemm_gate_up_m16_int4_##S : moe_gemm_down_m16_int4_##S);            \
        return (GemmFn)(gated ? moe_gemm_gate_up_m64_int4_##S : moe_gemm_down_m64_int4_##S);                          \
    }                                                                                                                 \
    GemvFns Kernels<T>::int4_gemv() { return {(GateUpGemvFn)moe_gemv_gate_up_int4_##S, (DownSumGemvFn)moe_gemv_down_sum_int4_##S}; }
INT4_KERNELS(f16, __half)
INT4_KERNELS(bf16, __nv_bfloat16)
// fp32 models keep no 4-bit experts (the loader dequantizes them).
GemmFn Kernels<float>::int4_gemm(bool, int) { CHECK(false); return nullptr; }
GemvFns Kernels<float>::int4_gemv() { CHECK(false); return {}; }
// fp32 models: the CUDA-core GEMM only.
GemmFn Kernels<float>::fp8_gemm(bool gated, int bm) {
    CHECK(bm == 0);
    return (GemmFn)(gated ? moe_gemm_gate_up_simt_fp8_f32 : moe_gemm_down_simt_fp8_f32);
}
GemvFns Kernels<float>::fp8_gemv() { CHECK(false); return {}; }
// bm 0: the CUDA-core kernel.
GemmFn Kernels<float>::gemm(bool gated, int bm) {
    CHECK(bm == 0);
    return (GemmFn)(gated ? moe_gemm_gate_up_simt_f32 : moe_gemm_down_simt_f32);
}
#define TC_GEMM(S, T)                                                                                                 \
    GemmFn Kernels<T>::gemm(bool gated, int bm) {                                                                     \
        if (bm == 0) return (GemmFn)(gated ? moe_gemm_gate_up_simt_##S : moe_gemm_down_simt_##S);                    \
        if (bm == 16) return (GemmFn)(gated ? moe_gemm_gate_up_m16_##S : moe_gemm_down_m16_##S);                      \
        return (GemmFn)(gated ? moe_gemm_gate_up_m64_##S : moe_gemm_down_m64_##S);                                    \
    }
TC_GEMM(f16, __half)
TC_GEMM(bf16, __nv_bfloat16)

template <typename T> static std::vector<T> random_t(size_t n, float scale, std::mt19937& rng) {
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<T> v(n);
    for (auto& e : v) {
        float f = u(rng);
        if (f == 0.f) f = scale / 3;
        e = from_float<T>(f);
    }
    return v;
}
template <typename T> static double val(T v) { return to_float(v); }
template <typename T> static double rnd(double v) { return to_float(from_float<T>((float)v)); }
static void readable(const void* p, size_t bytes) { g_readable.push_back({(const char*)p, bytes}); }

// bm: 16 or 64 (tensor cores), 0 (CUDA cores, 16-row tiles) or -1 (moe_gemv: a warp per pair and column, no align).
// limit > 0: gpt-oss's experts (a bias after each projection, the SwiGLU clamped at limit).
// codes: the experts in MXFP4 (bf16 only), FP8 (16-bit models; fp32 ones on the CUDA-core GEMM only) or 4-bit
// integers in groups of 2^int4_shift (16-bit models, tensor cores or gemv); hidden and I multiples of 32 in every case.
template <typename T>
static bool run_case(int rows, int experts, int top_k, int hidden, int inter, bool normalize, int bm, std::mt19937& rng,
                     float limit = 0.f, Codes codes = Codes::None, int int4_shift = 5) {
    const bool fp4 = codes == Codes::Mxfp4, fp8 = codes == Codes::Fp8Rows || codes == Codes::Fp8Blocks, i4 = codes == Codes::Int4;
    const int pairs = rows * top_k, tile = bm <= 0 ? 16 : bm, bn = bm == 0 ? 32 : 64;
    std::vector<T> logits = random_t<T>((size_t)rows * experts, 2.f, rng);
    // Ties: some rows repeat a logit (the lower id must win), one row is all equal.
    for (int r = 0; r < rows; r += 3) logits[(size_t)r * experts + experts - 1] = logits[(size_t)r * experts + rng() % experts];
    if (rows > 1) for (int e = 0; e < experts; e++) logits[(size_t)(rows - 1) * experts + e] = logits[(size_t)(rows - 1) * experts];
    std::vector<T> x = random_t<T>((size_t)rows * hidden, 1.f, rng);
    std::vector<T> w1 = random_t<T>((size_t)experts * 2 * inter * hidden, 0.15f, rng);
    std::vector<T> w2 = random_t<T>((size_t)experts * hidden * inter, 0.15f, rng);
    Mxfp4Weight q1, q2;
    if (fp4) {
        CHECK((std::is_same<T, __nv_bfloat16>::value && hidden % 32 == 0 && inter % 32 == 0));
        q1 = random_mxfp4((size_t)experts * 2 * inter, hidden, rng);
        q2 = random_mxfp4((size_t)experts * hidden, inter, rng);
        memcpy(w1.data(), q1.decoded.data(), w1.size() * sizeof(T));   // the reference reads the decoded weights
        memcpy(w2.data(), q2.decoded.data(), w2.size() * sizeof(T));
    }
    Fp8Weight<T> f1, f2;
    if (fp8) {
        CHECK(((sizeof(T) == 2 || bm == 0) && hidden % 32 == 0 && inter % 32 == 0));
        f1 = random_fp8<T>((size_t)experts * 2 * inter, hidden, codes == Codes::Fp8Blocks, rng);
        f2 = random_fp8<T>((size_t)experts * hidden, inter, codes == Codes::Fp8Blocks, rng);
        w1 = f1.decoded;
        w2 = f2.decoded;
    }
    Int4Weight<T> n1, n2;
    if (i4) {
        CHECK((sizeof(T) == 2 && bm != 0));
        // Groups no wider than each k: gate/up's k is hidden, down's is I.
        n1 = random_int4<T>((size_t)experts * 2 * inter, hidden, std::min(int4_shift, __builtin_ctz(hidden)), rng);
        n2 = random_int4<T>((size_t)experts * hidden, inter, std::min(int4_shift, __builtin_ctz(inter)), rng);
        w1 = n1.decoded;
        w2 = n2.decoded;
    }
    const bool biased = limit > 0.f;
    std::vector<T> b1 = random_t<T>(biased ? (size_t)experts * 2 * inter : 0, 0.5f, rng);
    std::vector<T> b2 = random_t<T>(biased ? (size_t)experts * hidden : 0, 0.5f, rng);
    const void* b1p = biased ? b1.data() : nullptr;
    const void* b2p = biased ? b2.data() : nullptr;

    // Scratch as the host lays it out: slots for the most tiles the routing can make.
    const int max_tiles = (pairs + tile - 1) / tile + std::min(experts, pairs);
    std::vector<int> ids(pairs, -1), rank(pairs), sorted((size_t)max_tiles * tile, -7), tile_expert(max_tiles, -7), num_tiles(1, -7);
    std::vector<float> weights(pairs), pair_out((size_t)pairs * hidden, NAN);
    std::vector<T> hmid((size_t)pairs * inter, from_float<T>(NAN));
    g_readable.clear();
    readable(x.data(), x.size() * sizeof(T));
    readable(w1.data(), w1.size() * sizeof(T));
    readable(w2.data(), w2.size() * sizeof(T));
    readable(hmid.data(), hmid.size() * sizeof(T));
    if (fp4) {
        for (Mxfp4Weight* q : {&q1, &q2}) {
            readable(q->codes.data(), q->codes.size());
            readable(q->scales.data(), q->scales.size());
        }
    }
    if (fp8) {
        for (Fp8Weight<T>* f : {&f1, &f2}) {
            readable(f->codes.data(), f->codes.size());
            readable(f->scales.data(), f->scales.size() * sizeof(float));
        }
    }
    if (i4) {
        for (Int4Weight<T>* n : {&n1, &n2}) {
            readable(n->codes.data(), n->codes.size() * sizeof(unsigned));
            readable(n->scales.data(), n->scales.size() * sizeof(unsigned));
        }
    }

    launch({(unsigned)((rows + 3) / 4), 1, 1}, [&] { Kernels<T>::route(logits.data(), rows, experts, top_k, normalize, ids.data(), weights.data()); });
    // The weights each GEMM reads: MXFP4 codes and scale bytes, FP8 codes and scales, or the 16- and 32-bit values (no
    // scales).
    const void* gate_up_w = fp4 ? (const void*)q1.codes.data() : fp8 ? (const void*)f1.codes.data() : i4 ? (const void*)n1.codes.data() : w1.data();
    const void* down_w = fp4 ? (const void*)q2.codes.data() : fp8 ? (const void*)f2.codes.data() : i4 ? (const void*)n2.codes.data() : w2.data();
    const void* gate_up_s = fp4 ? (const void*)q1.scales.data() : fp8 ? (const void*)f1.scales.data() : i4 ? (const void*)n1.scales.data() : nullptr;
    const void* down_s = fp4 ? (const void*)q2.scales.data() : fp8 ? (const void*)f2.scales.data() : i4 ? (const void*)n2.scales.data() : nullptr;
    const int gate_up_ld = fp8 ? f1.ld : i4 ? n1.shift : 0, down_ld = fp8 ? f2.ld : i4 ? n2.shift : 0;
    std::vector<T> out((size_t)rows * hidden);
    if (bm < 0) {
        // moe_gemv_down_sum writes the rows' sums itself: the host's blocks of top_k warps per column, 16 warps a block.
        const int warps = 4, columns = std::max(1, 16 / top_k);   // MOE_GEMV_WARPS; MoeGemvDownWarps / top_k
        const GemvFns gemv = fp4 ? kFp4Gemv : fp8 ? Kernels<T>::fp8_gemv() : i4 ? Kernels<T>::int4_gemv() : Kernels<T>::gemv();
        launch({(unsigned)((inter + warps - 1) / warps), (unsigned)pairs, 1}, [&] {
            gemv.gate_up(x.data(), top_k, ids.data(), gate_up_w, gate_up_s, gate_up_ld, inter, hidden, hmid.data(), b1p, limit);
        });
        launch({(unsigned)((hidden + columns - 1) / columns), (unsigned)rows, 1}, [&] {
            gemv.down_sum(hmid.data(), top_k, ids.data(), down_w, down_s, down_ld, hidden, inter, weights.data(), out.data(), b2p);
        }, 32 * top_k * columns);
    } else {
        launch({1, 1, 1}, [&] { moe_align(ids.data(), pairs, experts, tile, rank.data(), sorted.data(), tile_expert.data(), num_tiles.data()); });
        GemmFn gate_up = fp4 ? fp4_gemm(true, bm) : fp8 ? Kernels<T>::fp8_gemm(true, bm) : i4 ? Kernels<T>::int4_gemm(true, bm) : Kernels<T>::gemm(true, bm);
        GemmFn down = fp4 ? fp4_gemm(false, bm) : fp8 ? Kernels<T>::fp8_gemm(false, bm) : i4 ? Kernels<T>::int4_gemm(false, bm) : Kernels<T>::gemm(false, bm);
        const int down_bn = codes != Codes::None && bm == 16 ? 128 : bn;   // moe_gemm_m16_codes' down: four warps of 32 columns
        launch({(unsigned)max_tiles, (unsigned)((inter + bn - 1) / bn), 1}, [&] {
            gate_up(x.data(), top_k, sorted.data(), tile_expert.data(), num_tiles.data(), pairs, gate_up_w, gate_up_s, gate_up_ld, inter, hidden,
                    weights.data(), hmid.data(), b1p, limit);
        });
        launch({(unsigned)max_tiles, (unsigned)((hidden + down_bn - 1) / down_bn), 1}, [&] {
            down(hmid.data(), 1, sorted.data(), tile_expert.data(), num_tiles.data(), pairs, down_w, down_s, down_ld, hidden, inter,
                 weights.data(), pair_out.data(), b2p, limit);
        });
        launch({(unsigned)rows, (unsigned)((hidden + 127) / 128), 1}, [&] { Kernels<T>::sum(pair_out.data(), top_k, hidden, out.data()); });
    }

    bool ok = true;
    auto fail = [&](const std::string& what) { if (ok) fprintf(stderr, "  %s\n", what.c_str()); ok = false; };
    // Routing: ids exactly, weights to the dtype's rounding.
    std::vector<double> ref_w(pairs);
    for (int r = 0; r < rows; r++) {
        std::vector<int> order(experts);
        for (int e = 0; e < experts; e++) order[e] = e;
        const T* l = &logits[(size_t)r * experts];
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return val(l[a]) > val(l[b]); });
        double mx = -INFINITY, sum = 0, sel = 0;
        for (int e = 0; e < experts; e++) mx = std::max(mx, val(l[e]));
        for (int e = 0; e < experts; e++) sum += std::exp(val(l[e]) - mx);
        for (int s = 0; s < top_k; s++) sel += std::exp(val(l[order[s]]) - mx) / sum;
        for (int s = 0; s < top_k; s++) {
            int p = r * top_k + s;
            double w = std::exp(val(l[order[s]]) - mx) / sum;
            ref_w[p] = rnd<T>(normalize ? w / sel : w);
            if (ids[p] != order[s]) fail("row " + std::to_string(r) + " slot " + std::to_string(s) + ": expert " + std::to_string(ids[p]) + ", expected " + std::to_string(order[s]));
            if (std::fabs(weights[p] - ref_w[p]) > 1e-6 + 1e-2 * std::fabs(ref_w[p])) fail("weight of pair " + std::to_string(p));
        }
    }
    // Align: every pair once, in a tile of its expert; padding slots hold `pairs`; tiles past the count untouched.
    std::vector<int> seen(pairs, 0);
    int tiles = bm < 0 ? 0 : num_tiles[0];
    if (bm >= 0 && (tiles < 1 || tiles > max_tiles)) fail("tile count " + std::to_string(tiles));
    for (int t = 0; t < tiles && ok; t++) {
        if (t > 0 && tile_expert[t] < tile_expert[t - 1]) fail("tile experts out of order");
        int real = 0;
        for (int i = 0; i < tile; i++) {
            int p = sorted[(size_t)t * tile + i];
            if (p == pairs) continue;
            if (p < 0 || p > pairs || ids[p] != tile_expert[t]) { fail("slot " + std::to_string(t * tile + i)); break; }
            seen[p]++;
            real++;
        }
        if (real == 0) fail("empty tile " + std::to_string(t));
    }
    if (bm >= 0) for (int p = 0; p < pairs; p++) if (seen[p] != 1) { fail("pair " + std::to_string(p) + " seen " + std::to_string(seen[p])); break; }
    if (ok && bm >= 0) for (size_t s = (size_t)tiles * tile; s < sorted.size(); s++) if (sorted[s] != -7) { fail("slot past the tiles written"); break; }

    // The MLP.
    double diff = 0, norm = 0;
    std::vector<double> h(inter);
    for (int r = 0; r < rows && ok; r++) {
        std::vector<double> acc(hidden, 0.0);
        for (int s = 0; s < top_k; s++) {
            int e = ids[r * top_k + s];
            for (int n = 0; n < inter; n++) {
                double g = 0, u = 0;
                for (int c = 0; c < hidden; c++) {
                    g += val(x[(size_t)r * hidden + c]) * val(w1[((size_t)e * 2 * inter + n) * hidden + c]);
                    u += val(x[(size_t)r * hidden + c]) * val(w1[((size_t)e * 2 * inter + inter + n) * hidden + c]);
                }
                if (biased) {
                    g += val(b1[(size_t)e * 2 * inter + n]);
                    u += val(b1[(size_t)e * 2 * inter + inter + n]);
                }
                g = rnd<T>(g);
                u = rnd<T>(u);
                if (biased) {   // gpt-oss: (clamp(up) + 1) * min(gate, limit) * sigmoid(1.702 min(gate, limit))
                    g = std::min(g, (double)limit);
                    u = std::min(std::max(u, -(double)limit), (double)limit);
                    h[n] = rnd<T>(rnd<T>(u + 1) * rnd<T>(g / (1 + std::exp(-1.702 * g))));
                } else {
                    h[n] = rnd<T>(rnd<T>(g / (1 + std::exp(-g))) * u);
                }
            }
            for (int c = 0; c < hidden; c++) {
                double d = biased ? val(b2[(size_t)e * hidden + c]) : 0;
                for (int n = 0; n < inter; n++) d += h[n] * val(w2[((size_t)e * hidden + c) * inter + n]);
                acc[c] += ref_w[r * top_k + s] * d;
            }
        }
        for (int c = 0; c < hidden; c++) {
            double ref = rnd<T>(acc[c]), got = val(out[(size_t)r * hidden + c]);
            if (std::isnan(got)) { fail("NaN at row " + std::to_string(r) + " column " + std::to_string(c)); break; }
            diff += (got - ref) * (got - ref);
            norm += ref * ref;
        }
    }
    double err = std::sqrt(diff / std::max(norm, 1e-30));
    double tol = sizeof(T) == 4 ? 1e-5 : std::is_same<T, __half>::value ? 3e-3 : 2e-2;
    if (ok && !(err < tol)) fail("relative error " + std::to_string(err));
    printf("%-5s rows %3d experts %2d top-%d hidden %3d inter %3d %-6s %-4s %-8s %-7s tiles %3d/%3d  error %.2e %s\n", Kernels<T>::name, rows,
           experts, top_k, hidden, inter, normalize ? "norm" : "", bm < 0 ? "gemv" : bm == 0 ? "simt" : bm == 16 ? "m16" : "m64",
           biased ? "gpt-oss" : "", codes_name(codes), tiles, max_tiles, err, ok ? "ok" : "FAIL");
    return ok;
}

template <typename T> static bool run_gated(int rows, int cols, std::mt19937& rng) {
    std::vector<T> x = random_t<T>((size_t)rows * cols, 1.f, rng), gate = random_t<T>(rows, 3.f, rng), out = random_t<T>((size_t)rows * cols, 1.f, rng);
    std::vector<T> before = out;
    launch({(unsigned)rows, 1, 1}, [&] { Kernels<T>::gated(x.data(), gate.data(), cols, out.data()); });
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            size_t i = (size_t)r * cols + c;
            double s = 1 / (1 + std::exp(-val(gate[r]))), ref = rnd<T>(val(before[i]) + s * val(x[i]));
            if (std::fabs(val(out[i]) - ref) > 1e-6 + (sizeof(T) == 4 ? 1e-6 : 8e-3) * std::fabs(ref)) {
                printf("add_sigmoid_gated %s row %d column %d: %g, expected %g -> FAIL\n", Kernels<T>::name, r, c, val(out[i]), ref);
                return false;
            }
        }
    printf("add_sigmoid_gated %s rows %d cols %d ok\n", Kernels<T>::name, rows, cols);
    return true;
}

// Rows with NaN logits (all, some) route to valid, distinct experts: NaN ranks as -inf, ties to the lower id. An id
// out of range made moe_align write outside its buffers (seen on the H200 on a recorded graph's padded rows).
template <typename T> static bool run_nan_routing(std::mt19937& rng) {
    const int rows = 3, experts = 8, top_k = 3;
    std::vector<T> logits = random_t<T>((size_t)rows * experts, 2.f, rng);
    for (int e = 0; e < experts; e++) logits[e] = from_float<T>(NAN);                      // row 0: all NaN
    for (int e = 0; e < experts; e += 2) logits[experts + e] = from_float<T>(NAN);        // row 1: every other NaN
    logits[2 * experts + 5] = from_float<T>(NAN);                                           // row 2: one NaN
    std::vector<int> ids(rows * top_k, -1);
    std::vector<float> weights(rows * top_k);
    launch({1, 1, 1}, [&] { Kernels<T>::route(logits.data(), rows, experts, top_k, 0, ids.data(), weights.data()); });
    bool ok = true;
    for (int r = 0; r < rows; r++) {
        std::vector<int> order;
        for (int e = 0; e < experts; e++) if (!std::isnan(val(logits[(size_t)r * experts + e]))) order.push_back(e);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return val(logits[(size_t)r * experts + a]) > val(logits[(size_t)r * experts + b]); });
        for (int e = 0; e < experts; e++) if (std::isnan(val(logits[(size_t)r * experts + e]))) order.push_back(e);
        for (int s = 0; s < top_k; s++)
            if (ids[r * top_k + s] != order[s]) {
                printf("route %s NaN row %d slot %d: expert %d, expected %d -> FAIL\n", Kernels<T>::name, r, s, ids[r * top_k + s], order[s]);
                ok = false;
            }
    }
    if (ok) printf("route %s rows with NaN logits ok\n", Kernels<T>::name);
    return ok;
}

// mxfp4_decode8 on every code in every position of a word, under scales from the subnormal 2^-127 to 2^127, against
// the table rounded to bf16: equal.
static bool run_mxfp4_decode(std::mt19937& rng) {
    const unsigned scales[] = {0, 1, 60, 120, 126, 127, 128, 140, 200, 254};
    for (unsigned s : scales) {
        for (int round = 0; round < 64; round++) {
            unsigned word = round < 16 ? 0x11111111u * (unsigned)round : (unsigned)rng();
            unsigned out[4];
            mxfp4_decode8(word, s, out);
            for (int i = 0; i < 8; i++) {
                const int code = (word >> (4 * i)) & 0xF;
                const unsigned short bits = (unsigned short)(out[i / 2] >> (16 * (i % 2)));
                __nv_bfloat16 got;
                memcpy(&got, &bits, 2);
                // In bf16: 4 and 6 under 2^127 overflow to infinity, as the CPU's decoding does.
                const double expected = val(from_float<__nv_bfloat16>((float)std::ldexp(kE2M1[code], (int)s - 127)));
                if (val(got) != expected || std::signbit(val(got)) != std::signbit(expected)) {
                    printf("mxfp4_decode8 scale %u value %d code %d: %g, expected %g -> FAIL\n", s, i, code, val(got), expected);
                    return false;
                }
            }
        }
    }
    printf("mxfp4_decode8 every code and position, scales 2^-127 … 2^127 ok\n");
    return true;
}

int main(int argc, char** argv) {
    std::mt19937 rng(argc > 1 ? atoi(argv[1]) : 7);
    bool ok = true;
    // rows, experts, top-k, hidden, intermediate, normalize, tile (hidden and I off the 32-k and 64-column tiles).
    ok &= run_case<__nv_bfloat16>(5, 8, 2, 96, 80, true, 16, rng);
    ok &= run_case<__nv_bfloat16>(37, 8, 2, 200, 80, false, 64, rng);
    ok &= run_case<__half>(20, 60, 4, 96, 32, true, 16, rng);
    ok &= run_case<__half>(70, 4, 1, 200, 80, false, 64, rng);
    ok &= run_case<__nv_bfloat16>(3, 60, 8, 96, 144, false, 16, rng);
    ok &= run_case<__nv_bfloat16>(1, 8, 2, 104, 48, true, 16, rng);
    ok &= run_case<float>(9, 8, 2, 100, 40, true, 0, rng);
    ok &= run_case<float>(4, 60, 4, 33, 70, false, 0, rng);
    ok &= run_case<__nv_bfloat16>(6, 4, 2, 96, 80, true, 0, rng);
    // moe_gemv (few pairs): k in whole 16-byte vectors, n off the 8-warp blocks.
    ok &= run_case<__nv_bfloat16>(1, 8, 2, 104, 48, true, -1, rng);
    ok &= run_case<__half>(3, 60, 8, 96, 144, false, -1, rng);
    ok &= run_case<float>(2, 16, 4, 100, 44, true, -1, rng);
    ok &= run_case<__nv_bfloat16>(2, 16, 3, 104, 48, true, -1, rng);   // top-3: 5 columns a block, the last one partial
    // gpt-oss's experts (biases, a limit small enough that the clamps bite) through every GEMM path.
    ok &= run_case<__nv_bfloat16>(5, 8, 2, 96, 80, true, 16, rng, 0.3f);
    ok &= run_case<__half>(70, 4, 2, 200, 80, true, 64, rng, 0.3f);
    ok &= run_case<float>(9, 8, 2, 100, 40, true, 0, rng, 0.3f);
    ok &= run_case<__nv_bfloat16>(1, 8, 2, 104, 48, true, -1, rng, 0.3f);
    ok &= run_case<float>(2, 16, 4, 100, 44, true, -1, rng, 0.3f);
    // MXFP4 experts: gemv, 16- and 64-row tiles (n off the 64-column tiles), plain and gpt-oss's.
    ok &= run_mxfp4_decode(rng);
    const Codes fp4 = Codes::Mxfp4;
    ok &= run_case<__nv_bfloat16>(1, 8, 2, 160, 96, true, -1, rng, 0.f, fp4);
    ok &= run_case<__nv_bfloat16>(3, 16, 4, 96, 160, true, -1, rng, 0.3f, fp4);
    ok &= run_case<__nv_bfloat16>(1, 4, 2, 128, 2080, true, -1, rng, 0.f, fp4);   // 65 blocks a row: lanes take 1-3
    ok &= run_case<__nv_bfloat16>(5, 8, 2, 160, 96, true, 16, rng, 0.f, fp4);
    // 16-row tiles with rows 8-15 taken (tiles of up to 16 rows), k of 3 and 5 blocks (partial 128-k chunks), n off
    // both kernels' column blocks.
    ok &= run_case<__nv_bfloat16>(40, 8, 2, 96, 160, false, 16, rng, 0.3f, fp4);
    ok &= run_case<__nv_bfloat16>(70, 4, 2, 96, 160, false, 64, rng, 0.3f, fp4);
    // FP8 experts, scales per row (k of 6 and 10 vectors: partial iterations of the 16-row tiles; n off the column
    // blocks) and per block (k across two and three scale blocks, the last one partial at hidden 160; the grid's rows
    // padded), through the gemv, 16- and 64-row tiles, in both 16-bit dtypes.
    const Codes rows8 = Codes::Fp8Rows, blocks8 = Codes::Fp8Blocks;
    ok &= run_case<__nv_bfloat16>(1, 8, 2, 96, 160, true, -1, rng, 0.f, rows8);
    ok &= run_case<__half>(3, 16, 4, 96, 160, true, -1, rng, 0.3f, rows8);
    ok &= run_case<__nv_bfloat16>(40, 8, 2, 96, 160, false, 16, rng, 0.3f, rows8);
    ok &= run_case<__half>(70, 4, 2, 96, 160, false, 64, rng, 0.f, rows8);
    ok &= run_case<__nv_bfloat16>(2, 8, 2, 256, 128, true, -1, rng, 0.f, blocks8);
    ok &= run_case<__nv_bfloat16>(24, 8, 2, 160, 128, true, 16, rng, 0.f, blocks8);
    ok &= run_case<__half>(70, 4, 2, 256, 128, false, 64, rng, 0.3f, blocks8);
    ok &= run_case<__nv_bfloat16>(40, 4, 2, 384, 128, true, 64, rng, 0.f, blocks8);
    ok &= run_case<float>(9, 8, 2, 96, 160, true, 0, rng, 0.3f, rows8);   // the CUDA-core GEMM: fp32 models
    ok &= run_case<float>(5, 8, 2, 160, 128, false, 0, rng, 0.f, blocks8);
    ok &= run_case<__nv_bfloat16>(6, 4, 2, 96, 64, true, 0, rng, 0.f, blocks8);
    // 4-bit integer experts: groups of 32 (several per 16-row tile iteration), 64 and 128 (a group across vectors and
    // stages; at hidden 96 and I 160 the widest power of two dividing k: what per-channel scales are repeated over),
    // through the gemv, 16- and 64-row tiles, in both 16-bit dtypes, plain and gpt-oss's.
    const Codes int4 = Codes::Int4;
    ok &= run_case<__nv_bfloat16>(1, 8, 2, 128, 160, true, -1, rng, 0.f, int4, 5);
    ok &= run_case<__half>(3, 16, 4, 96, 160, true, -1, rng, 0.3f, int4, 7);
    ok &= run_case<__nv_bfloat16>(1, 4, 2, 128, 2080, true, -1, rng, 0.f, int4, 6);   // 65 vectors a row: lanes take 1-3
    ok &= run_case<__nv_bfloat16>(40, 8, 2, 96, 160, false, 16, rng, 0.3f, int4, 5);
    ok &= run_case<__half>(24, 8, 2, 256, 128, true, 16, rng, 0.f, int4, 7);
    ok &= run_case<__half>(70, 4, 2, 96, 160, false, 64, rng, 0.f, int4, 6);
    ok &= run_case<__nv_bfloat16>(40, 4, 2, 384, 128, true, 64, rng, 0.3f, int4, 7);
    ok &= run_gated<__nv_bfloat16>(3, 100, rng);
    ok &= run_gated<__half>(2, 77, rng);
    ok &= run_gated<float>(2, 130, rng);
    ok &= run_nan_routing<__nv_bfloat16>(rng);
    ok &= run_nan_routing<float>(rng);
    printf("%s\n", ok ? "-> PASS" : "-> FAIL");
    return ok ? 0 : 1;
}
