using System.Runtime.InteropServices;
using Celer.Backends.Cpu.Kernels;
using Celer.Models.Backend;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Backends.Cpu;

/// <summary>
/// The model operators on the CPU: matrix weights stay in the memory-mapped checkpoint in their stored dtype (the
/// matmul widens bf16/f16 on the fly); activations are fp32 in native, cache-line-aligned memory, and so is the paged
/// KV cache unless <c>--kv-cache-dtype</c> asks for bf16 or FP8 (value / scale per layer), decoded block by block in attention. Vector weights (biases, norms) are widened to fp32 once at load, since they are tiny and read often.
/// Stacked weights (q/k/v, gate/up), and matrices stored in another dtype than the one the model is served in
/// (<c>--dtype</c>), are copied once into native memory in that dtype.
/// </summary>
/// <param name="weightDType">The dtype matrix weights are kept in (the model dtype).</param>
/// <param name="kvCacheDType">BF16, or FP8 E4M3 or E5M2, for a KV cache of that type; null for fp32.</param>
public sealed unsafe partial class CpuBackend(DType weightDType, DType? kvCacheDType = null) : IModelBackend
{
    private const nuint Alignment = 64;

    private readonly List<nint> _owned = [];
    private readonly float[][] _hostSlots = [[], []];   // QueueCopyToHost's two slots
    private readonly DType _kvType = kvCacheDType is null or DType.F32 ? DType.F32
        : kvCacheDType is DType.BF16 or DType.F8E4M3 or DType.F8E5M2 ? kvCacheDType.Value
        : throw new NotSupportedException($"The CPU backend keeps its KV cache in fp32, bf16 or FP8, not {kvCacheDType}.");
    private byte*[] _kCache = [];
    private byte*[] _vCache = [];
    private float[] _kScales = [], _vScales = [];
    private int _blockSize;
    private long _kvBlockLayerBytes;   // one block of one layer's keys (or values)
    private long _kvLayerBytes;        // all blocks of one layer's keys (or values)
    private ForwardBatch? _batch;
    private readonly MixtureOfExperts _moe = new();

    // Contiguous keys and values of a step, split out of the fused qkv rows for the norm/RoPE/cache-write kernels.
    private float* _kScratch, _vScratch;
    private long _scratchElements;

    // An encoder's token-type or position row, widened to fp32 before it is added to the embeddings.
    private float* _embeddingRow;
    private long _embeddingRowElements;

    // An FP8 W8A8 layer's input as quantized for its matmul (the activation buffer itself stays as it was).
    private float* _quantizedInput;
    private long _quantizedInputElements;

    // Packed 4- and 8-bit layers: the input gathered into an act-order weight's column order, and the weight dequantized for
    // steps above the GEMV's rows (sized at load for the largest packed weight).
    private float* _gatheredInput, _intScratch;
    private long _gatheredInputElements, _intScratchElements;

    public string Name => $"cpu ({Environment.ProcessorCount} threads)";

    /// <summary>The CPU computes in fp32 whatever the checkpoint's dtype (the matmul widens 16-bit weights as it reads them).</summary>
    public DType ActivationDType => DType.F32;

    public DType KvCacheDType => _kvType;

    public Tensor LoadWeight(WeightTensor weight)
    {
        if (weight.Packed is not null)
        {
            return LoadInt(weight.Name, [weight]);
        }

        weight.RequireUnquantized();
        if (weight.Shape.Length != 1 && weight.DType != weightDType)
        {
            return LoadStacked(weight.Name, weight);
        }

        if (weight.Shape.Length != 1 || weight.DType == DType.F32)
        {
            return new Tensor(weight.Name, weight.Data, weight.DType, weight.Shape);
        }

        float* widened = AllocateFloats(weight.ElementCount);
        Conversions.ToF32((void*)weight.Data, weight.DType, widened, checked((int)weight.ElementCount));
        return new Tensor(weight.Name, (nint)widened, DType.F32, weight.Shape);
    }

