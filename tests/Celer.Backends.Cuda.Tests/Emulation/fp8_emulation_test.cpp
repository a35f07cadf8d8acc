// fp8_quant.cu and fp8_skinny_gemm.cu as they are, on emulated threads: quantize_fp8's codes and scales (dynamic per
// token, static, dynamic per group of 128) against the format's definition, byte for byte; then the tensor-core FP8
// skinny GEMM (blocks of 4 and 8 warps, per-row and 128 x 128 block scales, 1 to 8 rows) on those codes against a
// double-precision sum of the decoded codes times their scales. Then the kernels that write an FP8 layer's input codes
// as they store its input (add_rms_norm_fp8 of rmsnorm.cu, silu_mul_fp8 and gelu_tanh_mul_fp8): their stores equal
// add_rms_norm's, silu_mul's and gelu_tanh_mul's bit for bit, and their codes and scales the definition's of those.
//
// Shapes: n not a multiple of a block's 16 columns, k a multiple of 16 but not of 64 (a chunk that lanes end inside)
// nor of 128 (a partial last group), and a k long enough that every warp reloads both register stages.
// Tolerance of the GEMM: the products of two e4m3 values are exact, so the fp32 sums differ from the double one by
// ~k ulps of fp32 of the terms' size (1e-5 of it here), and a 16-bit output by one ulp of T after rounding.
// Usage: fp8_emulation_test [seed]
#include "common.cuh"
#include "elementwise.cu"
#include "fp8_quant.cu"
#include "fp8_skinny_gemm.cu"
#include "rmsnorm.cu"

static std::mt19937 rng;
static bool g_failed = false;

struct Scheme { int mode; const char* name; };
static const Scheme kSchemes[] = {{0, "per-token"}, {1, "static"}, {2, "per-group"}};

// The codes and scales quantize_fp8 must write for row m: the scale of the scheme, then each value divided by it
// (fp32) and rounded to e4m3 (nearest even, saturated). Group scales are ld apart per group (ld >= rows; the rows
// between stay 0).
template <typename T>
static void reference_quantize(const T* x, int rows, int k, int mode, float static_scale, float min_scale,
                               std::vector<uint8_t>& codes, std::vector<float>& scales, int ld = 0) {
    const int groups = (k + 127) / 128;
    if (ld == 0) ld = rows;
    codes.assign((size_t)rows * k, 0);
    scales.assign(mode == 2 ? (size_t)groups * ld : (size_t)rows, 0.f);
    for (int m = 0; m < rows; m++) {
        for (int g = 0; g < (mode == 2 ? groups : 1); g++) {
            int begin = mode == 2 ? g * 128 : 0, end = mode == 2 ? std::min(k, begin + 128) : k;
            float amax = 0.f;
            for (int c = begin; c < end; c++) amax = std::max(amax, std::fabs(to_float(x[(size_t)m * k + c])));
            float s = mode == 0 ? std::max(amax / 448.f, min_scale) : mode == 1 ? static_scale : std::max(amax, min_scale) / 448.f;
            for (int c = begin; c < end; c++) codes[(size_t)m * k + c] = fp8_encode(to_float(x[(size_t)m * k + c]) / s, 1);
            scales[mode == 2 ? (size_t)g * ld + m : (size_t)m] = s;
        }
    }
}

