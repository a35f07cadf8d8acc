// Host emulation of the CUDA features flash_attention.cu, flash_decode.cu, moe.cu, rope.cu, elementwise.cu, encoder.cu,
// skinny_gemm.cu, fp8_quant.cu, fp8_skinny_gemm.cu and int4_gemm.cu use, so their literal source runs on a CPU
// (KernelEmulationTests copies this file next to them as common.cuh). Every CUDA thread is a ucontext fiber;
// __syncthreads, __syncwarp, warp shuffles, ldmatrix, mma.sync and cp.async (landing at a random moment before its
// wait, commit groups included) are emulated from their documented PTX semantics, not from the kernels' formulas.
#pragma once
#include <ucontext.h>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <functional>
#include <limits>
#include <random>
#include <algorithm>
#include <type_traits>

#define FLASH_EMULATE 1
#define __device__
#define __host__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define NEG_INF (-std::numeric_limits<float>::infinity())

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "CHECK failed %s:%d: %s\n", __FILE__, __LINE__, #c); abort(); } } while (0)

struct __nv_bfloat16 { uint16_t x; };
struct __half { uint16_t x; };
inline uint8_t fp8_encode(double x, int kind);
// Stand in for <cuda_fp8.h>'s types (1 byte each); e4m3's conversion from float rounds to nearest even and saturates,
// as the real constructor does (fp8_quant.cu's codes).
struct __nv_fp8_e4m3 {
    uint8_t __x;
    __nv_fp8_e4m3() = default;
    explicit __nv_fp8_e4m3(float f) : __x(fp8_encode(f, 1)) {}
};
struct __nv_fp8_e5m2 { uint8_t __x; };
struct float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
inline float2 make_float2(float a, float b) { return {a, b}; }
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline uint2 make_uint2(unsigned a, unsigned b) { return {a, b}; }
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
// The streaming-hint load (skinny_gemm.cu's weights): a plain load, with the 16-byte alignment a vector load needs.
template <typename V> inline V __ldcs(const V* p) {
    CHECK(((uintptr_t)p & (alignof(V) - 1)) == 0);
    return *p;
}
// The L2-only load (int4_gemm.cu's split-k partials): a plain load; blocks run one after another here, so a fence
// has nothing to order.
template <typename V> inline V __ldcg(const V* p) { return *p; }
inline void __threadfence() {}
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
// CUDA __byte_perm: byte n of the result is byte (s >> 4n) & 7 of the 8-byte value {y:x}.
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    uint64_t v = ((uint64_t)y << 32) | x;
    unsigned r = 0;
    for (int n = 0; n < 4; n++) r |= (unsigned)((v >> (8 * ((s >> (4 * n)) & 7))) & 0xff) << (8 * n);
    return r;
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }   // CUDA's overload: no narrowing to int
inline int __ffs(int x) { return __builtin_ffs(x); }
inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }   // CUDA's approximate reciprocal root, exact here

