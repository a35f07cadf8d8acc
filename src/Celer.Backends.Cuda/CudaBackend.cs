using System.Runtime.InteropServices;
using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>
/// The model operators on one NVIDIA GPU, in the model dtype end to end as vLLM runs a model: weights,
/// activations and the paged KV cache in <see cref="ActivationDType"/> (bf16, fp16 or fp32), NVRTC-compiled
/// kernels that compute in fp32 and round once, cuBLAS GEMMs with fp32 accumulation, tensor-core attention for
/// 16-bit models (<c>flash_attention.cu</c>). Only the logits are fp32; they come back to the host, where the
/// engine's sampler runs. The operators live in CudaBackend.Operators.cs and CudaBackend.Attention.cs.
/// </summary>
public sealed unsafe partial class CudaBackend : IModelBackend, IStepGraphs
{
    // Pinned chunks for weight uploads, two so that one fills while the other is copied: large enough to stream at
    // PCIe speed, filled by several threads (one thread's memcpy out of the page cache is slower than the link).
    private const int StagingBytes = 64 << 20;
    private const int StagingPieceBytes = 4 << 20;

    // Pinned staging of one step's metadata uploads (token ids, positions, slots, block tables, attention tiles,
    // sampling rows): 8 MiB holds a step of 8192 tokens and 256 sequences with 7,000 blocks each (112k tokens).
    private const int MetadataStagingBytes = 8 << 20;

    // cuBLAS allocates its workspace lazily, which a graph being recorded cannot do: give it one up front
    // (32 MiB is what cuBLAS itself asks for on Hopper). cuBLASLt's matmuls take the same one (one stream: never both at once).
    private const int CublasWorkspaceBytes = 32 << 20;

    private readonly CudaDevice _device;
    private readonly bool _ownsDevice;
    private readonly CudaKernels _kernels;
    private readonly List<SafeDeviceMemoryHandle> _allocations = [];
    private readonly SafePinnedHostHandle[] _staging;
    private readonly SafeCudaEventHandle[] _stagingFree;   // recorded after the copy out of each staging chunk
    private int _stagingNext;
    private readonly SafePinnedHostHandle[] _metadataStaging;
    private readonly SafeCudaEventHandle[] _metadataReleased;
    private int _metadataHalf;
    private long _metadataOffset;
    private readonly DeviceInts _tokenIds, _positions, _slotMapping, _tokenSeq, _blockTables, _logitsRows, _attentionTiles, _pendingTokens;
    private readonly DeviceInts _tokenTypeIds, _maskPositions;   // an encoder's (CudaBackend.Encoder.cs)
    private readonly DeviceInts _ropePositions;   // a multi-axis RoPE's positions per row and axis (ForwardBatch.RopePositions)
    private readonly string _suffix, _kvSuffix;
    private int[] _tokenSeqHost = [];   // the sequence of each row, reused from step to step
    private float[] _kScales = [], _vScales = [];
    private ulong[] _kCache = [], _vCache = [];
    private int _blockSize;
    private AttentionSpec? _attention;
    private ForwardBatch? _batch;
    private readonly Dictionary<int, (SafeCudaGraphHandle Graph, int Version)> _graphs = [];
    private bool _capturing;

