// Shared helpers of Celer's kernels. Weights arrive in their stored dtype; every kernel computes in fp32.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

// Matches Celer.Models.Weights.DType.
#define NEG_INF __int_as_float(0xff800000)
#define DTYPE_F32 0
#define DTYPE_F16 1
#define DTYPE_BF16 2

__device__ __forceinline__ float load_as_float(const void* p, long long i, int dtype) {
    if (dtype == DTYPE_BF16) return __bfloat162float(((const __nv_bfloat16*)p)[i]);
    if (dtype == DTYPE_F16) return __half2float(((const __half*)p)[i]);
    return ((const float*)p)[i];
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block of up to 1024 threads; every thread gets the result.
__device__ __forceinline__ float block_sum(float v) {
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
