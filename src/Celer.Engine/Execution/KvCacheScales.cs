using Celer.Models.Weights;

namespace Celer.Engine.Execution;

/// <summary>
/// The per-layer scales of an FP8 KV cache as FP8 checkpoints store them, under the names vLLM reads: the current
/// <c>self_attn.k_scale</c> / <c>v_scale</c> (llm-compressor, ModelOpt), the older <c>self_attn.k_proj.output_scale</c>
/// / <c>v_proj.output_scale</c> (compressed-tensors), or one <c>self_attn.kv_scale</c> for both (AutoFP8). A layer
/// without one gets 1.0, vLLM's default. As in vLLM, only the E4M3 format uses them.
/// </summary>
internal static class KvCacheScales
{
    public static (float[] K, float[] V) Read(IWeightSource weights, int numLayers)
    {
        var k = new float[numLayers];
        var v = new float[numLayers];
        for (int layer = 0; layer < numLayers; layer++)
        {
            string p = $"model.layers.{layer}.self_attn.";
            float? both = Scalar(weights, p + "kv_scale");
            k[layer] = Scalar(weights, p + "k_scale") ?? Scalar(weights, p + "k_proj.output_scale") ?? both ?? 1f;
            v[layer] = Scalar(weights, p + "v_scale") ?? Scalar(weights, p + "v_proj.output_scale") ?? both ?? 1f;
        }

        return (k, v);
    }

    private static float? Scalar(IWeightSource weights, string name)
    {
        if (!weights.Contains(name))
        {
            return null;
        }

        WeightTensor tensor = weights.Get(name);
        if (tensor.ElementCount != 1)
        {
            throw new ModelLoadException($"tensor '{name}' has shape {WeightTensor.FormatShape(tensor.Shape)}; a KV cache scale is one value (per-tensor scales only)");
        }

        float value = tensor.DType switch
        {
            DType.F32 => tensor.AsSpan<float>()[0],
            DType.BF16 => HalfConversions.Bf16ToFloat(tensor.AsSpan<ushort>()[0]),
            DType.F16 => HalfConversions.HalfToFloat(tensor.AsSpan<ushort>()[0]),
            _ => throw new ModelLoadException($"tensor '{name}' is {tensor.DType}; a KV cache scale is fp32, bf16 or fp16"),
        };
        return value > 0f && float.IsFinite(value)
            ? value
            : throw new ModelLoadException($"tensor '{name}' holds {value}; a KV cache scale must be positive and finite");
    }
}
