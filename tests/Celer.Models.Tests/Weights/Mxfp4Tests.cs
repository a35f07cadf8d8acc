using Celer.Models.Config;
using Celer.Models.Quantization;
using Xunit;

namespace Celer.Models.Tests.Weights;

/// <summary>
/// MXFP4 (OCP Microscaling Formats v1.0): E2M1 codes derived here from their bits (sign, two exponent bits with bias 1,
/// one mantissa bit, exponent 0 subnormal), E8M0 scales 2^(s − 127), and the nibble order of gpt-oss's blocks (value 2i in
/// the low nibble of byte i); and the mxfp4 quantization_config.
/// </summary>
public sealed unsafe class Mxfp4Tests
{
    /// <summary>E2M1 from its bits: (−1)^s · 2^(e − 1) · (1 + m/2), or 2^0 · m/2 when e = 0.</summary>
    private static float FromBits(int code)
    {
        int sign = code >> 3, exponent = (code >> 1) & 3, mantissa = code & 1;
        float magnitude = exponent == 0 ? mantissa * 0.5f : MathF.Pow(2, exponent - 1) * (1 + (mantissa * 0.5f));
        return sign == 1 ? -magnitude : magnitude;
    }

    [Fact]
    public void Every_code_under_every_scale_is_the_format_definition()
    {
        for (int code = 0; code < 16; code++)
        {
            foreach (byte scale in (byte[])[1, 100, 126, 127, 128, 131, 200, 254])
            {
                float expected = FromBits(code) * MathF.Pow(2, scale - 127);
                float actual = Mxfp4.Decode(code, scale);
                Assert.True(expected.Equals(actual) && float.IsNegative(expected) == float.IsNegative(actual), $"code {code}, scale {scale}: {actual}, expected {expected}");
            }
        }
    }

    [Fact]
    public void A_row_reads_the_low_nibble_first_and_one_scale_per_32_values()
    {
        var blocks = new byte[32];
        blocks[0] = 0x21;    // values 0, 1: codes 1 (0.5) and 2 (1.0)
        blocks[15] = 0xF9;   // values 30, 31: codes 9 (−0.5) and 15 (−6)
        blocks[16] = 0x07;   // values 32, 33 (second block): codes 7 (6) and 0
        byte[] scales = [128, 125];   // ×2, ×1/4
        var row = new ushort[64];
        fixed (byte* b = blocks, s = scales)
        fixed (ushort* r = row)
        {
            Mxfp4.DecodeRowToBf16(b, s, 64, r);
        }

        float[] values = [.. row.Select(Celer.Models.Weights.HalfConversions.Bf16ToFloat)];
        Assert.Equal((1f, 2f, -1f, -12f, 1.5f, 0f), (values[0], values[1], values[30], values[31], values[32], values[33]));
        Assert.All(values[2..30], v => Assert.Equal(0f, v));
    }

    [Fact]
    public void The_mxfp4_config_is_read()
    {
        QuantizationConfig q = ModelConfig.Parse(Config.ConfigSamples.Minimal("GptOssForCausalLM",
            "\"quantization_config\": {\"quant_method\": \"mxfp4\", \"modules_to_not_convert\": [\"model.layers.*.self_attn\", \"lm_head\"]}")).Quantization!;
        Assert.Equal("mxfp4", q.Method);
        Assert.Equal(["model.layers.*.self_attn", "lm_head"], q.Ignore);
        Assert.Null(q.Activations);
        Assert.Null(QuantizationConfig.RequestRefusal("mxfp4", q));
    }
}
