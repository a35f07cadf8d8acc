using System.Text.Json;
using Celer.Models.Config;
using Celer.Models.Quantization;
using Celer.Models.Weights;
using Xunit;

namespace Celer.Models.Tests.Weights;

/// <summary>
/// FP8 checkpoints: <c>quantization_config</c> as llm-compressor (compressed-tensors) and DeepSeek / Qwen3-FP8 (fp8) write
/// it, and <see cref="Fp8WeightSource"/> on real safetensors files in each scale layout, against values computed here
/// from the format's definition (code × scale per element).
/// </summary>
public sealed class Fp8CheckpointTests
{
    private const string ChannelDynamic = """
        {"quant_method": "compressed-tensors", "format": "float-quantized", "quantization_status": "compressed",
         "config_groups": {"group_0": {"targets": ["Linear"],
           "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": true, "dynamic": false},
           "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "symmetric": true, "dynamic": true},
           "output_activations": null}},
         "ignore": ["lm_head", "re:.*mlp\\.gate$"], "kv_cache_scheme": null}
        """;

    [Fact]
    public void Compressed_tensors_and_fp8_schemes_are_read_field_by_field()
    {
        QuantizationConfig channel = Parse(ChannelDynamic);
        Assert.Equal(("compressed-tensors", Fp8WeightScales.PerChannel, ActivationScaling.DynamicPerToken), (channel.Method, channel.WeightScales, channel.Activations!.Value));
        Assert.True(channel.IsIgnored("lm_head"));
        Assert.True(channel.IsIgnored("model.layers.3.mlp.gate"));
        Assert.False(channel.IsIgnored("model.layers.3.mlp.gate_proj"));

        QuantizationConfig tensorStatic = Parse(ChannelDynamic.Replace("\"strategy\": \"channel\"", "\"strategy\": \"tensor\"", StringComparison.Ordinal)
            .Replace("\"strategy\": \"token\", \"symmetric\": true, \"dynamic\": true", "\"strategy\": \"tensor\", \"symmetric\": true, \"dynamic\": false", StringComparison.Ordinal));
        Assert.Equal((Fp8WeightScales.PerTensor, ActivationScaling.StaticPerTensor), (tensorStatic.WeightScales, tensorStatic.Activations!.Value));

        QuantizationConfig weightOnly = Parse("""
            {"quant_method": "compressed-tensors", "format": "float-quantized",
             "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "block", "block_structure": [128, 64]}}}}
            """);
        Assert.Equal((Fp8WeightScales.PerBlock, 128, 64, (ActivationScaling?)null), (weightOnly.WeightScales, weightOnly.BlockRows, weightOnly.BlockColumns, weightOnly.Activations));

        QuantizationConfig block = Parse("""{"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}""");
        Assert.Equal((Fp8WeightScales.PerBlock, 128, 128, ActivationScaling.DynamicPerTokenGroup, 128),
            (block.WeightScales, block.BlockRows, block.BlockColumns, block.Activations!.Value, block.ActivationGroupSize));

        QuantizationConfig perTensor = Parse("""{"quant_method": "fp8", "activation_scheme": "static", "ignored_layers": ["lm_head"]}""");
        Assert.Equal((Fp8WeightScales.PerTensor, ActivationScaling.StaticPerTensor, true), (perTensor.WeightScales, perTensor.Activations!.Value, perTensor.IsIgnored("lm_head")));
    }