    /// <param name="activationDType">The model dtype the backend computes in; weights are converted to it at load.</param>
    /// <param name="kvCacheDType">
    /// The KV cache's element type (<c>--kv-cache-dtype</c>): the model dtype (null), or FP8 (E4M3/E5M2) for a 16-bit model.
    /// </param>
    /// <param name="ownsDevice">Dispose the device with the backend (the loader's case; tests share one device).</param>
    /// <param name="sleepMode">Put the weights and the KV cache where <see cref="ISleepMode"/> can release them (--enable-sleep-mode).</param>
    public CudaBackend(CudaDevice device, DType activationDType, bool ownsDevice = false, DType? kvCacheDType = null, bool sleepMode = false)
    {
        _device = device;
        _ownsDevice = ownsDevice;
        ActivationDType = activationDType;
        _suffix = activationDType switch
        {
            DType.F32 => "f32",
            DType.F16 => "f16",
            DType.BF16 => "bf16",
            _ => throw new NotSupportedException($"The CUDA backend computes in fp32, fp16 or bf16, not {activationDType}."),
        };
        if (activationDType == DType.BF16 && device.ComputeCapability.Major < 8)
        {
            throw new NotSupportedException(
                $"Bfloat16 needs compute capability 8.0 or higher; {device.Name} has {device.ComputeCapability.Major}.{device.ComputeCapability.Minor}. Serve the model in float16 with --dtype half.");
        }

        KvCacheDType = kvCacheDType ?? activationDType;
        _kvSuffix = KvCacheDType switch
        {
            _ when KvCacheDType == activationDType => _suffix,
            DType.F8E4M3 when activationDType != DType.F32 => _suffix + "_e4m3",
            DType.F8E5M2 when activationDType != DType.F32 => _suffix + "_e5m2",
            _ => throw new NotSupportedException($"A {activationDType} model cannot keep its KV cache in {KvCacheDType}; FP8 caches go with bf16 and fp16 models."),
        };
        _device.MakeCurrent();
        _kernels = new CudaKernels(device);
#pragma warning disable CA2000 // owned by these array fields, disposed element by element in Dispose
        _staging = [device.AllocatePinned(StagingBytes), device.AllocatePinned(StagingBytes)];
        _stagingFree = [NewEvent(), NewEvent()];
        _metadataStaging = [device.AllocatePinned(MetadataStagingBytes), device.AllocatePinned(MetadataStagingBytes)];
        _metadataReleased = [NewEvent(), NewEvent()];
#pragma warning restore CA2000
        _tokenIds = new DeviceInts(this);
        _positions = new DeviceInts(this);
        _slotMapping = new DeviceInts(this);
        _tokenSeq = new DeviceInts(this);
        _blockTables = new DeviceInts(this);
        _logitsRows = new DeviceInts(this);
        _attentionTiles = new DeviceInts(this);
        _pendingTokens = new DeviceInts(this, inGraphs: false);   // read by a kernel launched before the graph
        _tokenTypeIds = new DeviceInts(this);
        _maskPositions = new DeviceInts(this);
        _ropePositions = new DeviceInts(this);
        _gemmWorkspace = Track(device.Allocate(CublasWorkspaceBytes)).Pointer;
        if (sleepMode)
        {
            // Address space is cheap: each region may grow to the whole card.
            _weightMemory = new VirtualMemoryRegion(device, "weights", device.TotalMemory, SleepChunkBytes);
            _kvMemory = new VirtualMemoryRegion(device, "KV cache", device.TotalMemory, SleepChunkBytes);
        }
        Cublas.Check(Cublas.cublasSetWorkspace_v2(device.CublasHandle, _gemmWorkspace, CublasWorkspaceBytes), "cublasSetWorkspace");
    }

    /// <summary>
    /// Bumped whenever a buffer that recorded graphs point into moves (grows): those graphs are stale from then on.
    /// </summary>
    private int BufferVersion { get; set; }

    public string Name => $"cuda:{_device.Ordinal} ({_device.Name})";

    public CudaDevice Device => _device;

    /// <summary>The compiled kernels, for collectives that launch their own (<see cref="CustomAllReduce"/>).</summary>
    internal CudaKernels Kernels => _kernels;

    public DType ActivationDType { get; }

    /// <summary>The element type of the KV cache.</summary>
    public DType KvCacheDType { get; }

    /// <summary>
    /// Per-layer scales of an FP8 KV cache (a cached value is value / scale), from the checkpoint's k_scale/v_scale;
    /// 1.0 for every layer until set. Ignored by a cache in the model dtype.
    /// </summary>
    public void SetKvCacheScales(float[] kScales, float[] vScales)
    {
        IModelBackend.CheckKvCacheScales(kScales, vScales, _kCache.Length);
        _kScales = kScales;
        _vScales = vScales;
    }

