using Celer.Models.Quantization;
using Celer.Models.Weights;
using Celer.TestSupport;
using Xunit;

namespace Celer.Models.Tests.Weights;

/// <summary>
/// Online FP8 quantization (<c>--quantization fp8|ptpc_fp8</c>) on real bf16 fixture checkpoints: each dense projection's
/// codes and scale against the definition computed here from the stored values (scale absmax / 448 per matrix or per
/// row, code = E4M3(value / scale)), everything else (embeddings, norms, routers) as stored.
/// </summary>
public sealed class OnlineFp8SourceTests
{
    [Theory]
    [InlineData(Fp8WeightScales.PerTensor)]
    [InlineData(Fp8WeightScales.PerChannel)]
    public void Projections_become_e4m3_codes_with_their_absmax_scales(Fp8WeightScales scales)
    {
        using var stored = SafetensorsWeightSource.Open(Path.Combine(RepoPaths.FixtureModels, "llama-gqa-bf16-v4config"));
#pragma warning disable CA2000 // the online source disposes the one it wraps
        using var online = new OnlineFp8Source(SafetensorsWeightSource.Open(Path.Combine(RepoPaths.FixtureModels, "llama-gqa-bf16-v4config")), scales);
#pragma warning restore CA2000
        foreach (string module in new[] { "model.layers.0.self_attn.q_proj", "model.layers.2.self_attn.v_proj", "model.layers.1.mlp.down_proj" })
        {
            WeightTensor w = stored.Get(module + ".weight");
            int rows = w.Shape[0], columns = w.Shape[1];
            var values = new float[rows * columns];
            HalfConversions.ToFloat(w.DType, w.Bytes, values);
            float[] expectedScales = scales == Fp8WeightScales.PerTensor
                ? [values.Max(MathF.Abs) / 448f]
                : [.. Enumerable.Range(0, rows).Select(r => values.AsSpan(r * columns, columns).ToArray().Max(MathF.Abs) / 448f)];

            WeightTensor codes = online.Get(module + ".weight", rows, columns);
            WeightTensor scale = online.Get(module + ".weight_scale");

            Assert.Equal(DType.F8E4M3, codes.DType);
            Assert.Equal(scales == Fp8WeightScales.PerTensor ? [1] : new[] { rows, 1 }, scale.Shape);
            Assert.Equal(expectedScales, scale.AsSpan<float>().ToArray());
            Assert.True(online.Contains(module + ".weight_scale"));
            ReadOnlySpan<byte> bytes = codes.Bytes;
            for (int i = 0; i < values.Length; i++)
            {
                Assert.Equal(Fp8.Encode(values[i] / expectedScales[scales == Fp8WeightScales.PerTensor ? 0 : i / columns], DType.F8E4M3), bytes[i]);
            }
        }

        Assert.Equal(DType.BF16, online.Get("model.embed_tokens.weight").DType);
        Assert.Equal(DType.BF16, online.Get("model.layers.0.input_layernorm.weight").DType);
        Assert.False(online.Contains("model.embed_tokens.weight_scale"));
    }

    /// <summary>
    /// A MoE layer's router stays as stored; its routed experts (Qwen-MoE's gate/up/down_proj, Mixtral's w1/w2/w3) and
    /// shared expert are quantized as the dense projections are.
    /// </summary>
    [Theory]
    [InlineData("qwen2-moe-shared-expert-bf16", "mlp.gate", "mlp.experts.0.gate_proj")]
    [InlineData("mixtral-moe-bf16", "block_sparse_moe.gate", "block_sparse_moe.experts.1.w2")]
    public void Routers_stay_unquantized_and_experts_are_quantized(string fixture, string router, string expert)
    {
#pragma warning disable CA2000 // the online source disposes the one it wraps
        using var online = new OnlineFp8Source(SafetensorsWeightSource.Open(Path.Combine(RepoPaths.FixtureModels, fixture)), Fp8WeightScales.PerTensor);
#pragma warning restore CA2000

        Assert.Equal(DType.BF16, online.Get($"model.layers.0.{router}.weight").DType);
        Assert.False(online.Contains($"model.layers.0.{router}.weight_scale"));
        Assert.Equal(DType.F8E4M3, online.Get($"model.layers.0.{expert}.weight").DType);
        Assert.True(online.Contains($"model.layers.0.{expert}.weight_scale"));
        if (fixture.StartsWith("qwen2", StringComparison.Ordinal))
        {
            Assert.Equal(DType.F8E4M3, online.Get("model.layers.0.mlp.shared_expert.up_proj.weight").DType);
            Assert.Equal(DType.BF16, online.Get("model.layers.0.mlp.shared_expert_gate.weight").DType);
        }
    }
}
