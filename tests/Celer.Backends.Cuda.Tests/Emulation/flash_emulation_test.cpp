// Runs the literal flash_attention.cu and flash_decode.cu kernels on emulated threads (common.cuh = cuda_emulation.cuh)
// and compares them with a naive double-precision reference over paged caches, GQA groups, sliding windows, splits
// (merged by the kernels' last split block), fp8 caches and attention sinks. Usage: flash_emulation_test attention|decode|mixed [seed] [16|8]   (16: 16-bit caches only, 8: fp8 only)
//   attention: every tile to flash_attention; decode: every tile to flash_decode; mixed: the host's split of one step,
//   sequences whose rows x group fit 16 MMA rows to flash_decode and the others to flash_attention, sharing the partial
//   buffers and the counter array (the decode tiles' counters after the prefill tiles'), split steps only, each run
//   twice and checked against attention.cu's merge_splits too.
#include "common.cuh"
#include "attention.cu"         // the repository's sources, copied next to this file by KernelEmulationTests
#include "flash_attention.cu"
#include "flash_decode.cu"
#include <algorithm>
#include <chrono>

template <typename T, typename C>
using KernelFn = void (*)(const T*, const C*, const C*, const int*, const int*, const int*, int, int, int, int, float,
                          int, T*, float*, float*, float, float, float, const T*, unsigned*);

// Which kernel takes a tile: flash_attention (any tile), flash_decode (a whole sequence of <= 16 MMA rows), or each
// kernel the tiles the host would give it.
enum class Mode { Attention, Decode, Mixed };
static Mode g_mode;

template <typename T, typename C> KernelFn<T, C> kernel_for(int hd, bool decode);
#define K(TN, T, C)                                                                                                  \
    template <> KernelFn<T, C> kernel_for<T, C>(int hd, bool decode) {                                                \
        switch (hd) {                                                                                                 \
        case 16: return decode ? flash_decode_##TN##_hd16 : flash_attention_##TN##_hd16;                             \
        case 32: return decode ? flash_decode_##TN##_hd32 : flash_attention_##TN##_hd32;                             \
        case 64: return decode ? flash_decode_##TN##_hd64 : flash_attention_##TN##_hd64;                             \
        case 80: return decode ? flash_decode_##TN##_hd80 : flash_attention_##TN##_hd80;                             \
        case 96: return decode ? flash_decode_##TN##_hd96 : flash_attention_##TN##_hd96;                             \
        case 128: return decode ? flash_decode_##TN##_hd128 : flash_attention_##TN##_hd128;                          \
        case 256: return decode ? flash_decode_##TN##_hd256 : flash_attention_##TN##_hd256;                          \
        }                                                                                                             \
        abort();                                                                                                      \
    }
K(bf16, __nv_bfloat16, __nv_bfloat16)
K(f16, __half, __half)
K(bf16_e4m3, __nv_bfloat16, __nv_fp8_e4m3)
K(bf16_e5m2, __nv_bfloat16, __nv_fp8_e5m2)
K(f16_e4m3, __half, __nv_fp8_e4m3)
K(f16_e5m2, __half, __nv_fp8_e5m2)