    public Tensor LoadWeight(WeightTensor weight)
    {
        if (weight.Scales is not null)
        {
            return LoadFp8(weight.Name, [weight]);
        }

        if (weight.Packed is not null)
        {
            return LoadInt(weight.Name, [weight]);
        }

        weight.RequireUnquantized();
        _device.MakeCurrent();
        var tensor = new Tensor(weight.Name, 0, ActivationDType, weight.Shape);
        ulong memory = AllocateWeight(tensor.ByteLength);
        Upload(weight, memory);
        return new Tensor(weight.Name, (nint)memory, ActivationDType, weight.Shape);
    }

    public Tensor LoadStacked(string name, params WeightTensor[] parts)
    {
        if (parts.Any(p => p.Scales is not null))
        {
            return LoadFp8(name, parts);
        }

        if (parts.Any(p => p.Packed is not null))
        {
            return LoadInt(name, parts);
        }

        Array.ForEach(parts, part => part.RequireUnquantized());
        int[] trailing = parts[0].Shape[1..];
        if (parts.Any(p => !p.Shape.AsSpan(1).SequenceEqual(trailing)))
        {
            throw new ModelLoadException($"the parts of '{name}' ({string.Join(", ", parts.Select(p => p.ToString()))}) differ in their trailing shape");
        }

        _device.MakeCurrent();
        int[] shape = [parts.Sum(p => p.Shape[0]), .. trailing];
        var tensor = new Tensor(name, 0, ActivationDType, shape);
        ulong memory = AllocateWeight(tensor.ByteLength);
        long offset = 0;
        foreach (WeightTensor part in parts)
        {
            Upload(part, memory + (ulong)offset);
            offset += part.ElementCount * ActivationDType.ByteSize();
        }

        return new Tensor(name, (nint)memory, ActivationDType, shape);
    }

    /// <summary>
    /// Copies a weight to <paramref name="destination"/> through the two pinned staging chunks in turn (the next chunk
    /// is filled while the previous one is copied), converting it to the model dtype on the GPU when it is stored in
    /// another (a bf16 checkpoint served in fp16, an fp32 norm). Returns with the copies queued: the stream orders
    /// every later use after them. <paramref name="storeAs"/> keeps another dtype than the model's (FP8 weights and their
    /// fp32 scales, copied as they are).
    /// </summary>
    private void Upload(WeightTensor weight, ulong destination, DType? storeAs = null)
    {
        if (weight.Synthetic is { } rule)
        {
            ulong state = rule.State, target = destination;
            float low = rule.Low, high = rule.High;
            int ones = rule.Ones ? 1 : 0, targetType = Code(ActivationDType);
            long count = weight.ElementCount;
            void** fargs = stackalloc void*[] { &state, &low, &high, &ones, &count, &target, &targetType };
            _kernels.Launch("fill_dummy", Blocks(count), 1, 256, fargs);
            return;
        }

        bool convert = weight.DType != (storeAs ?? ActivationDType);
        // Each staging chunk has its own device buffer for the raw values of a weight that is converted.
        SafeDeviceMemoryHandle?[] raw = new SafeDeviceMemoryHandle?[2];
        int inSize = weight.DType.ByteSize(), outSize = ActivationDType.ByteSize();
        int xType = convert ? Code(weight.DType) : 0, oType = convert ? Code(ActivationDType) : 0;
        ulong x = 0, o = 0;
        long n = 0;
        void** args = stackalloc void*[] { &x, &xType, &n, &o, &oType };
        for (long offset = 0; offset < weight.ByteLength; offset += StagingBytes)
        {
            int chunk = (int)Math.Min(StagingBytes, weight.ByteLength - offset), buffer = _stagingNext;
            _stagingNext ^= 1;
            nint staging = _staging[buffer].DangerousGetHandle();
            CudaDriver.Check(CudaDriver.cuEventSynchronize(_stagingFree[buffer].DangerousGetHandle()), "cuEventSynchronize");
            FillStaging(weight.Data + (nint)offset, staging, chunk);
            if (!convert)
            {
                CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync_v2(destination + (ulong)offset, (void*)staging, (nuint)chunk, _device.Stream), "cuMemcpyHtoD");
            }
            else
            {
                x = (raw[buffer] ??= _device.Allocate(Math.Min(StagingBytes, weight.ByteLength))).Pointer;
                CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync_v2(x, (void*)staging, (nuint)chunk, _device.Stream), "cuMemcpyHtoD");
                o = destination + (ulong)(offset / inSize * outSize);
                n = chunk / inSize;
                _kernels.Launch("convert", Blocks(n), 1, 256, args);
            }

