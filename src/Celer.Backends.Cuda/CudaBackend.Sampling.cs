using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;

namespace Celer.Backends.Cuda;

/// <summary>
/// Sampling on the GPU (sampling.cu): the step's rows, edits and allowed ids go up, token ids and requested logprobs
/// come down; the logits never leave the card.
/// </summary>
public sealed unsafe partial class CudaBackend : IDeviceSampler
{
    // Matches SAMPLE_THREADS of sampling.cu.
    private const int SampleThreads = 1024;

#pragma warning disable CA2213 // Track/Grow put it in _allocations, which Dispose disposes
    private SafeDeviceMemoryHandle? _sampleWork, _sampleRows, _sampleTokens;
#pragma warning restore CA2213
    private SafePinnedHostHandle? _sampledOnHost;   // the ids' async copy lands here
    private SafeCudaEventHandle? _sampledCopied;
    private int _sampledCount = -1;                 // rows of the last launch not yet read; −1: none
    private readonly GrowableDeviceBuffer _edits = new(), _allowed = new(), _bitmasks = new(), _logprobInts = new(), _logprobFloats = new();
    private int _sampleMaxRows, _sampleVocab;

    public void ReserveSampling(int maxRows, int vocabSize)
    {
        _device.MakeCurrent();
        _sampleMaxRows = maxRows;
        _sampleVocab = vocabSize;
        _sampleWork = Track(_device.Allocate((long)maxRows * vocabSize * sizeof(float)));
        _sampleRows = Track(_device.Allocate((long)maxRows * sizeof(DeviceSamplingRow)));
        _sampleTokens = Track(_device.Allocate((long)maxRows * sizeof(int)));
        _sampledOnHost = _device.AllocatePinned((long)maxRows * sizeof(int));
        _sampledCopied = NewEvent();
    }