    public Tensor LoadStacked(string name, params WeightTensor[] parts)
    {
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

        int[] shape = [parts.Sum(p => p.Shape[0]), .. trailing];
        if (shape.Length == 1)
        {
            // Biases: widened to fp32 like every vector weight.
            float* widened = AllocateFloats(shape[0]);
            long offset = 0;
            foreach (WeightTensor part in parts)
            {
                Conversions.ToF32((void*)part.Data, part.DType, widened + offset, checked((int)part.ElementCount));
                offset += part.ElementCount;
            }

            return new Tensor(name, (nint)widened, DType.F32, shape);
        }

        long bytes = parts.Sum(p => p.ElementCount) * weightDType.ByteSize();
        byte* stacked = AllocateOwned<byte>(bytes);
        long at = 0;
        foreach (WeightTensor part in parts)
        {
            if (part.DType == weightDType)
            {
                Buffer.MemoryCopy((void*)part.Data, stacked + at, bytes - at, part.ByteLength);
            }
            else
            {
                Conversions.Convert((void*)part.Data, part.DType, stacked + at, weightDType, part.ElementCount);
            }

            at += part.ElementCount * weightDType.ByteSize();
        }

        return new Tensor(name, (nint)stacked, weightDType, shape);
    }

    public Tensor Allocate(string name, DType dtype, params int[] shape)
    {
        if (dtype != DType.F32)
        {
            throw new NotSupportedException($"The CPU backend keeps activations in fp32, not {dtype}.");
        }

        var tensor = new Tensor(name, 0, DType.F32, shape);
        return new Tensor(name, (nint)AllocateFloats(tensor.ElementCount), DType.F32, shape);
    }

    public long KvBlockBytes(int numLayers, int blockSize, int numKvHeads, int headDim) =>
        2L * numLayers * blockSize * numKvHeads * headDim * _kvType.ByteSize();

    public void AllocateKvCache(int numLayers, int numBlocks, int blockSize, AttentionSpec spec)
    {
        _blockSize = blockSize;
        _kvBlockLayerBytes = (long)blockSize * spec.NumKvHeads * spec.HeadDim * _kvType.ByteSize();
        _kvLayerBytes = numBlocks * _kvBlockLayerBytes;
        _kCache = new byte*[numLayers];
        _vCache = new byte*[numLayers];
        AllocateKvLayers();

        if (_kScales.Length != numLayers)
        {
            _kScales = Enumerable.Repeat(1f, numLayers).ToArray();
            _vScales = Enumerable.Repeat(1f, numLayers).ToArray();
        }
    }

    public void SetKvCacheScales(float[] kScales, float[] vScales)
    {
        IModelBackend.CheckKvCacheScales(kScales, vScales, _kCache.Length);
        _kScales = [.. kScales];
        _vScales = [.. vScales];
    }

    /// <summary>The KV cache format of one layer (its scales apply to FP8 caches only).</summary>
    private KvCacheFormat KvFormat(int layer) => new(_kvType, _kScales[layer], _vScales[layer]);

    public void BeginStep(ForwardBatch batch)
    {
        // The runner fills in every token on the host for a backend that samples on the host.
        if (batch.PendingTokens.Length > 0)
        {
            throw new ArgumentException("The CPU backend takes no pending tokens: it does not sample on a device.", nameof(batch));
        }

        _batch = batch;
    }

    public void Embedding(Tensor table, Tensor output)
    {
        fixed (int* ids = Batch.TokenIds)
        {
            Kernels.Embedding.Gather(ids, Batch.NumTokens, (void*)table.Data, table.DType, table.Rows, (int)table.Columns, F(output));
        }
    }

    public void EncoderEmbedding(Tensor words, Tensor? tokenTypes, Tensor positions, int positionOffset, Tensor output)
    {
        ForwardBatch b = Batch;
        int rows = b.NumTokens, hidden = (int)output.Columns;
        int[] types = b.TokenTypeIds ?? new int[rows];
        var shifted = new int[rows];
        for (int r = 0; r < rows; r++)
        {
            shifted[r] = b.Positions[r] + positionOffset;
        }

        Reserve(ref _embeddingRow, ref _embeddingRowElements, hidden);
        fixed (int* ids = b.TokenIds)
        fixed (int* typeIds = types)
        fixed (int* positionIds = shifted)
        {
            Kernels.Embedding.Gather(ids, rows, (void*)words.Data, words.DType, words.Rows, hidden, F(output));
            if (tokenTypes is not null)
            {
                AddRows(tokenTypes, typeIds, rows, hidden, output, _embeddingRow);
            }

            AddRows(positions, positionIds, rows, hidden, output, _embeddingRow);
        }
    }

