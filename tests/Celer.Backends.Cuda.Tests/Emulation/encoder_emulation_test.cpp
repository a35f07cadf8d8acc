// encoder.cu's kernels as they are (layer_norm, add_layer_norm, gelu, encoder_embedding), with elementwise.cu before
// them as in the kernels' translation unit (gelu_tanh), on emulated threads, against a double-precision host reference
// on random inputs: hidden sizes 64, 128, 384, 768, 1000 and 8192 (the vectorized path, with 1 to 4 vectors per thread),
// 1003 (not a whole number of 16-byte vectors: the element-wise path), bf16 and fp32 (fp16 for the LayerNorms too).
// LayerNorm inputs carry a per-row offset (±3, one row -60) over a spread of ±2, as hidden states do: a variance taken
// as E[x²] (without the mean) or one-pass E[x²] − mean² in fp32 is visibly wrong there.
//
// Tolerances: 16-bit outputs are compared with the reference rounded to T and may differ by one ulp of T (the kernel's
// fp32 value and the double reference can fall on either side of a rounding boundary), plus fp32's own error in the
// terms that cancel (LayerNorm: (x − mean)·inv·w + b, ~1e-6 of the terms' size; GELU: 1 + erf(x/√2) near x ≪ 0, a few
// fp32 ulps of 1 times 0.5·|x|). fp32 outputs: 1e-5 of the terms' size (block sums over 8192 values with offsets). The
// embeddings are exact: two adds of T values, each rounded to T, are the same on both sides.
// Usage: encoder_emulation_test [seed]
#include "common.cuh"
#include "elementwise.cu"
#include "encoder.cu"
#include <algorithm>
#include <string>

