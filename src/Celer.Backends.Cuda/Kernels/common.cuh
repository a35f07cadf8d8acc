// Shared helpers of Celer's kernels. Activations, weights and the KV cache are in the model's dtype T (fp32, fp16
// or bf16); every kernel computes in fp32 and rounds once to T (round to nearest even) when it stores.
// Kernels are templates over T; CELER_FOR_DTYPES emits one extern "C" entry point per dtype, named
// <kernel>_f32 / _f16 / _bf16, which the host picks by the model's dtype.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

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

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__nv_fp8_e4m3 v) { return float(v); }
__device__ __forceinline__ float to_float(__nv_fp8_e5m2 v) { return float(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
// FP8 KV cache (--kv-cache-dtype fp8): round to nearest even, saturating to the largest finite value as vLLM does.
template <> __device__ __forceinline__ __nv_fp8_e4m3 from_float<__nv_fp8_e4m3>(float v) { return __nv_fp8_e4m3(v); }
template <> __device__ __forceinline__ __nv_fp8_e5m2 from_float<__nv_fp8_e5m2>(float v) { return __nv_fp8_e5m2(v); }

// Rounds an fp32 value to T and back: where transformers rounds an intermediate to the model dtype.
template <typename T> __device__ __forceinline__ float round_to(float v) { return to_float(from_float<T>(v)); }

__device__ __forceinline__ void store_from_float(void* p, long long i, int dtype, float v) {
    if (dtype == DTYPE_BF16) ((__nv_bfloat16*)p)[i] = __float2bfloat16_rn(v);
    else if (dtype == DTYPE_F16) ((__half*)p)[i] = __float2half_rn(v);
    else ((float*)p)[i] = v;
}

// Programmatic dependent launch (sm_90+): the host launches kernels with programmatic stream serialization, so a
// kernel's blocks may be scheduled while the kernel before it is still finishing, instead of after it has drained
// and the launch has gone through (a few microseconds per kernel boundary, ~300 of them per decode step). Every
// kernel calls this first, before it touches global memory: griddepcontrol.wait returns once the previous kernel
// has completed and its writes are visible (at once for a kernel launched without the attribute), and only then
// does the kernel let the next one start launching, so at most one grid waits behind a running one.
__device__ __forceinline__ void celer_pdl_begin() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// CELER_FOR_DTYPES(M) expands M(suffix, type) for the three activation dtypes.
#define CELER_FOR_DTYPES(M) M(f32, float) M(f16, __half) M(bf16, __nv_bfloat16)

// CELER_FOR_KV_DTYPES(M) expands M(suffix, model type, cache type) for every KV cache a model dtype can have: its
// own dtype (suffix as above) and, for 16-bit models, the two FP8 formats (suffix <model>_e4m3 / <model>_e5m2).
#define CELER_FOR_KV_DTYPES(M)                                                                                       \
    M(f32, float, float) M(f16, __half, __half) M(bf16, __nv_bfloat16, __nv_bfloat16)                              \
    M(f16_e4m3, __half, __nv_fp8_e4m3) M(f16_e5m2, __half, __nv_fp8_e5m2)                                          \
    M(bf16_e4m3, __nv_bfloat16, __nv_fp8_e4m3) M(bf16_e5m2, __nv_bfloat16, __nv_fp8_e5m2)

// Vectorized access: 16 bytes of T (8 bf16 / fp16, 4 fp32), the widest load a thread issues in one instruction.
template <typename T> struct Vec16 { static constexpr int N = 16 / (int)sizeof(T); };
template <typename T> __device__ __forceinline__ void load16(const T* p, float (&v)[Vec16<T>::N]) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < Vec16<T>::N; i++) v[i] = to_float(e[i]);
}
template <typename T> __device__ __forceinline__ void store16(T* p, const float (&v)[Vec16<T>::N]) {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < Vec16<T>::N; i++) e[i] = from_float<T>(v[i]);
    *reinterpret_cast<uint4*>(p) = raw;
}

// A 16-byte store into shared memory that ldmatrix reads next (a tile made in registers rather than copied in by
// cp.async); the host emulation counts its destination as shared memory, as it counts cp.async's.
__device__ __forceinline__ void shared_store16(void* smem, uint4 v) { *reinterpret_cast<uint4*>(smem) = v; }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// The factor that normalizes an attention row whose keys gave running max m (natural-log units) and sum l: 1 / l, or, with
// gpt-oss's learned sinks (sinks != nullptr), one more term e^sink in the denominator for the row's head, a logit with no
// value: e^(m - M) / (l e^(m - M) + e^(sink - M)) with M = max(m, sink), so that neither exponential overflows. 0 for a
// row that saw no key (l = 0) and has no sink.
template <typename T>
__device__ __forceinline__ float attention_normalizer(float m, float l, const T* sinks, int head) {
    if (sinks == nullptr) return l > 0.f ? 1.f / l : 0.f;
    const float sink = to_float(sinks[head]);
    const float mx = l > 0.f ? fmaxf(m, sink) : sink;
    const float f = l > 0.f ? expf(m - mx) : 0.f;
    return f / (l * f + expf(sink - mx));
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
