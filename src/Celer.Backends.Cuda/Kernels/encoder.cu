// An encoder's kernels (BERT, XLM-RoBERTa): the input embeddings (word + token type, then + position), LayerNorm, the
// post-norm residual step residual = LayerNorm(x + residual), and GELU in place, in the erf form (BERT's "gelu") or
// the tanh form (gelu_tanh of elementwise.cu, which comes before this file in the kernels' translation unit).
//
// LayerNorm is torch's layer_norm: statistics in fp32 with the biased variance, y = (x - mean) * rsqrt(var + eps) *
// weight + bias rounded once to T. The variance is taken in a second pass over (x - mean), not as E[x^2] - mean^2,
// which cancels catastrophically when the mean is large against the spread (BERT's hidden states often are).
//
// Grid: rows; block: threads over the row. As rmsnorm.cu: when the row is a whole number of 16-byte vectors, the
// pointers are 16-byte aligned and there are at most LN_VECS_PER_THREAD vectors per thread, each thread loads its
// vectors once and keeps them in registers through both statistics and the output (one pass over memory); otherwise
// the element-wise path reads the row three times (any size works).
#include "common.cuh"

#define LN_VECS_PER_THREAD 4

template <typename T> __device__ __forceinline__ bool ln_vectorized(int size, const void* a, const void* b, const void* c, const void* d) {
    const unsigned long long misaligned = ((unsigned long long)a | (unsigned long long)b | (unsigned long long)c | (unsigned long long)d) & 15;
    return misaligned == 0 && size % Vec16<T>::N == 0 && size / Vec16<T>::N <= LN_VECS_PER_THREAD * (int)blockDim.x;
}

// The mean of the row held in registers (this thread's vectors v), then 1 / sqrt(var + eps) with var the mean of
// (v - mean)^2 (biased, as torch). Every thread of the block gets both.
template <typename T>
__device__ __forceinline__ void ln_stats(float (&v)[LN_VECS_PER_THREAD][Vec16<T>::N], int size, float eps, float& mean, float& inv) {
    constexpr int V = Vec16<T>::N;
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < LN_VECS_PER_THREAD; k++) {
        if ((threadIdx.x + k * blockDim.x) * V < size) {
#pragma unroll
            for (int i = 0; i < V; i++) s += v[k][i];
        }
    }
    mean = block_sum(s) / size;
    float ss = 0.f;
#pragma unroll
    for (int k = 0; k < LN_VECS_PER_THREAD; k++) {
        if ((threadIdx.x + k * blockDim.x) * V < size) {
#pragma unroll
            for (int i = 0; i < V; i++) {
                const float d = v[k][i] - mean;
                ss += d * d;
            }
        }
    }
    inv = rsqrtf(block_sum(ss) / size + eps);
}

// The vectorized paths' second half: (v - mean) * inv * weight + bias, rounded once to T, stored to the row at out.
template <typename T>
__device__ __forceinline__ void ln_scale_store(float (&v)[LN_VECS_PER_THREAD][Vec16<T>::N], float mean, float inv, const T* weight,
                                               const T* bias, int size, T* out) {
    constexpr int V = Vec16<T>::N;
#pragma unroll
    for (int k = 0; k < LN_VECS_PER_THREAD; k++) {
        const int c = (threadIdx.x + k * blockDim.x) * V;
        if (c < size) {
            float w[V], b[V];
            load16(weight + c, w);
            load16(bias + c, b);
#pragma unroll
            for (int i = 0; i < V; i++) v[k][i] = (v[k][i] - mean) * inv * w[i] + b[i];
            store16(out + c, v[k]);
        }
    }
}

// The element-wise path's statistics over a row in memory (after the values are final: the caller's own writes).
template <typename T>
__device__ __forceinline__ void ln_stats_elementwise(const T* row, int size, float eps, float& mean, float& inv) {
    float s = 0.f;
    for (int c = threadIdx.x; c < size; c += blockDim.x) s += to_float(row[c]);
    mean = block_sum(s) / size;
    float ss = 0.f;
    for (int c = threadIdx.x; c < size; c += blockDim.x) {
        const float d = to_float(row[c]) - mean;
        ss += d * d;
    }
    inv = rsqrtf(block_sum(ss) / size + eps);
}

