using System.Text.Json;
using Celer.Models.Config;
using Celer.Models.Quantization;
using Celer.Models.Weights;
using Xunit;

namespace Celer.Models.Tests.Weights;

/// <summary>
/// Integer weight-only checkpoints (GPTQ, AWQ, compressed-tensors): <c>quantization_config</c> as their tools write it,
/// and <see cref="IntWeightSource"/> on real safetensors files packed here from each format's definition, against
/// (code − zero) × scale per element; fixed words check the bit order of each layout without the packer.
/// </summary>
public sealed class IntCheckpointTests
{
    [Fact]
    public void Gptq_awq_and_compressed_tensors_configs_are_read_field_by_field()
    {
        IntWeightScheme gptq = Parse("""
            {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": true, "sym": false, "damp_percent": 0.01,
             "true_sequential": true, "static_groups": false, "lm_head": false, "checkpoint_format": "gptq"}
            """).IntWeights!;
        Assert.Equal(new IntWeightScheme(IntWeightLayout.Gptq, 4, 128, ActOrder: true, Symmetric: false, ZerosMinusOne: true), gptq);
        Assert.Equal(new IntWeightScheme(IntWeightLayout.Gptq, 8, 0, false, true, false),
            Parse("""{"quant_method": "gptq", "bits": 8, "group_size": -1, "checkpoint_format": "gptq_v2"}""").IntWeights);

        QuantizationConfig awq = Parse("""{"quant_method": "awq", "w_bit": 4, "q_group_size": 64, "zero_point": true, "version": "GEMM", "modules_to_not_convert": ["visual"]}""");
        Assert.Equal(new IntWeightScheme(IntWeightLayout.Awq, 4, 64, false, false, false), awq.IntWeights);
        Assert.True(awq.IsIgnored("model.visual"));

        Assert.Equal(new IntWeightScheme(IntWeightLayout.CompressedTensorsPacked, 4, 128, true, false, false),
            Parse(CompressedTensors("pack-quantized", """{"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": false, "actorder": "group"}""")).IntWeights);
        Assert.Equal(new IntWeightScheme(IntWeightLayout.CompressedTensorsPacked, 8, 0, false, true, false),
            Parse(CompressedTensors("pack-quantized", """{"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": true, "actorder": null}""")).IntWeights);
        Assert.Equal(new IntWeightScheme(IntWeightLayout.CompressedTensorsInt8, 8, 32, false, true, false),
            Parse(CompressedTensors("naive-quantized", """{"num_bits": 8, "type": "int", "strategy": "group", "group_size": 32, "actorder": "weight"}""")).IntWeights);

        Assert.Null(QuantizationConfig.RequestRefusal("gptq_marlin", Parse("""{"quant_method": "gptq", "bits": 4}""")));
        Assert.Null(QuantizationConfig.RequestRefusal("AWQ", awq));
        Assert.Contains("does not match", QuantizationConfig.RequestRefusal("gptq", awq), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"quant_method": "gptq", "bits": 3, "group_size": 128}""", "gptq bits 3")]
    [InlineData("""{"quant_method": "gptq", "bits": 4, "group_size": 0}""", "group_size 0")]
    [InlineData("""{"quant_method": "gptq", "bits": 4, "checkpoint_format": "marlin"}""", "checkpoint_format 'marlin'")]
    [InlineData("""{"quant_method": "gptq", "bits": 4, "dynamic": {"-:.*mlp.*": {}}}""", "'dynamic' per-module overrides")]
    [InlineData("""{"quant_method": "gptq", "group_size": 128}""", "'bits' is missing")]
    [InlineData("""{"quant_method": "awq", "bits": 8}""", "awq bits 8")]
    [InlineData("""{"quant_method": "awq", "bits": 4, "version": "gemv_fast"}""", "version 'gemv_fast'")]
    [InlineData("""{"quant_method": "bitsandbytes"}""", "not bitsandbytes")]
    public void An_unsupported_integer_scheme_is_named(string quantization, string expected)
    {
        var e = Assert.Throws<ModelConfigException>(() => Parse(quantization));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("pack-quantized", """{"num_bits": 4, "type": "int", "strategy": "tensor"}""", "strategy 'tensor'")]
    [InlineData("pack-quantized", """{"num_bits": 2, "type": "int", "strategy": "channel"}""", "2-bit int weights")]
    [InlineData("pack-quantized", """{"num_bits": 4, "type": "int", "strategy": "group"}""", "positive group_size")]
    [InlineData("pack-quantized", """{"num_bits": 4, "type": "int", "strategy": "channel", "actorder": "group"}""", "needs strategy 'group'")]
    [InlineData("pack-quantized", """{"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "actorder": "columns"}""", "actorder \"columns\"")]
    [InlineData("naive-quantized", """{"num_bits": 4, "type": "int", "strategy": "channel"}""", "'naive-quantized' with 4-bit")]
    public void An_unsupported_compressed_tensors_int_scheme_is_named(string format, string weights, string expected)
    {
        var e = Assert.Throws<ModelConfigException>(() => Parse(CompressedTensors(format, weights)));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);

