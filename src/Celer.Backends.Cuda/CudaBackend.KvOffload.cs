using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>
/// The host tier of the KV cache (<c>--kv-offload-size</c>): pinned host memory laid out like the device cache (per layer,
/// keys and values of [blocks, blockSize, kvHeads, headDim]), and the copies between the two on a transfer stream of their
/// own, so the step stream never waits for a load and the host thread never waits for either direction. A batch of
/// blocks is one launch of kv_transfer.cu's <c>kv_block_copy</c> (per 256 blocks), which reads and writes the pinned pool
/// through its unified address: a copy call per block, layer and kind made the driver's per-call cost the bound.
/// <para>
/// Order between the streams comes from events. Every batch of copies first waits for an event recorded on the step stream
/// when it is queued, so it reads and writes blocks after every kernel queued before it (with async scheduling the
/// previous step may still be writing them). Stores then record an event the step stream waits for: a block stored
/// because it was evicted is handed to another request whose kernels write it, and must be read first. Loads record an
/// event of their own, which <see cref="KvLoadsDone"/> polls; the engine does not schedule a request past its loaded
/// blocks until then. Stores and loads share the transfer stream, so each runs after those queued before it: a host
/// block is never read before the store into it, nor overwritten before a queued load has read it.
/// </para>
/// </summary>
public sealed unsafe partial class CudaBackend
{
    private SafeCudaStreamHandle? _transferStream;
    private SafePinnedHostHandle[] _hostKCache = [];
    private SafePinnedHostHandle[] _hostVCache = [];
    private int _numHostBlocks;
    private long _kvBlockLayerBytes;   // one block of one layer's keys (or values)
#pragma warning disable CA2213 // Track puts it in _allocations, which Dispose disposes
    private SafeDeviceMemoryHandle? _kvTransferLayers;   // [layers][4]: device K, device V, host K, host V
#pragma warning restore CA2213
    private nint _kvCopyKernel;
    private readonly HashSet<int> _copyDestinations = [];   // Copy's, kept: one per batch of a step's transfers

    // Matches KV_COPY_BATCH and KV_COPY_THREADS of kv_transfer.cu.
    private const int KvCopyBatch = 256;
    private const int KvCopyThreads = 256;
    private SafeCudaEventHandle? _stepReached;
    private SafeCudaEventHandle? _storesDone;
    private readonly Queue<(long Fence, SafeCudaEventHandle Done)> _loadsInFlight = new();
    private readonly Stack<SafeCudaEventHandle> _idleLoadEvents = new();
    private long _loadFence;
    private long _loadsFinished;

    public void AllocateHostKvCache(int numHostBlocks)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numHostBlocks);
        AttentionSpec spec = _attention ?? throw new InvalidOperationException("The device KV cache must be allocated before its host tier.");
        _device.MakeCurrent();
        _numHostBlocks = numHostBlocks;
        _kvBlockLayerBytes = (long)_blockSize * spec.NumKvHeads * spec.HeadDim * KvCacheDType.ByteSize();
        long bytes = numHostBlocks * _kvBlockLayerBytes;
#pragma warning disable CA2000 // owned by these array fields, disposed in DisposeHostKvCache
        _hostKCache = [.. _kCache.Select(_ => _device.AllocatePinned(bytes))];
        _hostVCache = [.. _kCache.Select(_ => _device.AllocatePinned(bytes))];
