// Runs the literal stream_gemm.cu kernels on emulated threads (common.cuh = cuda_emulation.cuh) and compares them with
// a double-precision product of the same 16-bit inputs, rounded once to the output type: every row bucket (16, 32, 64)
// and (column tile, k step) configuration with rows short of it, column counts that leave a block partly empty, the model dtype and fp32 (logits) out, with
// and without a bias, and k split over 1 to 5 blocks, including splits that get no k at all. Each case runs twice:
// the split-k counters must be left at zero for the next launch, as CUDA graphs replay it.
// Usage: stream_gemm_emulation_test [seed]
#include "common.cuh"
#include "stream_gemm.cu"
#include <string>

using Fn = void (*)(const void*, int, const void*, int, int, const void*, void*, float*, int*);

template <typename T> struct Kernels;
#define PICK(S, MR, BN, BK, F32) (F32 ? (Fn)stream_gemm_##S##_m##MR##_n##BN##_k##BK##_f32 : (Fn)stream_gemm_##S##_m##MR##_n##BN##_k##BK)
#define PICK_MR(S, BN, BK) return mr == 16 ? PICK(S, 16, BN, BK, f32) : mr == 32 ? PICK(S, 32, BN, BK, f32) : PICK(S, 64, BN, BK, f32);
#define KERNELS(S, T)                                                                                                 \
    template <> struct Kernels<T> {                                                                                   \
        static constexpr const char* name = #S;                                                                       \
        static Fn get(int mr, int bn, int bk, bool f32) {                                                             \
            if (bn == 128) { PICK_MR(S, 128, 64) }                                                                    \
            if (bk == 128) { PICK_MR(S, 64, 128) }                                                                    \
            if (bk == 256) { PICK_MR(S, 64, 256) }                                                                    \
            PICK_MR(S, 64, 64)                                                                                        \
        }                                                                                                             \
    };
KERNELS(f16, __half)
KERNELS(bf16, __nv_bfloat16)

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
static void readable(const void* p, size_t bytes) { g_readable.push_back({(const char*)p, bytes}); }

template <typename T, typename O>
static bool run_case(int mr, int bn, int bk, int rows, int n, int k, int splits, bool with_bias, std::mt19937& rng) {
    const int tiles = (n + bn - 1) / bn;
    std::vector<T> x = random_t<T>((size_t)rows * k, 1.f, rng), w = random_t<T>((size_t)n * k, 0.1f, rng);
    std::vector<O> bias(n);
    for (auto& b : bias) b = from_float<O>(std::uniform_real_distribution<float>(-0.5f, 0.5f)(rng));
    std::vector<float> partial((size_t)splits * tiles * mr * bn, NAN);
    std::vector<int> counters(tiles, 0);
    g_readable.clear();
    readable(x.data(), x.size() * sizeof(T));
    readable(w.data(), w.size() * sizeof(T));

    const bool f32 = sizeof(O) == 4;
    const double tol = f32 ? 1e-5 : sizeof(T) == 2 && std::string(Kernels<T>::name) == "bf16" ? 1.0 / 128 : 1.0 / 1024;
    for (int run = 0; run < 2; run++) {
        std::vector<O> y((size_t)rows * n, from_float<O>(NAN));
        launch({(unsigned)tiles, (unsigned)splits, 1}, [&] {
            Kernels<T>::get(mr, bn, bk, f32)(x.data(), rows, w.data(), n, k, with_bias ? bias.data() : nullptr, y.data(), partial.data(), counters.data());
        });
        double worst = 0;
        for (int m = 0; m < rows; m++)
            for (int c = 0; c < n; c++) {
                double ref = with_bias ? to_float(bias[c]) : 0.0, mag = std::fabs(ref);
                for (int i = 0; i < k; i++) {
                    const double p = (double)to_float(x[(size_t)m * k + i]) * to_float(w[(size_t)c * k + i]);
                    ref += p;
                    mag += std::fabs(p);
                }
                const double got = to_float(y[(size_t)m * n + c]);
                // One rounding of the output plus fp32 accumulation over k terms.
                const double err = std::fabs(got - ref), bound = tol * std::fabs(ref) + 1e-6 * mag + 1e-30;
                if (!(err <= bound)) {
                    printf("%s mr %d bn %d bk %d rows %d n %d k %d splits %d bias %d f32 %d run %d: y[%d, %d] = %g, reference %g\n",
                           Kernels<T>::name, mr, bn, bk, rows, n, k, splits, with_bias, f32, run, m, c, got, ref);
                    return false;
                }
                worst = std::max(worst, err / (bound + 1e-30));
            }
        for (int i = 0; i < tiles; i++)
            if (counters[i] != 0) {
                printf("counter %d left at %d\n", i, counters[i]);
                return false;
            }
        if (run == 0)
            printf("%s mr %d bn %d bk %d rows %d n %d k %d splits %d bias %d f32 %d: worst error %.2f of the bound\n", Kernels<T>::name, mr,
                   bn, bk, rows, n, k, splits, with_bias, f32, worst);
    }
    return true;
}

int main(int argc, char** argv) {
    std::mt19937 rng(argc > 1 ? std::stoi(argv[1]) : 7);
    struct Case { int mr, rows, n, k, splits; bool bias; };
    const Case cases[] = {
        {16, 1, 64, 256, 1, false},   {16, 3, 100, 512, 2, true},  {16, 16, 77, 768, 3, false}, {16, 9, 130, 256, 5, true},
        {32, 17, 64, 256, 1, true},   {32, 32, 200, 512, 4, false}, {32, 25, 65, 1280, 2, true},
        {64, 33, 96, 256, 1, false},  {64, 64, 130, 768, 3, true}, {64, 47, 64, 512, 2, false},
    };
    // Every (BN, BK) of stream_gemm_configs, in both dtypes and both outputs.
    const int configs[][2] = {{64, 64}, {128, 64}, {64, 128}, {64, 256}};
    bool ok = true;
    int i = 0;
    for (const Case& c : cases)
        for (const auto& cfg : configs) {
            if (i++ % 2) ok &= run_case<__nv_bfloat16, __nv_bfloat16>(c.mr, cfg[0], cfg[1], c.rows, c.n, c.k, c.splits, c.bias, rng);
            else ok &= run_case<__half, float>(c.mr, cfg[0], cfg[1], c.rows, c.n, c.k, c.splits, c.bias, rng);
        }
    ok &= run_case<__half, __half>(16, 64, 64, 2, 70, 64 * 7, 4, true, rng);
    ok &= run_case<__nv_bfloat16, float>(64, 128, 64, 64, 64, 64 * 6, 5, false, rng);
    printf("mma.sync issued: %lld -> %s\n", g_mma_count, ok ? "PASS" : "FAIL");
    return ok ? 0 : 1;
}
