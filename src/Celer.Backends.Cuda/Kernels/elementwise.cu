// Embedding gather, dtype conversion of weights at load, bias add, SiLU·mul, GELU(tanh)·mul, logit soft-capping and row
// gather.
#include "common.cuh"

// out[r, :] = table[ids[r], :]. Grid: rows; block: threads over the hidden size.
template <typename T>
__device__ void embedding(const int* ids, const T* table, int hidden, T* out) {
    celer_pdl_begin();
    long long row = blockIdx.x;
    long long src = (long long)ids[row] * hidden;
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) out[row * hidden + c] = table[src + c];
}

// y[r, c] += bias[c], rounded once (a bias-less GEMM's output plus the bias, as torch's addmm epilogue adds it). y is
// in the model dtype, or fp32 (a biased lm_head's logits); cuBLASLt adds a bias of y's own dtype in its epilogue.
template <typename Y, typename T>
__device__ void add_bias(Y* y, long long rows, int cols, const T* bias) {
    celer_pdl_begin();
    long long n = rows * cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] = from_float<Y>(to_float(y[i]) + to_float(bias[i % cols]));
}

// out[r, :] = silu(gate) * up over the fused projection gate_up[r, :] = [gate | up], silu(x) = x / (1 + exp(-x))
// as torch evaluates it in fp32; transformers rounds silu(gate) to the model dtype before the product.
// Grid: (rows, column groups); each thread takes 16 bytes of the row (Vec16), element by element when d is not a
// multiple of that (then the rows are not 16-byte aligned).
__device__ __forceinline__ float silu(float x) { return x / (1.f + expf(-x)); }

template <typename T>
__device__ void silu_mul(const T* gate_up, int d, T* out) {
    celer_pdl_begin();
    constexpr int V = Vec16<T>::N;
    const long long r = blockIdx.x;
    const int c = (blockIdx.y * blockDim.x + threadIdx.x) * V;
    if (c >= d) return;
    const T* gate = gate_up + r * 2 * d;
    T* o = out + r * d;
    if (d % V == 0) {
        float g[V], u[V];
        load16(gate + c, g);
        load16(gate + d + c, u);
#pragma unroll
        for (int i = 0; i < V; i++) g[i] = round_to<T>(silu(g[i])) * u[i];
        store16(o + c, g);
    } else {
        for (int i = c; i < min(c + V, d); i++) {
            const float g = to_float(gate[i]);
            o[i] = from_float<T>(round_to<T>(silu(g)) * to_float(gate[d + i]));
        }
    }
}

// gelu(x) with torch's tanh approximation, as its CUDA kernel evaluates it in fp32:
// 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))).
__device__ __forceinline__ float gelu_tanh(float x) {
    const float beta = 0.7978845608028654f;   // M_SQRT2 * M_2_SQRTPI * 0.5
    const float kappa = 0.044715f;
    const float x_cube = x * x * x;
    return 0.5f * x * (1.f + tanhf(beta * (x + kappa * x_cube)));
}

// Gemma's GeGLU: out[r, :] = gelu_tanh(gate) * up over gate_up[r, :] = [gate | up], gelu rounded to the model dtype
// before the product (transformers: act_fn(gate_proj(x)) * up_proj(x)). Same grid and vector layout as silu_mul.
template <typename T>
__device__ void gelu_tanh_mul(const T* gate_up, int d, T* out) {
    celer_pdl_begin();
    constexpr int V = Vec16<T>::N;
    const long long r = blockIdx.x;
    const int c = (blockIdx.y * blockDim.x + threadIdx.x) * V;
    if (c >= d) return;
    const T* gate = gate_up + r * 2 * d;
    T* o = out + r * d;
    if (d % V == 0) {
        float g[V], u[V];
        load16(gate + c, g);
        load16(gate + d + c, u);
#pragma unroll
        for (int i = 0; i < V; i++) g[i] = round_to<T>(gelu_tanh(g[i])) * u[i];
        store16(o + c, g);
    } else {
        for (int i = c; i < min(c + V, d); i++) o[i] = from_float<T>(round_to<T>(gelu_tanh(to_float(gate[i]))) * to_float(gate[d + i]));
    }
}

// Gemma 2's final logit soft-capping on the fp32 logits: x = cap * tanh(x / cap) (transformers divides, then multiplies).
extern "C" __global__ void logit_softcap(float* x, long long n, float cap) {
    celer_pdl_begin();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        x[i] = cap * tanhf(x[i] / cap);
}

