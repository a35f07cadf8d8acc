using Xunit;
using Celer.Models.Weights;

namespace Celer.Models.Tests.Weights;

public class DummyWeightSourceTests
{
    [Fact]
    public void Values_are_uniform_in_the_vllm_range_and_varied()
    {
        using var source = new DummyWeightSource(DType.F32, seed: 7);
        var t = source.Get("model.layers.0.mlp.down_proj.weight", 64, 96);
        Assert.Equal(DType.F32, t.DType);
        Assert.Equal(64 * 96 * 4, t.ByteLength);
        Assert.Equal(0, t.Data % 64);

        var values = t.AsSpan<float>().ToArray();
        Assert.All(values, v => Assert.InRange(v, -DummyWeightSource.Range, DummyWeightSource.Range));
        // Uniform on [-1e-3, 1e-3]: mean 0 (sd of the mean ≈ 7e-6 here), about a quarter in each quarter of the range.
        Assert.InRange(values.Average(), -3e-5, 3e-5);
        Assert.InRange(values.Count(v => v > 0.5e-3f) / (double)values.Length, 0.22, 0.28);
        Assert.True(values.Distinct().Count() > values.Length * 0.9);
    }

    /// <summary>
    /// gpt-oss's MXFP4 experts under <c>--load-format dummy</c>: bytes on the host even where the device would generate
    /// floats (a GPU keeps the codes as they are), every code value used, scales 2^-14 or 2^-13 so the decoded values stay
    /// within the dummy range.
    /// </summary>
    [Fact]
    public void Mxfp4_blocks_and_scales_are_random_bytes_within_the_dummy_range()
    {
        using var source = new DummyWeightSource(DType.BF16, seed: 5, materialize: false);
        WeightTensor blocks = source.Get("model.layers.0.mlp.experts.gate_up_proj_blocks", 4, 64, 3, 16);
        WeightTensor scales = source.Get("model.layers.0.mlp.experts.gate_up_proj_scales", 4, 64, 3);
        Assert.All(new[] { blocks, scales }, t => Assert.Equal(DType.U8, t.DType));
        Assert.All(new[] { blocks, scales }, t => Assert.Null(t.Synthetic));
        byte[] codes = blocks.Bytes.ToArray(), exponents = scales.Bytes.ToArray();
        Assert.Equal(4 * 64 * 3 * 16, codes.Length);
        Assert.Equal(256, codes.Distinct().Count());
        Assert.Equal(new byte[] { 113, 114 }, exponents.Distinct().Order().ToArray());
        Assert.True(Models.Quantization.Mxfp4.Decode(7, exponents.Max()) <= DummyWeightSource.Range);
    }

    /// <summary>
    /// Host values are the documented rule (what a GPU computes from <see cref="WeightTensor.Synthetic"/>) element for
    /// element, across the pieces the host fills in parallel (a million elements each).
    /// </summary>
    [Fact]
    public void Host_values_follow_the_synthetic_rule_across_parallel_pieces()
    {
        const string name = "model.layers.1.mlp.up_proj.weight";
        using var described = new DummyWeightSource(DType.F32, seed: 3, materialize: false);
        using var source = new DummyWeightSource(DType.F32, seed: 3);
        SyntheticValues rule = described.Get(name, 1100, 1000).Synthetic!;
        float[] values = source.Get(name, 1100, 1000).AsSpan<float>().ToArray();

        for (int i = 0; i < values.Length; i++)
        {
            ulong z = unchecked(rule.State + ((ulong)(i + 1) * 0x9E3779B97F4A7C15));
            z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9);
            z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EB);
            z ^= z >> 31;
            float expected = rule.Low + ((rule.High - rule.Low) * ((z >> 40) * (1f / (1 << 24))));
            Assert.Equal(expected, values[i]);
        }
    }

    [Theory]
    [InlineData("model.norm.weight")]
    [InlineData("model.layers.3.input_layernorm.weight")]
    [InlineData("model.layers.3.self_attn.q_norm.weight")]
    public void Norm_weights_are_ones(string name)
    {
        using var source = new DummyWeightSource();
        var t = source.Get(name, 16);
        Assert.Equal(DType.BF16, t.DType);
        var widened = new float[16];
        HalfConversions.Bf16ToFloat(t.AsSpan<ushort>(), widened);
        Assert.All(widened, v => Assert.Equal(1f, v));
    }

    [Fact]
    public void Values_depend_on_seed_and_name_but_not_on_request_order()
    {
        using var a = new DummyWeightSource(DType.BF16, seed: 1);
        using var b = new DummyWeightSource(DType.BF16, seed: 1);
        using var c = new DummyWeightSource(DType.BF16, seed: 2);
        var a1 = a.Get("x", 300).Bytes.ToArray();
        var a2 = a.Get("y", 300).Bytes.ToArray();
        var b2 = b.Get("y", 300).Bytes.ToArray(); // other order
        var b1 = b.Get("x", 300).Bytes.ToArray();

        Assert.Equal(a1, b1);
        Assert.Equal(a2, b2);
        Assert.NotEqual(a1, a2);
        Assert.NotEqual(a1, c.Get("x", 300).Bytes.ToArray());
    }

    [Fact]
    public void F16_values_are_in_range()
    {
        using var source = new DummyWeightSource(DType.F16, seed: 3);
        var t = source.Get("w", 1000);
        Assert.All(t.AsSpan<Half>().ToArray(), v => Assert.InRange((float)v, -1.001e-3f, 1.001e-3f));
    }

    [Fact]
    public void Same_name_returns_the_same_memory_and_checks_the_shape()
    {
        using var source = new DummyWeightSource();
        var first = source.Get("w", 4, 8);
        Assert.Equal(first.Data, source.Get("w", 4, 8).Data);
        var e = Assert.Throws<ModelLoadException>(() => source.Get("w", 8, 4));
        Assert.Equal("tensor 'w' has shape [4,8], expected [8,4]", e.Message);
    }

    [Fact]
    public void Shape_is_required()
    {
        using var source = new DummyWeightSource();
        Assert.True(source.Contains("anything"));
        var e = Assert.Throws<ModelLoadException>(() => source.Get("w"));
        Assert.Contains("'w'", e.Message);
    }

    [Fact]
    public void Get_after_dispose_throws()
    {
        var source = new DummyWeightSource();
        source.Get("w", 2);
        source.Dispose();
        Assert.Throws<ObjectDisposedException>(() => source.Get("w", 2));
    }
}
