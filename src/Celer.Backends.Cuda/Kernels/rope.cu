// Rotary embedding, rotate-half layout (HF's rotate_half: pairs (i, i + rotary_dim/2)). The angle is the
// fp32 product position * inv_freq[i], as transformers forms it, and cos/sin are scaled by yarn's attention factor.
#include "common.cuh"

// Grid: (rows, heads); block: threads over rotary_dim/2.
extern "C" __global__ void rope(float* x, const int* positions, const float* inv_freq, int num_heads, int head_dim,
                                int rotary_dim, float attention_scaling) {
    int half = rotary_dim / 2;
    float* h = x + ((long long)blockIdx.x * num_heads + blockIdx.y) * head_dim;
    float pos = (float)positions[blockIdx.x];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float angle = pos * inv_freq[i];
        float c = cosf(angle) * attention_scaling, s = sinf(angle) * attention_scaling;
        float a = h[i], b = h[i + half];
        h[i] = a * c - b * s;
        h[i + half] = b * c + a * s;
    }
}