template <typename T, bool BLOCKS, int W>
static void gemm_case(int rows, int n, int k, int mode) {
    const int groups = (k + 127) / 128, grid_rows = (n + 127) / 128, ws_ld = (groups + 3) / 4 * 4;
    std::uniform_real_distribution<float> value(-3.f, 3.f), scale(0.5f, 1.5f);
    Buffer<T> x((size_t)rows * k);
    for (size_t i = 0; i < (size_t)rows * k; i++) {
        float f = value(rng);
        x.get()[i] = from_float<T>(f == 0.f ? 1.f : f);   // never zeros
    }
    // Random weight codes: any sign, exponent and mantissa but NaN (S.1111.111).
    Buffer<uint8_t> wq((size_t)n * k);
    for (size_t i = 0; i < (size_t)n * k; i++) {
        uint8_t b;
        do b = (uint8_t)(rng() & 0xff); while ((b & 0x7f) == 0x7f || b == 0);
        wq.get()[i] = b;
    }
    std::vector<float> ws(BLOCKS ? (size_t)grid_rows * ws_ld : (size_t)n);
    for (float& s : ws) s = scale(rng) / 256;

    // quantize_fp8: one block of 256 threads per row.
    const float static_scale = 3.f / 448 * 0.8f, min_scale = mode == 2 ? 1e-10f : 1.f / (448 * 512);
    Buffer<uint8_t> xq((size_t)rows * k);
    std::vector<float> xs(mode == 2 ? (size_t)groups * rows : (size_t)rows, NAN);
    const Fp8Codes out{xq.get(), xs.data(), rows, mode, static_scale, min_scale};
    launch({(unsigned)rows, 1, 1}, [&] { quantize_fp8<T>(x.get(), k, out); }, FP8_QUANT_THREADS);
    std::vector<uint8_t> codes;
    std::vector<float> scales;
    reference_quantize(x.get(), rows, k, mode, static_scale, min_scale, codes, scales);
    long long wrong = 0;
    for (size_t i = 0; i < codes.size(); i++)
        if (codes[i] != xq.get()[i] && wrong++ < 5) fprintf(stderr, "  code %zu: %02x, reference %02x\n", i, xq.get()[i], codes[i]);
    for (size_t i = 0; i < scales.size(); i++)
        if (memcmp(&scales[i], &xs[i], 4) != 0 && wrong++ < 5) fprintf(stderr, "  scale %zu: %.9g, reference %.9g\n", i, xs[i], scales[i]);

    // The GEMM on those codes.
    std::vector<T> y((size_t)rows * n, from_float<T>(NAN));
    Buffer<uint8_t> smem((size_t)rows * k);
    launch({(unsigned)((n + 15) / 16), 1, 1}, [&] {
        fp8_skinny_gemm_tc<T, BLOCKS, W>(xq.get(), xs.data(), rows, rows, wq.get(), ws.data(), ws_ld, n, k, y.data(), smem.get());
    }, W * 32);
    long long bad = 0;
    for (int m = 0; m < rows; m++)
        for (int j = 0; j < n; j++) {
            double ref = 0, terms = 0;
            for (int g = 0; g < groups; g++) {
                double sum = 0, abs_sum = 0;
                for (int c = g * 128; c < std::min(k, g * 128 + 128); c++) {
                    double t = fp8_decode(xq.get()[(size_t)m * k + c], 1) * fp8_decode(wq.get()[(size_t)j * k + c], 1);
                    sum += t;
                    abs_sum += std::fabs(t);
                }
                double factor = BLOCKS ? (double)ws[(size_t)(j / 128) * ws_ld + g] * xs[(size_t)g * rows + m] : (double)ws[j] * xs[m];
                ref += sum * factor;
                terms += abs_sum * std::fabs(factor);
            }
            double got = to_float(y[(size_t)m * n + j]), allowed = 1e-5 * terms + (sizeof(T) == 4 ? 0 : ulp<T>(ref));
            if (!(std::fabs(got - ref) <= allowed) && bad++ < 5)
                fprintf(stderr, "  row %d col %d: got %.9g, reference %.9g (allowed %.3g)\n", m, j, got, ref, allowed);
        }
    printf("fp8 %-4s %-9s %s %dw rows %d n %3d k %4d: codes %s, gemm %s\n", name_of<T>(), kSchemes[mode].name,
           BLOCKS ? "blocks" : "rows  ", W, rows, n, k, wrong ? "FAIL" : "exact", bad ? "FAIL" : "ok");
    g_failed |= wrong != 0 || bad != 0;
}

// Random values of T, never zero.
template <typename T> static std::vector<T> random_values(size_t n, float low, float high) {
    std::uniform_real_distribution<float> value(low, high);
    std::vector<T> v(n);
    for (T& e : v) {
        float f = value(rng);
        e = from_float<T>(f == 0.f ? 0.5f : f);
    }
    return v;
}

// Counts the bytes where got differs from want, printing the first few.
template <typename V> static long long differ(const char* what, const V* got, const V* want, size_t n) {
    long long wrong = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(V)) != 0 && wrong++ < 5) fprintf(stderr, "  %s %zu differs\n", what, i);
    return wrong;
}

// The block the host gives a kernel that holds a row of `elements` values in registers for its codes (CudaBackend:
// a thread per 16-byte vector of the row, in whole warps, at most FP8_HELD_THREADS).
template <typename T> static int row_threads(int elements) {
    const int vectors = elements / Vec16<T>::N;
    return std::min(FP8_HELD_THREADS, std::max(32, (vectors + 31) / 32 * 32));
}