    [Theory]
    [InlineData("\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"channel\"", "\"num_bits\": 4, \"type\": \"int\", \"strategy\": \"channel\"", "4-bit int")]
    [InlineData("\"strategy\": \"channel\"", "\"strategy\": \"group\"", "weights strategy 'group'")]
    [InlineData("\"strategy\": \"token\", \"symmetric\": true, \"dynamic\": true", "\"strategy\": \"token\", \"symmetric\": false, \"dynamic\": true", "asymmetric")]
    [InlineData("\"strategy\": \"token\", \"symmetric\": true, \"dynamic\": true", "\"strategy\": \"tensor\", \"symmetric\": true, \"dynamic\": true", "strategy 'tensor' with dynamic true")]
    [InlineData("\"targets\": [\"Linear\"]", "\"targets\": [\"re:.*q_proj\"]", "targets [re:.*q_proj]")]
    [InlineData("\"output_activations\": null", "\"output_activations\": {\"num_bits\": 8}", "output_activations")]
    public void An_unsupported_compressed_tensors_field_is_named(string original, string replacement, string expected)
    {
        var e = Assert.Throws<ModelConfigException>(() => Parse(ChannelDynamic.Replace(original, replacement, StringComparison.Ordinal)));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// <c>--quantization</c> as vLLM checks it: absent or naming the checkpoint's quant_method (any case) it serves the
    /// checkpoint; another method is refused naming both; on an unquantized checkpoint fp8 and ptpc_fp8 quantize at load.
    /// </summary>
    [Fact]
    public void The_quantization_flag_must_name_the_checkpoints_method()
    {
        QuantizationConfig channel = Parse(ChannelDynamic);

        Assert.Null(QuantizationConfig.RequestRefusal(null, channel));
        Assert.Null(QuantizationConfig.RequestRefusal(null, null));
        Assert.Null(QuantizationConfig.RequestRefusal("compressed-tensors", channel));
        Assert.Null(QuantizationConfig.RequestRefusal("Compressed-Tensors", channel));
        Assert.Contains("--quantization fp8 does not match", QuantizationConfig.RequestRefusal("fp8", channel), StringComparison.Ordinal);
        Assert.Contains("quant_method 'compressed-tensors'", QuantizationConfig.RequestRefusal("awq", channel), StringComparison.Ordinal);
        Assert.Null(QuantizationConfig.RequestRefusal("fp8", null));
        Assert.Null(QuantizationConfig.RequestRefusal("ptpc_fp8", null));
        Assert.Contains("--quantization gptq", QuantizationConfig.RequestRefusal("gptq", null), StringComparison.Ordinal);
        Assert.Equal((Fp8WeightScales.PerTensor, ActivationScaling.DynamicPerToken, true),
            (QuantizationConfig.Online("fp8")!.WeightScales, QuantizationConfig.Online("fp8")!.Activations!.Value, QuantizationConfig.Online("fp8")!.IsOnline));
        Assert.Equal(Fp8WeightScales.PerChannel, QuantizationConfig.Online("ptpc_fp8")!.WeightScales);
        Assert.Null(QuantizationConfig.Online("compressed-tensors"));
    }

    [Fact]
    public void Scales_per_tensor_channel_and_block_dequantize_each_element()
    {
        using var dir = new TempDirectory();
        var random = new Random(5);
        const int Rows = 5, Columns = 6;
        byte[] codes = [.. Enumerable.Range(0, Rows * Columns).Select(_ => RandomCode(random))];
        float[] channel = [0.5f, 0.25f, 2f, 0.125f, 3f];
        float[] blocks = [0.5f, 4f, 0.75f, 0.0625f, 1.5f, 8f];   // 3 × 2 blocks of 2 × 4 (the last row and column blocks partial)
        SafetensorsWriter.Write(dir.File("model.safetensors"),
        [
            ("t.weight", DType.F8E4M3, [Rows, Columns], codes), ("t.weight_scale", DType.F32, [], F32(0.375f)),
            ("c.weight", DType.F8E4M3, [Rows, Columns], codes), ("c.weight_scale", DType.BF16, [Rows, 1], Bf16(channel)),
            ("b.weight", DType.F8E4M3, [Rows, Columns], codes), ("b.weight_scale_inv", DType.F32, [3, 2], F32(blocks)),
            ("q.weight", DType.F8E4M3, [Rows, Columns], codes), ("q.input_scale", DType.F32, [1], F32(0.5f)),
            ("k.weight", DType.F8E4M3, [Rows, Columns], codes), ("k.input_scale", DType.F32, [1], F32(0.75f)),
            ("n.weight", DType.BF16, [Rows, Columns], Bf16([.. Enumerable.Repeat(1f, Rows * Columns)])),
        ]);

        float Decoded(int i) => Fp8.Decode(codes[i], DType.F8E4M3);
        Check(Parse("""{"quant_method": "fp8", "activation_scheme": "static"}"""), "t", i => Decoded(i) * 0.375f);
        Check(Parse(ChannelDynamic), "c", i => Decoded(i) * channel[i / Columns]);
        Check(Parse("""{"quant_method": "fp8", "weight_block_size": [2, 4]}"""), "b", i => Decoded(i) * blocks[(i / Columns / 2 * 2) + (i % Columns / 4)]);

        // Static input scales of stacked layers: the largest, as vLLM fuses them; unquantized layers have none.
        using Fp8WeightSource source = Open(dir.Path, Parse("""{"quant_method": "fp8", "activation_scheme": "static"}"""));
        Assert.Equal(new ActivationQuantization(ActivationScaling.StaticPerTensor, StaticScale: 0.75f), source.InputQuantization("q", "k"));
        Assert.Null(source.InputQuantization("n"));
        Assert.Equal(DType.BF16, source.Get("n.weight").DType);

        void Check(QuantizationConfig config, string module, Func<int, float> expected)
        {
            using Fp8WeightSource weights = Open(dir.Path, config);
            WeightTensor w = weights.Get(module + ".weight", Rows, Columns);
            Assert.Equal(DType.F32, w.DType);
            float[] got = w.AsSpan<float>().ToArray();
            Assert.Equal(Enumerable.Range(0, Rows * Columns).Select(expected), got);
        }
    }

    [Fact]
    public void A_checkpoint_that_contradicts_its_config_is_refused_naming_the_tensor()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model.safetensors"),
        [
            ("lm_head.weight", DType.F8E4M3, [2, 2], [0x38, 0x40, 0xb8, 0x30]), ("lm_head.weight_scale", DType.F32, [2, 1], F32(1f, 1f)),
            ("c.weight", DType.F8E4M3, [2, 2], [0x38, 0x40, 0xb8, 0x30]), ("c.weight_scale", DType.F32, [1, 2], F32(1f, 1f)),
        ]);
        using Fp8WeightSource weights = Open(dir.Path, Parse(ChannelDynamic));
        Assert.Contains("ignore list names 'lm_head'", Assert.Throws<ModelLoadException>(() => weights.Get("lm_head.weight")).Message, StringComparison.Ordinal);
        Assert.Contains("'c.weight_scale' has shape [1,2]", Assert.Throws<ModelLoadException>(() => weights.Get("c.weight")).Message, StringComparison.Ordinal);