        // Integer weights with quantized inputs (W8A8 INT8) are not weight-only.
        const string W8A8 = """
            {"quant_method": "compressed-tensors", "format": "int-quantized", "config_groups": {"group_0": {"targets": ["Linear"],
              "weights": {"num_bits": 8, "type": "int", "strategy": "channel"},
              "input_activations": {"num_bits": 8, "type": "int", "strategy": "token", "dynamic": true}}}}
            """;
        Assert.Contains("(W8A8) are not supported yet", Assert.Throws<ModelConfigException>(() => Parse(W8A8)).Message, StringComparison.Ordinal);
    }

    /// <summary>Fixed words: the bit order of each layout, read without this file's packer.</summary>
    [Fact]
    public void Each_layout_puts_codes_where_its_format_says()
    {
        using var dir = new TempDirectory();
        const int Word = 0x76543210;   // nibble p holds p
        SafetensorsWriter.Write(dir.File("model.safetensors"),
        [
            // GPTQ: one word of 8 input columns for each of 2 output rows; zero 0xF read as 16 (stored minus one).
            ("g.qweight", DType.I32, [1, 2], I32(Word, Word)), ("g.qzeros", DType.I32, [1, 1], I32(0xFF)),
            ("g.scales", DType.F16, [1, 2], F16(1f, 2f)), ("g.g_idx", DType.I32, [8], I32(0, 0, 0, 0, 0, 0, 0, 0)),
            // AWQ: one input column, 8 output rows interleaved 0, 2, 4, 6, 1, 3, 5, 7.
            ("a.qweight", DType.I32, [1, 1], I32(Word)), ("a.qzeros", DType.I32, [1, 1], I32(0)), ("a.scales", DType.F16, [1, 8], F16(1, 1, 1, 1, 1, 1, 1, 1)),
        ]);

        using IntWeightSource gptq = Open(dir.Path, """{"quant_method": "gptq", "bits": 4, "group_size": -1}""");
        Assert.Equal([-16, -15, -14, -13, -12, -11, -10, -9, -32, -30, -28, -26, -24, -22, -20, -18], gptq.Get("g.weight", 2, 8).AsSpan<float>().ToArray());

        using IntWeightSource awq = Open(dir.Path, """{"quant_method": "awq", "bits": 4, "group_size": -1}""");
        Assert.Equal([0, 4, 1, 5, 2, 6, 3, 7], awq.Get("a.weight", 8, 1).AsSpan<float>().ToArray());
    }

    [Fact]
    public void Gptq_act_order_groups_and_zero_points_dequantize_each_element()
    {
        var random = new Random(11);
        const int Rows = 8, Columns = 24, GroupSize = 6;
        Quantized w = Quantized.Random(random, Rows, Columns, bits: 4, groups: Columns / GroupSize, zeroRange: 16);
        int[] gIdx = [.. Enumerable.Range(0, Columns).Select(i => i / GroupSize).OrderBy(_ => random.Next())];
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model.safetensors"),
        [
            ("m.qweight", DType.I32, [Columns / 8, Rows], I32(Pack(Columns, Rows, 4, (wordRow, o, k) => w.Code(o, (wordRow * 8) + k)))),
            // Stored minus one: a zero of 0 wraps to 15 and reads as 16, as GPTQ's kernels read it.
            ("m.qzeros", DType.I32, [w.Groups, 1], I32(PackWords(w.Groups, Rows / 8, 4, (g, word, k) => (w.Zero((word * 8) + k, g) - 1) & 0xF))),
            ("m.scales", DType.F16, [w.Groups, Rows], F16([.. Enumerable.Range(0, w.Groups * Rows).Select(j => w.Scale(j % Rows, j / Rows))])),
            ("m.g_idx", DType.I32, [Columns], I32(gIdx)),
            ("m.bias", DType.F16, [Rows], F16(new float[Rows])),
        ]);

        using IntWeightSource source = Open(dir.Path, $$"""{"quant_method": "gptq", "bits": 4, "group_size": {{GroupSize}}, "desc_act": true, "sym": false}""");
        w.AssertDequantized(source.Get("m.weight", Rows, Columns), i => gIdx[i], zeroOf: z => z == 0 ? 16 : z);
        Assert.True(source.Contains("m.weight"));
        Assert.Equal(DType.F16, source.Get("m.bias").DType);
    }

    [Fact]
    public void Gptq_8_bit_per_channel_v2_dequantizes_each_element()
    {
        var random = new Random(12);
        const int Rows = 4, Columns = 12;
        Quantized w = Quantized.Random(random, Rows, Columns, bits: 8, groups: 1, zeroRange: 256);
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model.safetensors"),
        [
            ("m.qweight", DType.I32, [Columns / 4, Rows], I32(Pack(Columns, Rows, 8, (wordRow, o, k) => w.Code(o, (wordRow * 4) + k)))),
            ("m.qzeros", DType.I32, [1, 1], I32(PackWords(1, 1, 8, (_, _, k) => w.Zero(k, 0)))),
            ("m.scales", DType.BF16, [1, Rows], Bf16([.. Enumerable.Range(0, Rows).Select(o => w.Scale(o, 0))])),
        ]);

        using IntWeightSource source = Open(dir.Path, """{"quant_method": "gptq", "bits": 8, "group_size": -1, "checkpoint_format": "gptq_v2"}""");
        w.AssertDequantized(source.Get("m.weight", Rows, Columns), _ => 0);
    }

    [Fact]
    public void Awq_groups_dequantize_each_element()
    {
        var random = new Random(13);
        const int Rows = 16, Columns = 12, GroupSize = 4;
        Quantized w = Quantized.Random(random, Rows, Columns, bits: 4, groups: Columns / GroupSize, zeroRange: 16);
        int[] order = [0, 2, 4, 6, 1, 3, 5, 7];
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model.safetensors"),
        [
            ("m.qweight", DType.I32, [Columns, Rows / 8], I32(PackWords(Columns, Rows / 8, 4, (i, word, p) => w.Code((word * 8) + order[p], i)))),
            ("m.qzeros", DType.I32, [w.Groups, Rows / 8], I32(PackWords(w.Groups, Rows / 8, 4, (g, word, p) => w.Zero((word * 8) + order[p], g)))),
            ("m.scales", DType.F16, [w.Groups, Rows], F16([.. Enumerable.Range(0, w.Groups * Rows).Select(j => w.Scale(j % Rows, j / Rows))])),
        ]);

        using IntWeightSource source = Open(dir.Path, $$"""{"quant_method": "awq", "bits": 4, "group_size": {{GroupSize}}, "zero_point": true, "version": "gemm"}""");
        w.AssertDequantized(source.Get("m.weight", Rows, Columns), i => i / GroupSize);
    }

    [Fact]
    public void Compressed_tensors_packed_asymmetric_act_order_dequantizes_each_element()
    {
        var random = new Random(14);
        const int Rows = 10, Columns = 20, GroupSize = 5;   // 20 columns are 3 words of 8 codes, the last padded
        Quantized w = Quantized.Random(random, Rows, Columns, bits: 4, groups: Columns / GroupSize, zeroRange: 16);
        int[] gIdx = [.. Enumerable.Range(0, Columns).Select(i => i / GroupSize).OrderBy(_ => random.Next())];
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model.safetensors"),
        [
            ("m.weight_packed", DType.I32, [Rows, 3], I32(PackWords(Rows, 3, 4, (o, word, k) => (word * 8) + k < Columns ? w.Code(o, (word * 8) + k) : 0))),
            ("m.weight_scale", DType.BF16, [Rows, w.Groups], Bf16([.. Enumerable.Range(0, Rows * w.Groups).Select(j => w.Scale(j / w.Groups, j % w.Groups))])),
            ("m.weight_zero_point", DType.I32, [2, w.Groups], I32(PackWords(2, w.Groups, 4, (word, g, k) => (word * 8) + k < Rows ? w.Zero((word * 8) + k, g) : 0))),
            ("m.weight_g_idx", DType.I32, [Columns], I32(gIdx)),
            ("m.weight_shape", DType.I64, [2], I64(Rows, Columns)),
        ]);

        using IntWeightSource source = Open(dir.Path, CompressedTensors("pack-quantized", $$"""{"num_bits": 4, "type": "int", "strategy": "group", "group_size": {{GroupSize}}, "symmetric": false, "actorder": "group"}"""));
        w.AssertDequantized(source.Get("m.weight", Rows, Columns), i => gIdx[i]);
    }

    [Fact]
    public void Compressed_tensors_symmetric_8_bit_and_int8_weights_dequantize_each_element()
    {
        var random = new Random(15);
        const int Rows = 3, Columns = 6;   // 6 codes of 8 bits are 2 words, the last half padded
        Quantized w = Quantized.Random(random, Rows, Columns, bits: 8, groups: 1, zeroRange: 0);
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model.safetensors"),
        [
            ("p.weight_packed", DType.I32, [Rows, 2], I32(PackWords(Rows, 2, 8, (o, word, k) => (word * 4) + k < Columns ? w.Code(o, (word * 4) + k) : 0))),
            ("p.weight_scale", DType.F32, [Rows, 1], F32([.. Enumerable.Range(0, Rows).Select(o => w.Scale(o, 0))])),
            ("p.weight_shape", DType.I32, [2], I32(Rows, Columns)),
            ("n.weight", DType.I8, [Rows, Columns], [.. Enumerable.Range(0, Rows * Columns).Select(j => (byte)(sbyte)(w.Code(j / Columns, j % Columns) - 128))]),
            ("n.weight_scale", DType.F32, [Rows, 1], F32([.. Enumerable.Range(0, Rows).Select(o => w.Scale(o, 0))])),
        ]);

        using IntWeightSource packed = Open(dir.Path, CompressedTensors("pack-quantized", """{"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": true}"""));
        w.AssertDequantized(packed.Get("p.weight", Rows, Columns), _ => 0, zeroOf: _ => 128);
        using IntWeightSource naive = Open(dir.Path, CompressedTensors("naive-quantized", """{"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": true}"""));
        w.AssertDequantized(naive.Get("n.weight", Rows, Columns), _ => 0, zeroOf: _ => 128);
    }

    /// <summary>
    /// A backend with integer kernels gets each quantized weight unpacked (codes, zero points, scales) to repack, with
    /// its logical shape and no host data; MoE experts too (the backend's LoadExperts keeps or dequantizes them).
    /// </summary>
    [Fact]
    public void A_backend_with_integer_kernels_gets_the_codes_unpacked_moe_experts_included()
    {
        const int Word = 0x76543210;
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model.safetensors"),
        [
            ("m.qweight", DType.I32, [1, 1], I32(Word)), ("m.qzeros", DType.I32, [1, 1], I32(0)), ("m.scales", DType.F16, [1, 8], F16(1, 1, 1, 1, 1, 1, 1, 1)),
            ("mlp.experts.0.up_proj.qweight", DType.I32, [1, 1], I32(Word)), ("mlp.experts.0.up_proj.qzeros", DType.I32, [1, 1], I32(0)),
            ("mlp.experts.0.up_proj.scales", DType.F16, [1, 8], F16(1, 1, 1, 1, 1, 1, 1, 1)),
        ]);
        QuantizationConfig config = Parse("""{"quant_method": "awq", "bits": 4, "group_size": -1}""");