#pragma warning restore CA2000
        if (_kvBlockLayerBytes % 16 != 0)
        {
            throw new NotSupportedException($"A KV block of one layer is {_kvBlockLayerBytes} bytes; the host tier copies 16-byte words.");
        }

        ulong[] layers = new ulong[4 * _kCache.Length];
        for (int layer = 0; layer < _kCache.Length; layer++)
        {
            layers[4 * layer] = _kCache[layer];
            layers[4 * layer + 1] = _vCache[layer];
            layers[4 * layer + 2] = (ulong)_hostKCache[layer].DangerousGetHandle();
            layers[4 * layer + 3] = (ulong)_hostVCache[layer].DangerousGetHandle();
        }

        _kvTransferLayers = Track(_device.Allocate(layers.Length * sizeof(ulong)));
        fixed (ulong* source = layers)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync_v2(_kvTransferLayers.Pointer, source, (nuint)(layers.Length * sizeof(ulong)), _device.Stream), "cuMemcpyHtoD");
        }

        _device.Synchronize();   // at load: the table must be in place before any copy, and the source is this frame's
        _kvCopyKernel = _kernels.Function("kv_block_copy");
        CudaDriver.Check(CudaDriver.cuStreamCreate(out nint stream, CudaDriver.CU_STREAM_NON_BLOCKING), "cuStreamCreate");
        _transferStream = new SafeCudaStreamHandle(stream, _device.Context);
        _stepReached = SyncEvent();
        _storesDone = SyncEvent();
    }

    public void StoreKvBlocks(ReadOnlySpan<KvBlockCopy> copies)
    {
        if (copies.IsEmpty)
        {
            return;
        }

        nint transfer = FollowStepStream();
        Copy(copies, toHost: true, transfer);
        CudaDriver.Check(CudaDriver.cuEventRecord(_storesDone!.DangerousGetHandle(), transfer), "cuEventRecord");
        CudaDriver.Check(CudaDriver.cuStreamWaitEvent(_device.Stream, _storesDone.DangerousGetHandle(), 0), "cuStreamWaitEvent");
    }

    public long LoadKvBlocks(ReadOnlySpan<KvBlockCopy> copies)
    {
        nint transfer = FollowStepStream();
        Copy(copies, toHost: false, transfer);
#pragma warning disable CA2000 // owned by _loadsInFlight, then _idleLoadEvents; disposed in DisposeHostKvCache
        SafeCudaEventHandle done = _idleLoadEvents.Count > 0 ? _idleLoadEvents.Pop() : SyncEvent();
#pragma warning restore CA2000
        CudaDriver.Check(CudaDriver.cuEventRecord(done.DangerousGetHandle(), transfer), "cuEventRecord");
        _loadsInFlight.Enqueue((++_loadFence, done));
        return _loadFence;
    }

    public bool KvLoadsDone(long fence, bool wait)
    {
        while (_loadsFinished < fence && _loadsInFlight.TryPeek(out (long Fence, SafeCudaEventHandle Done) oldest))
        {
            nint done = oldest.Done.DangerousGetHandle();
            int status = wait ? CudaDriver.cuEventSynchronize(done) : CudaDriver.cuEventQuery(done);
            if (status == CudaDriver.CUDA_ERROR_NOT_READY)
            {
                return false;
            }

            CudaDriver.Check(status, wait ? "cuEventSynchronize" : "cuEventQuery");
            _loadsInFlight.Dequeue();
            _idleLoadEvents.Push(oldest.Done);
            _loadsFinished = oldest.Fence;
        }

        return _loadsFinished >= fence;
    }

    /// <summary>Makes the transfer stream wait for everything queued on the step stream so far; returns the transfer stream.</summary>
    private nint FollowStepStream()
    {
        nint transfer = _transferStream?.DangerousGetHandle() ?? throw new InvalidOperationException("The host KV cache is not allocated.");
        _device.MakeCurrent();
        CudaDriver.Check(CudaDriver.cuEventRecord(_stepReached!.DangerousGetHandle(), _device.Stream), "cuEventRecord");
        CudaDriver.Check(CudaDriver.cuStreamWaitEvent(transfer, _stepReached.DangerousGetHandle(), 0), "cuStreamWaitEvent");
        return transfer;
    }

    /// <summary>
    /// Queues the copies in their order: launches of up to <see cref="KvCopyBatch"/> blocks, a new one wherever a destination
    /// block repeats (a host block may be written twice in one batch, and the later copy must win, as it would in stream
    /// order; the blocks of one launch are copied in parallel).
    /// </summary>
    private void Copy(ReadOnlySpan<KvBlockCopy> copies, bool toHost, nint stream)
    {
        // kv_transfer.cu's KvCopyList by value: KvCopyBatch (device, host) int pairs, then the count.
        int* list = stackalloc int[2 * KvCopyBatch + 1];
        HashSet<int> destinations = _copyDestinations;
        destinations.Clear();
        int count = 0;
        foreach (KvBlockCopy copy in copies)
        {
            if ((uint)copy.HostBlock >= (uint)_numHostBlocks)
            {
                throw new ArgumentOutOfRangeException(nameof(copies), copy.HostBlock, $"The host KV cache has {_numHostBlocks} blocks.");
            }

            if (count == KvCopyBatch || !destinations.Add(toHost ? copy.HostBlock : copy.DeviceBlock))
            {
                Launch(count);
                destinations.Clear();
                destinations.Add(toHost ? copy.HostBlock : copy.DeviceBlock);
                count = 0;
            }

            list[2 * count] = copy.DeviceBlock;
            list[2 * count + 1] = copy.HostBlock;
            count++;
        }

        Launch(count);

        void Launch(int n)
        {
            if (n == 0)
            {
                return;
            }

            list[2 * KvCopyBatch] = n;
            ulong layers = _kvTransferLayers!.Pointer;
            long blockBytes = _kvBlockLayerBytes;
            int direction = toHost ? 1 : 0;
            void** args = stackalloc void*[] { &layers, list, &blockBytes, &direction };
            CudaDriver.Check(CudaDriver.cuLaunchKernel(_kvCopyKernel, (uint)n, (uint)_kCache.Length, 2, KvCopyThreads, 1, 1, 0, stream, args, null), "launch kv_block_copy");
        }
    }

    private SafeCudaEventHandle SyncEvent()
    {
        CudaDriver.Check(CudaDriver.cuEventCreate(out nint evt, CudaDriver.CU_EVENT_DISABLE_TIMING), "cuEventCreate");
        return new SafeCudaEventHandle(evt, _device.Context);
    }

    /// <summary>Waits for the copies in flight, then frees the pinned memory, the stream and the events.</summary>
    private void DisposeHostKvCache()
    {
        if (_transferStream is null)
        {
            return;
        }

        _device.MakeCurrent();
        _ = CudaDriver.cuStreamSynchronize(_transferStream.DangerousGetHandle());   // disposing: a failure here has nothing left to stop
        foreach (IDisposable handle in _hostKCache.Concat<IDisposable>(_hostVCache).Concat(_loadsInFlight.Select(l => l.Done)).Concat(_idleLoadEvents))
        {
            handle.Dispose();
        }

        _stepReached?.Dispose();
        _storesDone?.Dispose();
        _transferStream.Dispose();
        _transferStream = null;
        _hostKCache = [];
        _hostVCache = [];
        _loadsInFlight.Clear();
        _idleLoadEvents.Clear();
    }
}