template <typename T> struct Kernels;
#define KERNELS(S, T)                                                                                                 \
    template <> struct Kernels<T> {                                                                                   \
        static constexpr const char* name = #S;                                                                       \
        static void ln(const T* x, const T* w, const T* b, int size, float eps, T* y) { layer_norm_##S(x, w, b, size, eps, y); } \
        static void add_ln(const T* x, T* r, const T* w, const T* b, int size, float eps) { add_layer_norm_##S(x, r, w, b, size, eps); } \
        static void gelu(T* x, long long n, int form) { gelu_##S(x, n, form); }                                   \
        static void embed(const int* ids, const int* types, const int* pos, int off, const T* w, int vocab, const T* t, int nt, \
                          const T* p, int np, int hidden, T* out) {                                                   \
            encoder_embedding_##S(ids, types, pos, off, w, vocab, t, nt, p, np, hidden, out);                         \
        }                                                                                                             \
    };
CELER_FOR_DTYPES(KERNELS)

static std::mt19937 rng;
static bool g_failed = false;

template <typename T> static float rnd(double v) { return to_float(from_float<T>((float)v)); }

template <typename T> static std::vector<T> random_t(size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<T> v(n);
    for (auto& e : v) {
        float f = u(rng);
        if (f == 0.f) f = hi / 3;   // never zeros
        e = from_float<T>(f);
    }
    return v;
}

// The block the host launches for a row kernel (CudaBackend.Threads(Vectors(size))), or fewer threads when asked (so each
// holds more vectors).
template <typename T> static int row_threads(int size, int threads) {
    if (threads > 0) return threads;
    int vectors = (size + Vec16<T>::N - 1) / Vec16<T>::N;
    return std::min(1024, std::max(32, (vectors + 31) / 32 * 32));
}

// Checks outputs against the double reference. `terms`: the size of what the kernel's fp32 arithmetic cancelled on the
// way (fp32's error scales with it). 16-bit: the reference rounded to T, one ulp of T allowed (counted), plus 1e-6 of
// the terms; fp32: 1e-6 of the terms (~16 ulps).
template <typename T> struct Checker {
    const char* what;
    double worst = 0;   // fp32: the largest error in units of the allowed one
    long long bad = 0, off_by_ulp = 0, count = 0;
    void operator()(double reference, T actual, double terms) {
        double got = to_float(actual), allowed;
        count++;
        if (sizeof(T) == 4) allowed = 1e-6 * terms;
        else {
            reference = rnd<T>(reference);
            allowed = ulp<T>(reference) + 1e-6 * terms;
            if (got != reference) off_by_ulp++;
        }
        double err = std::fabs(got - reference) / allowed;
        if (!(err <= 1.0)) {
            if (bad < 5) fprintf(stderr, "  %s: got %.9g, reference %.9g (allowed %.3g)\n", what, got, reference, allowed);
            bad++;
        }
        worst = std::max(worst, std::isnan(err) ? 1e30 : err);
    }
    void report(const char* dtype, int size, int threads) {
        if (sizeof(T) == 4 || count == 0)
            printf("%-18s %-4s size %5d threads %4d: worst %.3f of the allowed error%s\n", what, dtype, size, threads, worst, bad ? " FAIL" : "");
        else
            printf("%-18s %-4s size %5d threads %4d: %lld of %lld differ from the rounded reference%s\n", what, dtype, size, threads, off_by_ulp, count, bad ? " FAIL" : "");
        if (bad) g_failed = true;
    }
};

// x[r] = offset_r + u(-2, 2), offsets in ±3 and one of -60 (a dimension-dominated hidden state): the mean matters, and
// a one-pass E[x²] − mean² in fp32 loses the variance to cancellation there.
template <typename T> static std::vector<T> hidden_states(int rows, int size) {
    std::vector<T> x((size_t)rows * size);
    std::uniform_real_distribution<float> off(-3.f, 3.f), u(-2.f, 2.f);
    for (int r = 0; r < rows; r++) {
        float o = r == 0 ? 2.5f : r == 1 ? -60.f : off(rng);
        for (int c = 0; c < size; c++) {
            float f = o + u(rng);
            x[(size_t)r * size + c] = from_float<T>(f == 0.f ? 0.5f : f);
        }
    }
    return x;
}

// Double-precision LayerNorm of one row of values s; checks out against it.
template <typename T>
static void check_row(Checker<T>& check, const double* s, int size, const std::vector<T>& w, const std::vector<T>& b, float eps, const T* out) {
    double mean = 0, var = 0;
    for (int c = 0; c < size; c++) mean += s[c];
    mean /= size;
    for (int c = 0; c < size; c++) var += (s[c] - mean) * (s[c] - mean);
    var /= size;
    double inv = 1 / std::sqrt(var + eps);
    for (int c = 0; c < size; c++) {
        double terms = (std::fabs(s[c]) + std::fabs(mean)) * inv * std::fabs(to_float(w[c])) + std::fabs(to_float(b[c]));
        check((s[c] - mean) * inv * to_float(w[c]) + to_float(b[c]), out[c], terms);
    }
}

template <typename T> static void layer_norms(int rows, int size, int threads_asked) {
    const int threads = row_threads<T>(size, threads_asked);
    const float eps = 1e-12f;   // BERT's layer_norm_eps
    std::vector<T> x = hidden_states<T>(rows, size), residual = hidden_states<T>(rows, size);
    std::vector<T> w = random_t<T>(size, 0.5f, 1.5f), b = random_t<T>(size, -0.5f, 0.5f);
    std::vector<T> y(x.size(), from_float<T>(NAN)), x_before = x;
    std::vector<double> s(size);
    const int stack = 1 << 16;

    // y = LayerNorm(x), then in place (y aliasing x).
    launch({(unsigned)rows, 1, 1}, [&] { Kernels<T>::ln(x.data(), w.data(), b.data(), size, eps, y.data()); }, threads, stack);
    Checker<T> out{"layer_norm"};
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < size; c++) s[c] = to_float(x[(size_t)r * size + c]);
        check_row(out, s.data(), size, w, b, eps, y.data() + (size_t)r * size);
    }
    out.report(Kernels<T>::name, size, threads);
    launch({(unsigned)rows, 1, 1}, [&] { Kernels<T>::ln(x.data(), w.data(), b.data(), size, eps, x.data()); }, threads, stack);
    Checker<T> same{"layer_norm y=x"};
    for (size_t i = 0; i < x.size(); i++)
        if (memcmp(&x[i], &y[i], sizeof(T)) != 0) same.bad++;
    same.report(Kernels<T>::name, size, threads);

    // residual = LayerNorm(round(x + residual)); x is left alone.
    x = x_before;
    std::vector<T> r_before = residual;
    launch({(unsigned)rows, 1, 1}, [&] { Kernels<T>::add_ln(x.data(), residual.data(), w.data(), b.data(), size, eps); }, threads, stack);
    Checker<T> added{"add_layer_norm"};
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < size; c++) {
            size_t i = (size_t)r * size + c;
            s[c] = rnd<T>((double)to_float(x_before[i]) + to_float(r_before[i]));
        }
        check_row(added, s.data(), size, w, b, eps, residual.data() + (size_t)r * size);
    }
    for (size_t i = 0; i < x.size(); i++)
        if (memcmp(&x[i], &x_before[i], sizeof(T)) != 0) added.bad++;
    added.report(Kernels<T>::name, size, threads);
}