    /// <summary>output[r] += table[ids[r]], through one widened row of scratch (the gather checks the ids).</summary>
    private static void AddRows(Tensor table, int* ids, int rows, int hidden, Tensor output, float* row)
    {
        for (int r = 0; r < rows; r++)
        {
            Kernels.Embedding.Gather(ids + r, 1, (void*)table.Data, table.DType, table.Rows, hidden, row);
            var o = new Span<float>(F(output) + ((long)r * hidden), hidden);
            System.Numerics.Tensors.TensorPrimitives.Add(o, new ReadOnlySpan<float>(row, hidden), o);
        }
    }

    public void LayerNorm(Tensor x, int rows, Tensor weight, Tensor bias, float eps, Tensor y) =>
        Kernels.LayerNorm.Run(F(x), F(y), F(weight), F(bias), eps, checked((int)(rows * (x.Columns / weight.ElementCount))), (int)weight.ElementCount);

    public void AddLayerNorm(Tensor x, Tensor residual, int rows, Tensor weight, Tensor bias, float eps) =>
        Kernels.LayerNorm.AddAndNorm(F(x), F(residual), F(weight), F(bias), eps, rows, (int)weight.ElementCount);

    public void Gelu(Tensor x, int rows, GeluForm form) =>
        Activation.Gelu(F(x), rows * x.Columns, form);

    public void Linear(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y, ActivationQuantization? activations = null)
    {
        float* input = F(x);
        if (activations is not null)
        {
            Reserve(ref _quantizedInput, ref _quantizedInputElements, (long)rows * x.Columns);
            Fp8Activations.Quantize(input, rows, (int)x.Columns, activations, _quantizedInput);
            input = _quantizedInput;
        }

        if (weight.Int4 is { } q)
        {
            float* ordered = InWeightOrder(input, rows, q.Columns, q.ColumnOrder);
            MatMul.RunInt4(ordered, rows, q.Columns, (uint*)weight.Data, F(q.ScalesAndZeros), q.Groups, q.GroupSize, weight.Rows, F(y), bias is null ? null : F(bias), _intScratch);
            return;
        }

        if (weight.Int8 is { } q8)
        {
            int k = (int)weight.Columns;
            float* ordered = InWeightOrder(input, rows, k, q8.ColumnOrder);
            MatMul.RunInt8(ordered, rows, k, (byte*)weight.Data, F(q8.ScalesAndZeros), q8.Groups, q8.GroupSize, weight.Rows, F(y), bias is null ? null : F(bias), _intScratch);
            return;
        }

        MatMul.Run(input, rows, (int)weight.Columns, (void*)weight.Data, weight.DType, weight.Rows, F(y), bias is null ? null : F(bias));
    }

    /// <summary>
    /// Integer weight-only <paramref name="parts"/> stacked along their rows: 4-bit codes kept packed and 8-bit codes kept
    /// a byte each when the parts share one layout (<see cref="IntWeights.Packable"/>; act-order columns sorted by group,
    /// the input gathered alike at each product), else (groups not in runs of 8 columns, parts that differ) dequantized
    /// into fp32 as any quantized checkpoint is on the CPU.
    /// </summary>
    /// <param name="experts">
    /// Stacked MoE experts (<see cref="LoadExperts"/>): kept only in their stored column order (MixtureOfExperts gathers
    /// no input per expert), and the MoE kernel reserves its own scratch, one expert's rows.
    /// </param>
    private Tensor LoadInt(string name, WeightTensor[] parts, bool experts = false)
    {
        IntWeights[] weights = IntWeights.Stacked(name, parts);
        int rows = weights.Sum(w => w.Rows), columns = weights[0].Columns;
        bool Kept(int bits, out int[]? order) => IntWeights.Packable(weights, bits, out order) && !(experts && order is not null);
        int bits = Kept(8, out int[]? order) ? 8 : Kept(4, out order) ? 4 : 0;
        if (bits == 0)
        {
            float* values = AllocateFloats((long)rows * columns);
            long offset = 0;
            foreach (IntWeights w in weights)
            {
                w.Dequantize(values + offset);
                offset += (long)w.Rows * w.Columns;
            }

            return new Tensor(name, (nint)values, DType.F32, [rows, columns]);
        }

        if (!experts)
        {
            // Steps above the GEMV's rows dequantize into one fp32 matrix sized for the largest packed weight.
            Reserve(ref _intScratch, ref _intScratchElements, (long)rows * columns);
        }

        int groups = weights[0].Groups, groupSize = weights[0].GroupSize == 0 ? columns : weights[0].GroupSize;
        var sz = new Tensor(name + ".scales_and_zeros", Own(IntWeights.ScalesAndZeros(weights).AsSpan()), DType.F32, [rows, groups * 2]);
        Tensor? columnOrder = order is null ? null : new Tensor(name + ".column_order", Own(order.AsSpan()), DType.I32, [columns]);
        return bits == 8
            ? new Tensor(name, Own(IntWeights.StackBytes(weights, order).AsSpan()), DType.U8, [rows, columns]) { Int8 = new PackedInt8(groupSize, groups, sz, columnOrder) }
            : new Tensor(name, Own(IntWeights.PackCodes(weights, order, static (q, i) => (q * 8) + i).AsSpan()), DType.I32, [rows, columns / 8])
            {
                Int4 = new PackedInt4(columns, groupSize, groups, sz, columnOrder, Int4Layout.Linear),
            };
    }

