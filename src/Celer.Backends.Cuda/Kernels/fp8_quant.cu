#include "common.cuh"

// The input side of an FP8 W8A8 linear layer: each row of x (the model dtype) as E4M3 codes of x / s, rounded to
// nearest even and saturated to ±448 as vLLM's scaled_fp8_quant kernels do, with the scale s of the layer's scheme
// written where cuBLASLt's scaled FP8 matmul reads it:
//   mode 0, dynamic per token: s = max(absmax(row) / 448, min_scale), scales[row] (an outer vector over the rows)
//   mode 1, static per tensor: s = static_scale, written to scales[row] too, so every W8A8 GEMM takes the same modes
//   mode 2, dynamic per token group of 128: s = max(absmax(group), min_scale) / 448, scales[group * scale_ld + row]
//           (the 1D block layout: one column of scales per group, the rows contiguous; scale_ld is the GEMM's rows
//           rounded as cuBLASLt reads them, CudaBackend.InputScaleRows)
// The division is IEEE (no fast math), so the codes are those of the CPU reference (Fp8Activations) bit for bit.
// Three kinds of kernel write them: quantize_fp8 below (one block of 256 threads per row), and the kernels whose output
// an FP8 layer reads next, which quantize the rows they hold in registers as they store them (add_rms_norm_fp8 in
// rmsnorm.cu, silu_mul_fp8 and gelu_tanh_mul_fp8 below): one launch less per layer, the same codes. Both the cuBLASLt
// path and fp8_skinny_gemm.cu read what they write.
#define FP8_QUANT_THREADS 256
#define FP8_QUANT_GROUP 128

// Where a kernel writes a layer's FP8 input: the codes [rows, k], the scales as the mode lays them out. Passed by value
// (CudaBackend.Fp8Codes mirrors it field for field).
struct Fp8Codes {
    unsigned char* q;
    float* scales;
    long long scale_ld;
    int mode;
    float static_scale;
    float min_scale;
};

// The maximum of v over the block, in every thread (a block of up to 1024 threads, as block_sum).
__device__ __forceinline__ float block_max(float v) {
    __shared__ float partial_max[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) partial_max[warp] = v;
    __syncthreads();
    const int warps = (blockDim.x + 31) >> 5;
    return warp_max(lane < warps ? partial_max[lane] : NEG_INF);
}

// The scales of the dynamic modes and the code of a value.
__device__ __forceinline__ float fp8_token_scale(float amax, float min_scale) { return fmaxf(amax / 448.f, min_scale); }
__device__ __forceinline__ float fp8_group_scale(float amax, float min_scale) { return fmaxf(amax, min_scale) / 448.f; }
__device__ __forceinline__ __nv_fp8_e4m3 fp8_code(float v, float s) { return __nv_fp8_e4m3(v / s); }

// The codes of N values with scale s, as one store of N bytes (N = 4, 8 or 16; dst N-byte aligned).
template <int N> struct Fp8Word;
template <> struct Fp8Word<4> { using Type = unsigned; };
template <> struct Fp8Word<8> { using Type = uint2; };
template <> struct Fp8Word<16> { using Type = uint4; };
template <int N>
__device__ __forceinline__ void fp8_store(const float (&v)[N], float s, unsigned char* dst) {
    using Word = typename Fp8Word<N>::Type;
    Word packed;
    unsigned char* b = reinterpret_cast<unsigned char*>(&packed);
#pragma unroll
    for (int i = 0; i < N; i++) b[i] = fp8_code(v[i], s).__x;
    *reinterpret_cast<Word*>(dst) = packed;
}

// 16 consecutive values of a row as floats, in 16-byte loads.
template <typename T>
__device__ __forceinline__ void fp8_load16(const T* p, float (&v)[16]) {
    constexpr int V = Vec16<T>::N;
#pragma unroll
    for (int h = 0; h < 16 / V; h++) {
        float part[V];
        load16(p + h * V, part);
#pragma unroll
        for (int i = 0; i < V; i++) v[h * V + i] = part[i];
    }
}

// One row per block, each thread 16 consecutive values at a time (k is a multiple of 16 and rows are 16-byte aligned:
// the host checks), so a decode step's few rows take one round trip per pass. The row's values are read twice (its
// absmax, then its codes) rather than held, which keeps any k in the same registers.
template <typename T>
__device__ void quantize_fp8(const T* x, int k, Fp8Codes out) {
    celer_pdl_begin();
    const long long row = blockIdx.x;
    const T* in = x + row * k;
    unsigned char* q = out.q + row * k;
    const int chunks = k / 16;
    if (out.mode == 2) {
        // A group of 128 is 8 consecutive chunks: 8 consecutive lanes of one warp, whose absmax they share (a partial
        // last group's lanes past k count as 0).
        for (int j0 = 0; j0 < chunks; j0 += FP8_QUANT_THREADS) {
            const int j = j0 + threadIdx.x;
            float v[16], amax = 0.f;
            if (j < chunks) {
                fp8_load16(in + j * 16, v);
#pragma unroll
                for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(v[i]));
            }
#pragma unroll
            for (int offset = 1; offset < FP8_QUANT_GROUP / 16; offset <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
            const float s = fp8_group_scale(amax, out.min_scale);
            if (j < chunks) {
                fp8_store(v, s, q + j * 16);
                if (j % (FP8_QUANT_GROUP / 16) == 0) out.scales[(long long)(j / (FP8_QUANT_GROUP / 16)) * out.scale_ld + row] = s;
            }
        }
        return;
    }

    float s = out.static_scale;
    if (out.mode == 0) {
        float amax = 0.f;
        for (int j = threadIdx.x; j < chunks; j += FP8_QUANT_THREADS) {
            float v[16];
            fp8_load16(in + j * 16, v);
#pragma unroll
            for (int i = 0; i < 16; i++) amax = fmaxf(amax, fabsf(v[i]));
        }
        s = fp8_token_scale(block_max(amax), out.min_scale);
    }
    for (int j = threadIdx.x; j < chunks; j += FP8_QUANT_THREADS) {
        float v[16];
        fp8_load16(in + j * 16, v);
        fp8_store(v, s, q + j * 16);
    }
    if (threadIdx.x == 0) out.scales[row] = s;
}

