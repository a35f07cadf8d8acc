using System.Runtime.InteropServices;
using Celer.Backends.Cpu.Kernels;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cpu;

/// <summary>
/// The model operators on the CPU: matrix weights stay in the memory-mapped checkpoint in their stored dtype (the
/// matmul widens bf16/f16 on the fly); activations and the paged KV cache are fp32 in native, cache-line-aligned
/// memory. Vector weights (biases, norms) are widened to fp32 once at load, since they are tiny and read often.
/// </summary>
public sealed unsafe class CpuBackend : IModelBackend
{
    private const nuint Alignment = 64;

    private readonly List<nint> _owned = [];
    private float*[] _kCache = [];
    private float*[] _vCache = [];
    private int _blockSize;
    private ForwardBatch? _batch;

    public string Name => $"cpu ({Environment.ProcessorCount} threads)";

    public Tensor LoadWeight(WeightTensor weight)
    {
        if (weight.Shape.Length != 1 || weight.DType == DType.F32)
        {
            return new Tensor(weight.Name, weight.Data, weight.DType, weight.Shape);
        }

        float* widened = AllocateFloats(weight.ElementCount);
        Conversions.ToF32((void*)weight.Data, weight.DType, widened, checked((int)weight.ElementCount));
        return new Tensor(weight.Name, (nint)widened, DType.F32, weight.Shape);
    }

    public Tensor Allocate(string name, params int[] shape)
    {
        var tensor = new Tensor(name, 0, DType.F32, shape);
        return new Tensor(name, (nint)AllocateFloats(tensor.ElementCount), DType.F32, shape);
    }

    public long KvBlockBytes(int numLayers, int blockSize, int numKvHeads, int headDim) =>
        2L * numLayers * blockSize * numKvHeads * headDim * sizeof(float);

    public void AllocateKvCache(int numLayers, int numBlocks, int blockSize, int numKvHeads, int headDim)
    {
        _blockSize = blockSize;
        long perLayer = (long)numBlocks * blockSize * numKvHeads * headDim;
        _kCache = new float*[numLayers];
        _vCache = new float*[numLayers];
        for (int layer = 0; layer < numLayers; layer++)
        {
            _kCache[layer] = AllocateFloats(perLayer);
            _vCache[layer] = AllocateFloats(perLayer);
        }
    }

    public void BeginStep(ForwardBatch batch) => _batch = batch;

    public void Embedding(Tensor table, Tensor output)
    {
        fixed (int* ids = Batch.TokenIds)
        {
            Kernels.Embedding.Gather(ids, Batch.NumTokens, (void*)table.Data, table.DType, table.Rows, (int)table.Columns, F(output));
        }
    }

    public void Linear(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y) =>
        MatMul.Run(F(x), rows, (int)weight.Columns, (void*)weight.Data, weight.DType, weight.Rows, F(y), bias is null ? null : F(bias));

    public void RmsNorm(Tensor x, int rows, Tensor weight, float eps, Tensor y)
    {
        int size = (int)weight.ElementCount;
        int normRows = checked((int)(rows * (x.Columns / size)));
        Kernels.RmsNorm.Run(F(x), F(y), (void*)weight.Data, weight.DType, eps, normRows, size);
    }

    public void AddRmsNorm(Tensor x, Tensor residual, int rows, Tensor weight, float eps) =>
        Kernels.RmsNorm.AddAndNorm(F(x), F(residual), (void*)weight.Data, weight.DType, eps, rows, (int)weight.ElementCount);

    public void Rope(Tensor qOrK, int rows, int numHeads, int headDim, RopeSpec rope)
    {
        fixed (int* positions = Batch.Positions)
        fixed (float* invFreq = rope.InverseFrequencies)
        {
            Kernels.Rope.Apply(F(qOrK), rows, numHeads, headDim, rope.RotaryDim, positions, invFreq, rope.AttentionScaling);
        }
    }

    public void SiluMul(Tensor gate, Tensor up, int rows, Tensor output) =>
        Activation.SiluMul(F(gate), F(up), F(output), rows, (int)gate.Columns);

    public void WriteKv(int layer, Tensor k, Tensor v, int rows)
    {
        int kvHeadsTimesDim = (int)k.Columns;
        fixed (int* slots = Batch.SlotMapping)
        {
            // The cache row is [numKvHeads, headDim] contiguous, so one "head" of the full width writes the same bytes.
            KvCache.Write(F(k), F(v), rows, 1, kvHeadsTimesDim, slots, _kCache[layer], _vCache[layer]);
        }
    }

    public void Attention(int layer, Tensor q, Tensor output, AttentionSpec spec)
    {
        ForwardBatch b = Batch;
        fixed (int* queryStartLoc = b.QueryStartLoc)
        fixed (int* seqLens = b.SeqLens)
        fixed (int* blockTables = b.BlockTables)
        {
            PagedAttention.Run(
                F(q), b.NumTokens, spec.NumHeads, spec.NumKvHeads, spec.HeadDim,
                _kCache[layer], _vCache[layer], _blockSize,
                blockTables, b.MaxBlocksPerSeq,
                queryStartLoc, seqLens, b.NumSequences,
                spec.Scale, spec.SlidingWindow, F(output));
        }
    }

    public void GatherLogitsRows(Tensor x, int first, int count, Tensor output)
    {
        int cols = (int)x.Columns;
        int[] rows = Batch.LogitsRows;
        for (int i = 0; i < count; i++)
        {
            new ReadOnlySpan<float>(F(x) + (long)rows[first + i] * cols, cols).CopyTo(new Span<float>(F(output) + (long)i * cols, cols));
        }
    }

    public void CopyToHost(Tensor x, int rows, Span<float> destination) =>
        new ReadOnlySpan<float>(F(x), checked((int)(rows * x.Columns))).CopyTo(destination);

    public void Dispose()
    {
        foreach (nint p in _owned)
        {
            NativeMemory.AlignedFree((void*)p);
        }

        _owned.Clear();
        _kCache = [];
        _vCache = [];
    }

    private ForwardBatch Batch => _batch ?? throw new InvalidOperationException("BeginStep was not called.");

    private static float* F(Tensor t) => (float*)t.Data;

    private float* AllocateFloats(long count)
    {
        void* p = NativeMemory.AlignedAlloc((nuint)(Math.Max(count, 1) * sizeof(float)), Alignment);
        _owned.Add((nint)p);
        return (float*)p;
    }
}
