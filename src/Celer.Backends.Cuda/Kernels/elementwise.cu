// Embedding gather, dtype conversion for GEMM inputs, bias add, SiLU·mul and row gather.
#include "common.cuh"

// out[r, :] = table[ids[r], :] widened to fp32. Grid: rows; block: threads over the hidden size.
extern "C" __global__ void embedding(const int* ids, const void* table, int dtype, int hidden, float* out) {
    long long row = blockIdx.x;
    long long src = (long long)ids[row] * hidden;
    for (int c = threadIdx.x; c < hidden; c += blockDim.x)
        out[row * hidden + c] = load_as_float(table, src + c, dtype);
}

// fp32 activations rounded to the weight dtype so cuBLAS multiplies like with like (round to nearest even).
extern "C" __global__ void convert_f32(const float* x, long long n, int dtype, void* out) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        if (dtype == DTYPE_BF16) ((__nv_bfloat16*)out)[i] = __float2bfloat16_rn(x[i]);
        else if (dtype == DTYPE_F16) ((__half*)out)[i] = __float2half_rn(x[i]);
        else ((float*)out)[i] = x[i];
    }
}

// y[r, c] += bias[c].
extern "C" __global__ void add_bias(float* y, long long rows, int cols, const void* bias, int dtype) {
    long long n = rows * cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] += load_as_float(bias, i % cols, dtype);
}

// out = silu(gate) * up, silu(x) = x / (1 + exp(-x)) as torch computes it in fp32.
extern "C" __global__ void silu_mul(const float* gate, const float* up, long long n, float* out) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = g / (1.f + expf(-g)) * up[i];
    }
}

// out[i, :] = x[rows[i], :]. Grid: selected rows.
extern "C" __global__ void gather_rows(const float* x, const int* rows, int cols, float* out) {
    long long src = (long long)rows[blockIdx.x] * cols, dst = (long long)blockIdx.x * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out[dst + c] = x[src + c];
}