    /// <summary>x's rows in an act-order weight's column order (gathered into a buffer of the backend's), or x itself.</summary>
    private float* InWeightOrder(float* x, int rows, int k, Tensor? order)
    {
        if (order is null)
        {
            return x;
        }

        Reserve(ref _gatheredInput, ref _gatheredInputElements, (long)rows * k);
        int* columns = (int*)order.Data;
        for (int r = 0; r < rows; r++)
        {
            float* source = x + ((long)r * k), target = _gatheredInput + ((long)r * k);
            for (int j = 0; j < k; j++)
            {
                target[j] = source[columns[j]];
            }
        }

        return _gatheredInput;
    }

    public void RmsNorm(Tensor x, int rows, Tensor weight, float eps, Tensor y)
    {
        int size = (int)weight.ElementCount;
        int normRows = checked((int)(rows * (x.Columns / size)));
        Kernels.RmsNorm.Run(F(x), F(y), (void*)weight.Data, weight.DType, eps, normRows, size);
    }

    // quantizeFor (here and in the gated activations): the CPU's FP8 Linear quantizes its input in a pass of its own
    // (Fp8Activations), small beside its matmul, and there is no launch to save, so nothing is written ahead.
    public void AddRmsNorm(Tensor x, Tensor residual, int rows, Tensor weight, float eps, ActivationQuantization? quantizeFor = null) =>
        Kernels.RmsNorm.AddAndNorm(F(x), F(residual), (void*)weight.Data, weight.DType, eps, rows, (int)weight.ElementCount);

    public void RmsNormSlice(Tensor x, int rows, int offset, Tensor weight, float eps) =>
        Kernels.RmsNorm.NormalizeSlice(F(x), rows, (int)x.Columns, offset, (void*)weight.Data, weight.DType, eps, (int)weight.ElementCount);

    public void GemmaRmsNorm(Tensor x, int rows, Tensor weight, float eps, Tensor y)
    {
        int size = (int)weight.ElementCount;
        int normRows = checked((int)(rows * (x.Columns / size)));
        Kernels.RmsNorm.RunGemma(F(x), F(y), (void*)weight.Data, weight.DType, eps, normRows, size);
    }

    public void GemmaAddRmsNorm(Tensor x, Tensor residual, int rows, Tensor postNorm, Tensor nextNorm, float eps) =>
        Kernels.RmsNorm.GemmaAddAndNorm(
            F(x), F(residual), (void*)postNorm.Data, postNorm.DType, (void*)nextNorm.Data, nextNorm.DType, eps, rows, (int)nextNorm.ElementCount);

    public void Add(Tensor x, int rows, Tensor residual)
    {
        int n = checked((int)(rows * x.Columns));
        System.Numerics.Tensors.TensorPrimitives.Add(new ReadOnlySpan<float>(F(residual), n), new ReadOnlySpan<float>(F(x), n), new Span<float>(F(residual), n));
    }