// add_rms_norm_fp8 against add_rms_norm and then the reference quantization of what it stored, for `rows` rows of k.
template <typename T> static void norm_case(int rows, int k, int mode) {
    const int ld = mode == 2 ? (rows + 3) / 4 * 4 : rows, groups = (k + 127) / 128;
    const float static_scale = 2.f / 448, min_scale = mode == 2 ? 1e-10f : 1.f / (448 * 512), eps = 1e-5f;
    std::vector<T> x = random_values<T>((size_t)rows * k, -2.f, 2.f), residual = random_values<T>((size_t)rows * k, -4.f, 4.f);
    std::vector<T> weight = random_values<T>(k, 0.2f, 1.8f), x_ref = x, residual_ref = residual;
    Buffer<uint8_t> q((size_t)rows * k);
    std::vector<float> scales(mode == 2 ? (size_t)groups * ld : (size_t)rows, 0.f);
    const Fp8Codes out{q.get(), scales.data(), ld, mode, static_scale, min_scale};
    launch({(unsigned)rows, 1, 1}, [&] { add_rms_norm_fp8<T>(x.data(), residual.data(), weight.data(), k, eps, out); }, row_threads<T>(k));
    launch({(unsigned)rows, 1, 1}, [&] { add_rms_norm<T>(x_ref.data(), residual_ref.data(), weight.data(), k, eps); }, row_threads<T>(k));
    std::vector<uint8_t> codes;
    std::vector<float> ref_scales;
    reference_quantize(x_ref.data(), rows, k, mode, static_scale, min_scale, codes, ref_scales, ld);
    const long long wrong = differ("x", x.data(), x_ref.data(), x.size()) + differ("residual", residual.data(), residual_ref.data(), x.size())
        + differ("code", q.get(), codes.data(), codes.size()) + differ("scale", scales.data(), ref_scales.data(), scales.size());
    printf("add_rms_norm_fp8 %-4s %-9s rows %d k %5d: %s\n", name_of<T>(), kSchemes[mode].name, rows, k, wrong ? "FAIL" : "exact");
    g_failed |= wrong != 0;
}

// silu_mul_fp8 / gelu_tanh_mul_fp8 against silu_mul / gelu_tanh_mul (their grid of 128-thread blocks) and then the
// reference quantization of the products.
template <typename T, bool GELU> static void gated_case(int rows, int d, int mode) {
    const int ld = mode == 2 ? (rows + 3) / 4 * 4 : rows, groups = (d + 127) / 128;
    const float static_scale = 1.f / 448, min_scale = mode == 2 ? 1e-10f : 1.f / (448 * 512);
    std::vector<T> gate_up = random_values<T>((size_t)rows * 2 * d, -4.f, 4.f), out((size_t)rows * d), out_ref((size_t)rows * d);
    Buffer<uint8_t> q((size_t)rows * d);
    std::vector<float> scales(mode == 2 ? (size_t)groups * ld : (size_t)rows, 0.f);
    const Fp8Codes codes_out{q.get(), scales.data(), ld, mode, static_scale, min_scale};
    launch({(unsigned)rows, 1, 1}, [&] { gated_fp8<T, GELU>(gate_up.data(), d, out.data(), codes_out); }, row_threads<T>(d));
    const unsigned blocks = (unsigned)((d / Vec16<T>::N + 127) / 128);
    launch({(unsigned)rows, blocks, 1}, [&] {
        if (GELU) gelu_tanh_mul<T>(gate_up.data(), d, out_ref.data());
        else silu_mul<T>(gate_up.data(), d, out_ref.data());
    }, 128);
    std::vector<uint8_t> codes;
    std::vector<float> ref_scales;
    reference_quantize(out_ref.data(), rows, d, mode, static_scale, min_scale, codes, ref_scales, ld);
    const long long wrong = differ("out", out.data(), out_ref.data(), out.size()) + differ("code", q.get(), codes.data(), codes.size())
        + differ("scale", scales.data(), ref_scales.data(), scales.size());
    printf("%s %-4s %-9s rows %d d %5d: %s\n", GELU ? "gelu_tanh_mul_fp8" : "silu_mul_fp8", name_of<T>(), kSchemes[mode].name, rows, d,
           wrong ? "FAIL" : "exact");
    g_failed |= wrong != 0;
}

template <typename T> static void all_cases() {
    const int ks[] = {592, 4640};   // 37 and 290 vectors of 16: chunks of 64 and groups of 128 end partly filled; at 4640 a
                                    // warp of 4 runs 19 chunks, so both register stages are loaded again
    for (int k : ks) {
        for (int rows : {1, 3, 8}) {
            gemm_case<T, false, 4>(rows, 37, k, 0);
            gemm_case<T, false, 8>(rows, 21, k, rows == 3 ? 1 : 0);
            gemm_case<T, true, 4>(rows, 37, k, 2);
            gemm_case<T, true, 8>(rows, 150, k, 2);
        }
    }
    // Widths: groups of 128 that end partly filled (592, 4640), rows of more vectors than threads (fp32 and bf16 at 4640;
    // bf16 at 14336, Llama-3-8B's intermediate size: four per thread), and 3 rows, so the group scales' leading dimension (4) is
    // past the rows.
    for (int mode = 0; mode < 3; mode++) {
        for (int k : {592, 4640, std::is_same<T, __nv_bfloat16>::value ? 14336 : 0}) {
            if (k == 0) continue;
            norm_case<T>(3, k, mode);
            gated_case<T, false>(3, k, mode);
        }
        gated_case<T, true>(2, 4640, mode);
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