#pragma warning disable CA2000 // the IntWeightSource owns the file source and disposes it
        using var source = new IntWeightSource(SafetensorsWeightSource.Open(dir.Path), config, keepPacked: true);
#pragma warning restore CA2000

        WeightTensor packed = source.Get("m.weight", 8, 1);
        Assert.Equal((DType.I32, (nint)0), (packed.DType, packed.Data));
        Assert.Equal([0, 4, 1, 5, 2, 6, 3, 7], packed.Packed!.Codes);
        Assert.Contains("integer weights need", Assert.Throws<ModelLoadException>(packed.RequireUnquantized).Message, StringComparison.Ordinal);

        WeightTensor expert = source.Get("mlp.experts.0.up_proj.weight", 8, 1);
        Assert.Equal((DType.I32, (nint)0), (expert.DType, expert.Data));
        Assert.Equal([0, 4, 1, 5, 2, 6, 3, 7], expert.Packed!.Codes);
    }

    [Fact]
    public void A_checkpoint_that_contradicts_its_config_is_refused_naming_the_tensor()
    {
        using var dir = new TempDirectory();
        SafetensorsWriter.Write(dir.File("model.safetensors"),
        [
            ("m.qweight", DType.I32, [2, 4], I32(new int[8])), ("m.qzeros", DType.I32, [2, 1], I32(0, 0)), ("m.scales", DType.F16, [2, 4], F16(new float[8])),
            ("f.qweight", DType.F32, [2, 4], F32(new float[8])),
            ("x.qweight", DType.I32, [2, 4], I32(new int[8])), ("x.qzeros", DType.I32, [1, 1], I32(0)), ("x.scales", DType.F16, [1, 4], F16(new float[4])),
            ("x.g_idx", DType.I32, [16], I32([.. Enumerable.Repeat(1, 16)])),
        ]);

        // 16 columns in groups of 4 are 4 groups; the scales hold 2.
        using IntWeightSource grouped = Open(dir.Path, """{"quant_method": "gptq", "bits": 4, "group_size": 4}""");
        Assert.Contains("'m' has 2 scale groups for 16 input columns", Assert.Throws<ModelLoadException>(() => grouped.Get("m.weight")).Message, StringComparison.Ordinal);
        Assert.Contains("'f.qweight' is F32; expected I32", Assert.Throws<ModelLoadException>(() => grouped.Get("f.weight")).Message, StringComparison.Ordinal);
        using IntWeightSource actOrder = Open(dir.Path, """{"quant_method": "gptq", "bits": 4, "group_size": 4, "desc_act": true}""");
        Assert.Contains("'x.g_idx' names group 1; the scales have 1", Assert.Throws<ModelLoadException>(() => actOrder.Get("x.weight")).Message, StringComparison.Ordinal);
        using IntWeightSource ignored = Open(dir.Path, """{"quant_method": "awq", "bits": 4, "group_size": 4, "modules_to_not_convert": ["m"]}""");
        Assert.Contains("ignore list names 'm'", Assert.Throws<ModelLoadException>(() => ignored.Get("m.weight")).Message, StringComparison.Ordinal);

        // Without a quantization_config the packed words reach the backend, which refuses them.
        using var plain = SafetensorsWeightSource.Open(dir.Path);
        Assert.Contains("integer weights need the checkpoint's quantization_config", Assert.Throws<ModelLoadException>(() => plain.Get("m.qweight").RequireUnquantized()).Message, StringComparison.Ordinal);
    }

    /// <summary>Random codes, zero points and 16-bit-exact scales of a [rows, columns] weight, and their dequantized values.</summary>
    private sealed record Quantized(int Rows, int Columns, int Groups, int[] Codes, int[] Zeros, float[] Scales)
    {
        public static Quantized Random(Random random, int rows, int columns, int bits, int groups, int zeroRange) => new(
            rows, columns, groups,
            [.. Enumerable.Range(0, rows * columns).Select(_ => random.Next(1 << bits))],
            [.. Enumerable.Range(0, rows * groups).Select(_ => zeroRange == 0 ? 0 : random.Next(zeroRange))],
            // Multiples of 1/64 in (0, 4): exact in bf16 and fp16, never zero.
            [.. Enumerable.Range(0, rows * groups).Select(_ => (1 + random.Next(255)) / 64f)]);

        public int Code(int row, int column) => Codes[(row * Columns) + column];

        public int Zero(int row, int group) => Zeros[(row * Groups) + group];

        public float Scale(int row, int group) => Scales[(row * Groups) + group];

        /// <summary>weight[o, i] = (code − zero) · scale, with the zero as the format reads it back (<paramref name="zeroOf"/>).</summary>
        public void AssertDequantized(WeightTensor weight, Func<int, int> groupOf, Func<int, int>? zeroOf = null)
        {
            Assert.Equal(DType.F32, weight.DType);
            float[] expected = [.. Enumerable.Range(0, Rows * Columns).Select(j =>
            {
                int o = j / Columns, i = j % Columns, g = groupOf(i);
                int zero = zeroOf?.Invoke(Zero(o, g)) ?? Zero(o, g);
                return (Code(o, i) - zero) * Scale(o, g);
            })];
            Assert.Equal(expected, weight.AsSpan<float>().ToArray());
        }
    }

    /// <summary>[rows, words] int32s, entry k of word (r, w) at bits·k (codes from <paramref name="code"/>(r, w, k)).</summary>
    private static int[] PackWords(int rows, int words, int bits, Func<int, int, int, int> code)
    {
        var packed = new int[rows * words];
        for (int r = 0; r < rows; r++)
        {
            for (int w = 0; w < words; w++)
            {
                uint word = 0;
                for (int k = 0; k < 32 / bits; k++)
                {
                    word |= (uint)code(r, w, k) << (k * bits);
                }

                packed[(r * words) + w] = (int)word;
            }
        }

        return packed;
    }

    /// <summary>GPTQ packs along its first dimension: [values / per-word, columns] words.</summary>
    private static int[] Pack(int values, int columns, int bits, Func<int, int, int, int> code) => PackWords(values / (32 / bits), columns, bits, code);

    private static string CompressedTensors(string format, string weights) => $$$"""
        {"quant_method": "compressed-tensors", "format": "{{{format}}}",
         "config_groups": {"group_0": {"targets": ["Linear"], "weights": {{{weights}}}, "input_activations": null}}, "ignore": ["lm_head"]}
        """;

#pragma warning disable CA2000 // the IntWeightSource owns the file source and disposes it
    private static IntWeightSource Open(string dir, string quantization) => new(SafetensorsWeightSource.Open(dir), Parse(quantization));
#pragma warning restore CA2000

    private static QuantizationConfig Parse(string quantization)
    {
        using JsonDocument doc = JsonDocument.Parse($$"""{"quantization_config": {{quantization}}}""");
        return QuantizationConfig.Parse(doc.RootElement)!;
    }

    private static byte[] I32(params int[] values) => [.. values.SelectMany(BitConverter.GetBytes)];

    private static byte[] I64(params long[] values) => [.. values.SelectMany(BitConverter.GetBytes)];

    private static byte[] F32(params float[] values) => [.. values.SelectMany(BitConverter.GetBytes)];

    private static byte[] F16(params float[] values) => [.. values.SelectMany(v => BitConverter.GetBytes((Half)v))];

    private static byte[] Bf16(float[] values) => [.. values.SelectMany(v => BitConverter.GetBytes(HalfConversions.FloatToBf16(v)))];
}
