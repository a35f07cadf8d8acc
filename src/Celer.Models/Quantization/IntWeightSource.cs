using Celer.Models.Weights;

namespace Celer.Models.Quantization;

/// <summary>
/// The weights of an integer weight-only checkpoint (GPTQ, AWQ, compressed-tensors W4A16 / W8A16) as a backend computes
/// with them: each quantized module's <c>*.weight</c>, which the checkpoint stores as packed codes, zero points and
/// scales (<see cref="IntWeightReader"/>), comes back dequantized into fp32; every other tensor as stored. Which modules
/// are quantized is read from the files (a module with its format's packed tensor), so GPTQ's quantized <c>lm_head</c>
/// and per-block module lists need no rules of their own. The dequantized buffers live as long as this source. With
/// <paramref name="keepPacked"/> (a backend with integer kernels) a quantized weight comes back unpacked instead
/// (<see cref="WeightTensor.Packed"/>, no host data), for the backend to repack into its own layout; MoE experts too,
/// which <see cref="Backend.IModelBackend.LoadExperts"/> keeps packed or dequantizes as its MoE kernels need.
/// </summary>
public sealed unsafe class IntWeightSource(IWeightSource inner, QuantizationConfig config, bool keepPacked = false) : IWeightSource
{
    private readonly IntWeightScheme _scheme = config.IntWeights ?? throw new ArgumentException("not an integer weight-only config", nameof(config));
    private readonly Dictionary<string, WeightTensor> _dequantized = new(StringComparer.Ordinal);
    private readonly NativeBuffers _buffers = new();

    public bool Contains(string name) => inner.Contains(name) || QuantizedModule(name) is not null;

    public WeightTensor Get(string name, params int[] expectedShape)
    {
        if (!_dequantized.TryGetValue(name, out WeightTensor dequantized))
        {
            if (QuantizedModule(name) is not { } module)
            {
                return inner.Get(name, expectedShape);
            }

            if (config.IsIgnored(module))
            {
                throw new ModelLoadException($"'{IntWeightReader.MarkerTensor(module, _scheme.Layout)}' is quantized but quantization_config's ignore list names '{module}'");
            }

            IntWeights weights = IntWeightReader.Read(inner, module, _scheme);
            if (keepPacked)
            {
                // Not cached: the backend repacks it once, and the unpacked codes can go with the rest of the host copy.
                var packed = new WeightTensor(name, DType.I32, [weights.Rows, weights.Columns], 0, (long)weights.Rows * weights.Columns * weights.Bits / 8) { Packed = weights };
                WeightShapes.Check(name, packed.Shape, expectedShape);
                return packed;
            }

            float* values = (float*)_buffers.Allocate((long)weights.Rows * weights.Columns * sizeof(float));
            weights.Dequantize(values);
            dequantized = new WeightTensor(name, QuantizedWeights.DequantizedDType, [weights.Rows, weights.Columns], (nint)values, (long)weights.Rows * weights.Columns * sizeof(float));
            _dequantized[name] = dequantized;
        }

        WeightShapes.Check(name, dequantized.Shape, expectedShape);
        return dequantized;
    }

    /// <summary>The module whose weight <paramref name="name"/> is, when the checkpoint stores that weight quantized; else null.</summary>
    private string? QuantizedModule(string name)
    {
        if (!name.EndsWith(".weight", StringComparison.Ordinal))
        {
            return null;
        }

        string module = name[..^".weight".Length];
        string marker = IntWeightReader.MarkerTensor(module, _scheme.Layout);
        return _scheme.Layout == IntWeightLayout.CompressedTensorsInt8
            ? inner.Contains(marker) && inner.Get(marker).DType == DType.I8 ? module : null
            : inner.Contains(marker) ? module : null;
    }

    public void Dispose()
    {
        _buffers.Dispose();
        _dequantized.Clear();
        inner.Dispose();
    }
}
