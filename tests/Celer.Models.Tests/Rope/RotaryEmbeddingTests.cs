using Xunit;
using Celer.Models.Config;
using Celer.Models.Rope;

namespace Celer.Models.Tests.Rope;

/// <summary>Inverse frequencies checked against values worked out by hand on small dims, plus the defining properties of each scaling.</summary>
public class RotaryEmbeddingTests
{
    private static readonly RopeParameters Default10k = new() { Theta = 10000 };

    [Fact]
    public void Default_dim8_theta10k_is_powers_of_ten()
    {
        // exponents 0, 2/8, 4/8, 6/8 of 10000: 1, 10, 100, 1000 exactly.
        var t = RotaryEmbedding.Compute(Default10k, headDim: 8, maxPositionEmbeddings: 100, seqLen: 1);
        Assert.Equal([1f, 0.1f, 0.01f, 0.001f], t.InverseFrequencies);
        Assert.Equal(1f, t.AttentionScaling);
        Assert.Equal(8, t.RotaryDim);
    }

    [Fact]
    public void Default_rounds_like_torch_float32()
    {
        // dim 6: exponent 2/6 is the float32 0.33333334f (not 1/3), so 10000^0.33333334 = 21.54435 (float32),
        // whose float32 reciprocal is 0.046415884f (1/10000^(1/3) would round to 0.046415888f);
        // likewise 10000^0.6666667f = 464.15897 -> 0.0021544343f.
        var t = RotaryEmbedding.Compute(Default10k, 6, 100, 1);
        Assert.Equal(1f, t.InverseFrequencies[0]);
        Assert.Equal(1f / (float)Math.Pow(10000f, 2f / 6f), t.InverseFrequencies[1]);
        Assert.Equal(1f / (float)Math.Pow(10000f, 4f / 6f), t.InverseFrequencies[2]);
        Assert.Equal(0.046415884f, t.InverseFrequencies[1]);
        Assert.Equal(0.0021544343f, t.InverseFrequencies[2]);
    }

    [Fact]
    public void Partial_rotary_factor_rotates_the_leading_part_of_the_head()
    {
        // head 16 x 0.5 = rotary dim 8, which spaces exponents over 8, not 16.
        var t = RotaryEmbedding.Compute(Default10k with { PartialRotaryFactor = 0.5 }, 16, 100, 1);
        Assert.Equal([1f, 0.1f, 0.01f, 0.001f], t.InverseFrequencies);
    }

    [Fact]
    public void Linear_divides_every_frequency_by_the_factor()
    {
        var t = RotaryEmbedding.Compute(Default10k with { RopeType = RopeType.Linear, Factor = 4 }, 8, 100, 1);
        Assert.Equal([0.25f, 0.1f / 4, 0.01f / 4, 0.001f / 4], t.InverseFrequencies);
    }

