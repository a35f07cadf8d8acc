// Runs the literal flash_attention.cu and flash_decode.cu kernels on emulated threads (common.cuh = cuda_emulation.cuh)
// and compares them with a naive double-precision reference over paged caches, GQA groups, sliding windows, splits
// fp8 caches and attention sinks. Usage: flash_emulation_test attention|decode [seed] [16|8|e4m3]   (16: 16-bit caches only,
// 8: fp8 only, e4m3: e4m3 caches only, the one format whose conversion FLASH_FP8_CVT changes)
#include "common.cuh"
#include "flash_attention.cu"   // the repository's sources, copied next to this file by KernelEmulationTests
#include "flash_decode.cu"
#include <algorithm>
#include <chrono>

template <typename T, typename C>
using KernelFn = void (*)(const T*, const C*, const C*, const int*, const int*, const int*, int, int, int, int, float,
                          int, T*, float*, float*, float, float, float, const T*, const int*);

static bool g_decode;   // which kernel runs: flash_decode (its tiles: a whole sequence of <= 16 MMA rows) or flash_attention

template <typename T, typename C> KernelFn<T, C> kernel_for(int hd);
#define K(TN, T, C)                                                                                                  \
    template <> KernelFn<T, C> kernel_for<T, C>(int hd) {                                                             \
        switch (hd) {                                                                                                 \
        case 16: return g_decode ? flash_decode_##TN##_hd16 : flash_attention_##TN##_hd16;                           \
        case 32: return g_decode ? flash_decode_##TN##_hd32 : flash_attention_##TN##_hd32;                           \
        case 64: return g_decode ? flash_decode_##TN##_hd64 : flash_attention_##TN##_hd64;                           \
        case 80: return g_decode ? flash_decode_##TN##_hd80 : flash_attention_##TN##_hd80;                           \
        case 96: return g_decode ? flash_decode_##TN##_hd96 : flash_attention_##TN##_hd96;                           \
        case 128: return g_decode ? flash_decode_##TN##_hd128 : flash_attention_##TN##_hd128;                        \
        case 256: return g_decode ? flash_decode_##TN##_hd256 : flash_attention_##TN##_hd256;                        \
        }                                                                                                             \
        abort();                                                                                                      \
    }
K(bf16, __nv_bfloat16, __nv_bfloat16)
K(f16, __half, __half)
K(bf16_e4m3, __nv_bfloat16, __nv_fp8_e4m3)
K(bf16_e5m2, __nv_bfloat16, __nv_fp8_e5m2)
K(f16_e4m3, __half, __nv_fp8_e4m3)
K(f16_e5m2, __half, __nv_fp8_e5m2)

// The host's per-head-size constants (flash_attention_block_m / _shared_bytes, flash_decode_shared_bytes).
static int flash_block_m_of(int hd) {
    switch (hd) {
    case 16: return flash_block_m<16>(); case 32: return flash_block_m<32>(); case 64: return flash_block_m<64>();
    case 80: return flash_block_m<80>(); case 96: return flash_block_m<96>(); case 128: return flash_block_m<128>();
    case 256: return flash_block_m<256>();
    }
    abort();
}
static int flash_smem_bytes_of(int hd) {
    switch (hd) {
    case 16: return flash_smem_bytes<16>(); case 32: return flash_smem_bytes<32>(); case 64: return flash_smem_bytes<64>();
    case 80: return flash_smem_bytes<80>(); case 96: return flash_smem_bytes<96>(); case 128: return flash_smem_bytes<128>();
    case 256: return flash_smem_bytes<256>();
    }
    abort();
}
static int decode_smem_bytes_of(int hd) {
    switch (hd) {
    case 16: return decode_smem_bytes<16>(); case 32: return decode_smem_bytes<32>(); case 64: return decode_smem_bytes<64>();
    case 80: return decode_smem_bytes<80>(); case 96: return decode_smem_bytes<96>(); case 128: return decode_smem_bytes<128>();
    case 256: return decode_smem_bytes<256>();
    }
    abort();
}

