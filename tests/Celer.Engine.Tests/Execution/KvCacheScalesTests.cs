using Celer.Engine.Execution;
using Celer.Models.Weights;
using Celer.TestSupport;

namespace Celer.Engine.Tests.Execution;

/// <summary>FP8 KV-cache scales read from a real safetensors file under each name checkpoints use, and the flag's refusals.</summary>
public sealed class KvCacheScalesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("celer-kv-scales-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] F32(float v) => BitConverter.GetBytes(v);

    private static byte[] Bf16(float v) => BitConverter.GetBytes(HalfConversions.FloatToBf16(v));

    private static byte[] F16(float v) => BitConverter.GetBytes(HalfConversions.FloatToHalf(v));

    private SafetensorsWeightSource Write(params (string Name, DType DType, int[] Shape, byte[] Data)[] tensors)
    {
        SafetensorsWriter.Write(Path.Combine(_dir, "model.safetensors"), tensors);
        return SafetensorsWeightSource.Open(_dir);
    }

    [Fact]
    public void Each_naming_scheme_gives_its_layer_scales_and_missing_ones_are_one()
    {
        using var weights = Write(
            ("model.layers.0.self_attn.k_scale", DType.F32, [], F32(0.25f)),
            ("model.layers.0.self_attn.v_scale", DType.F32, [], F32(0.5f)),
            ("model.layers.1.self_attn.k_proj.output_scale", DType.BF16, [1], Bf16(0.125f)),
            ("model.layers.1.self_attn.v_proj.output_scale", DType.F16, [1], F16(2f)),
            ("model.layers.2.self_attn.kv_scale", DType.F32, [1], F32(0.75f)));

        (float[] k, float[] v) = KvCacheScales.Read(weights, 4);

        Assert.Equal([0.25f, 0.125f, 0.75f, 1f], k);
        Assert.Equal([0.5f, 2f, 0.75f, 1f], v);
    }

    [Theory]
    [InlineData(new[] { 0.5f, 0.5f })]   // per-channel: not a per-tensor scale
    [InlineData(new[] { -1f })]
    [InlineData(new[] { 0f })]
    [InlineData(new[] { float.PositiveInfinity })]
    public void A_scale_that_is_not_one_positive_finite_value_is_refused(float[] values)
    {
        using var weights = Write(("model.layers.0.self_attn.k_scale", DType.F32, [values.Length], values.SelectMany(BitConverter.GetBytes).ToArray()));
        var error = Assert.Throws<ModelLoadException>(() => KvCacheScales.Read(weights, 1));
        Assert.Contains("model.layers.0.self_attn.k_scale", error.Message);
    }

    [Fact]
    public void An_unknown_kv_cache_dtype_is_refused()
    {
        var error = Assert.Throws<ArgumentException>(() => new EngineArgs { Model = RepoPaths.DefaultModel, KvCacheDtype = "int4" }.Validate());
        Assert.Contains("--kv-cache-dtype", error.Message);
    }
}