inline uint16_t f2bf(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0;
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
inline float bf2f(uint16_t b) { uint32_t u = (uint32_t)b << 16; float f; memcpy(&f, &u, 4); return f; }
inline uint16_t f2h(float f) { _Float16 h = (_Float16)f; uint16_t b; memcpy(&b, &h, 2); return b; }
inline float h2f(uint16_t b) { _Float16 h; memcpy(&h, &b, 2); return (float)h; }
template <typename T> inline uint16_t to_bits(float f);
template <> inline uint16_t to_bits<__nv_bfloat16>(float f) { return f2bf(f); }
template <> inline uint16_t to_bits<__half>(float f) { return f2h(f); }
template <typename T> inline float from_bits(uint16_t b);
template <> inline float from_bits<__nv_bfloat16>(uint16_t b) { return bf2f(b); }
template <> inline float from_bits<__half>(uint16_t b) { return h2f(b); }
// Packed 16-bit pairs and their arithmetic (int4_gemm.cu's dequantization): each half computed exactly in fp32 and
// rounded once to nearest even, as the hardware's HADD2/HMUL2 round the exact result (the products and differences of
// two bf16 or fp16 values are exact in fp32).
struct __nv_bfloat162 { __nv_bfloat16 x, y; };
struct __half2 { __half x, y; };
template <typename P, typename H, typename F> inline P emulate_pair(P a, P b, F op) {
    return {H{to_bits<H>(op(from_bits<H>(a.x.x), from_bits<H>(b.x.x)))}, H{to_bits<H>(op(from_bits<H>(a.y.x), from_bits<H>(b.y.x)))}};
}
inline __nv_bfloat162 __hsub2(__nv_bfloat162 a, __nv_bfloat162 b) {
    return emulate_pair<__nv_bfloat162, __nv_bfloat16>(a, b, [](float u, float v) { return u - v; });
}
inline __nv_bfloat162 __hmul2(__nv_bfloat162 a, __nv_bfloat162 b) {
    return emulate_pair<__nv_bfloat162, __nv_bfloat16>(a, b, [](float u, float v) { return u * v; });
}
inline __half2 __hsub2(__half2 a, __half2 b) { return emulate_pair<__half2, __half>(a, b, [](float u, float v) { return u - v; }); }
inline __half2 __hmul2(__half2 a, __half2 b) { return emulate_pair<__half2, __half>(a, b, [](float u, float v) { return u * v; }); }

// ---------------- fibers ----------------
struct Dim3 { unsigned x, y, z; };
struct Copy { void* dst; const void* src; int bytes; int group = 0; int size = 16; };   // bytes: read (size or 0: zeros)
struct Fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    Dim3 tidx;
    bool done = false;
    std::vector<Copy> pending;
    int committed = 0;
};
static Fiber* g_cur;
static ucontext_t g_sched;
static Dim3 blockIdx, gridDim, blockDim;
static long long g_progress;
static std::mt19937 g_rng(1234);
#define threadIdx (g_cur->tidx)

inline void yield_fiber() { swapcontext(&g_cur->ctx, &g_sched); }

struct Bar { int count; int arrived = 0; long long gen = 0; };
inline void bar_wait(Bar& b) {
    long long gen = b.gen;
    g_progress++;
    if (++b.arrived == b.count) { b.arrived = 0; b.gen++; return; }
    while (b.gen == gen) yield_fiber();
}
// A block has up to 1024 threads (32 warps); launch sets the block barrier's count to the block's size.
#define EMU_MAX_WARPS 32
static Bar g_block_bar{128};
static Bar g_warp_bar[EMU_MAX_WARPS] = {{32}, {32}, {32}, {32}, {32}, {32}, {32}, {32}, {32}, {32}, {32},
                                        {32}, {32}, {32}, {32}, {32}, {32}, {32}, {32}, {32}, {32}, {32},
                                        {32}, {32}, {32}, {32}, {32}, {32}, {32}, {32}, {32}, {32}};
inline void __syncthreads() { bar_wait(g_block_bar); }
inline void __syncwarp() { bar_wait(g_warp_bar[threadIdx.x >> 5]); }

// Per-warp exchange slots.
static uint64_t g_xa[EMU_MAX_WARPS][32][8];
static const void* g_xp[EMU_MAX_WARPS][32];

// Every lane of the (full) warp publishes v and reads the value of the lane source(lane) names.
template <typename V, typename Source> inline V warp_exchange(unsigned mask, V v, Source source) {
    CHECK(mask == 0xffffffffu);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    uint64_t bits = 0; memcpy(&bits, &v, sizeof(V));
    g_xa[w][lane][0] = bits;
    bar_wait(g_warp_bar[w]);
    uint64_t r = g_xa[w][source(lane)][0];
    bar_wait(g_warp_bar[w]);
    V out; memcpy(&out, &r, sizeof(V));
    return out;
}