// Cache element traits: storage bits, the real value of stored bits (before the per-tensor scale), poison bits.
template <typename T, typename C> struct Cache {   // 16-bit cache: C == T
    using S = uint16_t;
    static constexpr int kind = 0;
    static S enc(float x) { return to_bits<T>(x); }
    static double dec(S b) { return from_bits<T>(b); }
    static S poison() { return to_bits<T>(NAN); }
};
template <int KIND> struct Fp8Cache {   // KIND 1: e4m3, 2: e5m2
    using S = uint8_t;
    static constexpr int kind = KIND;
    static S enc(double x) { return fp8_encode(x, KIND); }
    static double dec(S b) { return fp8_decode(b, KIND); }
    static S poison() { return 0x7f; }
};
template <typename T> struct Cache<T, __nv_fp8_e4m3> : Fp8Cache<1> {};
template <typename T> struct Cache<T, __nv_fp8_e5m2> : Fp8Cache<2> {};

struct SeqSpec { int ctx, nq; };

template <typename T, typename C>
double run_case(const char* tname, int hd, int nkv, int group, int bs, int window, int splits, std::vector<SeqSpec> seqs,
                std::mt19937& rng, bool verbose, float softcap = 0.f, bool with_sinks = false, bool bidir = false) {
    int nh = nkv * group;
    std::normal_distribution<float> nd(0.f, 1.f);
    int S = seqs.size();
    // Row layout: sequences in random order, each one's rows contiguous.
    std::vector<int> order(S);
    for (int i = 0; i < S; i++) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    // positions: each row's last key; key_lo: its first, given only for a bidirectional window (whole sequences, ctx 0,
    // as CudaBackend.MaskPositions passes them: the whole sequence without a window, |q - k| < window with one).
    std::vector<int> positions, row_seq, key_lo;
    std::vector<int> first_row(S);
    for (int s : order) {
        first_row[s] = positions.size();
        const int L = seqs[s].nq;
        if (bidir) CHECK(seqs[s].ctx == 0);
        for (int i = 0; i < seqs[s].nq; i++) {
            const int q = seqs[s].ctx + i;
            positions.push_back(!bidir ? q : window > 0 ? std::min(L - 1, q + window - 1) : L - 1);
            if (bidir && window > 0) key_lo.push_back(std::max(0, q - window + 1));
            row_seq.push_back(s);
        }
    }
    int rows = positions.size();
    // Paged cache with randomly permuted physical blocks; table entries past the sequence are -1.
    int maxb = 0, total_blocks = 0;
    std::vector<int> nblocks(S);
    for (int s = 0; s < S; s++) {
        nblocks[s] = (seqs[s].ctx + seqs[s].nq + bs - 1) / bs;
        maxb = std::max(maxb, nblocks[s]);
        total_blocks += nblocks[s];
    }
    int max_blocks = maxb + 2, phys = total_blocks + 3;
    std::vector<int> perm(phys);
    for (int i = 0; i < phys; i++) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<int> table((size_t)S * max_blocks, -1);
    int next = 0;
    for (int s = 0; s < S; s++)
        for (int b = 0; b < nblocks[s]; b++) table[s * max_blocks + b] = perm[next++];
    size_t cache_elems = (size_t)phys * bs * nkv * hd;
    // Unused slots and positions no query row can see hold NaN: reading them by mistake poisons the output.
    using CT = Cache<T, C>;
    using CS = typename CT::S;
    std::vector<CS> kc(cache_elems, CT::poison()), vc(cache_elems, CT::poison());
    auto lo_of = [&](int p) { return window > 0 ? std::max(0, p - window + 1) : 0; };
    // fp8: per-tensor scales chosen so that |x| ~ 3.5 hits the largest finite code (k and v differ, not powers of 2);
    // 2% of the values fall in the subnormal range, 1% beyond the saturation point. 16-bit caches: the kernel must
    // ignore the scales, so odd ones are passed and the reference uses 1.
    std::uniform_real_distribution<double> ud(0.0, 1.0);
    double ks = 1, vs = 1;
    float k_arg = 2.5f, v_arg = 0.3f;
    if (CT::kind) {
        ks = 3.5 / fp8_max(CT::kind) * (0.8 + 0.4 * ud(rng));
        vs = 3.5 / fp8_max(CT::kind) * (0.8 + 0.4 * ud(rng));
        k_arg = (float)ks; v_arg = (float)vs;
        ks = k_arg; vs = v_arg;   // the reference uses the float scales the kernel gets
    }
    auto gen = [&](double sc) -> CS {
        if (!CT::kind) return CT::enc(nd(rng));
        double u = ud(rng), x = nd(rng);
        double min_normal = CT::kind == 1 ? std::ldexp(1.0, -6) : std::ldexp(1.0, -14);
        if (u < 0.02) x = x * 0.5 * min_normal * sc;           // subnormal codes (and zeros)
        else if (u < 0.03) x = (x < 0 ? -1 : 1) * (3.6 + ud(rng)) / 3.5 * fp8_max(CT::kind) * sc;   // saturates
        return CT::enc(x / sc);
    };
    for (int s = 0; s < S; s++) {
        int L = seqs[s].ctx + seqs[s].nq, vis_lo = lo_of(seqs[s].ctx);
        for (int p = vis_lo; p < L; p++) {
            size_t slot = (size_t)table[s * max_blocks + p / bs] * bs + p % bs;
            for (int h = 0; h < nkv; h++)
                for (int d = 0; d < hd; d++) {
                    kc[(slot * nkv + h) * hd + d] = gen(ks);
                    vc[(slot * nkv + h) * hd + d] = gen(vs);
                }
        }
    }
    std::vector<uint16_t> qv((size_t)rows * nh * hd);
    for (auto& x : qv) x = to_bits<T>(1.5f * nd(rng));
    std::vector<int> tiles;
    // Tiles as the host builds them: flash_decode takes a whole sequence (its rows x group fit 16 MMA rows).
    int bm = (g_decode ? 16 : flash_block_m_of(hd)) / group;
    if (g_decode)
        for (int s2 = 0; s2 < S; s2++) CHECK(seqs[s2].nq <= bm);
    for (int s : order)
        for (int off = 0; off < seqs[s].nq; off += bm) {
            tiles.push_back(s); tiles.push_back(first_row[s] + off); tiles.push_back(std::min(bm, seqs[s].nq - off));
        }
    int ntiles = tiles.size() / 3;
    std::vector<uint16_t> out((size_t)rows * nh * hd, to_bits<T>(NAN));
    std::vector<float> pacc((size_t)rows * nh * splits * hd, NAN), pml((size_t)rows * nh * splits * 2, NAN);
    float scale = 1.f / std::sqrt((float)hd);
    // gpt-oss's sinks: one logit per head, some far above the scores (the sink then takes most of the softmax).
    std::vector<uint16_t> sinks(with_sinks ? nh : 0);
    for (int h = 0; h < (int)sinks.size(); h++) sinks[h] = to_bits<T>(h % 3 == 2 ? 6.f + nd(rng) : 1.5f * nd(rng));
    auto sink_of = [&](int h) { return (double)from_bits<T>(sinks[h]); };
    const T* sp = with_sinks ? (const T*)sinks.data() : nullptr;

    g_readable = {{(const char*)kc.data(), kc.size() * sizeof(CS)}, {(const char*)vc.data(), vc.size() * sizeof(CS)},
                  {(const char*)qv.data(), qv.size() * 2}, {(const char*)sinks.data(), sinks.size() * 2},
                  {(const char*)key_lo.data(), key_lo.size() * sizeof(int)}};
    g_smem_lo = UINTPTR_MAX; g_smem_hi = 0;
    memset(flash_dynamic_smem, 0xff, sizeof(flash_dynamic_smem));   // stale shared memory must never leak in
    KernelFn<T, C> fn = kernel_for<T, C>(hd);
    const T* qp = (const T*)qv.data(); const C* kp = (const C*)kc.data(); const C* vp = (const C*)vc.data();
    T* op = (T*)out.data();
    launch({(unsigned)ntiles, (unsigned)nkv, (unsigned)splits}, [&] {
        fn(qp, kp, vp, tiles.data(), positions.data(), table.data(), max_blocks, bs, nh, nkv, scale, window, op,
           pacc.data(), pml.data(), k_arg, v_arg, softcap, sp, key_lo.empty() ? nullptr : key_lo.data());
    });
    // The kernel stays within the dynamic shared memory the host gives it: the bytes past it keep their fill.
    for (size_t b = g_decode ? decode_smem_bytes_of(hd) : flash_smem_bytes_of(hd); b < sizeof(flash_dynamic_smem); b++)
        CHECK(flash_dynamic_smem[b] == 0xff);

    // Result per (row, head): normalized output directly or merged partials (same formula as merge_splits).
    std::vector<float> res((size_t)rows * nh * hd);
    if (splits == 1) {
        for (size_t i = 0; i < res.size(); i++) res[i] = from_bits<T>(out[i]);
        for (auto& x : pacc) CHECK(std::isnan(x));   // untouched
    } else {
        for (auto x : out) CHECK(std::isnan(from_bits<T>(x)));   // untouched
        for (long long oh = 0; oh < (long long)rows * nh; oh++) {
            for (int z = 0; z < splits; z++) {
                float m = pml[(oh * splits + z) * 2], l = pml[(oh * splits + z) * 2 + 1];
                CHECK(!std::isnan(m) && !std::isnan(l));
                if (l == 0.f) {
                    CHECK(std::isinf(m) && m < 0);
                    for (int d = 0; d < hd; d++) CHECK(pacc[(oh * splits + z) * hd + d] == 0.f);
                }
            }
            float gm = NEG_INF;
            for (int z = 0; z < splits; z++) if (pml[(oh * splits + z) * 2 + 1] > 0.f) gm = std::max(gm, pml[(oh * splits + z) * 2]);
            float gl = 0.f;
            for (int z = 0; z < splits; z++) {
                float l = pml[(oh * splits + z) * 2 + 1];
                if (l > 0.f) gl += l * expf(pml[(oh * splits + z) * 2] - gm);
            }
            if (with_sinks) {   // merge_splits' sink term: one more logit in the denominator
                float sk = (float)sink_of(oh % nh);
                gm = std::max(gm, sk);
                gl = expf(sk - gm);
                for (int z = 0; z < splits; z++) {
                    float l = pml[(oh * splits + z) * 2 + 1];
                    if (l > 0.f) gl += l * expf(pml[(oh * splits + z) * 2] - gm);
                }
            }
            for (int d = 0; d < hd; d++) {
                float r = 0.f;
                for (int z = 0; z < splits; z++) {
                    float l = pml[(oh * splits + z) * 2 + 1];
                    if (l > 0.f) r += pacc[(oh * splits + z) * hd + d] * expf(pml[(oh * splits + z) * 2] - gm);
                }
                res[oh * hd + d] = r / gl;
            }
        }
    }

    // Naive reference in double from the same inputs (fp8: the dequantized values float(fp8) * scale).
    double max_err = 0;
    for (int r = 0; r < rows; r++) {
        int s = row_seq[r], p = positions[r], lo = key_lo.empty() ? (bidir ? 0 : lo_of(p)) : key_lo[r];
        for (int h = 0; h < nh; h++) {
            int kvh = h / group;
            std::vector<double> w(p - lo + 1);
            double mx = -1e300;
            for (int k = lo; k <= p; k++) {
                size_t slot = (size_t)table[s * max_blocks + k / bs] * bs + k % bs;
                double dot = 0;
                for (int d = 0; d < hd; d++)
                    dot += (double)from_bits<T>(qv[((size_t)r * nh + h) * hd + d]) * (CT::dec(kc[(slot * nkv + kvh) * hd + d]) * ks);
                w[k - lo] = softcap > 0 ? softcap * std::tanh(dot * scale / softcap) : dot * scale;   // Gemma 2's soft-capping
                mx = std::max(mx, w[k - lo]);
            }
            if (with_sinks) mx = std::max(mx, sink_of(h));
            double sum = with_sinks ? std::exp(sink_of(h) - mx) : 0;   // the sink: a logit with no value
            for (auto& x : w) { x = std::exp(x - mx); sum += x; }
            for (int d = 0; d < hd; d++) {
                double acc = 0;
                for (int k = lo; k <= p; k++) {
                    size_t slot = (size_t)table[s * max_blocks + k / bs] * bs + k % bs;
                    acc += w[k - lo] * (CT::dec(vc[(slot * nkv + kvh) * hd + d]) * vs);
                }
                double ref = acc / sum, got = res[((size_t)r * nh + h) * hd + d];
                double err = std::isnan(got) ? 1e30 : std::fabs(got - ref);
                max_err = std::max(max_err, err);
            }
        }
    }
    if (verbose)
        printf("%-9s hd=%3d kv=%d group=%2d bs=%2d window=%3d splits=%d softcap=%.1f sinks=%d bidir=%d rows=%3d tiles=%2d: max abs err %.2e\n",
               tname, hd, nkv, group, bs, window, splits, softcap, with_sinks, bidir, rows, ntiles, max_err);
    return max_err;
}