// y = layer_norm(x) over rows of `size`; y may alias x (each thread writes only the elements it read, after the
// block's sums).
template <typename T>
__device__ void layer_norm(const T* x, const T* weight, const T* bias, int size, float eps, T* y) {
    celer_pdl_begin();
    constexpr int V = Vec16<T>::N;
    const long long base = (long long)blockIdx.x * size;
    float mean, inv;
    if (ln_vectorized<T>(size, x, weight, bias, y)) {
        float v[LN_VECS_PER_THREAD][V];
#pragma unroll
        for (int k = 0; k < LN_VECS_PER_THREAD; k++) {
            const int c = (threadIdx.x + k * blockDim.x) * V;
            if (c < size) load16(x + base + c, v[k]);
        }
        ln_stats<T>(v, size, eps, mean, inv);
        ln_scale_store(v, mean, inv, weight, bias, size, y + base);
        return;
    }
    ln_stats_elementwise(x + base, size, eps, mean, inv);
    for (int c = threadIdx.x; c < size; c += blockDim.x)
        y[base + c] = from_float<T>((to_float(x[base + c]) - mean) * inv * to_float(weight[c]) + to_float(bias[c]));
}

// A post-norm encoder's residual step (BertSelfOutput / BertOutput: LayerNorm(hidden_states + input_tensor)):
// residual = layer_norm(x + residual), the sum rounded to T first as torch adds in the model dtype. x is left as it is.
template <typename T>
__device__ void add_layer_norm(const T* x, T* residual, const T* weight, const T* bias, int size, float eps) {
    celer_pdl_begin();
    constexpr int V = Vec16<T>::N;
    const long long base = (long long)blockIdx.x * size;
    float mean, inv;
    if (ln_vectorized<T>(size, x, residual, weight, bias)) {
        float v[LN_VECS_PER_THREAD][V];
#pragma unroll
        for (int k = 0; k < LN_VECS_PER_THREAD; k++) {
            const int c = (threadIdx.x + k * blockDim.x) * V;
            if (c < size) {
                float a[V];
                load16(residual + base + c, v[k]);
                load16(x + base + c, a);
#pragma unroll
                for (int i = 0; i < V; i++) v[k][i] = round_to<T>(v[k][i] + a[i]);
            }
        }
        ln_stats<T>(v, size, eps, mean, inv);
        ln_scale_store(v, mean, inv, weight, bias, size, residual + base);
        return;
    }
    // The rounded sum goes to residual first; each thread reads back only the elements it wrote.
    for (int c = threadIdx.x; c < size; c += blockDim.x)
        residual[base + c] = from_float<T>(to_float(residual[base + c]) + to_float(x[base + c]));
    ln_stats_elementwise(residual + base, size, eps, mean, inv);
    for (int c = threadIdx.x; c < size; c += blockDim.x)
        residual[base + c] = from_float<T>((to_float(residual[base + c]) - mean) * inv * to_float(weight[c]) + to_float(bias[c]));
}

// gelu(x) as torch's CUDA kernels evaluate it in fp32, by form (GeluForm): 0 the exact x * 0.5 * (1 + erf(x / sqrt(2))),
// 1 the tanh approximation (elementwise.cu's gelu_tanh), 2 CLIP's quick_gelu x * sigmoid(1.702 x).
__device__ __forceinline__ float gelu_of(float x, int form) {
    if (form == 1) return gelu_tanh(x);
    if (form == 2) return x / (1.f + expf(-1.702f * x));   // x * sigmoid(1.702 x), as silu above
    return x * 0.5f * (1.f + erff(x * 0.7071067811865476f));   // M_SQRT1_2
}

