// rope.cu's prepare_attention as it is, under the CUDA emulation, against a host reference of the same step: q, k and v
// split from the fused projection, Qwen3's or Gemma 3's per-head q/k norm, RoPE over the full or a partial rotary
// width, q out and k/v into the paged cache at each row's slot (slot -1: a padding row that stores nothing), for
// bf16 and fp16, head dims 64, 80, 128 and 256 (the vectorized path for 64/128/256 with full or no rotation, an
// encoder's; the shared-memory path for the others), several heads per row, and more items than the grid has warps;
// and multi-axis RoPE (Qwen2-VL's M-RoPE of three axes, the vision towers' two), each frequency pair by its axis's position.
#define CELER_FOR_KV_DTYPES(M)   // the test calls the template; the extern "C" entry points are not needed
#include "common.cuh"
#include "rope.cu"
#include <string>

template <typename T> static T bits(float v) { return from_float<T>(v); }

template <typename T>
static double run_case(int rows, int heads, int kv_heads, int head_dim, int rotary_dim, bool norms, int gemma, std::mt19937& rng,
                       std::vector<int> sections = {}) {
    std::uniform_real_distribution<float> u(-2.f, 2.f);
    int width = (heads + 2 * kv_heads) * head_dim, half = rotary_dim / 2, block_size = 4, max_pos = 64;
    std::vector<T> qkv((size_t)rows * width), qn(head_dim), kn(head_dim);
    for (auto& v : qkv) v = bits<T>(u(rng));
    for (auto& v : qn) v = bits<T>(u(rng));
    for (auto& v : kn) v = bits<T>(u(rng));
    int axes = sections.empty() ? 1 : (int)sections.size();
    std::vector<int> positions(rows), slots(rows), axis_positions((size_t)rows * axes);
    for (int r = 0; r < rows; r++) {
        positions[r] = (int)(rng() % max_pos);
        slots[r] = r % 5 == 3 ? -1 : r + 7;   // padding rows now and then; distinct slots
        for (int a = 0; a < axes; a++) axis_positions[(size_t)r * axes + a] = (int)(rng() % max_pos);
    }
    // The position of frequency pair i of row r: its section's axis, or the row's own.
    auto position_of = [&](int r, int i) {
        if (sections.empty()) return positions[r];
        int axis = 0;
        for (int end = sections[0]; i >= end; end += sections[++axis]) {
        }
        return axis_positions[(size_t)r * axes + axis];
    };
    RopeAxes rope_axes{sections.empty() ? nullptr : axis_positions.data(), sections.empty() ? 0 : sections[0],
                       sections.size() > 1 ? sections[1] : 0, axes};
    std::vector<float2> cos_sin((size_t)max_pos * half);
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < half; i++) {
            float angle = p * std::pow(10000.f, -2.f * i / rotary_dim);
            cos_sin[(size_t)p * half + i] = make_float2(std::cos(angle), std::sin(angle));
        }
    int cache_rows = rows + 8;
    std::vector<T> q((size_t)rows * heads * head_dim), kc((size_t)cache_rows * kv_heads * head_dim), vc(kc.size());
    for (auto& v : kc) v = bits<T>(99.f);
    for (auto& v : vc) v = bits<T>(99.f);
    float eps = 1e-6f;
    unsigned blocks = (unsigned)std::min<long long>(((long long)rows * (heads + 2 * kv_heads) + PREPARE_WARPS - 1) / PREPARE_WARPS, 3);
    launch({blocks, 1, 1}, [&] {
        prepare_attention<T, T>(qkv.data(), positions.data(), rope_axes, slots.data(), cos_sin.data(), norms ? qn.data() : nullptr,
                                norms ? kn.data() : nullptr, eps, gemma, rows, heads, kv_heads, head_dim, rotary_dim, q.data(),
                                kc.data(), vc.data(), 1.f, 1.f);
    });

    double worst = 0;
    auto check = [&](float expected, T actual) {
        double e = std::fabs((double)to_float(actual) - expected) / (1.0 + std::fabs(expected));
        worst = std::max(worst, e);
    };
    std::vector<float> x(head_dim);
    for (int r = 0; r < rows; r++)
        for (int h = 0; h < heads + 2 * kv_heads; h++) {
            const T* src = qkv.data() + (size_t)r * width + (size_t)h * head_dim;
            bool is_q = h < heads, is_v = h >= heads + kv_heads;
            int kv = is_v ? h - heads - kv_heads : h - heads;
            if (!is_q && slots[r] < 0) {
                // Nothing stored: the rows of the cache no slot maps to keep their fill.
                continue;
            }
            T* dst = is_q ? q.data() + ((size_t)r * heads + h) * head_dim
                          : (is_v ? vc.data() : kc.data()) + ((size_t)slots[r] * kv_heads + kv) * head_dim;
            for (int d = 0; d < head_dim; d++) x[d] = to_float(src[d]);
            if (is_v) {
                for (int d = 0; d < head_dim; d++) check(x[d], dst[d]);
                continue;
            }
            if (norms) {
                double ss = 0;
                for (float v : x) ss += (double)v * v;
                float inv = 1.f / std::sqrt((float)(ss / head_dim) + eps);
                const std::vector<T>& w = is_q ? qn : kn;
                for (int d = 0; d < head_dim; d++)
                    x[d] = gemma ? round_to<T>(x[d] * inv * (1.f + to_float(w[d]))) : round_to<T>(round_to<T>(x[d] * inv) * to_float(w[d]));
            }
            for (int i = 0; i < half; i++) {
                float2 cs = cos_sin[(size_t)position_of(r, i) * half + i];
                float a = x[i], b = x[i + half];
                x[i] = a * cs.x - b * cs.y;
                x[i + half] = b * cs.x + a * cs.y;
            }
            for (int d = 0; d < head_dim; d++) check(x[d], dst[d]);
        }
    // Slots no row maps to (0..6, and the padding rows' would-be slots) still hold the fill.
    for (int r = 0; r < rows; r++)
        if (slots[r] < 0)
            for (int d = 0; d < kv_heads * head_dim; d++) {
                size_t at = (size_t)(r + 7) * kv_heads * head_dim + d;
                worst = std::max(worst, std::fabs((double)to_float(kc[at]) - 99.0) + std::fabs((double)to_float(vc[at]) - 99.0));
            }
    return worst;
}