// The codes of row `row` (width k) that a block holds in registers, as quantize_fp8 writes them: thread t holds vectors
// j = t + i * blockDim.x (i < N) of V values, columns V * j onwards, each value as the kernel stored it (rounded to the
// model dtype). A group of 128 columns is 128 / V consecutive lanes, which a block of whole warps keeps inside one
// warp. Every thread of the block calls it: it reduces over the block (mode 0) or the warp (mode 2).
template <int V, int N>
__device__ void fp8_quantize_held(const float (&v)[N][V], int k, long long row, const Fp8Codes& out) {
    float s = out.static_scale;
    if (out.mode == 0) {
        float amax = 0.f;
#pragma unroll
        for (int i = 0; i < N; i++)
            if ((threadIdx.x + i * blockDim.x) * V < k) {
#pragma unroll
                for (int e = 0; e < V; e++) amax = fmaxf(amax, fabsf(v[i][e]));
            }
        s = fp8_token_scale(block_max(amax), out.min_scale);
    }
    if (out.mode != 2 && threadIdx.x == 0) out.scales[row] = s;
#pragma unroll
    for (int i = 0; i < N; i++) {
        const int c = (threadIdx.x + i * blockDim.x) * V;
        if (out.mode == 2) {
            float amax = 0.f;
            if (c < k) {
#pragma unroll
                for (int e = 0; e < V; e++) amax = fmaxf(amax, fabsf(v[i][e]));
            }
#pragma unroll
            for (int offset = 1; offset < FP8_QUANT_GROUP / V; offset <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
            s = fp8_group_scale(amax, out.min_scale);
            if (c < k && c % FP8_QUANT_GROUP == 0) out.scales[(long long)(c / FP8_QUANT_GROUP) * out.scale_ld + row] = s;
        }
        if (c < k) fp8_store(v[i], s, out.q + row * k + c);
    }
}

// silu_mul and gelu_tanh_mul (elementwise.cu) for an MLP whose down projection is FP8: the same products, stored, and
// their codes. One block per row (the element-wise kernels spread a row over several, which a per-row scale cannot), each
// thread up to FP8_GATED_VECS of its 16-byte vectors, held between the product and the codes (the host checks the row
// fits in FP8_HELD_THREADS threads). All of a thread's loads are issued before its first store: out might alias gate_up as far as the compiler
// knows, so a load after a store would wait for it, one memory round trip per vector.
#define FP8_GATED_VECS 4
// The most threads a block of the kernels that hold a row for its codes has (CudaBackend.HeldRowThreads): they keep more
// registers than a block of 1024 threads may have.
#define FP8_HELD_THREADS 512
template <typename T, bool GELU>
__device__ void gated_fp8(const T* gate_up, int d, T* out, Fp8Codes codes) {
    celer_pdl_begin();
    constexpr int V = Vec16<T>::N;
    const long long r = blockIdx.x;
    const T* gate = gate_up + r * 2 * d;
    float g[FP8_GATED_VECS][V], u[FP8_GATED_VECS][V];
#pragma unroll
    for (int i = 0; i < FP8_GATED_VECS; i++) {
        const int c = (threadIdx.x + i * blockDim.x) * V;
        if (c < d) {
            load16(gate + c, g[i]);
            load16(gate + d + c, u[i]);
        }
    }
#pragma unroll
    for (int i = 0; i < FP8_GATED_VECS; i++) {
        const int c = (threadIdx.x + i * blockDim.x) * V;
        if (c < d) {
#pragma unroll
            for (int e = 0; e < V; e++) g[i][e] = round_to<T>(round_to<T>(GELU ? gelu_tanh(g[i][e]) : silu(g[i][e])) * u[i][e]);
            store16(out + r * d + c, g[i]);
        }
    }
    fp8_quantize_held(g, d, r, codes);
}

#define FP8_QUANT_ENTRY_POINTS(S, T)                                                                                 \
    extern "C" __global__ void __launch_bounds__(FP8_QUANT_THREADS) quantize_fp8_##S(const T* x, int k, Fp8Codes out) { \
        quantize_fp8<T>(x, k, out);                                                                                  \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(FP8_HELD_THREADS) silu_mul_fp8_##S(const T* gate_up, int d, T* out, \
                                                                                  Fp8Codes codes) {                \
        gated_fp8<T, false>(gate_up, d, out, codes);                                                                \
    }                                                                                                                \
    extern "C" __global__ void __launch_bounds__(FP8_HELD_THREADS) gelu_tanh_mul_fp8_##S(const T* gate_up, int d,   \
                                                                                       T* out, Fp8Codes codes) {   \
        gated_fp8<T, true>(gate_up, d, out, codes);                                                                 \
    }
CELER_FOR_DTYPES(FP8_QUANT_ENTRY_POINTS)