    public void PrepareAttention(int layer, Tensor qkv, int rows, AttentionSpec spec, RopeSpec rope, Tensor? qNorm, Tensor? kNorm, float eps, Tensor q)
    {
        int qDim = spec.NumHeads * spec.HeadDim, kvDim = spec.NumKvHeads * spec.HeadDim, width = qDim + 2 * kvDim;
        EnsureScratch((long)rows * kvDim);
        float* src = F(qkv), qOut = F(q);
        for (int r = 0; r < rows; r++)
        {
            float* row = src + (long)r * width;
            new ReadOnlySpan<float>(row, qDim).CopyTo(new Span<float>(qOut + (long)r * qDim, qDim));
            new ReadOnlySpan<float>(row + qDim, kvDim).CopyTo(new Span<float>(_kScratch + (long)r * kvDim, kvDim));
            new ReadOnlySpan<float>(row + qDim + kvDim, kvDim).CopyTo(new Span<float>(_vScratch + (long)r * kvDim, kvDim));
        }

        if (qNorm is not null && kNorm is not null && spec.GemmaQkNorm)
        {
            Kernels.RmsNorm.RunGemma(qOut, qOut, (void*)qNorm.Data, qNorm.DType, eps, rows * spec.NumHeads, spec.HeadDim);
            Kernels.RmsNorm.RunGemma(_kScratch, _kScratch, (void*)kNorm.Data, kNorm.DType, eps, rows * spec.NumKvHeads, spec.HeadDim);
        }
        else if (qNorm is not null && kNorm is not null)
        {
            Kernels.RmsNorm.Run(qOut, qOut, (void*)qNorm.Data, qNorm.DType, eps, rows * spec.NumHeads, spec.HeadDim);
            Kernels.RmsNorm.Run(_kScratch, _kScratch, (void*)kNorm.Data, kNorm.DType, eps, rows * spec.NumKvHeads, spec.HeadDim);
        }

        fixed (int* positions = RopePositions(rope, rows))
        fixed (float* invFreq = rope.InverseFrequencies)
        fixed (int* slots = Batch.SlotMapping)
        {
            Kernels.Rope.Apply(qOut, rows, spec.NumHeads, spec.HeadDim, rope.RotaryDim, positions, rope.Sections, invFreq, rope.AttentionScaling);
            Kernels.Rope.Apply(_kScratch, rows, spec.NumKvHeads, spec.HeadDim, rope.RotaryDim, positions, rope.Sections, invFreq, rope.AttentionScaling);
            // The cache row is [numKvHeads, headDim] contiguous, so one "head" of the full width writes the same bytes.
            KvCache.Write(_kScratch, _vScratch, rows, 1, kvDim, slots, _kCache[layer], _vCache[layer], KvFormat(layer));
        }
    }

    /// <summary>The step's positions as <paramref name="rope"/> reads them: one per row, or its axes per row (M-RoPE).</summary>
    private int[] RopePositions(RopeSpec rope, int rows)
    {
        if (rope.Sections is null)
        {
            return Batch.Positions;
        }

        int[] axisPositions = Batch.RopePositions
            ?? throw new InvalidOperationException($"A {rope.Axes}-axis RoPE needs the step's per-axis positions (ForwardBatch.RopePositions).");
        return axisPositions.Length >= rows * rope.Axes ? axisPositions
            : throw new InvalidOperationException($"The step has {axisPositions.Length} RoPE positions for {rows} rows of {rope.Axes} axes.");
    }

    public void SiluMul(Tensor gateUp, int rows, Tensor output, ActivationQuantization? quantizeFor = null) =>
        Activation.SiluMulFused(F(gateUp), F(output), rows, (int)output.Columns);

    public void GeluTanhMul(Tensor gateUp, int rows, Tensor output, ActivationQuantization? quantizeFor = null) =>
        Activation.GeluTanhMulFused(F(gateUp), F(output), rows, (int)output.Columns);