template <typename V> inline V __shfl_xor_sync(unsigned mask, V v, int o) {
    return warp_exchange(mask, v, [o](int lane) { return lane ^ o; });
}

// Warp vote: true when any lane of the (full) warp passes true.
inline bool __any_sync(unsigned mask, bool p) {
    CHECK(mask == 0xffffffffu);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    g_xa[w][lane][1] = p;
    bar_wait(g_warp_bar[w]);
    bool any = false;
    for (int i = 0; i < 32; i++) any |= g_xa[w][i][1] != 0;
    bar_wait(g_warp_bar[w]);
    return any;
}

// __shfl_up_sync: lanes below the offset keep their own value.
template <typename V> inline V __shfl_up_sync(unsigned mask, V v, int o) {
    return warp_exchange(mask, v, [o](int lane) { return lane >= o ? lane - o : lane; });
}
// Fibers switch only at barriers, so a read-modify-write is atomic as it stands.
inline int atomicAdd(int* p, int v) { int old = *p; *p += v; return old; }

// common.cuh's conversions and warp reductions (moe.cu uses them), with the same rounding (nearest even).
inline float to_float(float v) { return v; }
inline float to_float(__half v) { return h2f(v.x); }
inline float to_float(__nv_bfloat16 v) { return bf2f(v.x); }
template <typename T> inline T from_float(float v);
template <> inline float from_float<float>(float v) { return v; }
template <> inline __half from_float<__half>(float v) { return {f2h(v)}; }
template <> inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return {f2bf(v)}; }
template <typename T> inline float round_to(float v) { return to_float(from_float<T>(v)); }
// For the tests' reports and tolerances: a dtype's name, and one ulp of T at |v| (fp32: 2^-23 relative; bf16: 2^-7;
// fp16: 2^-10), at least the smallest normal's.
template <typename T> inline const char* name_of() {
    return sizeof(T) == 4 ? "f32" : std::is_same<T, __half>::value ? "f16" : "bf16";
}
template <typename T> inline double ulp(double v) {
    int mantissa = sizeof(T) == 4 ? 23 : std::is_same<T, __half>::value ? 10 : 7;
    double floor_exp = std::is_same<T, __half>::value ? -14 : -126;
    int e = v == 0 ? (int)floor_exp : std::max((int)floor_exp, (int)std::floor(std::log2(std::fabs(v))));
    return std::ldexp(1.0, e - mantissa);
}
// common.cuh's 16-byte vector load, element by element, checking the alignment the GPU's vector load needs.
template <typename T> struct Vec16 { static constexpr int N = 16 / (int)sizeof(T); };
template <typename T> inline void load16(const T* p, float (&v)[Vec16<T>::N]) {
    CHECK(((uintptr_t)p & 15) == 0);
    for (int i = 0; i < Vec16<T>::N; i++) v[i] = to_float(p[i]);
}
template <typename T> inline void store16(T* p, const float (&v)[Vec16<T>::N]) {
    CHECK(((uintptr_t)p & 15) == 0);
    for (int i = 0; i < Vec16<T>::N; i++) p[i] = from_float<T>(v[i]);
}
// common.cuh's dtype codes and untyped loads and stores (elementwise.cu's weight conversion uses them).
#define DTYPE_F32 0
#define DTYPE_F16 1
#define DTYPE_BF16 2
inline float load_as_float(const void* p, long long i, int dtype) {
    if (dtype == DTYPE_BF16) return to_float(((const __nv_bfloat16*)p)[i]);
    if (dtype == DTYPE_F16) return to_float(((const __half*)p)[i]);
    return ((const float*)p)[i];
}
inline void store_from_float(void* p, long long i, int dtype, float v) {
    if (dtype == DTYPE_BF16) ((__nv_bfloat16*)p)[i] = from_float<__nv_bfloat16>(v);
    else if (dtype == DTYPE_F16) ((__half*)p)[i] = from_float<__half>(v);
    else ((float*)p)[i] = v;
}
// The round-to-nearest intrinsics: plain IEEE operations on the host (-std=c++17 does not contract them into FMAs).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
inline float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// common.cuh's block_sum, the same code (its shared array is a static here, like every __shared__).
inline float block_sum(float v) {
    __shared__ float partial[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    int warps = (blockDim.x + 31) >> 5;
    float t = lane < warps ? partial[lane] : 0.f;
    return warp_sum(t);
}
// common.cuh's attention_normalizer, the same formula (flash_attention.cu and flash_decode.cu call it).
template <typename T> inline float attention_normalizer(float m, float l, const T* sinks, int head) {
    if (sinks == nullptr) return l > 0.f ? 1.f / l : 0.f;
    const float sink = to_float(sinks[head]);
    const float mx = l > 0.f ? fmaxf(m, sink) : sink;
    const float f = l > 0.f ? expf(m - mx) : 0.f;
    return f / (l * f + expf(sink - mx));
}
#define CELER_FOR_DTYPES(M) M(f32, float) M(f16, __half) M(bf16, __nv_bfloat16)
// Programmatic dependent launch: kernels run one after another here, so waiting on the previous one is a no-op.
inline void celer_pdl_begin() {}

// ---------------- fp8 (reference decoder / encoder from the format definitions) ----------------
// e4m3: 1 sign, 4 exponent (bias 7), 3 mantissa, no infinities, NaN = S.1111.111, max 448.
// e5m2: 1 sign, 5 exponent (bias 15), 2 mantissa, IEEE-like (S.11111.00 = inf, S.11111.xx = NaN), max 57344.
inline double fp8_decode(uint8_t b, int kind) {
    int s = b >> 7;
    double v;
    if (kind == 1) {
        int e = (b >> 3) & 15, m = b & 7;
        if (e == 15 && m == 7) return NAN;
        v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1 + m / 8.0, e - 7);
    } else {
        int e = (b >> 2) & 31, m = b & 3;
        if (e == 31) return m == 0 ? (s ? -INFINITY : INFINITY) : NAN;
        v = e == 0 ? std::ldexp(m / 4.0, -14) : std::ldexp(1 + m / 4.0, e - 15);
    }
    return s ? -v : v;
}
inline double fp8_max(int kind) { return kind == 1 ? 448.0 : 57344.0; }
// Round to nearest even with saturation to the largest finite value (cuda_fp8.h's __NV_SATFINITE); NaN -> 0x7f.
// Positive codes 0..max are increasing in value, and a code's low bit is its mantissa's low bit.
inline uint8_t fp8_encode(double x, int kind) {
    if (std::isnan(x)) return 0x7f;
    uint8_t s = std::signbit(x) ? 0x80 : 0;
    double a = std::fabs(x);
    int maxc = kind == 1 ? 0x7e : 0x7b;
    if (a >= fp8_max(kind)) return s | maxc;
    int lo = 0;
    while (lo < maxc && fp8_decode(lo + 1, kind) <= a) lo++;
    if (lo == maxc) return s | maxc;
    double dl = a - fp8_decode(lo, kind), dh = fp8_decode(lo + 1, kind) - a;
    int c = dl < dh ? lo : dh < dl ? lo + 1 : ((lo & 1) ? lo + 1 : lo);
    return s | c;
}

