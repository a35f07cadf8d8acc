using Celer.Models.Weights;

namespace Celer.Models.Quantization;

/// <summary>
/// An unquantized checkpoint seen as an FP8 one (vLLM's online quantization, <c>--quantization fp8</c> or
/// <c>ptpc_fp8</c> on a 16- or 32-bit checkpoint): each weight of a linear projection (q/k/v/o, gate/up/down and their
/// fused forms, shared and routed experts included, Mixtral's experts' w1/w2/w3 too) comes back as E4M3 codes of
/// weight / scale, rounded to nearest even, with its <c>weight_scale</c> beside it, the scale absmax / 448 of the whole
/// matrix (<c>fp8</c>) or of each output row (<c>ptpc_fp8</c>); every other tensor (embeddings, norms, lm_head, routers,
/// experts stored fused as one 3-D tensor) as stored. Wrapped in an
/// <see cref="Fp8WeightSource"/> with the matching <see cref="QuantizationConfig.Online"/> config, the model runs these
/// weights exactly as it would a compressed-tensors checkpoint stored that way. The codes live as long as this source.
/// </summary>
public sealed unsafe class OnlineFp8Source(IWeightSource inner, Fp8WeightScales scales) : IWeightSource
{
    private const string ScaleSuffix = ".weight_scale";
    private static readonly HashSet<string> Projections = new(StringComparer.Ordinal)
    {
        "q_proj", "k_proj", "v_proj", "qkv_proj", "o_proj", "gate_proj", "up_proj", "gate_up_proj", "down_proj",
    };

    private static readonly HashSet<string> ExpertProjections = new(StringComparer.Ordinal) { "w1", "w2", "w3" };

    private readonly Dictionary<string, (WeightTensor Codes, WeightTensor Scale)> _quantized = new(StringComparer.Ordinal);
    private readonly NativeBuffers _buffers = new();

    public bool Contains(string name) =>
        name.EndsWith(ScaleSuffix, StringComparison.Ordinal) && IsProjection(name[..^ScaleSuffix.Length])
            ? inner.Contains(name[..^ScaleSuffix.Length] + ".weight")
            : inner.Contains(name);

    public WeightTensor Get(string name, params int[] expectedShape)
    {
        if (name.EndsWith(".weight", StringComparison.Ordinal) && IsProjection(name[..^".weight".Length]))
        {
            WeightTensor codes = Quantized(name[..^".weight".Length], expectedShape).Codes;
            WeightShapes.Check(name, codes.Shape, expectedShape);
            return codes;
        }

        if (name.EndsWith(ScaleSuffix, StringComparison.Ordinal) && IsProjection(name[..^ScaleSuffix.Length]))
        {
            WeightTensor scale = Quantized(name[..^ScaleSuffix.Length], []).Scale;
            WeightShapes.Check(name, scale.Shape, expectedShape);
            return scale;
        }

        return inner.Get(name, expectedShape);
    }

    /// <summary>
    /// Whether this source quantizes <paramref name="module"/>: a linear projection, by name (Mixtral's expert
    /// projections are w1/w2/w3). Known from the name alone, before the weight is read.
    /// </summary>
    public static bool IsProjection(string module)
    {
        string name = module[(module.LastIndexOf('.') + 1)..];
        return Projections.Contains(name) || (ExpertProjections.Contains(name) && module.Contains(".experts.", StringComparison.Ordinal));
    }

    /// <param name="shape">The weight's shape, for a source that needs it to make the weight (dummy weights).</param>
    private (WeightTensor Codes, WeightTensor Scale) Quantized(string module, int[] shape)
    {
        if (_quantized.TryGetValue(module, out var done))
        {
            return done;
        }

        WeightTensor w = inner.Get(module + ".weight", shape);
        if (w.DType is not (DType.F32 or DType.BF16 or DType.F16) || w.Shape.Length != 2)
        {
            throw new ModelLoadException($"'{w.Name}' is {w.DType}{WeightTensor.FormatShape(w.Shape)}: online FP8 quantization takes 16- or 32-bit float matrices");
        }

        int rows = w.Shape[0], columns = w.Shape[1];
        nint codes = _buffers.Allocate((long)rows * columns);
        float[] rowMax = new float[rows];
        int rowBytes = columns * w.DType.ByteSize();
        void ReadRow(int r, float[] values) =>
            HalfConversions.ToFloat(w.DType, new ReadOnlySpan<byte>((byte*)w.Data + ((long)r * rowBytes), rowBytes), values);

        // Two passes over each row (its absmax, then its codes) in parallel over rows; a row is at most a few 10 KB.
        Parallel.For(0, rows, () => new float[columns], (r, _, values) =>
        {
            ReadRow(r, values);
            rowMax[r] = AbsMax(values);
            return values;
        }, _ => { });

        float[] scale = scales == Fp8WeightScales.PerChannel ? [.. rowMax.Select(ScaleFor)] : [ScaleFor(rowMax.Max())];
        Parallel.For(0, rows, () => new float[columns], (r, _, values) =>
        {
            ReadRow(r, values);
            fixed (float* v = values)
            {
                Fp8.Encode(v, scale[scale.Length == 1 ? 0 : r], DType.F8E4M3, (byte*)codes + ((long)r * columns), columns);
            }

            return values;
        }, _ => { });

        float* stored = (float*)_buffers.Allocate((long)scale.Length * sizeof(float));
        scale.CopyTo(new Span<float>(stored, scale.Length));
        var result = (
            new WeightTensor(w.Name, DType.F8E4M3, [rows, columns], codes, (long)rows * columns),
            new WeightTensor(module + ScaleSuffix, DType.F32, scales == Fp8WeightScales.PerChannel ? [rows, 1] : [1], (nint)stored, (long)scale.Length * sizeof(float)));
        _quantized[module] = result;
        return result;
    }

    private static float AbsMax(ReadOnlySpan<float> values)
    {
        float max = 0;
        foreach (float v in values)
        {
            max = MathF.Max(max, MathF.Abs(v));
        }

        return max;
    }

    /// <summary>absmax / 448, so the largest value maps to E4M3's largest; an all-zero matrix or row keeps scale 1.</summary>
    private static float ScaleFor(float absMax) => absMax > 0 ? absMax / ActivationQuantization.Fp8Max : 1f;

    public void Dispose()
    {
        _buffers.Dispose();
        _quantized.Clear();
        inner.Dispose();
    }
}
