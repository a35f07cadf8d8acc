// One-shot all-reduce for small messages between the GPUs of one host (a tensor-parallel decode step's hidden rows:
// 8 KB at batch 1 on an 8B model), where NCCL's ring costs ~12 µs a call, mostly protocol: every rank reads every other
// rank's input straight from its memory over NVLink (CUDA IPC peer mappings) and sums them itself, in one kernel.
//
// Each rank owns one buffer, mapped into every rank's process (CustomAllReduce.cs):
//   signals  [AR_BLOCKS][AR_MAX_RANKS] u32 at 0: slot [b][r] holds the last call in which rank r's block b arrived
//            (written by rank r into every rank's buffer);
//   counters [AR_BLOCKS] u32 at AR_COUNTER_OFFSET: this rank's calls so far, per block (only this rank touches them, so
//            a call needs no host argument that changes, and CUDA graphs replay it as recorded);
//   data     two halves of `capacity` bytes at AR_DATA_OFFSET: call c stages this rank's input in half c % 2.
// A call: every block copies its share of the input into its half, then tells every peer's block of the same index
// that it has arrived (st.release.sys, after the block's barrier, publishes the staged data with it) and waits until
// each peer's block has arrived at this call too (ld.acquire.sys); then it sums its share over the ranks in rank order,
// in fp32, and rounds once, so every rank computes the same bits. The grid and block are fixed, so element i always
// belongs to the same block on every rank and in every call: a block only ever waits for its own peers, and only reads
// what those peers' blocks staged.
// Why one barrier is enough: when a block starts call c + 2 (which restages the same half as call c), it has passed
// call c + 1's barrier, which each peer's block enters only after finishing call c, its reads of that half included.
// A peer's slot may already show c + 1 while this block waits for c, hence the wrap-safe "at least" test.
#include "common.cuh"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 700   // ld.acquire / st.release at system scope
#define AR_MAX_RANKS 8
#define AR_BLOCKS 32
#define AR_THREADS 512
#define AR_COUNTER_OFFSET (AR_BLOCKS * AR_MAX_RANKS * 4)
#define AR_DATA_OFFSET 4096

// The layout the host relies on, published as constants it reads once.
extern "C" __device__ const int custom_all_reduce_layout[5] = {AR_MAX_RANKS, AR_BLOCKS, AR_THREADS, AR_COUNTER_OFFSET, AR_DATA_OFFSET};

// Every rank's buffer as mapped into this process (this rank's own at index rank), by value in the launch's parameters.
struct AllReduceBuffers {
    unsigned long long base[AR_MAX_RANKS];
};

__device__ __forceinline__ void ar_store_release(unsigned* p, unsigned v) {
    asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ unsigned ar_load_acquire(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

// A peer's staged data: a 16-byte load that skips L1, which may hold the same half's bytes from two calls ago.
__device__ __forceinline__ uint4 ar_load_peer(const uint4* p) {
    uint4 v;
    asm volatile("ld.global.cg.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
    return v;
}

// x[0 .. vecs · 16 bytes) summed over the ranks into y (may be x). vecs: 16-byte vectors, at most capacity / 16.
// aborted: a flag in pinned host memory, nonzero once the host has given up on the group (the sums are then garbage).
template <typename T>
__device__ void custom_all_reduce(const T* x, T* y, long long vecs, AllReduceBuffers buffers, int rank,
                                  int ranks, long long capacity, const unsigned* aborted) {
    celer_pdl_begin();
    constexpr int N = Vec16<T>::N;
    char* own = reinterpret_cast<char*>(buffers.base[rank]);
    unsigned* counter = reinterpret_cast<unsigned*>(own + AR_COUNTER_OFFSET) + blockIdx.x;
    const unsigned call = *counter + 1;
    const long long staging = AR_DATA_OFFSET + (long long)(call & 1u) * capacity;
    const uint4* in = reinterpret_cast<const uint4*>(x);
    uint4* staged = reinterpret_cast<uint4*>(own + staging);
    const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x, stride = (long long)gridDim.x * blockDim.x;
    for (long long i = first; i < vecs; i += stride) staged[i] = in[i];
    __syncthreads();

    if (threadIdx.x < ranks) {
        const int peer = threadIdx.x;
        unsigned* theirs = reinterpret_cast<unsigned*>(buffers.base[peer]) + blockIdx.x * AR_MAX_RANKS + rank;
        ar_store_release(theirs, call);
        const unsigned* mine = reinterpret_cast<const unsigned*>(own) + blockIdx.x * AR_MAX_RANKS + peer;
        // A peer whose process died never arrives: the host's abort flag (pinned host memory) lets the wait end; it is
        // read once every 256 polls, so it costs the wait nothing while peers are alive.
        for (unsigned polls = 1; (int)(ar_load_acquire(mine) - call) < 0; polls++) {
            if ((polls & 255u) == 0 && ar_load_acquire(aborted) != 0) break;
        }
    }
    __syncthreads();

    for (long long i = first; i < vecs; i += stride) {
        float sum[N];
#pragma unroll
        for (int e = 0; e < N; e++) sum[e] = 0.f;
        for (int r = 0; r < ranks; r++) {
            const uint4 raw = r == rank ? in[i] : ar_load_peer(reinterpret_cast<const uint4*>(buffers.base[r] + staging) + i);
            const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
            for (int e = 0; e < N; e++) sum[e] += to_float(v[e]);
        }
        store16<T>(y + i * N, sum);
    }
    if (threadIdx.x == 0) *counter = call;
}

#define CUSTOM_ALL_REDUCE_ENTRY(S, T)                                                                                 \
    extern "C" __global__ void __launch_bounds__(AR_THREADS) custom_all_reduce_##S(                                    \
        const T* x, T* y, long long vecs, AllReduceBuffers buffers, int rank, int ranks, long long capacity,           \
        const unsigned* aborted) {                                                                                      \
        custom_all_reduce<T>(x, y, vecs, buffers, rank, ranks, capacity, aborted);                                       \
    }
CELER_FOR_DTYPES(CUSTOM_ALL_REDUCE_ENTRY)
#endif
