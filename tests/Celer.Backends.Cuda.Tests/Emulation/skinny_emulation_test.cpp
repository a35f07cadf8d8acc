// skinny_gemm.cu's kernels as they are, on emulated threads: the CUDA-core GEMM of 1, 2 or 4 rows (fewer rows than its
// bucket too) and the tensor-core one of 8 to 64, in fp32, fp16 and bf16, against a double-precision reference; and
// the gated GEMM (the MLP's gate/up projection with SiLU or gelu(tanh) in its epilogue), which must equal the plain
// GEMM over the stacked weight followed by elementwise.cu's silu_mul / gelu_tanh_mul bit for bit: the fused and the
// unfused decode paths give the same tokens.
//
// Shapes: n not a multiple of a block's columns (the last block's warps past n), k with and without a tail after the
// unrolled loop (16-byte vectors, 128 of them per unrolled step of a warp), and k a multiple of 32 for tensor cores.
// Tolerance of the plain GEMM: its fp32 sum may differ from the double one by ~k ulps of fp32 of the terms' size
// (1e-5 of it here), and a 16-bit output by one ulp of T after rounding.
// Usage: skinny_emulation_test [seed]
#include "common.cuh"
#include "elementwise.cu"        // silu, gelu_tanh and the unfused activations
#include "flash_attention.cu"    // flash_mma
#include "skinny_gemm.cu"
#include <string>

static std::mt19937 rng;
static bool g_failed = false;

template <typename T> static std::vector<T> random_t(size_t n, float scale) {
    std::uniform_real_distribution<float> u(-scale, scale);
    std::vector<T> v(n);
    for (auto& e : v) {
        float f = u(rng);
        e = from_float<T>(f == 0.f ? scale / 3 : f);   // never zeros
    }
    return v;
}

// y = x W^T by the kernel for bucket M (the CUDA-core kernel up to 4, tensor cores above), checked against double.
template <typename T, int M>
static void plain(int rows, int n, int k) {
    std::vector<T> x = random_t<T>((size_t)rows * k, 2.f), w = random_t<T>((size_t)n * k, 0.1f);
    std::vector<T> y((size_t)rows * n, from_float<T>(NAN));
    if (M <= 4) {
        launch({(unsigned)((n + 7) / 8), 1, 1}, [&] { skinny_gemm<T, T, M>(x.data(), rows, w.data(), n, k, y.data()); }, 256);
    } else {
        launch({(unsigned)((n + 15) / 16), 1, 1}, [&] { skinny_gemm_tc<T, T, M>(x.data(), rows, w.data(), n, k, y.data()); }, 128);
    }
    long long bad = 0;
    for (int m = 0; m < rows; m++)
        for (int j = 0; j < n; j++) {
            double ref = 0, terms = 0;
            for (int c = 0; c < k; c++) {
                double t = (double)to_float(x[(size_t)m * k + c]) * to_float(w[(size_t)j * k + c]);
                ref += t;
                terms += std::fabs(t);
            }
            double got = to_float(y[(size_t)m * n + j]), allowed = 1e-5 * terms + (sizeof(T) == 4 ? 0 : ulp<T>(ref));
            if (!(std::fabs(got - ref) <= allowed) && bad++ < 5)
                fprintf(stderr, "  row %d col %d: got %.9g, reference %.9g (allowed %.3g)\n", m, j, got, ref, allowed);
        }
    printf("skinny%s %-4s m%-2d rows %2d n %3d k %4d: %s\n", M <= 4 ? "   " : "_tc", name_of<T>(), M, rows, n, k, bad ? "FAIL" : "ok");
    g_failed |= bad != 0;
}

// The gated GEMM against the plain one over [gate; up] and the activation kernel, bit for bit.
template <typename T, int M, bool GELU>
static void gated(int rows, int d, int k) {
    std::vector<T> x = random_t<T>((size_t)rows * k, 2.f), w = random_t<T>((size_t)2 * d * k, 0.1f);
    std::vector<T> fused((size_t)rows * d, from_float<T>(NAN)), gate_up((size_t)rows * 2 * d), unfused((size_t)rows * d);
    launch({(unsigned)((d + 7) / 8), 1, 1}, [&] { skinny_gemm_gated<T, M, GELU>(x.data(), rows, w.data(), d, k, fused.data()); }, 256);
    launch({(unsigned)((2 * d + 7) / 8), 1, 1}, [&] { skinny_gemm<T, T, M>(x.data(), rows, w.data(), 2 * d, k, gate_up.data()); }, 256);
    // elementwise.cu's grid: (rows, column groups of 256 threads x 16 bytes).
    const unsigned groups = (unsigned)((d + 256 * Vec16<T>::N - 1) / (256 * Vec16<T>::N));
    launch({(unsigned)rows, groups, 1}, [&] {
        if (GELU) gelu_tanh_mul<T>(gate_up.data(), d, unfused.data());
        else silu_mul<T>(gate_up.data(), d, unfused.data());
    }, 256);
    long long differ = 0;
    for (size_t i = 0; i < fused.size(); i++)
        if (memcmp(&fused[i], &unfused[i], sizeof(T)) != 0 && differ++ < 5)
            fprintf(stderr, "  element %zu: fused %.9g, unfused %.9g\n", i, to_float(fused[i]), to_float(unfused[i]));
    printf("gated %-4s %-4s m%d rows %d d %3d k %4d: %s\n", GELU ? "gelu" : "silu", name_of<T>(), M, rows, d, k,
           differ ? "FAIL (not bit-identical)" : "bit-identical");
    g_failed |= differ != 0;
}

template <typename T> static void all_cases() {
    constexpr int V = Vec16<T>::N;
    const int ks[] = {5 * V, 132 * V};   // tail only; one unrolled step (128 vectors) and a tail of 4
    for (int k : ks) {
        plain<T, 1>(1, 19, k);
        plain<T, 2>(1, 8, k);
        plain<T, 2>(2, 19, k);
        plain<T, 4>(3, 19, k);
        plain<T, 4>(4, 27, k);
        gated<T, 1, false>(1, 13, k);
        gated<T, 2, false>(2, 13, k);
        gated<T, 4, false>(3, 21, k);
        gated<T, 4, true>(4, 13, k);
        gated<T, 1, true>(1, 21, k);
    }
    if (sizeof(T) == 2) {   // the tensor-core kernel: 16-bit models, k in 32s (four warps split it unevenly at 480)
        // Runs of more than two register stages per warp (11 and 18 chunks): each stage is loaded again, the last one
        // partly past the warp's run.
        plain<T, 8>(8, 17, 1312);
        plain<T, 16>(9, 19, 2240);
        plain<T, 8>(5, 19, 96);
        plain<T, 16>(16, 33, 480);
        plain<T, 32>(17, 16, 480);
        plain<T, 64>(64, 21, 256);
    }
}

int main(int argc, char** argv) {
    rng.seed(argc > 1 ? atoi(argv[1]) : 7);
    setvbuf(stdout, nullptr, _IOLBF, 0);
    all_cases<float>();
    all_cases<__half>();
    all_cases<__nv_bfloat16>();
    printf("%s\n", g_failed ? "-> FAIL" : "-> PASS");
    return g_failed ? 1 : 0;
}