        // Read without the quantization (a config without quantization_config), an FP8 tensor is refused by the backend.
        using var plain = SafetensorsWeightSource.Open(dir.Path);
        Assert.Contains("needs the checkpoint's quantization_config", Assert.Throws<ModelLoadException>(() => plain.Get("c.weight").RequireUnquantized()).Message, StringComparison.Ordinal);
    }

#pragma warning disable CA2000 // the Fp8WeightSource owns the file source and disposes it
    private static Fp8WeightSource Open(string dir, QuantizationConfig config) => new(SafetensorsWeightSource.Open(dir), config);
#pragma warning restore CA2000

    private static QuantizationConfig Parse(string quantization)
    {
        using JsonDocument doc = JsonDocument.Parse($$"""{"quantization_config": {{quantization}}}""");
        return QuantizationConfig.Parse(doc.RootElement)!;
    }

    /// <summary>A finite E4M3 code (not 0x7f / 0xff, the NaNs), either sign.</summary>
    private static byte RandomCode(Random random)
    {
        byte code;
        do
        {
            code = (byte)random.Next(256);
        }
        while ((code & 0x7f) == 0x7f);
        return code;
    }

    private static byte[] F32(params float[] values) => [.. values.SelectMany(BitConverter.GetBytes)];

    private static byte[] Bf16(float[] values) => [.. values.SelectMany(v => BitConverter.GetBytes(HalfConversions.FloatToBf16(v)))];
}