#ifndef FLASH_FP8_CVT
#define FLASH_FP8_CVT 0
#endif
// PTX cvt.rn.f16x2.e4m3x2: the low byte -> the low f16, the high byte -> the high f16 (exact; NaN -> NaN).
inline unsigned flash_cvt_e4m3x2(unsigned short x) {
    auto one = [](uint8_t b) -> unsigned { double v = fp8_decode(b, 1); return std::isnan(v) ? 0x7fffu : f2h((float)v); };
    return one(x & 0xff) | (one(x >> 8) << 16);
}
// PTX mul.rn.f16x2 (subnormals supported), lane-wise.
inline unsigned flash_mul_f16x2(unsigned a, unsigned b) {
    auto one = [](uint16_t x, uint16_t y) -> unsigned {
        _Float16 hx, hy; memcpy(&hx, &x, 2); memcpy(&hy, &y, 2);
        _Float16 r = hx * hy; uint16_t u; memcpy(&u, &r, 2); return u;
    };
    return one(a & 0xffff, b & 0xffff) | (one(a >> 16, b >> 16) << 16);
}
// PTX cvt.f32.f16 of both halves.
inline void flash_f16x2_to_f32(unsigned h, float& lo, float& hi) { lo = h2f(h & 0xffff); hi = h2f(h >> 16); }