// Every fp8 code, at every byte position of a 32-bit word, through the kernel's flash_fp8x4_to, against the
// format definition; plus the encoder against the definition (round trip, saturation, ties to even).
template <typename T, int KIND> int check_convert(const char* name) {
    int bad = 0;
    for (int b = 0; b < 256; b++)
        for (int pos = 0; pos < 4; pos++) {
            unsigned w = 0x3a00c5b1u ^ (0x5au << (8 * ((pos + 1) & 3)));   // other bytes: arbitrary
            w = (w & ~(0xffu << (8 * pos))) | ((unsigned)b << (8 * pos));
            uint2 r = flash_fp8x4_to<T, KIND>(w);
            for (int e = 0; e < 4; e++) {
                uint16_t got = (uint16_t)(((e < 2 ? r.x : r.y) >> (16 * (e & 1))) & 0xffff);
                double want = fp8_decode((w >> (8 * e)) & 0xff, KIND);
                double g = from_bits<T>(got);
                bool ok = std::isnan(want) ? std::isnan(g) : (g == want && std::signbit(g) == std::signbit(want));
                if (!ok && bad++ < 5) printf("  %s: byte 0x%02x -> %g, want %g\n", name, (w >> (8 * e)) & 0xff, g, want);
            }
        }
    printf("convert %-10s all 256 codes x 4 positions: %s\n", name, bad ? "FAIL" : "ok");
    return bad;
}
int check_encoder(int kind) {
    int bad = 0;
    for (int b = 0; b < 256; b++) {
        double v = fp8_decode(b, kind);
        if (std::isnan(v)) continue;
        uint8_t want = std::isinf(v) ? (b & 0x80) | (kind == 1 ? 0x7e : 0x7b) : b;   // satfinite: inf -> max
        if (fp8_encode(v, kind) != want) bad++;
        if (!std::isinf(v) && (b & 0x7f) < (kind == 1 ? 0x7e : 0x7b)) {   // midpoint to the next code: even code
            double mid = 0.5 * (v + fp8_decode(b + 1, kind));
            if (fp8_encode(mid, kind) != ((b & 1) ? b + 1 : b)) bad++;
        }
    }
    double mx = fp8_max(kind);
    bad += fp8_encode(mx * 1.01, kind) != (kind == 1 ? 0x7e : 0x7b);
    bad += fp8_encode(-1e30, kind) != (kind == 1 ? 0xfe : 0xfb);
    bad += fp8_encode(kind == 1 ? 464.0 : 61440.0, kind) != (kind == 1 ? 0x7e : 0x7b);   // the would-be rounding up
    bad += fp8_decode(kind == 1 ? 0x7e : 0x7b, kind) != mx;
    bad += fp8_decode(0x01, kind) != (kind == 1 ? std::ldexp(1.0, -9) : std::ldexp(1.0, -16));
    printf("encoder %s: %s\n", kind == 1 ? "e4m3" : "e5m2", bad ? "FAIL" : "ok");
    return bad;
}