            CudaDriver.Check(CudaDriver.cuEventRecord(_stagingFree[buffer].DangerousGetHandle(), _device.Stream), "cuEventRecord");
        }

        if (convert)
        {
            _device.Synchronize();   // the raw buffers are freed now; weights stored as served (most) never wait here
            foreach (SafeDeviceMemoryHandle? buffer in raw)
            {
                buffer?.Dispose();
            }
        }
    }

    /// <summary>Copies a chunk of a (memory-mapped) weight into pinned memory, a few MiB per thread.</summary>
    private static void FillStaging(nint source, nint staging, int bytes)
    {
        int pieces = (bytes + StagingPieceBytes - 1) / StagingPieceBytes;
        Parallel.For(0, pieces, piece =>
        {
            long start = (long)piece * StagingPieceBytes, length = Math.Min(StagingPieceBytes, bytes - start);
            Buffer.MemoryCopy((void*)(source + (nint)start), (void*)(staging + (nint)start), length, length);
        });
    }

    public Tensor Allocate(string name, DType dtype, params int[] shape)
    {
        _device.MakeCurrent();
        var tensor = new Tensor(name, 0, dtype, shape);
        SafeDeviceMemoryHandle memory = AllocateOther(tensor.ByteLength);
        return new Tensor(name, (nint)memory.Pointer, dtype, shape);
    }

    public long KvBlockBytes(int numLayers, int blockSize, int numKvHeads, int headDim) =>
        2L * numLayers * blockSize * numKvHeads * headDim * KvCacheDType.ByteSize();

    public void AllocateKvCache(int numLayers, int numBlocks, int blockSize, AttentionSpec spec)
    {
        // Checked here, at load, rather than in the first step's attention, where it would fail every request.
        if (spec.HeadDim > MaxHeadDim)
        {
            throw new NotSupportedException($"head_dim {spec.HeadDim} > {MaxHeadDim} is not supported by the CUDA attention kernels.");
        }

        _device.MakeCurrent();
        _blockSize = blockSize;
        _attention = spec;
        if (UsesFlashAttention(spec))
        {
            int headDimIndex = Array.IndexOf(FlashHeadDims, spec.HeadDim);
            _flashKernel = _kernels.Function($"flash_attention_{_kvSuffix}_hd{spec.HeadDim}");
            _flashBlockM = _kernels.ReadInt("flash_attention_block_m", headDimIndex);
            _flashSharedBytes = _kernels.ReadInt("flash_attention_shared_bytes", headDimIndex);
            _kernels.AllowSharedMemory(_flashKernel, _flashSharedBytes);   // 80.3 KB at head_dim 128: above the 48 KB default
            _decodeSharedBytes = _kernels.ReadInt("flash_decode_shared_bytes", headDimIndex);
            // A card whose blocks cannot hold the decode kernel's pipeline (head_dim 256 on an sm_86/89 card) sends
            // decode rows to flash_attention, which takes 88.5 KB at most (sm_80 and later blocks hold 99 KB or more).
            _decodeKernel = _decodeSharedBytes <= _device.MaxSharedMemoryPerBlock ? _kernels.Function($"flash_decode_{_kvSuffix}_hd{spec.HeadDim}") : 0;
            if (_decodeKernel != 0)
            {
                _kernels.AllowSharedMemory(_decodeKernel, _decodeSharedBytes);
            }
        }

        long bytes = (long)numBlocks * blockSize * spec.NumKvHeads * spec.HeadDim * KvCacheDType.ByteSize();
        _kCache = new ulong[numLayers];
        _vCache = new ulong[numLayers];
        _kScales = Enumerable.Repeat(1f, numLayers).ToArray();
        _vScales = Enumerable.Repeat(1f, numLayers).ToArray();
        for (int layer = 0; layer < numLayers; layer++)
        {
            _kCache[layer] = AllocateKv(bytes);
            _vCache[layer] = AllocateKv(bytes);
        }
    }

    public void BeginStep(ForwardBatch batch)
    {
        _device.MakeCurrent();
        MarkStepBegin();
        SwitchMetadataStaging();
        _batch = batch;
        if (_tokenSeqHost.Length < batch.NumTokens)
        {
            _tokenSeqHost = new int[Math.Max(batch.NumTokens, 2 * _tokenSeqHost.Length)];
        }

        Span<int> tokenSeq = _tokenSeqHost.AsSpan(0, batch.NumTokens);
        for (int s = 0; s < batch.NumSequences; s++)
        {
            tokenSeq.Slice(batch.QueryStartLoc[s], batch.QueryStartLoc[s + 1] - batch.QueryStartLoc[s]).Fill(s);
        }

        _tokenIds.Upload(batch.TokenIds);
        if (batch.PendingTokens.Length > 0)
        {
            GatherPendingTokens(batch.PendingTokens);
        }

        _positions.Upload(batch.Positions);
        if (batch.TokenTypeIds is { } tokenTypes)
        {
            if (tokenTypes.Length != batch.NumTokens)
            {
                throw new ArgumentException($"The batch has {tokenTypes.Length} token type ids for {batch.NumTokens} tokens.", nameof(batch));
            }

            _tokenTypeIds.Upload(tokenTypes);
        }

        if (batch.RopePositions is { } ropePositions)
        {
            _ropePositions.Upload(ropePositions);
        }

        _maskPositionsReady = false;   // a bidirectional attention uploads this step's at its first call
        _slotMapping.Upload(batch.SlotMapping);
        _tokenSeq.Upload(tokenSeq);
        _blockTables.Upload(batch.BlockTables);
        _logitsRows.Upload(batch.LogitsRows);
        if (_attention is not null && UsesFlashAttention(_attention))
        {
            UploadFlashTiles(batch, _attention);
        }
    }

    public void CopyRows(Tensor x, int sourceRow, Tensor y, int destinationRow, int rows)
    {
        IModelBackend.CheckCopyRows(x, sourceRow, y, destinationRow, rows);
        long rowBytes = x.Columns * x.DType.ByteSize();
        if (rows > 0)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyDtoDAsync_v2(
                (ulong)y.Data + (ulong)(destinationRow * rowBytes), (ulong)x.Data + (ulong)(sourceRow * rowBytes), (nuint)(rows * rowBytes), _device.Stream), "cuMemcpyDtoD");
        }
    }

    public void CopyFromHost(ReadOnlySpan<float> source, Tensor x)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(source.Length, x.ElementCount);
        // Pageable host memory: the driver stages it before the call returns, so the source may go at once.
        if (x.DType == DType.F32)
        {
            fixed (float* s = source)
            {
                CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync_v2((ulong)x.Data, s, (nuint)(source.Length * sizeof(float)), _device.Stream), "cuMemcpyHtoD");
            }

            return;
        }

        var narrow = new ushort[source.Length];
        if (x.DType == DType.BF16)
        {
            HalfConversions.FloatToBf16(source, narrow);
        }
        else
        {
            HalfConversions.FloatToHalf(source, MemoryMarshal.Cast<ushort, Half>(narrow.AsSpan()));
        }

        fixed (ushort* s = narrow)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync_v2((ulong)x.Data, s, (nuint)(source.Length * sizeof(ushort)), _device.Stream), "cuMemcpyHtoD");
        }
    }

    public void CopyToHost(Tensor x, int rows, Span<float> destination)
    {
        int count = checked((int)(rows * x.Columns));
        MarkStepEnd();
        if (x.DType == DType.F32)
        {
            fixed (float* d = destination)
            {
                CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync_v2(d, (ulong)x.Data, (nuint)(count * sizeof(float)), _device.Stream), "cuMemcpyDtoH");
                _device.Synchronize();
            }

            return;
        }

        // A 16-bit activation (tests read them): copy the raw values, widen on the host.
        var raw = new ushort[count];
        fixed (ushort* r = raw)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync_v2(r, (ulong)x.Data, (nuint)(count * sizeof(ushort)), _device.Stream), "cuMemcpyDtoH");
            _device.Synchronize();
        }

        if (x.DType == DType.BF16)
        {
            HalfConversions.Bf16ToFloat(raw, destination[..count]);
        }
        else
        {
            HalfConversions.HalfToFloat(MemoryMarshal.Cast<ushort, Half>(raw), destination[..count]);
        }
    }

    public bool TryReplay(int bucket)
    {
        if (!_graphs.TryGetValue(bucket, out var entry) || entry.Version != BufferVersion)
        {
            return false;
        }

        CudaDriver.Check(CudaDriver.cuGraphLaunch(entry.Graph.DangerousGetHandle(), _device.Stream), "cuGraphLaunch");
        return true;
    }

    public void BeginCapture()
    {
        CudaDriver.Check(CudaDriver.cuStreamBeginCapture_v2(_device.Stream, CudaDriver.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), "cuStreamBeginCapture");
        _capturing = true;
        _kernels.Capturing = true;
    }

    public void AbortCapture()
    {
        _capturing = false;
        _kernels.Capturing = false;
        // Ends the stream's capture mode whatever state the failed recording left; the partial graph is dropped.
        if (CudaDriver.cuStreamEndCapture(_device.Stream, out nint graph) == 0 && graph != 0)
        {
            _ = CudaDriver.cuGraphDestroy(graph);   // already failing: the first error is the one reported
        }
    }

    public void EndCapture(int bucket)
    {
        _capturing = false;
        _kernels.Capturing = false;
        CudaDriver.Check(CudaDriver.cuStreamEndCapture(_device.Stream, out nint graph), "cuStreamEndCapture");
        CudaDriver.Check(CudaDriver.cuGraphInstantiateWithFlags(out nint exec, graph, 0), "cuGraphInstantiate");
        var handle = new SafeCudaGraphHandle(exec, graph, _device.Context);
        if (_graphs.Remove(bucket, out var stale))
        {
            stale.Graph.Dispose();
        }

        _graphs[bucket] = (handle, BufferVersion);
        CudaDriver.Check(CudaDriver.cuGraphLaunch(exec, _device.Stream), "cuGraphLaunch");
    }

    public void ReserveStepMetadata(int maxTokens, int maxSequences, int maxBlocksPerSequence)
    {
        foreach (DeviceInts perToken in (ReadOnlySpan<DeviceInts>)[_tokenIds, _positions, _slotMapping, _tokenSeq, _logitsRows, _tokenTypeIds, _maskPositions])
        {
            perToken.Reserve(maxTokens);
        }

        _ropePositions.Reserve(checked(3 * maxTokens));   // M-RoPE's three axes per row at most
        _blockTables.Reserve(checked(maxSequences * maxBlocksPerSequence));
        _attentionTiles.Reserve(3 * (maxSequences + maxTokens + 1));   // UploadFlashTiles' bound on the tile count
    }

    public void Dispose()
    {
        foreach (var entry in _graphs.Values)
        {
            entry.Graph.Dispose();
        }

        _graphs.Clear();
        DisposeGemmPlans();
        DisposeHostKvCache();   // first: its copies in flight read and write the device cache
        foreach (SafeDeviceMemoryHandle memory in _allocations)
        {
            memory.Dispose();
        }

        _allocations.Clear();
        _weightMemory?.Dispose();
        _kvMemory?.Dispose();
        foreach (IDisposable handle in _staging.Concat<IDisposable>(_stagingFree))
        {
            handle.Dispose();
        }

        foreach (IDisposable handle in _metadataStaging.Concat<IDisposable>(_metadataReleased))
        {
            handle.Dispose();
        }

        _sampledOnHost?.Dispose();
        _sampledCopied?.Dispose();
        DisposeHostSlots();
        foreach (SafeCudaEventHandle evt in new[] { _stepStart, _stepEnd, _gapStart, _gapEnd }.SelectMany(events => events ?? []))
        {
            evt.Dispose();
        }

        _kernels.Dispose();
        if (_ownsDevice)
        {
            _device.Dispose();
        }
    }

    internal SafeDeviceMemoryHandle Track(SafeDeviceMemoryHandle memory)
    {
        _allocations.Add(memory);
        return memory;
    }

    /// <summary>
    /// Replaces a growable buffer by a larger one. Recorded graphs may point into the old one, so they go stale
    /// (unless <paramref name="inGraphs"/> is false: buffers only the host-launched sampling reads), and it may not
    /// happen while a graph is being recorded.
    /// </summary>
    internal SafeDeviceMemoryHandle Grow(SafeDeviceMemoryHandle? old, long bytes, string what, bool inGraphs = true)
    {
        if (_capturing)
        {
            throw new InvalidOperationException($"The {what} would move while a graph is being recorded.");
        }

        if (old is not null)
        {
            old.Dispose();
            _allocations.Remove(old);
        }

        if (inGraphs)
        {
            BufferVersion++;
        }

        return Track(_device.Allocate(bytes));
    }

    /// <summary>
    /// Queues a copy of step metadata to the device through the pinned staging half of the current step, so the host
    /// returns at once even while the stream is still busy with the previous step (async scheduling); from pageable
    /// memory the driver may wait for the stream first. The span may be reused right away.
    /// </summary>
    internal void UploadAsync<T>(ulong destination, ReadOnlySpan<T> values) where T : unmanaged
    {
        long bytes = (long)values.Length * sizeof(T);
        if (_metadataOffset + bytes <= MetadataStagingBytes)
        {
            byte* staged = (byte*)_metadataStaging[_metadataHalf].DangerousGetHandle() + _metadataOffset;
            values.CopyTo(new Span<T>(staged, values.Length));
            _metadataOffset += (bytes + 15) & ~15L;
            CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync_v2(destination, staged, (nuint)bytes, _device.Stream), "cuMemcpyHtoD");
            return;
        }

        fixed (T* v = values)
        {
            // Larger than the staging half (a block table of thousands of blocks per sequence): the driver stages it.
            CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync_v2(destination, v, (nuint)bytes, _device.Stream), "cuMemcpyHtoD");
        }
    }

    /// <summary>
    /// A new step stages its metadata in the other pinned half, once the copies out of that half (two steps ago)
    /// have run: an event recorded after them says so, and has long completed unless the host runs ahead.
    /// </summary>
    private void SwitchMetadataStaging()
    {
        CudaDriver.Check(CudaDriver.cuEventRecord(_metadataReleased[_metadataHalf].DangerousGetHandle(), _device.Stream), "cuEventRecord");
        _metadataHalf ^= 1;
        CudaDriver.Check(CudaDriver.cuEventSynchronize(_metadataReleased[_metadataHalf].DangerousGetHandle()), "cuEventSynchronize");
        _metadataOffset = 0;
    }

    private ForwardBatch Batch => _batch ?? throw new InvalidOperationException("BeginStep was not called.");

    private static int Code(DType dtype) => dtype switch
    {
        DType.F32 => 0,
        DType.F16 => 1,
        DType.BF16 => 2,
        _ => throw new NotSupportedException($"dtype {dtype}"),
    };

    private static uint Threads(long width) => (uint)Math.Clamp((width + 31) / 32 * 32, 32, 1024);

    private static uint Blocks(long count) => (uint)Math.Clamp((count + 255) / 256, 1, 65535);
}
