using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>
/// The model operators on one NVIDIA GPU: NVRTC-compiled kernels for the element-wise work and attention,
/// cuBLAS for the GEMMs (weights in their stored dtype, activations rounded to it, fp32 accumulation and
/// output), an fp32 paged KV cache. Logits come back to the host, where the engine's sampler runs.
/// </summary>
public sealed unsafe class CudaBackend : IModelBackend, IStepGraphs
{
    private const int StagingBytes = 64 << 20;   // pinned chunk for weight uploads: large enough to stream at PCIe speed

    // cuBLAS allocates its workspace lazily, which a graph being recorded cannot do: give it one up front
    // (32 MiB is what cuBLAS itself asks for on Hopper).
    private const int CublasWorkspaceBytes = 32 << 20;

    private readonly CudaDevice _device;
    private readonly bool _ownsDevice;
    private readonly CudaKernels _kernels;
    private readonly List<SafeDeviceMemoryHandle> _allocations = [];
    private readonly SafePinnedHostHandle _staging;
    private readonly DeviceInts _tokenIds, _positions, _slotMapping, _tokenSeq, _blockTables, _logitsRows;
    private SafeDeviceMemoryHandle? _gemmInput;
    private long _gemmInputBytes;
    private ulong[] _kCache = [], _vCache = [];
    private int _blockSize;
    private ForwardBatch? _batch;
    private readonly Dictionary<int, (SafeCudaGraphHandle Graph, int Version)> _graphs = [];
    private bool _capturing;
    private SafeDeviceMemoryHandle? _splitAcc, _splitMl;

    // The fp32 activation last rounded for a GEMM, so q/k/v (and gate/up), which share their input, convert it once.
    private (nint Source, long Count, DType DType) _converted;

    /// <param name="ownsDevice">Dispose the device with the backend (the loader's case; tests share one device).</param>
    public CudaBackend(CudaDevice device, bool ownsDevice = false)
    {
        _device = device;
        _ownsDevice = ownsDevice;
        _device.MakeCurrent();
        _kernels = new CudaKernels(device);
        _staging = device.AllocatePinned(StagingBytes);
        _tokenIds = new DeviceInts(this);
        _positions = new DeviceInts(this);
        _slotMapping = new DeviceInts(this);
        _tokenSeq = new DeviceInts(this);
        _blockTables = new DeviceInts(this);
        _logitsRows = new DeviceInts(this);
        ulong workspace = Track(device.Allocate(CublasWorkspaceBytes)).Pointer;
        Cublas.Check(Cublas.cublasSetWorkspace_v2(device.CublasHandle, workspace, CublasWorkspaceBytes), "cublasSetWorkspace");
    }

    /// <summary>
    /// Bumped whenever a buffer that recorded graphs point into moves (grows): those graphs are stale from then on.
    /// </summary>
    private int BufferVersion { get; set; }

    public string Name => $"cuda:{_device.Ordinal} ({_device.Name})";

    public CudaDevice Device => _device;

    public Tensor LoadWeight(WeightTensor weight)
    {
        _device.MakeCurrent();
        SafeDeviceMemoryHandle memory = Track(_device.Allocate(weight.ByteLength));
        byte* src = (byte*)weight.Data;
        nint staging = _staging.DangerousGetHandle();
        for (long offset = 0; offset < weight.ByteLength; offset += StagingBytes)
        {
            long chunk = Math.Min(StagingBytes, weight.ByteLength - offset);
            Buffer.MemoryCopy(src + offset, (void*)staging, StagingBytes, chunk);
            CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync_v2(memory.Pointer + (ulong)offset, (void*)staging, (nuint)chunk, _device.Stream), "cuMemcpyHtoD");
            _device.Synchronize();   // the staging buffer is reused by the next chunk
        }