template <typename T> inline unsigned flash_pack2(float lo, float hi) {
    return (unsigned)to_bits<T>(lo) | ((unsigned)to_bits<T>(hi) << 16);
}

// mma.sync m16n8k16 row.col, fragment layouts from the PTX ISA:
//   A: a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..), a[3] = (g+8, 2t+8..)  (row, k)
//   B: b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g)
//   C: c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..)
static long long g_mma_count;
template <typename T> inline void flash_mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    for (int i = 0; i < 4; i++) g_xa[w][lane][i] = a[i];
    g_xa[w][lane][4] = b0; g_xa[w][lane][5] = b1;
    bar_wait(g_warp_bar[w]);
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
        int g = l >> 2, t = l & 3;
        for (int r = 0; r < 4; r++)
            for (int h = 0; h < 2; h++) {
                int row = g + ((r & 1) ? 8 : 0), col = 2 * t + h + ((r & 2) ? 8 : 0);
                A[row][col] = from_bits<T>((uint16_t)(g_xa[w][l][r] >> (16 * h)));
            }
        for (int r = 0; r < 2; r++)
            for (int h = 0; h < 2; h++) B[2 * t + h + 8 * r][g] = from_bits<T>((uint16_t)(g_xa[w][l][4 + r] >> (16 * h)));
    }
    bar_wait(g_warp_bar[w]);
    int g = lane >> 2, t = lane & 3;
    for (int e = 0; e < 4; e++) {
        int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
        float s = 0.f;
        for (int k = 0; k < 16; k++) s += A[row][k] * B[k][col];
        c[e] += s;
    }
    if (lane == 0) g_mma_count++;
}

// mma.sync m16n8k32 row.col f32.e4m3.e4m3.f32 (fp8_skinny_gemm.cu), fragment layouts from the PTX ISA; each 32-bit
// register holds four e4m3 values, the lowest k in the lowest byte:
//   A: a[0] = (g, 4t..4t+3), a[1] = (g+8, 4t..), a[2] = (g, 16+4t..), a[3] = (g+8, 16+4t..)  (row, k)
//   B: b0 = (k 4t..4t+3, n g), b1 = (k 16+4t.., n g)
//   C: c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..)
inline void fp8_mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    for (int i = 0; i < 4; i++) g_xa[w][lane][i] = a[i];
    g_xa[w][lane][4] = b0; g_xa[w][lane][5] = b1;
    bar_wait(g_warp_bar[w]);
    double A[16][32], B[32][8];
    for (int l = 0; l < 32; l++) {
        int g = l >> 2, t = l & 3;
        for (int r = 0; r < 4; r++)
            for (int i = 0; i < 4; i++) {
                int row = g + ((r & 1) ? 8 : 0), col = 4 * t + i + ((r & 2) ? 16 : 0);
                A[row][col] = fp8_decode((uint8_t)(g_xa[w][l][r] >> (8 * i)), 1);
            }
        for (int r = 0; r < 2; r++)
            for (int i = 0; i < 4; i++) B[4 * t + i + 16 * r][g] = fp8_decode((uint8_t)(g_xa[w][l][4 + r] >> (8 * i)), 1);
    }
    bar_wait(g_warp_bar[w]);
    int g = lane >> 2, t = lane & 3;
    for (int e = 0; e < 4; e++) {
        int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
        double s = 0;   // products of two e4m3 values are exact; their sum is rounded once into the fp32 accumulator
        for (int k = 0; k < 32; k++) s += A[row][k] * B[k][col];
        c[e] += (float)s;
    }
    if (lane == 0) g_mma_count++;
}