// attention.cu's merge kernel for paged_attention's splits, which shares the flash kernels' merge arithmetic.
template <typename T> struct MergeKernel;
template <> struct MergeKernel<__nv_bfloat16> { static constexpr auto fn = merge_splits_bf16; };
template <> struct MergeKernel<__half> { static constexpr auto fn = merge_splits_f16; };

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
                std::mt19937& rng, bool verbose, float softcap = 0.f, bool with_sinks = false) {
    int nh = nkv * group;
    std::normal_distribution<float> nd(0.f, 1.f);
    int S = seqs.size();
    // Row layout: sequences in random order, each one's rows contiguous.
    std::vector<int> order(S);
    for (int i = 0; i < S; i++) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<int> positions, row_seq;
    std::vector<int> first_row(S);
    for (int s : order) {
        first_row[s] = positions.size();
        for (int i = 0; i < seqs[s].nq; i++) { positions.push_back(seqs[s].ctx + i); row_seq.push_back(s); }
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
    // Tiles as the host builds them (CudaBackend.UploadFlashTiles): a flash_decode tile is a whole sequence whose rows
    // x group fit 16 MMA rows, flash_attention's tiles are cut at its BLOCK_M / group rows; the prefill tiles first.
    std::vector<int> tiles;
    int nflash = 0;
    for (bool decode : {false, true})
        for (int s : order) {
            bool fits = seqs[s].nq * group <= 16;
            if (g_mode == Mode::Decode) CHECK(fits);
            if (decode != (g_mode == Mode::Decode || (g_mode == Mode::Mixed && fits))) continue;
            int per_tile = decode ? seqs[s].nq : flash_block_m_of(hd) / group;
            for (int off = 0; off < seqs[s].nq; off += per_tile) {
                tiles.push_back(s); tiles.push_back(first_row[s] + off); tiles.push_back(std::min(per_tile, seqs[s].nq - off));
                nflash += !decode;
            }
        }
    int ntiles = tiles.size() / 3, ndecode = ntiles - nflash;
    float scale = 1.f / std::sqrt((float)hd);
    // gpt-oss's sinks: one logit per head, some far above the scores (the sink then takes most of the softmax).
    std::vector<uint16_t> sinks(with_sinks ? nh : 0);
    for (int h = 0; h < (int)sinks.size(); h++) sinks[h] = to_bits<T>(h % 3 == 2 ? 6.f + nd(rng) : 1.5f * nd(rng));
    auto sink_of = [&](int h) { return (double)from_bits<T>(sinks[h]); };
    const T* sp = with_sinks ? (const T*)sinks.data() : nullptr;

    g_readable = {{(const char*)kc.data(), kc.size() * sizeof(CS)}, {(const char*)vc.data(), vc.size() * sizeof(CS)},
                  {(const char*)qv.data(), qv.size() * 2}, {(const char*)sinks.data(), sinks.size() * 2}};
    g_smem_lo = UINTPTR_MAX; g_smem_hi = 0;
    const T* qp = (const T*)qv.data(); const C* kp = (const C*)kc.data(); const C* vp = (const C*)vc.data();
    // The split counters, zero as the host allocates them, one per (tile, kv head), then guard words the kernels must
    // not touch.
    constexpr unsigned guard = 0xdeadbeefu;
    std::vector<unsigned> counters((size_t)ntiles * nkv + 8, 0);
    std::fill(counters.begin() + (size_t)ntiles * nkv, counters.end(), guard);
    std::vector<uint16_t> out;
    std::vector<float> pacc, pml;
    // One step: the output and the partials start as NaN (unwritten), the counters as the last step left them.
    auto step = [&] {
        out.assign((size_t)rows * nh * hd, to_bits<T>(NAN));
        pacc.assign((size_t)rows * nh * splits * hd, NAN);
        pml.assign((size_t)rows * nh * splits * 2, NAN);
        T* op = (T*)out.data();
        for (bool decode : {false, true}) {
            const int n = decode ? ndecode : nflash;
            if (n == 0) continue;
            memset(flash_dynamic_smem, 0xff, sizeof(flash_dynamic_smem));   // stale shared memory must never leak in
            KernelFn<T, C> fn = kernel_for<T, C>(hd, decode);
            const int* tp = tiles.data() + (decode ? 3 * nflash : 0);
            unsigned* cp = counters.data() + (decode ? (size_t)nflash * nkv : 0);
            launch({(unsigned)n, (unsigned)nkv, (unsigned)splits}, [&] {
                fn(qp, kp, vp, tp, positions.data(), table.data(), max_blocks, bs, nh, nkv, scale, window, op,
                   pacc.data(), pml.data(), k_arg, v_arg, softcap, sp, cp);
            });
            // The kernel stays within the dynamic shared memory the host gives it: the bytes past it keep their fill.
            for (size_t b = decode ? decode_smem_bytes_of(hd) : flash_smem_bytes_of(hd); b < sizeof(flash_dynamic_smem); b++)
                CHECK(flash_dynamic_smem[b] == 0xff);
        }
        // Every (tile, kv head) counter is back to zero for the next launch (or graph replay); the guards are intact.
        for (size_t i = 0; i < counters.size(); i++) CHECK(counters[i] == (i < (size_t)ntiles * nkv ? 0u : guard));
    };
    step();

    std::vector<float> res((size_t)rows * nh * hd);
    for (size_t i = 0; i < res.size(); i++) res[i] = from_bits<T>(out[i]);
    if (splits == 1) {
        for (auto& x : pacc) CHECK(std::isnan(x));   // untouched
    } else {
        // Every split of every (row, head) wrote its partial; a split that saw no key wrote m = -inf, l = 0, acc = 0.
        for (long long ps = 0; ps < (long long)rows * nh * splits; ps++) {
            float m = pml[ps * 2], l = pml[ps * 2 + 1];
            CHECK(!std::isnan(m) && !std::isnan(l));
            for (int d = 0; d < hd; d++) CHECK(!std::isnan(pacc[ps * hd + d]));
            if (l == 0.f) {
                CHECK(std::isinf(m) && m < 0);
                for (int d = 0; d < hd; d++) CHECK(pacc[ps * hd + d] == 0.f);
            }
        }
        if (g_mode == Mode::Mixed) {
            // attention.cu's merge_splits (paged_attention's path) over the same partials gives the same bits: the
            // merge arithmetic is one function. Fewer threads than head_dim: each covers several dims.
            std::vector<uint16_t> merged((size_t)rows * nh * hd, to_bits<T>(NAN));
            const float* pa = pacc.data(); const float* pm = pml.data();
            T* mp = (T*)merged.data();
            launch({(unsigned)rows, (unsigned)nh, 1}, [&] { MergeKernel<T>::fn(pa, pm, nh, hd, splits, mp, sp); }, 32, 1 << 16);
            CHECK(merged == out);
            // A second step over the same inputs, with the counters as the first left them, in another block order,
            // as a recorded graph replays: the same bits (no partial and no merge depends on which block merges).
            std::vector<uint16_t> first = out;
            step();
            CHECK(out == first);
        }
    }

    // Naive reference in double from the same inputs (fp8: the dequantized values float(fp8) * scale).
    double max_err = 0;
    for (int r = 0; r < rows; r++) {
        int s = row_seq[r], p = positions[r], lo = lo_of(p);
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
        printf("%-9s hd=%3d kv=%d group=%2d bs=%2d window=%3d splits=%d softcap=%.1f sinks=%d rows=%3d tiles=%2d: max abs err %.2e\n",
               tname, hd, nkv, group, bs, window, splits, softcap, with_sinks, rows, ntiles, max_err);
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
    if (argc < 2 || (strcmp(argv[1], "attention") && strcmp(argv[1], "decode") && strcmp(argv[1], "mixed"))) {
        fprintf(stderr, "usage: %s attention|decode|mixed [seed] [16|8]\n", argv[0]);
        return 2;
    }
    g_mode = !strcmp(argv[1], "decode") ? Mode::Decode : !strcmp(argv[1], "mixed") ? Mode::Mixed : Mode::Attention;
    std::mt19937 rng(argc > 2 ? atoi(argv[2]) : 7);
    setvbuf(stdout, nullptr, _IOLBF, 0);
    bool only16 = argc > 3 && !strcmp(argv[3], "16"), only8 = argc > 3 && !strcmp(argv[3], "8");
    printf("FLASH_FP8_CVT=%d (e4m3 conversion: %s)\n", FLASH_FP8_CVT, FLASH_FP8_CVT ? "hardware cvt, emulated" : "integer path");
    int conv_bad = check_encoder(1) + check_encoder(2) + check_convert<__nv_bfloat16, FLASH_E4M3>("bf16<-e4m3") +
                   check_convert<__nv_bfloat16, FLASH_E5M2>("bf16<-e5m2") + check_convert<__half, FLASH_E4M3>("f16<-e4m3") +
                   check_convert<__half, FLASH_E5M2>("f16<-e5m2");
    int hds[] = {16, 32, 64, 80, 96, 128, 256};
    struct Cfg { int nkv, group, bs, window, splits; std::vector<SeqSpec> seqs; float softcap = 0.f; bool sinks = false; };
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
        // Many splits (the host goes up to 16), with and without sinks, several tiles and KV heads, each merged by the
        // last of its split blocks; a sliding window leaves some splits empty.
        {3, 2, 16, 0, 16, {{300, 1}, {40, 24}, {0, 5}}, 0.f, true},
        {2, 4, 16, 0, 8, {{0, 40}, {500, 1}}},
        {4, 1, 16, 32, 12, {{200, 3}, {64, 20}}, 0.f, true},
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
        {3, 2, 16, 0, 16, {{300, 1}, {40, 8}, {0, 1}}, 0.f, true},
        {2, 4, 16, 0, 8, {{700, 1}, {500, 4}}},
        {4, 1, 16, 32, 12, {{200, 3}, {64, 16}}, 0.f, true},
    };
    if (g_mode == Mode::Decode) cfgs = decode_cfgs;
    // mixed: the split steps, where both kernels share the partial buffers and the counter array.
    if (g_mode == Mode::Mixed) cfgs.erase(std::remove_if(cfgs.begin(), cfgs.end(), [](const Cfg& c) { return c.splits == 1; }), cfgs.end());
    // worst[i]: bf16, f16 (16-bit caches), then bf16/f16 x e4m3/e5m2
    const char* names[6] = {"bf16", "f16", "bf16_e4m3", "bf16_e5m2", "f16_e4m3", "f16_e5m2"};
    const double tol[6] = {2e-2, 4e-3, 2e-2, 2e-2, 4e-3, 4e-3};
    double worst[6] = {0, 0, 0, 0, 0, 0};
    auto t0 = std::chrono::steady_clock::now();
    if (!only8)   // the 16-bit cases first, in the previous order (same random data as before)
        for (int hd : hds)
            for (auto& c : cfgs) {
                worst[0] = std::max(worst[0], run_case<__nv_bfloat16, __nv_bfloat16>("bf16", hd, c.nkv, c.group, c.bs, c.window, c.splits, c.seqs, rng, true, c.softcap, c.sinks));
                worst[1] = std::max(worst[1], run_case<__half, __half>("f16", hd, c.nkv, c.group, c.bs, c.window, c.splits, c.seqs, rng, true, c.softcap, c.sinks));
            }
    if (!only16)
        for (int hd : hds)
            for (auto& c : cfgs) {
                worst[2] = std::max(worst[2], run_case<__nv_bfloat16, __nv_fp8_e4m3>("bf16_e4m3", hd, c.nkv, c.group, c.bs, c.window, c.splits, c.seqs, rng, true, c.softcap, c.sinks));
                worst[3] = std::max(worst[3], run_case<__nv_bfloat16, __nv_fp8_e5m2>("bf16_e5m2", hd, c.nkv, c.group, c.bs, c.window, c.splits, c.seqs, rng, true, c.softcap, c.sinks));
                worst[4] = std::max(worst[4], run_case<__half, __nv_fp8_e4m3>("f16_e4m3", hd, c.nkv, c.group, c.bs, c.window, c.splits, c.seqs, rng, true, c.softcap, c.sinks));
                worst[5] = std::max(worst[5], run_case<__half, __nv_fp8_e5m2>("f16_e5m2", hd, c.nkv, c.group, c.bs, c.window, c.splits, c.seqs, rng, true, c.softcap, c.sinks));
            }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bool ok = conv_bad == 0;
    printf("worst abs err:");
    for (int i = 0; i < 6; i++) {
        if ((only8 && i < 2) || (only16 && i >= 2)) continue;
        printf(" %s %.3e (tol %.0e)%s", names[i], worst[i], tol[i], worst[i] < tol[i] ? "" : " FAIL");
        ok &= worst[i] < tol[i];
    }
    printf("; %lld warp mma emulated in %.0f s -> %s\n", g_mma_count, secs, ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