// x = gelu(x) in place over n values, rounded once to T: a grid-stride loop over 16-byte vectors, then the tail (and
// every value, element by element, when x is not 16-byte aligned).
template <typename T>
__device__ void gelu(T* x, long long n, int form) {
    celer_pdl_begin();
    constexpr int V = Vec16<T>::N;
    const long long first = blockIdx.x * (long long)blockDim.x + threadIdx.x, stride = (long long)gridDim.x * blockDim.x;
    const long long vectors = ((unsigned long long)x & 15) == 0 ? n / V : 0;
    for (long long i = first; i < vectors; i += stride) {
        float v[V];
        load16(x + i * V, v);
#pragma unroll
        for (int e = 0; e < V; e++) v[e] = gelu_of(v[e], form);
        store16(x + i * V, v);
    }
    for (long long i = vectors * V + first; i < n; i += stride) x[i] = from_float<T>(gelu_of(to_float(x[i]), form));
}

// BertEmbeddings / XLMRobertaEmbeddings: out[r] = (words[ids[r]] + types[type_ids[r]]) rounded to T, then
// + position_table[positions[r] + position_offset], rounded again (transformers adds the token type embedding to the
// word embedding first, then the position embedding, each add in the model dtype). type_ids nullptr: every row is
// type 0; types nullptr: no token type table (nothing added, and words + 0 rounds to itself). Every index is clamped
// into its table, so no id reads outside it (the host refuses out-of-range token types and positions before it
// launches; the clamp is the guard for token ids). Grid: rows; block: threads over the hidden size.
template <typename T>
__device__ void encoder_embedding(const int* ids, const int* type_ids, const int* positions, int position_offset, const T* words,
                                  int vocab, const T* types, int num_types, const T* position_table, int max_positions, int hidden,
                                  T* out) {
    celer_pdl_begin();
    constexpr int V = Vec16<T>::N;
    const long long row = blockIdx.x;
    const int id = min(max(ids[row], 0), vocab - 1);
    const int type = type_ids != nullptr ? min(max(type_ids[row], 0), num_types - 1) : 0;
    const int pos = min(max(positions[row] + position_offset, 0), max_positions - 1);
    const T* w = words + (long long)id * hidden;
    const T* t = types != nullptr ? types + (long long)type * hidden : nullptr;
    const T* p = position_table + (long long)pos * hidden;
    T* o = out + row * hidden;
    const unsigned long long misaligned = ((unsigned long long)words | (unsigned long long)types | (unsigned long long)position_table |
                                           (unsigned long long)out) & 15;
    if (hidden % V == 0 && misaligned == 0) {
        for (int c = threadIdx.x * V; c < hidden; c += blockDim.x * V) {
            float a[V], e[V];
            load16(w + c, a);
            load16(p + c, e);
            if (t != nullptr) {
                float b[V];
                load16(t + c, b);
#pragma unroll
                for (int i = 0; i < V; i++) a[i] = round_to<T>(a[i] + b[i]);
            }
#pragma unroll
            for (int i = 0; i < V; i++) a[i] += e[i];
            store16(o + c, a);
        }
        return;
    }
    for (int c = threadIdx.x; c < hidden; c += blockDim.x) {
        const float a = t != nullptr ? round_to<T>(to_float(w[c]) + to_float(t[c])) : to_float(w[c]);
        o[c] = from_float<T>(a + to_float(p[c]));
    }
}

#define ENCODER_ENTRY_POINTS(S, T)                                                                                   \
    extern "C" __global__ void layer_norm_##S(const T* x, const T* weight, const T* bias, int size, float eps, T* y) { \
        layer_norm<T>(x, weight, bias, size, eps, y);                                                               \
    }                                                                                                                \
    extern "C" __global__ void add_layer_norm_##S(const T* x, T* residual, const T* weight, const T* bias, int size,  \
                                                  float eps) {                                                       \
        add_layer_norm<T>(x, residual, weight, bias, size, eps);                                                    \
    }                                                                                                                \
    extern "C" __global__ void gelu_##S(T* x, long long n, int form) { gelu<T>(x, n, form); }             \
    extern "C" __global__ void encoder_embedding_##S(const int* ids, const int* type_ids, const int* positions,      \
                                                     int position_offset, const T* words, int vocab, const T* types,  \
                                                     int num_types, const T* position_table, int max_positions,       \
                                                     int hidden, T* out) {                                            \
        encoder_embedding<T>(ids, type_ids, positions, position_offset, words, vocab, types, num_types, position_table, \
                             max_positions, hidden, out);                                                            \
    }
CELER_FOR_DTYPES(ENCODER_ENTRY_POINTS)
