// int4_gemm.cu's tensor-core W4A16 kernels as they are, on emulated threads: int4_gemm_tc (steps of up to 64 rows, 16
// columns per block) and int4_gemm_tiled (x's tile, the codes and the scale words through a 4-stage cp.async pipeline,
// blocks of 4 or 8 warps, row tiles, k split across blocks and summed by the tile's last block), in fp16 and bf16,
// against a double-precision reference.
// The packed layout is built here from its definition in int4_gemm.cu's header comment (word 4t + u of each 128-k
// block holds k 32u + 8t ..., nibble j the (j % 4) · 2 + j / 4-th of those 8; a scale word is the scale's 16 bits
// under those of magic + zero point), not by the loader's code.
//
// Cases: ragged rows (a tile's rows past the step, whole row tiles past it), n not a multiple of a block's columns,
// k of 2 to 5 128-k blocks (fewer and more than the pipeline's stages), splits of 1 to 3 (one that gets no k at all),
// groups of 32, 64 (4 and 2 scale words per row and block), 128 and per channel (one), a bias, and an fp32 output
// (a quantized lm_head).
// Reference: the weight the kernel uses is (code - zero) · scale rounded once to T (the subtraction of magic + zero is
// exact); the fp32 sums may differ from the double one by ~k ulps of fp32 of the terms' size (1e-5 of it here), and a
// 16-bit output by one ulp of T after rounding (plus the bias's).
// Usage: int4_emulation_test [seed]
#include "common.cuh"
#include "flash_attention.cu"    // flash_mma
#include "int4_gemm.cu"

static std::mt19937 rng;
static bool g_failed = false;

template <typename T> static float magic() { return std::is_same<T, __nv_bfloat16>::value ? 128.f : 1024.f; }

// A random 4-bit weight [n, k] in the tensor-core layout, and the weights the kernel computes with.
template <typename T> struct PackedWeight {
    Buffer<unsigned> codes, scales;
    std::vector<double> dequantized;   // [n, k]
    int groups, group_shift;
    PackedWeight(int n, int k, int group_size)   // group_size 0: per channel
        : codes((size_t)n * k / 8), scales((size_t)n * (group_size ? k / group_size : 1)), dequantized((size_t)n * k) {
        groups = group_size ? k / group_size : 1;
        group_shift = group_size ? __builtin_ctz(group_size) : 31;
        std::uniform_real_distribution<float> scale(0.005f, 0.02f);
        std::vector<float> s((size_t)n * groups);
        std::vector<int> z((size_t)n * groups);
        for (size_t i = 0; i < s.size(); i++) {
            s[i] = from_bits<T>(to_bits<T>(scale(rng)));
            z[i] = (int)(rng() % 16);
            scales.get()[i] = to_bits<T>(s[i]) | ((unsigned)to_bits<T>(magic<T>() + z[i]) << 16);
        }
        for (int r = 0; r < n; r++)
            for (int word = 0; word < k / 8; word++) {
                unsigned packed = 0;
                for (int j = 0; j < 8; j++) {
                    const int p = word % 16, c = word / 16 * 128 + p % 4 * 32 + p / 4 * 8 + j % 4 * 2 + j / 4;
                    const unsigned code = rng() % 16;
                    packed |= code << (4 * j);
                    const size_t at = (size_t)r * groups + (group_size ? c / group_size : 0);
                    dequantized[(size_t)r * k + c] = from_bits<T>(to_bits<T>(((float)code - z[at]) * s[at]));
                }
                codes.get()[(size_t)r * (k / 8) + word] = packed;
            }
    }
};