int main(int argc, char** argv) {
    std::mt19937 rng(argc > 1 ? std::stoi(argv[1]) : 7);
    double worst = 0;
    struct Shape { int rows, heads, kv, hd, rot; bool norms; int gemma; };
    for (Shape s : {Shape{5, 4, 2, 128, 128, true, 0}, Shape{7, 2, 1, 80, 80, false, 0}, Shape{3, 8, 8, 64, 32, true, 1},
                    Shape{9, 3, 1, 64, 64, true, 0}, Shape{1, 16, 8, 128, 128, true, 0}, Shape{11, 4, 4, 64, 0, false, 0},
                    Shape{3, 2, 1, 256, 256, true, 1}, Shape{6, 4, 2, 128, 128, false, 0}, Shape{4, 3, 3, 128, 0, false, 0},
                    // Three items per row: any grouping of items that crosses rows (a key stored at another row's slot) fails them.
                    Shape{13, 1, 1, 64, 64, true, 0}, Shape{10, 1, 1, 128, 0, false, 0}}) {
        double b = run_case<__nv_bfloat16>(s.rows, s.heads, s.kv, s.hd, s.rot, s.norms, s.gemma, rng);
        double h = run_case<__half>(s.rows, s.heads, s.kv, s.hd, s.rot, s.norms, s.gemma, rng);
        printf("rows %d heads %d/%d head_dim %d rotary %d norms %d gemma %d: bf16 %.2e, fp16 %.2e\n", s.rows, s.heads, s.kv, s.hd,
               s.rot, s.norms, s.gemma, b, h);
        worst = std::max({worst, b, h});
    }
    // M-RoPE: Qwen2-VL-7B's sections (16, 24, 24) on the vectorized path, a tiny model's (2, 3, 3) on the shared-memory
    // one (head_dim 16); the vision towers' two axes of head_dim / 4 pairs at head_dim 80 and 64.
    struct AxesShape { int rows, heads, kv, hd; std::vector<int> sections; };
    for (const AxesShape& s : {AxesShape{7, 4, 2, 128, {16, 24, 24}}, AxesShape{9, 4, 2, 16, {2, 3, 3}},
                               AxesShape{6, 2, 2, 80, {20, 20}}, AxesShape{5, 3, 3, 64, {16, 16}}}) {
        double b = run_case<__nv_bfloat16>(s.rows, s.heads, s.kv, s.hd, s.hd, false, 0, rng, s.sections);
        double h = run_case<__half>(s.rows, s.heads, s.kv, s.hd, s.hd, true, 0, rng, s.sections);
        printf("rows %d heads %d/%d head_dim %d, %zu RoPE axes: bf16 %.2e, fp16 %.2e\n", s.rows, s.heads, s.kv, s.hd,
               s.sections.size(), b, h);
        worst = std::max({worst, b, h});
    }
    // bf16 rounds to 8 bits of mantissa: one ulp at |x| ~ 4 is 2^-6 relative to 1 + |x|; a wrong head, row, slot or
    // rotary pair is off by O(1).
    bool pass = worst < 2e-2;
    printf("worst relative error %.3e -> %s\n", worst, pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
}