        return new Tensor(weight.Name, (nint)memory.Pointer, weight.DType, weight.Shape);
    }

    public Tensor Allocate(string name, params int[] shape)
    {
        _device.MakeCurrent();
        var tensor = new Tensor(name, 0, DType.F32, shape);
        SafeDeviceMemoryHandle memory = Track(_device.Allocate(tensor.ByteLength));
        // Any activation buffer may feed a GEMM with 16-bit weights: size its rounded copy now, at load, so the
        // memory is counted before the KV cache takes the rest of the card.
        GemmInput(tensor.ElementCount * 2);
        return new Tensor(name, (nint)memory.Pointer, DType.F32, shape);
    }

    public long KvBlockBytes(int numLayers, int blockSize, int numKvHeads, int headDim) =>
        2L * numLayers * blockSize * numKvHeads * headDim * sizeof(float);

    public void AllocateKvCache(int numLayers, int numBlocks, int blockSize, int numKvHeads, int headDim)
    {
        // Checked here, at load, rather than in the first step's attention, where it would fail every request.
        if (headDim > MaxHeadDim)
        {
            throw new NotSupportedException($"head_dim {headDim} > {MaxHeadDim} is not supported by the CUDA attention kernel.");
        }

        _device.MakeCurrent();
        _blockSize = blockSize;
        long bytes = (long)numBlocks * blockSize * numKvHeads * headDim * sizeof(float);
        _kCache = new ulong[numLayers];
        _vCache = new ulong[numLayers];
        for (int layer = 0; layer < numLayers; layer++)
        {
            _kCache[layer] = Track(_device.Allocate(bytes)).Pointer;
            _vCache[layer] = Track(_device.Allocate(bytes)).Pointer;
        }
    }

    public void BeginStep(ForwardBatch batch)
    {
        _device.MakeCurrent();
        _batch = batch;
        _converted = default;
        int[] tokenSeq = new int[batch.NumTokens];
        for (int s = 0; s < batch.NumSequences; s++)
        {
            tokenSeq.AsSpan(batch.QueryStartLoc[s], batch.QueryStartLoc[s + 1] - batch.QueryStartLoc[s]).Fill(s);
        }

        _tokenIds.Upload(batch.TokenIds);
        _positions.Upload(batch.Positions);
        _slotMapping.Upload(batch.SlotMapping);
        _tokenSeq.Upload(tokenSeq);
        _blockTables.Upload(batch.BlockTables);
        _logitsRows.Upload(batch.LogitsRows);
    }

    public void Embedding(Tensor table, Tensor output)
    {
        _converted = default;
        ulong ids = _tokenIds.Pointer, tab = (ulong)table.Data, o = (ulong)output.Data;
        int dtype = Code(table.DType), hidden = (int)table.Columns;
        void** args = stackalloc void*[] { &ids, &tab, &dtype, &hidden, &o };
        _kernels.Launch("embedding", (uint)Batch.NumTokens, 1, Threads(hidden), args);
    }

    public void Linear(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y)
    {
        int n = weight.Rows, k = (int)weight.Columns;
        ulong input = (ulong)x.Data;
        int type = Cublas.CUDA_R_32F;
        if (weight.DType != DType.F32)
        {
            // cuBLAS multiplies like with like: round the fp32 activations to the weight's 16-bit type. The scratch is
            // sized for the whole input buffer, not this step's rows, so it reaches its final size on the first step:
            // a decode graph recorded later for a padded bucket larger than any eager step must not need it to grow.
            long count = (long)rows * k;
            input = GemmInput(x.ElementCount * 2);
            if (_converted != (x.Data, count, weight.DType))
            {
                ulong xs = (ulong)x.Data;
                int dtype = Code(weight.DType);
                void** cargs = stackalloc void*[] { &xs, &count, &dtype, &input };
                _kernels.Launch("convert_f32", Blocks(count), 1, 256, cargs);
                _converted = (x.Data, count, weight.DType);
            }

            type = weight.DType == DType.BF16 ? Cublas.CUDA_R_16BF : Cublas.CUDA_R_16F;
        }

        // Row-major y[rows, n] = x[rows, k]·W[n, k]ᵀ is column-major yᵀ = W·xᵀ: A = W read transposed, B = x.
        float alpha = 1f, beta = 0f;
        Cublas.Check(
            Cublas.cublasGemmEx(_device.CublasHandle, Cublas.CUBLAS_OP_T, Cublas.CUBLAS_OP_N, n, rows, k, &alpha,
                (ulong)weight.Data, type, k, input, type, k, &beta, (ulong)y.Data, Cublas.CUDA_R_32F, n,
                Cublas.CUBLAS_COMPUTE_32F, Cublas.CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx");
        if (y.Data == _converted.Source)
        {
            _converted = default;
        }

        if (bias is not null)
        {
            ulong yp = (ulong)y.Data, bp = (ulong)bias.Data;
            long r = rows;
            int cols = n, dtype = Code(bias.DType);
            void** bargs = stackalloc void*[] { &yp, &r, &cols, &bp, &dtype };
            _kernels.Launch("add_bias", Blocks(r * n), 1, 256, bargs);
        }
    }

    public void RmsNorm(Tensor x, int rows, Tensor weight, float eps, Tensor y)
    {
        _converted = default;
        int size = (int)weight.ElementCount;
        long normRows = rows * (x.Columns / size);
        ulong xp = (ulong)x.Data, wp = (ulong)weight.Data, yp = (ulong)y.Data;
        int dtype = Code(weight.DType);
        void** args = stackalloc void*[] { &xp, &wp, &dtype, &size, &eps, &yp };
        _kernels.Launch("rms_norm", (uint)normRows, 1, Threads(size), args);
    }

    public void AddRmsNorm(Tensor x, Tensor residual, int rows, Tensor weight, float eps)
    {
        _converted = default;
        int size = (int)weight.ElementCount;
        ulong xp = (ulong)x.Data, rp = (ulong)residual.Data, wp = (ulong)weight.Data;
        int dtype = Code(weight.DType);
        void** args = stackalloc void*[] { &xp, &rp, &wp, &dtype, &size, &eps };
        _kernels.Launch("add_rms_norm", (uint)rows, 1, Threads(size), args);
    }

    public void Rope(Tensor qOrK, int rows, int numHeads, int headDim, RopeSpec rope)
    {
        _converted = default;
        ulong xp = (ulong)qOrK.Data, pp = _positions.Pointer, fp = RopeFrequencies(rope);
        int heads = numHeads, hd = headDim, rotary = rope.RotaryDim;
        float scaling = rope.AttentionScaling;
        void** args = stackalloc void*[] { &xp, &pp, &fp, &heads, &hd, &rotary, &scaling };
        _kernels.Launch("rope", (uint)rows, (uint)numHeads, Threads(rotary / 2), args);
    }

    public void SiluMul(Tensor gate, Tensor up, int rows, Tensor output)
    {
        _converted = default;
        long n = rows * gate.Columns;
        ulong g = (ulong)gate.Data, u = (ulong)up.Data, o = (ulong)output.Data;
        void** args = stackalloc void*[] { &g, &u, &n, &o };
        _kernels.Launch("silu_mul", Blocks(n), 1, 256, args);
    }

    public void WriteKv(int layer, Tensor k, Tensor v, int rows)
    {
        ulong kp = (ulong)k.Data, vp = (ulong)v.Data, sp = _slotMapping.Pointer, kc = _kCache[layer], vc = _vCache[layer];
        int width = (int)k.Columns;
        void** args = stackalloc void*[] { &kp, &vp, &sp, &width, &kc, &vc };
        _kernels.Launch("write_kv", (uint)rows, 1, Threads(width), args);
    }

    public void Attention(int layer, Tensor q, Tensor output, AttentionSpec spec)
    {
        _converted = default;
        ForwardBatch batch = Batch;
        int rows = batch.NumTokens;
        EnsureSplitBuffers(spec);
        int groupChunks = (spec.NumHeads / spec.NumKvHeads + MaxGroup - 1) / MaxGroup;
        int splits = SplitsFor(rows, spec.NumKvHeads * groupChunks);
        ulong qp = (ulong)q.Data, kc = _kCache[layer], vc = _vCache[layer], pp = _positions.Pointer, ts = _tokenSeq.Pointer, bt = _blockTables.Pointer, o = (ulong)output.Data;
        ulong pa = _splitAcc!.Pointer, pm = _splitMl!.Pointer;
        int maxBlocks = batch.MaxBlocksPerSeq, blockSize = _blockSize, heads = spec.NumHeads, kvHeads = spec.NumKvHeads, hd = spec.HeadDim, window = spec.SlidingWindow;
        float scale = spec.Scale;
        void** args = stackalloc void*[] { &qp, &kc, &vc, &pp, &ts, &bt, &maxBlocks, &blockSize, &heads, &kvHeads, &hd, &scale, &window, &o, &pa, &pm };
        // 128 threads = the kernel's four warps (WARPS in attention.cu).
        _kernels.Launch("paged_attention", (uint)rows, (uint)(kvHeads * groupChunks), (uint)splits, 128, args);
        if (splits > 1)
        {
            void** margs = stackalloc void*[] { &pa, &pm, &heads, &hd, &splits, &o };
            _kernels.Launch("merge_splits", (uint)rows, (uint)heads, 1, Threads(hd), margs);
        }
    }

    // Matches MAX_GROUP, MAX_PER_LANE × 32 and the split cap of attention.cu / the partial buffers.
    private const int MaxGroup = 8;
    private const int MaxHeadDim = 256;
    private const int MaxSplits = 16;
    private const int MaxSplitRows = 256;

    /// <summary>
    /// Splits the context of small batches across more thread blocks (flash-decoding) so the card fills: about
    /// two blocks per multiprocessor. Depends only on the row count, so a recorded decode graph stays valid.
    /// </summary>
    private int SplitsFor(int rows, int blocksPerRow)
    {
        if (rows > MaxSplitRows)
        {
            return 1;
        }

        int wanted = (2 * _device.MultiprocessorCount + rows * blocksPerRow - 1) / (rows * blocksPerRow);
        return Math.Clamp(wanted, 1, MaxSplits);
    }

    /// <summary>Device memory the split attention's partial results take, for the loader's KV-cache budget.</summary>
    public static long SplitAttentionBytes(int numHeads, int headDim) => (long)MaxSplitRows * numHeads * MaxSplits * (headDim + 2) * sizeof(float);

    /// <summary>Partial results of split attention, sized once for the largest split batch (before any graph is recorded).</summary>
    private void EnsureSplitBuffers(AttentionSpec spec)
    {
        if (_splitAcc is not null)
        {
            return;
        }

        long partials = (long)MaxSplitRows * spec.NumHeads * MaxSplits;
        _splitAcc = Track(_device.Allocate(partials * spec.HeadDim * sizeof(float)));
        _splitMl = Track(_device.Allocate(partials * 2 * sizeof(float)));
    }

    public void GatherLogitsRows(Tensor x, int first, int count, Tensor output)
    {
        _converted = default;
        ulong xp = (ulong)x.Data, rp = _logitsRows.Pointer + (ulong)first * sizeof(int), o = (ulong)output.Data;
        int cols = (int)x.Columns;
        void** args = stackalloc void*[] { &xp, &rp, &cols, &o };
        _kernels.Launch("gather_rows", (uint)count, 1, Threads(cols), args);
    }

    public void CopyToHost(Tensor x, int rows, Span<float> destination)
    {
        long count = rows * x.Columns;
        fixed (float* d = destination)
        {
            CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync_v2(d, (ulong)x.Data, (nuint)(count * sizeof(float)), _device.Stream), "cuMemcpyDtoH");
            _device.Synchronize();
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
            CudaDriver.cuGraphDestroy(graph);
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

    public void Dispose()
    {
        foreach (var entry in _graphs.Values)
        {
            entry.Graph.Dispose();
        }

        _graphs.Clear();
        foreach (SafeDeviceMemoryHandle memory in _allocations)
        {
            memory.Dispose();
        }

        _allocations.Clear();
        _staging.Dispose();
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
    /// Replaces a growable buffer by a larger one. Recorded graphs point into the old one, so they go stale, and it
    /// may not happen while a graph is being recorded.
    /// </summary>
    internal SafeDeviceMemoryHandle Grow(SafeDeviceMemoryHandle? old, long bytes, string what)
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

        BufferVersion++;
        return Track(_device.Allocate(bytes));
    }

    internal void UploadAsync(ulong destination, ReadOnlySpan<int> values)
    {
        fixed (int* v = values)
        {
            // Pageable source: the driver stages it before returning, so the span may be reused right away.
            CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync_v2(destination, v, (nuint)(values.Length * sizeof(int)), _device.Stream), "cuMemcpyHtoD");
        }
    }


    private ForwardBatch Batch => _batch ?? throw new InvalidOperationException("BeginStep was not called.");

    private readonly Dictionary<float[], ulong> _ropeTables = new(ReferenceEqualityComparer.Instance);

    private ulong RopeFrequencies(RopeSpec rope)
    {
        if (!_ropeTables.TryGetValue(rope.InverseFrequencies, out ulong pointer))
        {
            SafeDeviceMemoryHandle memory = Track(_device.Allocate(rope.InverseFrequencies.Length * sizeof(float)));
            fixed (float* f = rope.InverseFrequencies)
            {
                CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync_v2(memory.Pointer, f, (nuint)(rope.InverseFrequencies.Length * sizeof(float)), _device.Stream), "cuMemcpyHtoD");
            }

            _device.Synchronize();
            pointer = memory.Pointer;
            _ropeTables[rope.InverseFrequencies] = pointer;
        }

        return pointer;
    }

    private ulong GemmInput(long bytes)
    {
        if (_gemmInput is null || _gemmInputBytes < bytes)
        {
            _gemmInput = Grow(_gemmInput, bytes, "GEMM scratch buffer");
            _gemmInputBytes = bytes;
        }

        return _gemmInput.Pointer;
    }

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
