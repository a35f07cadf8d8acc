using Celer.Models.Weights;

namespace Celer.Models.Quantization;

/// <summary>
/// The weights of an FP8 checkpoint as a backend computes with them: each E4M3 <c>*.weight</c> of a linear layer comes
/// back dequantized into fp32 (<see cref="WeightScales.Dequantize"/>), or, with <paramref name="keepFp8"/> for a W8A8
/// checkpoint (a backend with FP8 GEMMs), as stored with its <see cref="WeightTensor.Scales"/>; every other tensor as
/// stored. Weight-only checkpoints are always dequantized (their matmuls run in the model dtype). The scales are read by
/// the scheme's names: compressed-tensors' <c>weight_scale</c> (per tensor, per output row, or per block), fp8's <c>weight_scale_inv</c> (per block) or
/// <c>weight_scale</c> (per tensor). A layer's input quantization comes from <see cref="InputQuantization"/>. The
/// dequantized buffers live as long as this source (the CPU backend computes from them in place).
/// </summary>
public sealed unsafe class Fp8WeightSource(IWeightSource inner, QuantizationConfig config, bool keepFp8 = false) : IWeightSource
{
    private readonly Dictionary<string, WeightTensor> _dequantized = new(StringComparer.Ordinal);
    private readonly NativeBuffers _buffers = new();

    public bool Contains(string name) => inner.Contains(name);

    public WeightTensor Get(string name, params int[] expectedShape)
    {
        if (_dequantized.TryGetValue(name, out WeightTensor dequantized))
        {
            WeightShapes.Check(name, dequantized.Shape, expectedShape);
            return dequantized;
        }

        WeightTensor stored = inner.Get(name, expectedShape);
        if (!name.EndsWith(".weight", StringComparison.Ordinal) || !IsFp8(stored))
        {
            return stored;
        }

        string module = name[..^".weight".Length];
        Check(module, stored);
        if (keepFp8 && config.Activations is not null)
        {
            return stored with { Scales = Scales(module, stored.Shape[0], stored.Shape[1]) };
        }

        dequantized = Dequantize(module, stored);
        _dequantized[name] = dequantized;
        return dequantized;
    }

    /// <summary>
    /// Null when the layer's weights are not FP8 or the checkpoint is weight-only. A static scale is the largest of the
    /// modules' <c>input_scale</c>s (q/k/v or gate/up share their input), as vLLM fuses them.
    /// </summary>
    public ActivationQuantization? InputQuantization(params string[] modules)
    {
        // Online quantization decides by name (the weights may not exist yet: dummy weights are made at their first read).
        bool fp8 = config.IsOnline ? modules.All(OnlineFp8Source.IsProjection) : modules.All(m => IsFp8(inner.Get(m + ".weight")));
        if (config.Activations is not { } scaling || !fp8)
        {
            return null;
        }

        return scaling switch
        {
            ActivationScaling.StaticPerTensor => new ActivationQuantization(scaling, StaticScale: modules.Max(m => Scalar(m + ".input_scale"))),
            ActivationScaling.DynamicPerTokenGroup => new ActivationQuantization(scaling, GroupSize: config.ActivationGroupSize),
            _ => new ActivationQuantization(scaling),
        };
    }

    private static bool IsFp8(WeightTensor t) => t.DType is DType.F8E4M3 or DType.F8E5M2;

    /// <summary>What both ways of serving an FP8 weight need: a linear layer's [out, in] E4M3 matrix the config quantizes.</summary>
    private void Check(string module, WeightTensor q)
    {
        if (config.IsIgnored(module))
        {
            throw new ModelLoadException($"'{q.Name}' is stored as {q.DType} but quantization_config's ignore list names '{module}'");
        }

        if (q.DType != DType.F8E4M3)
        {
            throw new ModelLoadException($"'{q.Name}' is {q.DType}; FP8 checkpoints store weights as F8_E4M3");
        }

        if (q.Shape.Length != 2)
        {
            throw new ModelLoadException($"'{q.Name}' has shape {WeightTensor.FormatShape(q.Shape)}: Celer reads FP8 linear weights [out, in] (MoE experts too, stored one matrix per expert; not fused into one 3-D tensor)");
        }
    }

    private WeightTensor Dequantize(string module, WeightTensor q)
    {
        int rows = q.Shape[0], columns = q.Shape[1];
        WeightScales scales = Scales(module, rows, columns);
        float* values = (float*)_buffers.Allocate((long)rows * columns * sizeof(float));
        scales.Dequantize((byte*)q.Data, values);
        return new WeightTensor(q.Name, QuantizedWeights.DequantizedDType, [rows, columns], (nint)values, (long)rows * columns * sizeof(float));
    }

    /// <summary>
    /// The module's weight scales as a grid of blocks over the weight, by the checkpoint's scheme: per tensor one block of
    /// the whole matrix, per channel one block per row, per block the checkpoint's blocks (the last ones partial).
    /// </summary>
    private WeightScales Scales(string module, int rows, int columns)
    {
        switch (config.WeightScales)
        {
            case Fp8WeightScales.PerTensor:
                return new WeightScales(Fp8WeightScales.PerTensor, [Scalar(module + ".weight_scale")], rows, columns, rows, columns);

            case Fp8WeightScales.PerChannel:
            {
                WeightTensor t = inner.Get(module + ".weight_scale");
                if (t.ElementCount != rows || (t.Shape.Length == 2 && t.Shape[1] != 1) || t.Shape.Length > 2)
                {
                    throw new ModelLoadException($"'{t.Name}' has shape {WeightTensor.FormatShape(t.Shape)}; per-channel scales of a [{rows}, {columns}] weight are [{rows}, 1] or [{rows}]");
                }

                return new WeightScales(Fp8WeightScales.PerChannel, ScaleTensor.Read(t), 1, columns, rows, columns);
            }

            default:
            {
                // compressed-tensors names block scales weight_scale, the fp8 method weight_scale_inv (a multiplier all the same).
                string name = module + (config.Method == "fp8" ? ".weight_scale_inv" : ".weight_scale");
                int blockRows = config.BlockRows, blockColumns = config.BlockColumns;
                int gridRows = (rows + blockRows - 1) / blockRows, gridColumns = (columns + blockColumns - 1) / blockColumns;
                return new WeightScales(Fp8WeightScales.PerBlock, ScaleTensor.Read(inner.Get(name, gridRows, gridColumns)), blockRows, blockColumns, rows, columns);
            }
        }
    }

    /// <summary>A per-tensor scale, stored with shape [] or [1].</summary>
    private float Scalar(string name)
    {
        WeightTensor t = inner.Get(name);
        return t.ElementCount == 1 && t.Shape.Length <= 1
            ? ScaleTensor.Read(t)[0]
            : throw new ModelLoadException($"'{name}' has shape {WeightTensor.FormatShape(t.Shape)}; a per-tensor scale is [] or [1]");
    }

    public void Dispose()
    {
        _buffers.Dispose();
        _dequantized.Clear();
        inner.Dispose();
    }
}