// tiled: int4_gemm_tiled<BM, NW> with `splits` splits and `row_tiles` row tiles (at least the rows'), else int4_gemm_tc<BM>.
template <typename T, typename O, int BM, int NW, bool TILED>
static void gemm_case(int rows, int n, int k, int group_size, int splits, int row_tiles, bool with_bias) {
    PackedWeight<T> w(n, k, group_size);
    std::uniform_real_distribution<float> value(-2.f, 2.f);
    Buffer<T> x((size_t)rows * k), bias(n);
    for (size_t i = 0; i < (size_t)rows * k; i++) {
        const float f = value(rng);
        x.get()[i] = from_float<T>(f == 0.f ? 1.f : f);   // never zeros
    }
    for (int j = 0; j < n; j++) bias.get()[j] = from_float<T>(value(rng));
    g_readable = {{(const char*)x.get(), (size_t)rows * k * sizeof(T)}, {(const char*)w.codes.get(), (size_t)n * k / 2},
                  {(const char*)w.scales.get(), (size_t)n * w.groups * 4}};
    Buffer<O> y((size_t)rows * n);
    for (size_t i = 0; i < (size_t)rows * n; i++) y.get()[i] = from_float<O>(NAN);
    const T* b = with_bias ? bias.get() : nullptr;

    if (TILED) {
        const int col_blocks = (n + 16 * NW - 1) / (16 * NW);
        std::vector<float> partials((size_t)splits * col_blocks * row_tiles * BM * 16 * NW, NAN);
        std::vector<int> counters((size_t)col_blocks * row_tiles, 0);
        CHECK(INT4_STAGES * INT4_TILED_STAGE(BM, 16 * NW) <= (int)sizeof(flash_dynamic_smem));
        launch({(unsigned)(col_blocks * row_tiles), (unsigned)splits, 1}, [&] {
            int4_gemm_tiled<T, O, BM, NW>(x.get(), rows, row_tiles, w.codes.get(), w.scales.get(), w.groups, w.group_shift, n, k,
                                          b, y.get(), partials.data(), counters.data(), flash_dynamic_smem);
        }, NW * 32);
        for (int c : counters) CHECK(c == 0);   // left ready for the next launch
    } else {
        launch({(unsigned)((n + 15) / 16), 1, 1}, [&] {
            int4_gemm_tc<T, O, BM, 4, 4, false>(x.get(), rows, w.codes.get(), w.scales.get(), w.groups, w.group_shift, n, k, y.get());
        }, 128);
    }

    long long bad = 0;
    for (int m = 0; m < rows; m++)
        for (int j = 0; j < n; j++) {
            double ref = with_bias && TILED ? to_float(bias.get()[j]) : 0, terms = std::fabs(ref);
            for (int c = 0; c < k; c++) {
                const double t = (double)to_float(x.get()[(size_t)m * k + c]) * w.dequantized[(size_t)j * k + c];
                ref += t;
                terms += std::fabs(t);
            }
            const double got = to_float(y.get()[(size_t)m * n + j]), allowed = 1e-5 * terms + (sizeof(O) == 4 ? 0 : ulp<O>(ref));
            if (!(std::fabs(got - ref) <= allowed) && bad++ < 5)
                fprintf(stderr, "  row %d col %d: got %.9g, reference %.9g (allowed %.3g)\n", m, j, got, ref, allowed);
        }
    printf("int4_gemm_%s %-4s -> %-4s m%-2d w%d rows %3d n %3d k %3d group %3d splits %d row tiles %d%s: %s\n", TILED ? "tiled" : "tc   ",
           name_of<T>(), name_of<O>(), BM, NW, rows, n, k, group_size, splits, row_tiles, with_bias ? " bias" : "", bad ? "FAIL" : "ok");
    g_failed |= bad != 0;
}

template <typename T> static void all_cases() {
    gemm_case<T, T, 16, 4, false>(13, 40, 384, 128, 1, 1, false);
    gemm_case<T, T, 64, 4, false>(37, 24, 256, 32, 1, 1, false);
    gemm_case<T, T, 16, 4, true>(9, 80, 384, 128, 1, 1, false);
    gemm_case<T, T, 16, 4, true>(16, 80, 640, 128, 2, 1, true);
    gemm_case<T, float, 16, 8, true>(11, 136, 256, 32, 2, 1, true);
    gemm_case<T, T, 32, 4, true>(20, 72, 512, 0, 3, 1, false);
    gemm_case<T, T, 32, 8, true>(32, 130, 384, 64, 1, 1, false);
    gemm_case<T, T, 64, 8, true>(100, 136, 256, 64, 2, 2, true);
    gemm_case<T, float, 64, 4, true>(64, 70, 384, 128, 1, 4, false);
    gemm_case<T, T, 64, 4, true>(65, 64, 640, 0, 3, 2, false);
}

int main(int argc, char** argv) {
    rng.seed(argc > 1 ? atoi(argv[1]) : 7);
    setvbuf(stdout, nullptr, _IOLBF, 0);
    all_cases<__half>();
    all_cases<__nv_bfloat16>();
    printf("%s\n", g_failed ? "-> FAIL" : "-> PASS");
    return g_failed ? 1 : 0;
}