template <typename T> static void gelus(long long n, int offset) {
    static const char* const names[] = {"gelu erf", "gelu tanh", "quick gelu"};
    for (int form = 0; form < 3; form++) {   // GeluForm: erf, tanh, quick
        // Pre-activations in ±6, some far out; `offset` elements in, so the kernel starts off 16-byte alignment when asked.
        std::vector<T> buffer = random_t<T>((size_t)(n + offset), -6.f, 6.f);
        std::vector<T> before = buffer;
        T* x = buffer.data() + offset;
        unsigned blocks = (unsigned)std::min<long long>(((n + Vec16<T>::N - 1) / Vec16<T>::N + 255) / 256, 3);
        launch({blocks, 1, 1}, [&] { Kernels<T>::gelu(x, n, form); }, 256, 1 << 16);
        Checker<T> check{names[form]};
        for (long long i = 0; i < n; i++) {
            double v = to_float(before[offset + i]);
            double ref = form == 1 ? 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
                       : form == 2 ? v / (1 + std::exp(-1.702 * v))
                                   : 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
            // The terms: 0.5 |v| (1 + |erf|), where fp32's 1 + erf (or 1 + tanh) cancels for v << 0.
            check(ref, x[i], std::fabs(v));
        }
        // Nothing outside [x, x + n) was written.
        for (int i = 0; i < offset; i++)
            if (memcmp(&buffer[i], &before[i], sizeof(T)) != 0) check.bad++;
        check.report(Kernels<T>::name, (int)n, 256);
    }
}

// Two sequences' rows with token types and RoBERTa's offset; every table sized exactly; one token id past the vocabulary
// (clamped to the last row: the host checks the others, the kernel guards these).
template <typename T> static void embeddings(int rows, int hidden, bool with_types, bool type_ids_given) {
    const int vocab = 50, num_types = 2, max_positions = rows + 4, offset = 2;
    std::vector<T> words = random_t<T>((size_t)vocab * hidden, -1.f, 1.f), types = random_t<T>((size_t)num_types * hidden, -1.f, 1.f);
    std::vector<T> table = random_t<T>((size_t)max_positions * hidden, -1.f, 1.f);
    std::vector<int> ids(rows), type_ids(rows), positions(rows);
    int first = rows / 3;
    for (int r = 0; r < rows; r++) {
        ids[r] = r == rows - 1 ? vocab + 7 : (int)(rng() % vocab);
        type_ids[r] = r < first ? 0 : 1;
        positions[r] = r < first ? r : r - first;
    }
    std::vector<T> out((size_t)rows * hidden, from_float<T>(NAN));
    launch({(unsigned)rows, 1, 1}, [&] {
        Kernels<T>::embed(ids.data(), type_ids_given ? type_ids.data() : nullptr, positions.data(), offset, words.data(), vocab,
                          with_types ? types.data() : nullptr, num_types, table.data(), max_positions, hidden, out.data());
    }, row_threads<T>(hidden, 0), 1 << 16);
    Checker<T> check{with_types ? (type_ids_given ? "embedding types" : "embedding type 0") : "embedding no types"};
    for (int r = 0; r < rows; r++) {
        int id = std::min(ids[r], vocab - 1), type = type_ids_given ? type_ids[r] : 0, pos = positions[r] + offset;
        for (int c = 0; c < hidden; c++) {
            float a = to_float(words[(size_t)id * hidden + c]);
            if (with_types) a = rnd<T>(a + to_float(types[(size_t)type * hidden + c]));
            float expected = rnd<T>(a + to_float(table[(size_t)pos * hidden + c]));
            if (to_float(out[(size_t)r * hidden + c]) != expected) {
                if (check.bad < 5) fprintf(stderr, "  row %d col %d: got %g, expected %g\n", r, c, to_float(out[(size_t)r * hidden + c]), expected);
                check.bad++;
            }
        }
    }
    check.report(Kernels<T>::name, hidden, row_threads<T>(hidden, 0));
}

int main(int argc, char** argv) {
    rng.seed(argc > 1 ? std::stoi(argv[1]) : 7);
    struct Shape { int rows, size, threads; };   // threads 0: as the host launches it
    for (Shape s : {Shape{3, 64, 0}, Shape{3, 128, 0}, Shape{4, 384, 0}, Shape{3, 768, 0}, Shape{3, 768, 32}, Shape{2, 1000, 0},
                    Shape{2, 1003, 0}, Shape{2, 8192, 0}, Shape{2, 384, 32}}) {
        layer_norms<__nv_bfloat16>(s.rows, s.size, s.threads);
        layer_norms<float>(s.rows, s.size, s.threads);
    }
    layer_norms<__half>(3, 768, 0);
    layer_norms<__half>(2, 1003, 0);
    for (auto [n, offset] : {std::pair<long long, int>{5000, 0}, {1003, 0}, {333, 3}}) {
        gelus<__nv_bfloat16>(n, offset);
        gelus<float>(n, offset);
    }
    for (int hidden : {64, 384, 1003}) {
        embeddings<__nv_bfloat16>(7, hidden, true, true);
        embeddings<float>(7, hidden, true, true);
        embeddings<__nv_bfloat16>(5, hidden, true, false);
        embeddings<__nv_bfloat16>(5, hidden, false, true);
    }
    printf("encoder kernels -> %s\n", g_failed ? "FAIL" : "PASS");
    return g_failed ? 1 : 0;
}