    public void LaunchSample(Tensor logits, ReadOnlySpan<DeviceSamplingRow> rows, ReadOnlySpan<LogitEdit> edits, ReadOnlySpan<int> allowedTokenIds, ReadOnlySpan<uint> tokenBitmasks)
    {
        int count = rows.Length;
        if (_sampleWork is null || count > _sampleMaxRows || logits.Columns != _sampleVocab)
        {
            throw new InvalidOperationException($"Sampling was reserved for {_sampleMaxRows} rows of {_sampleVocab} logits, not {count} of {logits.Columns}.");
        }

        _sampledCount = count;
        MarkSamplingQueued();
        if (count == 0)
        {
            return;
        }

        UploadAsync(_sampleRows!.Pointer, rows);
        ulong e = _edits.Upload(this, edits, "logits edits"), a = _allowed.Upload(this, allowedTokenIds, "allowed token ids");
        ulong l = (ulong)logits.Data, r = _sampleRows.Pointer, w = _sampleWork.Pointer, t = _sampleTokens!.Pointer;
        int vocab = _sampleVocab;
        if (!tokenBitmasks.IsEmpty)
        {
            ulong m = _bitmasks.Upload(this, tokenBitmasks, "grammar bitmasks");
            void** maskArgs = stackalloc void*[] { &l, &vocab, &r, &m };
            _kernels.Launch("apply_token_bitmask", (uint)count, 1, 1, SampleThreads, maskArgs);
        }

        void** args = stackalloc void*[] { &l, &vocab, &r, &e, &a, &w, &t };
        _kernels.Launch("sample_rows", (uint)count, 1, 1, SampleThreads, args);
        // The step ends with its ids on their way to pinned memory; the event says when they are there, so the host
        // can wait for them while the next step, already queued behind them, runs.
        CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync_v2((void*)_sampledOnHost!.DangerousGetHandle(), t, (nuint)(count * sizeof(int)), _device.Stream), "cuMemcpyDtoH");
        MarkStepEnd();
        CudaDriver.Check(CudaDriver.cuEventRecord(_sampledCopied!.DangerousGetHandle(), _device.Stream), "cuEventRecord");
    }

    public void ReadSampled(Span<int> tokens)
    {
        if (_sampledCount < 0)
        {
            throw new InvalidOperationException("No sampling was launched since the ids were last read.");
        }

        int count = _sampledCount;
        _sampledCount = -1;
        MarkHostGapBegin();
        if (count > 0)
        {
            CudaDriver.Check(CudaDriver.cuEventSynchronize(_sampledCopied!.DangerousGetHandle()), "cuEventSynchronize");
            new ReadOnlySpan<int>((void*)_sampledOnHost!.DangerousGetHandle(), count).CopyTo(tokens);
        }
    }

    /// <summary>Fills the pending rows of the step's token ids from the last sampling launch (still on the device).</summary>
    private void GatherPendingTokens(ReadOnlySpan<int> pending)
    {
        if (_sampleTokens is null)
        {
            throw new InvalidOperationException("A step has pending tokens but sampling was never reserved.");
        }

        _pendingTokens.Upload(pending);
        ulong ids = _tokenIds.Pointer, pairs = _pendingTokens.Pointer, sampled = _sampleTokens.Pointer;
        int count = pending.Length / 2;
        void** args = stackalloc void*[] { &ids, &pairs, &count, &sampled };
        _kernels.Launch("gather_sampled_tokens", Blocks(count), 1, 256, args);
    }

    public void Logprobs(
        Tensor logits, ReadOnlySpan<int> rowIndices, ReadOnlySpan<int> chosenTokens, int numTop,
        Span<float> chosenLogprobs, Span<int> chosenRanks, Span<int> topTokenIds, Span<float> topLogprobs)
    {
        int count = rowIndices.Length;
        if (count == 0)
        {
            return;
        }

        ArgumentOutOfRangeException.ThrowIfGreaterThan(numTop, _sampleVocab);
        // Ints: row indices, chosen tokens, chosen ranks, top ids. Floats: chosen logprobs, top logprobs.
        ulong ints = _logprobInts.Ensure(this, (long)count * (3 + numTop) * sizeof(int), "logprob indices");
        ulong floats = _logprobFloats.Ensure(this, (long)count * (1 + numTop) * sizeof(float), "logprob values");
        ulong rowsPtr = ints, chosenPtr = ints + (ulong)count * 4, ranksPtr = ints + (ulong)count * 8, topIdsPtr = ints + (ulong)count * 12;
        ulong chosenLp = floats, topLp = floats + (ulong)count * 4;
        UploadAsync(rowsPtr, rowIndices);
        UploadAsync(chosenPtr, chosenTokens);
        ulong l = (ulong)logits.Data;
        int vocab = _sampleVocab;
        void** args = stackalloc void*[] { &l, &vocab, &rowsPtr, &chosenPtr, &numTop, &chosenLp, &ranksPtr, &topIdsPtr, &topLp };
        _kernels.Launch("logprobs_rows", (uint)count, 1, 1, SampleThreads, args);
        Download(chosenLp, chosenLogprobs[..count]);
        Download(ranksPtr, chosenRanks[..count]);
        if (numTop > 0)
        {
            Download(topIdsPtr, topTokenIds[..(count * numTop)]);
            Download(topLp, topLogprobs[..(count * numTop)]);
        }
    }

    private void Download<T>(ulong source, Span<T> destination) where T : unmanaged
    {
        MarkStepEnd();
        fixed (T* d = destination)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync_v2(d, source, (nuint)(destination.Length * sizeof(T)), _device.Stream), "cuMemcpyDtoH");
        }

        _device.Synchronize();
    }

    /// <summary>A device buffer of the sampling inputs that grows to the largest step; no recorded graph reads it.</summary>
    private sealed class GrowableDeviceBuffer
    {
        private SafeDeviceMemoryHandle? _memory;
        private long _bytes;

        public ulong Ensure(CudaBackend backend, long bytes, string what)
        {
            if (bytes > _bytes)
            {
                _bytes = Math.Max(bytes, _bytes * 2);
                _memory = backend.Grow(_memory, _bytes, what, inGraphs: false);
            }

            return _memory!.Pointer;
        }

        public ulong Upload<T>(CudaBackend backend, ReadOnlySpan<T> values, string what) where T : unmanaged
        {
            ulong pointer = Ensure(backend, Math.Max(1, values.Length) * (long)sizeof(T), what);
            if (values.Length > 0)
            {
                backend.UploadAsync(pointer, values);
            }

            return pointer;
        }
    }
}