    public void MoeExperts(Tensor x, int rows, Tensor routerLogits, int topK, bool normalize, Tensor gateUp, Tensor down, Tensor output, ExpertOptions? experts = null)
    {
        int count = (int)routerLogits.Columns, hidden = (int)x.Columns, intermediate = gateUp.Rows / (2 * count);
        if (gateUp.Int4 is not null || gateUp.Int8 is not null || down.Int4 is not null || down.Int8 is not null)
        {
            // An expert's product of more than the GEMV's rows dequantizes its rows here (LoadExperts reserves nothing).
            Reserve(ref _intScratch, ref _intScratchElements, 2L * intermediate * hidden);
        }

        _moe.Run(F(x), rows, hidden, F(routerLogits), count, topK, normalize, Stacked(gateUp), Stacked(down), intermediate, F(output),
            experts is null ? null : new MixtureOfExperts.Biased(F(experts.GateUpBias), F(experts.DownBias), experts.SwigluLimit));
    }

    /// <summary>A stacked experts' weight as the MoE kernel reads it: values, or packed 4- or 8-bit codes (LoadExperts).</summary>
    private MixtureOfExperts.StackedExperts Stacked(Tensor w) => w switch
    {
        { Int4: { } q } => new(w.Data, w.DType, 4, q.ScalesAndZeros.Data, q.Groups, q.GroupSize, (nint)_intScratch),
        { Int8: { } q } => new(w.Data, w.DType, 8, q.ScalesAndZeros.Data, q.Groups, q.GroupSize, (nint)_intScratch),
        _ => new(w.Data, w.DType),
    };

    /// <summary>
    /// A MoE layer's experts: 4- and 8-bit integer experts keep their codes as <see cref="LoadInt"/> packs them (in the
    /// column order they are stored in: experts with act-order permutations are dequantized, each would need the input
    /// gathered alike), read expert by expert by <see cref="MixtureOfExperts"/>; other experts as <see cref="LoadStacked"/>.
    /// </summary>
    public Tensor LoadExperts(string name, params WeightTensor[] parts) =>
        parts.Any(p => p.Packed is not null) ? LoadInt(name, parts, experts: true) : LoadStacked(name, parts);

    public void AddSigmoidGated(Tensor x, Tensor gate, int rows, Tensor output) =>
        MixtureOfExperts.AddSigmoidGated(F(x), F(gate), rows, (int)x.Columns, F(output));

    public void SoftCap(Tensor x, int rows, float cap)
    {
        // transformers: logits / cap, tanh, * cap (a division, not a multiplication by 1/cap, which rounds differently).
        var values = new Span<float>(F(x), checked((int)(rows * x.Columns)));
        System.Numerics.Tensors.TensorPrimitives.Divide(values, cap, values);
        System.Numerics.Tensors.TensorPrimitives.Tanh(values, values);
        System.Numerics.Tensors.TensorPrimitives.Multiply(values, cap, values);
    }

    public void Scale(Tensor x, int rows, float factor)
    {
        var values = new Span<float>(F(x), checked((int)(rows * x.Columns)));
        System.Numerics.Tensors.TensorPrimitives.Multiply(values, factor, values);
    }