    [Fact]
    public void Dynamic_is_default_until_max_position_then_raises_theta()
    {
        var p = Default10k with { RopeType = RopeType.Dynamic, Factor = 2 };
        var within = RotaryEmbedding.Compute(p, 8, maxPositionEmbeddings: 100, seqLen: 60);
        Assert.Equal([1f, 0.1f, 0.01f, 0.001f], within.InverseFrequencies);

        // seq 200 of max 100, factor 2: theta' = 10000 * (2*200/100 - 1)^(8/6) = 10000 * 3^(4/3) = 43267.487...
        var beyond = RotaryEmbedding.Compute(p, 8, maxPositionEmbeddings: 100, seqLen: 200);
        float theta = (float)(10000 * Math.Pow(3, 4.0 / 3));
        Assert.Equal(43267.49f, theta, 0.01f);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(1f / (float)Math.Pow(theta, (float)(2 * i) / 8), beyond.InverseFrequencies[i]);
        }
        Assert.Equal(1f, beyond.AttentionScaling);
    }

    [Fact]
    public void LongRope_divides_by_the_short_factors_up_to_the_original_context_and_by_the_long_ones_beyond()
    {
        // Phi-3 style: max 400 over an original 100 gives factor 4 and attention scaling sqrt(1 + ln 4 / ln 100).
        var p = Default10k with
        {
            RopeType = RopeType.LongRope, Factor = 4, OriginalMaxPositionEmbeddings = 100,
            ShortFactor = [1.0, 2.0, 4.0, 8.0], LongFactor = [3.0, 5.0, 7.0, 9.0],
        };
        var within = RotaryEmbedding.Compute(p, 8, maxPositionEmbeddings: 400, seqLen: 100);
        Assert.Equal([1f, 0.1f / 2, 0.01f / 4, 0.001f / 8], within.InverseFrequencies);
        Assert.Equal((float)Math.Sqrt(1 + Math.Log(4) / Math.Log(100)), within.AttentionScaling);

        var beyond = RotaryEmbedding.Compute(p, 8, maxPositionEmbeddings: 400, seqLen: 101);
        Assert.Equal([1f / 3, 1f / (5 * 10f), 1f / (7 * 100f), 1f / (9 * 1000f)], beyond.InverseFrequencies);
        Assert.Equal(within.AttentionScaling, beyond.AttentionScaling);

        // An explicit attention_factor wins; factors that do not cover the rotary dimension are refused.
        Assert.Equal(1.5f, RotaryEmbedding.Compute(p with { AttentionFactor = 1.5 }, 8, 400, 1).AttentionScaling);
        Assert.Throws<ModelConfigException>(() => RotaryEmbedding.Compute(p, 16, 400, 1));
    }

    [Fact]
    public void Llama3_dim8_keeps_high_divides_low_and_blends_the_middle()
    {
        // Default inv_freq 1, 0.1, 0.01, 0.001 -> wavelengths 2π·(1, 10, 100, 1000) = 6.28, 62.8, 628, 6283.
        // original 1000, low 1, high 4: wavelengths under 250 kept, over 1000 divided by 8,
        // 628 blended with smooth = (1000/628.3185 - 1) / 3 = 0.1971831.
        var p = new RopeParameters
        {
            RopeType = RopeType.Llama3, Theta = 10000, Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4,
            OriginalMaxPositionEmbeddings = 1000,
        };
        var inv = RotaryEmbedding.Compute(p, 8, 4000, 1).InverseFrequencies;
        Assert.Equal(1f, inv[0]);
        Assert.Equal(0.1f, inv[1]);
        double smooth = (1000 / (2 * Math.PI * 100) - 1) / 3;
        Assert.Equal(0.1971831, smooth, 1e-7);
        Assert.Equal((1 - smooth) * 0.01 / 8 + smooth * 0.01, inv[2], 1e-9);
        Assert.Equal(0.001f / 8, inv[3]);
    }

    [Fact]
    public void Llama31_real_config_properties()
    {
        var llama = new RopeParameters
        {
            RopeType = RopeType.Llama3, Theta = 500000, Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4,
            OriginalMaxPositionEmbeddings = 8192,
        };
        var scaled = RotaryEmbedding.Compute(llama, 128, 131072, 1).InverseFrequencies;
        var plain = RotaryEmbedding.Compute(new RopeParameters { Theta = 500000 }, 128, 131072, 1).InverseFrequencies;
        int kept = 0, divided = 0, blended = 0;
        for (int i = 0; i < 64; i++)
        {
            double wavelen = 2 * Math.PI / plain[i];
            if (wavelen < 8192 / 4.0)
            {
                Assert.Equal(plain[i], scaled[i]);
                kept++;
            }
            else if (wavelen > 8192)
            {
                Assert.Equal(plain[i] / 8, scaled[i]);
                divided++;
            }
            else
            {
                Assert.InRange(scaled[i], plain[i] / 8, plain[i]);
                blended++;
            }
            if (i > 0)
            {
                Assert.True(scaled[i] < scaled[i - 1], "frequencies stay strictly decreasing");
            }
        }
        // With theta 5e5 and head 128, 2π·θ^(2i/128) crosses 2048 at i≈28.2 and 8192 at i≈35.0.
        Assert.Equal((29, 6, 29), (kept, blended, divided));
    }

    [Fact]
    public void Yarn_dim8_by_hand()
    {
        // Correction range for original 1000, theta 1e4, dim 8:
        //   low  = 8·ln(1000/(32·2π)) / (2·ln 1e4) = 0.6967 -> floor 0
        //   high = 8·ln(1000/(1·2π))  / (2·ln 1e4) = 2.2018 -> ceil 3
        // ramp over i = 0..3 is i/3; extrapolation weight 1 - ramp.
        var p = new RopeParameters { RopeType = RopeType.Yarn, Theta = 10000, Factor = 4, OriginalMaxPositionEmbeddings = 1000 };
        var t = RotaryEmbedding.Compute(p, 8, 4000, 1);
        double[] extrapolated = [1, 0.1, 0.01, 0.001];
        for (int i = 0; i < 4; i++)
        {
            double ramp = i / 3.0;
            double expected = extrapolated[i] / 4 * ramp + extrapolated[i] * (1 - ramp);
            Assert.Equal(expected, t.InverseFrequencies[i], expected * 1e-6);
        }
        Assert.Equal(1f, t.InverseFrequencies[0]);
        Assert.Equal(0.001f / 4, t.InverseFrequencies[3]);
        Assert.Equal(0.1 * Math.Log(4) + 1, t.AttentionScaling, 1e-6); // 1.1386294
    }

    [Fact]
    public void Yarn_without_truncation_uses_the_fractional_range()
    {
        var p = new RopeParameters { RopeType = RopeType.Yarn, Theta = 10000, Factor = 4, OriginalMaxPositionEmbeddings = 1000, Truncate = false };
        var inv = RotaryEmbedding.Compute(p, 8, 4000, 1).InverseFrequencies;
        double low = 8 * Math.Log(1000 / (32 * 2 * Math.PI)) / (2 * Math.Log(10000));
        double high = 8 * Math.Log(1000 / (2 * Math.PI)) / (2 * Math.Log(10000));
        double[] extrapolated = [1, 0.1, 0.01, 0.001];
        for (int i = 0; i < 4; i++)
        {
            double ramp = Math.Clamp((i - low) / (high - low), 0, 1);
            double expected = extrapolated[i] / 4 * ramp + extrapolated[i] * (1 - ramp);
            Assert.Equal(expected, inv[i], expected * 1e-6);
        }
    }

    [Theory]
    [InlineData(null, null, null, 1.3688879454113936)]   // 0.1·ln 40 + 1
    [InlineData(0.707, 0.707, null, 1.0)]                // DeepSeek-V2: mscale ratio cancels
    [InlineData(1.0, 0.5, null, 1.1557219901962608)]     // (0.1·ln40 + 1) / (0.05·ln40 + 1)
    [InlineData(0.707, 0.0, null, 1.3688879454113936)]   // a zero mscale_all_dim disables the ratio
    [InlineData(null, null, 1.25, 1.25)]                 // explicit attention_factor wins
    public void Yarn_attention_scaling(double? mscale, double? mscaleAllDim, double? attentionFactor, double expected)
    {
        var p = new RopeParameters
        {
            RopeType = RopeType.Yarn, Theta = 10000, Factor = 40, OriginalMaxPositionEmbeddings = 4096,
            Mscale = mscale, MscaleAllDim = mscaleAllDim, AttentionFactor = attentionFactor,
        };
        Assert.Equal((float)expected, RotaryEmbedding.Compute(p, 64, 163840, 1).AttentionScaling);
    }

    [Fact]
    public void Config_overload_uses_head_dim_and_max_positions_of_the_config()
    {
        // Qwen3-0.6B: head_dim 128 (not hidden/heads = 64), theta 1e6.
        var config = ModelConfig.Parse(Config.ConfigSamples.Qwen3);
        var t = RotaryEmbedding.Compute(config, seqLen: 1);
        Assert.Equal(64, t.InverseFrequencies.Length);
        Assert.Equal(1f / (float)Math.Pow(1e6f, 2f / 128), t.InverseFrequencies[1]);
    }

    [Fact]
    public void Odd_rotary_dimension_is_rejected()
    {
        var e = Assert.Throws<ModelConfigException>(() => RotaryEmbedding.Compute(Default10k with { PartialRotaryFactor = 0.5 }, 10, 100, 1));
        Assert.Contains("rotary dimension 5", e.Message);
    }
}