// x[i] *= factor, rounded once to T (Granite's embedding, residual and logits scalings, as torch's x * m).
template <typename T>
__device__ void scale(T* x, long long n, float factor) {
    celer_pdl_begin();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        x[i] = from_float<T>(to_float(x[i]) * factor);
}

// residual[i] += x[i], rounded once to T (a post-norm model's residual add, as torch's residual + x).
template <typename T>
__device__ void add_into(const T* x, long long n, T* residual) {
    celer_pdl_begin();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        residual[i] = from_float<T>(to_float(residual[i]) + to_float(x[i]));
}

// out[i, :] = x[rows[i], :]. Grid: selected rows.
template <typename T>
__device__ void gather_rows(const T* x, const int* rows, int cols, T* out) {
    celer_pdl_begin();
    long long src = (long long)rows[blockIdx.x] * cols, dst = (long long)blockIdx.x * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out[dst + c] = x[src + c];
}

// A row of x into columns [offset, offset + cols) of a y row y_cols wide: one block per row.
template <typename T>
__device__ void copy_columns(const T* x, int cols, T* y, int y_cols, int offset) {
    celer_pdl_begin();
    long long src = (long long)blockIdx.x * cols, dst = (long long)blockIdx.x * y_cols + offset;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) y[dst + c] = x[src + c];
}

#define ELEMENTWISE_ENTRY_POINTS(S, T)                                                                               \
    extern "C" __global__ void embedding_##S(const int* ids, const T* table, int hidden, T* out) {                  \
        embedding<T>(ids, table, hidden, out);                                                                      \
    }                                                                                                                \
    extern "C" __global__ void add_bias_##S(T* y, long long rows, int cols, const T* bias) {                         \
        add_bias<T, T>(y, rows, cols, bias);                                                                        \
    }                                                                                                                \
    extern "C" __global__ void add_bias_f32out_##S(float* y, long long rows, int cols, const T* bias) {               \
        add_bias<float, T>(y, rows, cols, bias);                                                                    \
    }                                                                                                                \
    extern "C" __global__ void silu_mul_##S(const T* gate_up, int d, T* out) {                                       \
        silu_mul<T>(gate_up, d, out);                                                                               \
    }                                                                                                                \
    extern "C" __global__ void gelu_tanh_mul_##S(const T* gate_up, int d, T* out) {                                  \
        gelu_tanh_mul<T>(gate_up, d, out);                                                                          \
    }                                                                                                                \
    extern "C" __global__ void gather_rows_##S(const T* x, const int* rows, int cols, T* out) {                      \
        gather_rows<T>(x, rows, cols, out);                                                                         \
    }                                                                                                                \
    extern "C" __global__ void copy_columns_##S(const T* x, int cols, T* y, int y_cols, int offset) {                \
        copy_columns<T>(x, cols, y, y_cols, offset);                                                                \
    }                                                                                                                \
    extern "C" __global__ void scale_##S(T* x, long long n, float factor) { scale<T>(x, n, factor); }              \
    extern "C" __global__ void add_into_##S(const T* x, long long n, T* residual) { add_into<T>(x, n, residual); }
CELER_FOR_DTYPES(ELEMENTWISE_ENTRY_POINTS)

// A weight stored in one dtype made into another (a bf16 checkpoint served with --dtype float16, say), rounding
// to nearest even as torch's .to(dtype) does.
extern "C" __global__ void convert(const void* x, int x_dtype, long long n, void* out, int out_dtype) {
    celer_pdl_begin();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        store_from_float(out, i, out_dtype, load_as_float(x, i, x_dtype));
}

// Dummy weights (--load-format dummy) made on the GPU, value for value what DummyWeightSource makes on the host:
// all ones, or low + (high - low) * u with u the top 24 bits of SplitMix64 at state + (i + 1) * golden ratio. The
// _rn intrinsics keep the arithmetic from contracting into an FMA, which would round differently from the host.
extern "C" __global__ void fill_dummy(unsigned long long state, float low, float high, int ones, long long n, void* out,
                                      int dtype) {
    celer_pdl_begin();
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = 1.f;
        if (!ones) {
            unsigned long long z = state + (unsigned long long)(i + 1) * 0x9E3779B97F4A7C15ull;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            z ^= z >> 31;
            float unit = __fmul_rn((float)(z >> 40), 1.f / 16777216.f);
            v = __fadd_rn(low, __fmul_rn(__fsub_rn(high, low), unit));
        }
        store_from_float(out, i, dtype, v);
    }
}