    public void Attention(int layer, Tensor q, Tensor output, AttentionSpec spec, Tensor? sinks = null)
    {
        ForwardBatch b = Batch;
        fixed (int* queryStartLoc = b.QueryStartLoc)
        fixed (int* seqLens = b.SeqLens)
        fixed (int* blockTables = b.BlockTables)
        {
            PagedAttention.Run(
                F(q), b.NumTokens, spec.NumHeads, spec.NumKvHeads, spec.HeadDim,
                _kCache[layer], _vCache[layer], KvFormat(layer), _blockSize,
                blockTables, b.MaxBlocksPerSeq,
                queryStartLoc, seqLens, b.NumSequences,
                spec.Scale, spec.SlidingWindow, F(output), spec.LogitSoftCap, sinks is null ? null : F(sinks), spec.Causal);
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

    public void CopyColumns(Tensor x, int rows, Tensor y, int offset)
    {
        int cols = (int)x.Columns, yCols = (int)y.Columns;
        for (int r = 0; r < rows; r++)
        {
            new ReadOnlySpan<float>(F(x) + (long)r * cols, cols).CopyTo(new Span<float>(F(y) + (long)r * yCols + offset, cols));
        }
    }

    public void CopyRows(Tensor x, int sourceRow, Tensor y, int destinationRow, int rows)
    {
        IModelBackend.CheckCopyRows(x, sourceRow, y, destinationRow, rows);
        long cols = x.Columns;
        new ReadOnlySpan<float>(F(x) + sourceRow * cols, checked((int)(rows * cols))).CopyTo(new Span<float>(F(y) + destinationRow * cols, checked((int)(rows * cols))));
    }

    public void CopyFromHost(ReadOnlySpan<float> source, Tensor x)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(source.Length, x.ElementCount);
        source.CopyTo(new Span<float>(F(x), source.Length));
    }

    public void CopyToHost(Tensor x, int rows, Span<float> destination) =>
        new ReadOnlySpan<float>(F(x), checked((int)(rows * x.Columns))).CopyTo(destination);

    // The CPU has computed the rows by the time they are queued: the copy is made at once.
    public void QueueCopyToHost(Tensor x, int rows, int slot, int atRow, int stepRows)
    {
        int columns = checked((int)x.Columns);
        if (atRow == 0 && _hostSlots[slot].Length < (long)stepRows * columns)
        {
            _hostSlots[slot] = new float[checked(stepRows * columns)];
        }

        CopyToHost(x, rows, _hostSlots[slot].AsSpan(atRow * columns, rows * columns));
    }

    public ReadOnlySpan<float> ReadHostSlot(int slot, int count) => _hostSlots[slot].AsSpan(0, count);

    public bool QueuesWork => false;

    public void Dispose()
    {
        foreach (nint p in _owned)
        {
            NativeMemory.AlignedFree((void*)p);
        }

        _owned.Clear();
        _kCache = [];
        _vCache = [];
        _moe.Dispose();
    }

    /// <summary>Every layer's keys and values, <see cref="_kvLayerBytes"/> each, with the null block zeroed.</summary>
    private void AllocateKvLayers()
    {
        for (int layer = 0; layer < _kCache.Length; layer++)
        {
            _kCache[layer] = (byte*)AllocateFloats((_kvLayerBytes + sizeof(float) - 1) / sizeof(float));
            _vCache[layer] = (byte*)AllocateFloats((_kvLayerBytes + sizeof(float) - 1) / sizeof(float));
            // Block 0 is the null block that padding rows (warm-up, graph padding) attend to: zeros, not whatever the
            // allocator left there (NaN bit patterns would flow into their logits and a MoE router).
            NativeMemory.Clear(_kCache[layer], (nuint)_kvBlockLayerBytes);
            NativeMemory.Clear(_vCache[layer], (nuint)_kvBlockLayerBytes);
        }
    }

    private ForwardBatch Batch => _batch ?? throw new InvalidOperationException("BeginStep was not called.");

    private void EnsureScratch(long elements)
    {
        if (elements > _scratchElements)
        {
            _kScratch = Reallocate(_kScratch, elements);
            _vScratch = Reallocate(_vScratch, elements);
            _scratchElements = elements;
        }
    }

    private static float* F(Tensor t) => (float*)t.Data;

    /// <summary>A native copy of <paramref name="values"/> the backend frees on dispose.</summary>
    private nint Own<T>(ReadOnlySpan<T> values) where T : unmanaged
    {
        T* p = AllocateOwned<T>(values.Length);
        values.CopyTo(new Span<T>(p, values.Length));
        return (nint)p;
    }

    /// <summary>Grows a scratch buffer of <paramref name="capacity"/> floats to hold <paramref name="elements"/> (its contents are not kept).</summary>
    private void Reserve(ref float* buffer, ref long capacity, long elements)
    {
        if (elements > capacity)
        {
            buffer = Reallocate(buffer, elements);
            capacity = elements;
        }
    }

    /// <summary>A scratch buffer of <paramref name="count"/> floats in place of <paramref name="old"/> (freed; null: none yet).</summary>
    private float* Reallocate(float* old, long count)
    {
        if (_owned.Remove((nint)old))
        {
            NativeMemory.AlignedFree(old);
        }

        return AllocateFloats(count);
    }

    private float* AllocateFloats(long count) => AllocateOwned<float>(count);

    /// <summary>An aligned native buffer of <paramref name="count"/> elements the backend frees on dispose.</summary>
    private T* AllocateOwned<T>(long count) where T : unmanaged
    {
        void* p = NativeMemory.AlignedAlloc((nuint)(Math.Max(count, 1) * sizeof(T)), Alignment);
        _owned.Add((nint)p);
        return (T*)p;
    }
}