// Shared range seen by cp.async destinations (ldmatrix rows must lie inside it).
static uintptr_t g_smem_lo = UINTPTR_MAX, g_smem_hi = 0;
// ldmatrix .x4: lanes 8i..8i+7 give the 8 row addresses (16 bytes each) of matrix i; lane receives
// r[i] = M_i[lane/4][2(lane%4)], M_i[lane/4][2(lane%4)+1]  (trans: M_i[2(lane%4)][lane/4], M_i[2(lane%4)+1][lane/4]).
inline void ldsm_emul(unsigned (&r)[4], const void* p, bool trans) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    CHECK(((uintptr_t)p & 15) == 0);
    // fp8 caches stage a tile row's bytes in the upper half of its storage (HD <= 256 bytes into the row), so the
    // cp.async'd span may start up to 256 bytes after the first ldmatrix row.
    CHECK((uintptr_t)p + 256 >= g_smem_lo && (uintptr_t)p + 16 <= g_smem_hi);
    g_xp[w][lane] = p;
    bar_wait(g_warp_bar[w]);
    int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; i++) {
        auto M = [&](int row, int col) { return ((const uint16_t*)g_xp[w][8 * i + row])[col]; };
        uint16_t lo = trans ? M(2 * t, g) : M(g, 2 * t), hi = trans ? M(2 * t + 1, g) : M(g, 2 * t + 1);
        r[i] = (unsigned)lo | ((unsigned)hi << 16);
    }
    bar_wait(g_warp_bar[w]);
}
// flash_attention.cu's ex2.approx (the GPU's approximation differs from exp2f by a few ulp).
inline float flash_exp2(float x) { return exp2f(x); }
inline void flash_ldsm_x4(unsigned (&r)[4], const void* p) { ldsm_emul(r, p, false); }
inline void flash_ldsm_x4_trans(unsigned (&r)[4], const void* p) { ldsm_emul(r, p, true); }

// Global buffers the kernel may read.
struct Range { const char* lo; size_t bytes; };
static std::vector<Range> g_readable;
inline void do_copy(const Copy& c) {
    if (c.bytes == c.size) memcpy(c.dst, c.src, c.size);
    else { CHECK(c.bytes == 0); memset(c.dst, 0, c.size); }
}
// cp.async of `size` bytes (4, 8 or 16, aligned to it) that reads `src_bytes` of them (all, or none: zeros) from a
// readable buffer; it lands at a random moment between issue and the issuing thread's wait (here: at issue or at the wait).
inline void cp_async_emul(void* smem, const void* gmem, int size, int src_bytes) {
    CHECK((size == 4 || size == 8 || size == 16) && ((uintptr_t)smem % size) == 0 && ((uintptr_t)gmem % size) == 0);
    if (src_bytes > 0) {
        bool ok = false;
        for (auto& r : g_readable) ok |= (const char*)gmem >= r.lo && (const char*)gmem + size <= r.lo + r.bytes;
        CHECK(ok);
    }
    if ((uintptr_t)smem < g_smem_lo) g_smem_lo = (uintptr_t)smem;
    if ((uintptr_t)smem + size > g_smem_hi) g_smem_hi = (uintptr_t)smem + size;
    Copy c{smem, gmem, src_bytes, g_cur->committed, size};
    if (g_rng() & 1) do_copy(c); else g_cur->pending.push_back(c);
}
inline void flash_cp_async16(void* smem, const void* gmem, int src_bytes) { cp_async_emul(smem, gmem, 16, src_bytes); }
// common.cuh's store of a tile made in registers: its destination is shared memory that ldmatrix may read.
inline void shared_store16(void* smem, uint4 v) {
    CHECK(((uintptr_t)smem & 15) == 0);
    if ((uintptr_t)smem < g_smem_lo) g_smem_lo = (uintptr_t)smem;
    if ((uintptr_t)smem + 16 > g_smem_hi) g_smem_hi = (uintptr_t)smem + 16;
    memcpy(smem, &v, 16);
}
// int4_gemm.cu's copies of 1, 2 or 4 words.
inline void int4_cp_async_words(void* smem, const unsigned* gmem, int words, bool live) {
    cp_async_emul(smem, gmem, 4 * words, live ? 4 * words : 0);
}
inline void flash_cp_async_commit() { g_cur->committed++; }
inline void flash_cp_async_wait_all() {
    for (auto& c : g_cur->pending) do_copy(c);
    g_cur->pending.clear();
}
template <int N> inline void flash_cp_async_wait() {
    std::vector<Copy> keep;
    for (auto& c : g_cur->pending) { if (c.group < g_cur->committed - N) do_copy(c); else keep.push_back(c); }
    g_cur->pending.swap(keep);
}
alignas(128) static unsigned char flash_dynamic_smem[256 * 1024];

