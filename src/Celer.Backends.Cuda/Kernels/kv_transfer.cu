// Whole KV-cache blocks between the device cache and the host tier's pinned memory (--kv-offload-size), in one launch
// for a batch of blocks: one cuMemcpyAsync per block, layer and kind cost ~3 us of driver time each, and a returning
// 8k-token prefix of the 8B shape is 512 blocks x 32 layers x 2 of them (measured on the H200: ~9 GB/s). The pinned pool
// is read and written through its unified address (cuMemAllocHost memory is mapped for every device that has unified
// addressing), so PCIe moves the blocks while the copy engines stay free for the step's own transfers.
//
// Entry point: kv_block_copy(layers, list, block_bytes, to_host)
//   layers       [num_layers][4] base addresses: device K, device V, host K, host V (each [blocks, block_bytes])
//   list         up to KV_COPY_BATCH (device block, host block) pairs by value; no two of them share a destination block
//                (the host splits a batch where one repeats, so a later copy of the same block wins, as in stream order)
//   block_bytes  bytes of one block of one layer's keys (or values): a multiple of 16
//   to_host      1: device -> host (a store), 0: host -> device (a load)
// Host contract: grid = (list.count, num_layers, 2: keys then values), block = KV_COPY_THREADS.
#include "common.cuh"

#define KV_COPY_BATCH 256
#define KV_COPY_THREADS 256

struct KvCopyList {
    int2 pairs[KV_COPY_BATCH];   // (device block, host block)
    int count;
};

extern "C" __global__ void __launch_bounds__(KV_COPY_THREADS) kv_block_copy(const unsigned long long* __restrict__ layers, KvCopyList list,
                                                                           long long block_bytes, int to_host) {
    // Launched on the transfer stream without programmatic dependent launch, where this returns at once; every kernel
    // begins with it (KernelSourceTests), so that a launch with PDL could never let it read before its predecessor ends.
    celer_pdl_begin();
    const int2 pair = list.pairs[blockIdx.x];
    const unsigned long long* base = layers + blockIdx.y * 4;
    const unsigned long long device = base[blockIdx.z] + pair.x * block_bytes, host = base[2 + blockIdx.z] + pair.y * block_bytes;
    const uint4* src = reinterpret_cast<const uint4*>(to_host ? device : host);
    uint4* dst = reinterpret_cast<uint4*>(to_host ? host : device);
    // Several 16-byte loads in flight per thread before their stores: reads across PCIe take ~1-2 us each.
    const long long n = block_bytes / 16;
    long long j = threadIdx.x;
    for (; j + 3 * KV_COPY_THREADS < n; j += 4 * KV_COPY_THREADS) {
        const uint4 a = src[j], b = src[j + KV_COPY_THREADS], c = src[j + 2 * KV_COPY_THREADS], d = src[j + 3 * KV_COPY_THREADS];
        dst[j] = a;
        dst[j + KV_COPY_THREADS] = b;
        dst[j + 2 * KV_COPY_THREADS] = c;
        dst[j + 3 * KV_COPY_THREADS] = d;
    }
    for (; j < n; j += KV_COPY_THREADS) dst[j] = src[j];
}