int main(int argc, char** argv) {
    if (argc < 2 || (strcmp(argv[1], "attention") && strcmp(argv[1], "decode"))) {
        fprintf(stderr, "usage: %s attention|decode [seed] [16|8|e4m3]\n", argv[0]);
        return 2;
    }
    g_decode = !strcmp(argv[1], "decode");
    setvbuf(stdout, nullptr, _IOLBF, 0);
    bool only16 = argc > 3 && !strcmp(argv[3], "16"), onlyE4m3 = argc > 3 && !strcmp(argv[3], "e4m3");
    bool only8 = onlyE4m3 || (argc > 3 && !strcmp(argv[3], "8"));
    printf("FLASH_FP8_CVT=%d (e4m3 conversion: %s)\n", FLASH_FP8_CVT, FLASH_FP8_CVT ? "hardware cvt, emulated" : "integer path");
    int conv_bad = check_encoder(1) + check_encoder(2) + check_convert<__nv_bfloat16, FLASH_E4M3>("bf16<-e4m3") +
                   check_convert<__nv_bfloat16, FLASH_E5M2>("bf16<-e5m2") + check_convert<__half, FLASH_E4M3>("f16<-e4m3") +
                   check_convert<__half, FLASH_E5M2>("f16<-e5m2");
    int hds[] = {16, 32, 64, 80, 96, 128, 256};
    int seed = argc > 2 ? atoi(argv[2]) : 7;
    std::mt19937 rng(seed);
    struct Cfg { int nkv, group, bs, window, splits; std::vector<SeqSpec> seqs; float softcap = 0.f; bool sinks = false; bool bidir = false; };
    // Mixed prefill chunks (fresh and continued) and decode rows; group sizes incl. non powers of two; block sizes
    // that do not divide BLOCK_N; sliding windows; flash-decoding splits (incl. more splits than key tiles).
    std::vector<Cfg> cfgs = {
        {2, 1, 16, 0, 1, {{0, 70}, {33, 1}, {5, 20}}},
        {1, 4, 16, 0, 1, {{0, 37}, {90, 1}, {17, 3}}},
        {2, 3, 5, 0, 1, {{0, 30}, {70, 1}, {10, 25}}},
        {1, 7, 16, 24, 1, {{0, 40}, {100, 1}, {50, 12}}},
        {1, 16, 1, 0, 1, {{3, 9}, {60, 1}}},
        {2, 8, 16, 0, 3, {{150, 1}, {20, 20}, {1, 1}}},
        {1, 5, 7, 40, 4, {{130, 1}, {80, 30}}},
        {1, 2, 32, 0, 6, {{0, 50}, {200, 1}, {0, 1}}},
        {1, 1, 16, 17, 2, {{0, 100}, {300, 2}}},
        // Several 128-row tiles per sequence (a tile's two m-tiles per warp on both sides of the causal diagonal).
        {1, 1, 16, 0, 1, {{0, 300}, {40, 130}}},
        {2, 4, 16, 0, 1, {{0, 75}, {100, 40}}},
        {1, 2, 16, 50, 2, {{0, 200}}},
        // Soft-capped scores (Gemma 2's attn_logit_softcapping), small caps so that tanh bends the softmax.
        {2, 2, 16, 0, 1, {{0, 40}, {60, 1}, {9, 12}}, 1.5f},
        {1, 4, 7, 24, 3, {{100, 1}, {30, 20}}, 5.f},
        // gpt-oss's attention sinks, normalized in the kernel (one split) and in the merge (several), sliding and full.
        {2, 4, 16, 12, 1, {{0, 40}, {60, 1}, {9, 12}}, 0.f, true},
        {1, 8, 16, 0, 3, {{100, 1}, {30, 20}}, 0.f, true},
        // Bidirectional attention (encoders; EmbeddingGemma's window |q - k| < 17 on its sliding layers).
        {1, 4, 16, 17, 1, {{0, 100}, {0, 3}, {0, 40}}, 0.f, false, true},
        {2, 2, 16, 0, 2, {{0, 60}, {0, 9}}, 0.f, false, true},
    };
    // flash_decode: decode rows and short chunks (rows x group <= 16), long contexts that cross many warp tiles.
    std::vector<Cfg> decode_cfgs = {
        {2, 1, 16, 0, 1, {{33, 1}, {0, 1}, {200, 3}}},
        {1, 4, 16, 0, 1, {{90, 1}, {17, 3}, {300, 1}}},
        {2, 3, 5, 0, 1, {{70, 1}, {10, 5}}},
        {1, 7, 16, 24, 1, {{100, 1}, {50, 2}}},
        {1, 16, 1, 0, 1, {{60, 1}, {3, 1}}},
        {2, 8, 16, 0, 3, {{150, 1}, {20, 2}, {1, 1}}},
        {1, 5, 7, 40, 4, {{130, 1}, {80, 3}}},
        {1, 2, 32, 0, 6, {{200, 1}, {0, 1}, {45, 8}}},
        {1, 1, 16, 17, 2, {{300, 2}, {64, 16}}},
        {2, 4, 16, 0, 2, {{511, 1}, {1000, 1}}},
        {2, 2, 16, 0, 1, {{60, 1}, {9, 4}}, 1.5f},
        {1, 4, 7, 24, 3, {{100, 1}, {300, 2}}, 5.f},
        {2, 4, 16, 12, 1, {{60, 1}, {9, 4}}, 0.f, true},
        {1, 8, 16, 0, 3, {{100, 1}, {300, 2}}, 0.f, true},
        {1, 4, 16, 2, 2, {{0, 4}, {0, 3}, {0, 1}}, 0.f, false, true},
    };
    if (g_decode) cfgs = decode_cfgs;
    // worst[i]: bf16, f16 (16-bit caches), then bf16/f16 x e4m3/e5m2
    const char* names[6] = {"bf16", "f16", "bf16_e4m3", "bf16_e5m2", "f16_e4m3", "f16_e5m2"};
    const double tol[6] = {2e-2, 4e-3, 2e-2, 2e-2, 4e-3, 4e-3};
    double worst[6] = {0, 0, 0, 0, 0, 0};
    auto t0 = std::chrono::steady_clock::now();
    // Each configuration at three of the seven head sizes, rotating with the seed, so that every size meets about seven
    // configurations per run and other seeds pair them differently. Every configuration at every size, on real hardware,
    // is OperatorParityTests' on a GPU; the whole grid under emulation took 25 minutes of a 2-core CI run.
    auto sweep = [&](auto&& one) {
        for (int hi = 0; hi < 7; hi++)
            for (size_t ci = 0; ci < cfgs.size(); ci++)
                if ((hi + ci + seed) % 7 < 3) one(hds[hi], cfgs[ci]);
    };
    if (!only8)
        sweep([&](int hd, Cfg& c) {
            worst[0] = std::max(worst[0], run_case<__nv_bfloat16, __nv_bfloat16>("bf16", hd, c.nkv, c.group, c.bs, c.window, c.splits, c.seqs, rng, true, c.softcap, c.sinks, c.bidir));
            worst[1] = std::max(worst[1], run_case<__half, __half>("f16", hd, c.nkv, c.group, c.bs, c.window, c.splits, c.seqs, rng, true, c.softcap, c.sinks, c.bidir));
        });
    if (!only16)
        sweep([&](int hd, Cfg& c) {
            worst[2] = std::max(worst[2], run_case<__nv_bfloat16, __nv_fp8_e4m3>("bf16_e4m3", hd, c.nkv, c.group, c.bs, c.window, c.splits, c.seqs, rng, true, c.softcap, c.sinks, c.bidir));
            if (!onlyE4m3)
                worst[3] = std::max(worst[3], run_case<__nv_bfloat16, __nv_fp8_e5m2>("bf16_e5m2", hd, c.nkv, c.group, c.bs, c.window, c.splits, c.seqs, rng, true, c.softcap, c.sinks, c.bidir));
            worst[4] = std::max(worst[4], run_case<__half, __nv_fp8_e4m3>("f16_e4m3", hd, c.nkv, c.group, c.bs, c.window, c.splits, c.seqs, rng, true, c.softcap, c.sinks, c.bidir));
            if (!onlyE4m3)
                worst[5] = std::max(worst[5], run_case<__half, __nv_fp8_e5m2>("f16_e5m2", hd, c.nkv, c.group, c.bs, c.window, c.splits, c.seqs, rng, true, c.softcap, c.sinks, c.bidir));
        });
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bool ok = conv_bad == 0;
    printf("worst abs err:");
    for (int i = 0; i < 6; i++) {
        if ((only8 && i < 2) || (only16 && i >= 2) || (onlyE4m3 && (i == 3 || i == 5))) continue;
        printf(" %s %.3e (tol %.0e)%s", names[i], worst[i], tol[i], worst[i] < tol[i] ? "" : " FAIL");
        ok &= worst[i] < tol[i];
    }
    printf("; %lld warp mma emulated in %.0f s -> %s\n", g_mma_count, secs, ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