// Test data: 16-byte aligned storage, as the GPU's allocations are.
template <typename V> struct Buffer {
    std::vector<V> data;
    explicit Buffer(size_t n) : data(n + 16 / sizeof(V)) {}
    V* get() { return (V*)(((uintptr_t)data.data() + 15) & ~(uintptr_t)15); }
};

// ---------------- launch ----------------
static std::function<void()> g_body;
static void fiber_entry() { g_body(); g_cur->done = true; swapcontext(&g_cur->ctx, &g_sched); }

// threads: the block size, whole warps up to 1024 (the attention and MoE kernels are 128 wide); stack_bytes per
// fiber (the tensor-core kernels' register tiles need 256 KB; the row kernels far less).
inline void launch(Dim3 grid, const std::function<void()>& body, int threads = 128, int stack_bytes = 1 << 18) {
    CHECK(threads % 32 == 0 && threads >= 32 && threads <= 32 * EMU_MAX_WARPS);
    gridDim = grid; blockDim = {(unsigned)threads, 1, 1};
    g_block_bar.count = threads;
    g_body = body;
    std::vector<Fiber> fibers(threads);
    for (auto& f : fibers) f.stack.resize(stack_bytes);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = {x, y, z};
                for (int i = 0; i < threads; i++) {
                    Fiber& f = fibers[i];
                    f.done = false; f.pending.clear(); f.committed = 0; f.tidx = {(unsigned)i, 0, 0};
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack.data(); f.ctx.uc_stack.ss_size = f.stack.size();
                    f.ctx.uc_link = nullptr;
                    makecontext(&f.ctx, fiber_entry, 0);
                }
                // Alternate scheduling order per block so fibers interleave differently.
                bool reverse = g_rng() & 1;
                for (;;) {
                    int alive = 0; long long before = g_progress;
                    for (int k = 0; k < threads; k++) {
                        Fiber& f = fibers[reverse ? threads - 1 - k : k];
                        if (f.done) continue;
                        g_cur = &f;
                        swapcontext(&g_sched, &f.ctx);
                        if (!f.done) alive++;
                    }
                    if (!alive) break;
                    if (g_progress == before) { fprintf(stderr, "deadlock (divergent barrier?)\n"); abort(); }
                }
                for (auto& f : fibers) CHECK(f.pending.empty());   // every cp.async was waited for
                CHECK(g_block_bar.arrived == 0);
                for (auto& b : g_warp_bar) CHECK(b.arrived == 0);
            }
}
