using Xunit;
using Celer.Models.Config;
using Celer.Models.Rope;
using Celer.Models.Tests.Config;

namespace Celer.Models.Tests.Rope;

/// <summary>Each RoPE type written in the transformers 4.x form and the 5.x form must read the same.</summary>
public class RopeParametersTests
{
    private static RopeParameters Parse(string extra) => ModelConfig.Parse(ConfigSamples.Minimal(extra: extra)).Rope;

    public static TheoryData<string, string, RopeParameters> BothGenerations => new()
    {
        {
            "\"rope_theta\": 10000.0, \"rope_scaling\": null",
            "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0}",
            new RopeParameters { Theta = 10000 }
        },
        {
            "\"rope_theta\": 5e5, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}",
            "\"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 2.0, \"rope_theta\": 500000.0}",
            new RopeParameters { RopeType = RopeType.Linear, Theta = 500000, Factor = 2 }
        },
        {
            "\"rope_theta\": 10000.0, \"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 4}",
            "\"rope_parameters\": {\"rope_type\": \"dynamic\", \"factor\": 4.0, \"rope_theta\": 10000.0}",
            new RopeParameters { RopeType = RopeType.Dynamic, Theta = 10000, Factor = 4 }
        },
        {
            "\"rope_theta\": 500000.0, \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}",
            "\"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 32.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, \"rope_theta\": 500000.0}",
            new RopeParameters
            {
                RopeType = RopeType.Llama3, Theta = 500000, Factor = 32, LowFreqFactor = 1, HighFreqFactor = 4,
                OriginalMaxPositionEmbeddings = 8192,
            }
        },
        {
            "\"rope_theta\": 1000000.0, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 64}",
            "\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 64, \"rope_theta\": 1000000.0}",
            new RopeParameters { RopeType = RopeType.Yarn, Theta = 1e6, Factor = 4, OriginalMaxPositionEmbeddings = 64 }
        },
        {
            "\"rope_theta\": 150000, \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 32.0, \"beta_fast\": 16, \"beta_slow\": 2.0, \"mscale\": 0.707, \"mscale_all_dim\": 1.0, \"attention_factor\": 1.2, \"truncate\": false, \"original_max_position_embeddings\": 4096}",
            "\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 32.0, \"beta_fast\": 16, \"beta_slow\": 2.0, \"mscale\": 0.707, \"mscale_all_dim\": 1.0, \"attention_factor\": 1.2, \"truncate\": false, \"original_max_position_embeddings\": 4096, \"rope_theta\": 150000}",
            new RopeParameters
            {
                RopeType = RopeType.Yarn, Theta = 150000, Factor = 32, BetaFast = 16, BetaSlow = 2, Mscale = 0.707,
                MscaleAllDim = 1.0, AttentionFactor = 1.2, Truncate = false, OriginalMaxPositionEmbeddings = 4096,
            }
        },
        {
            "\"rope_theta\": 10000.0, \"partial_rotary_factor\": 0.5",
            "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0, \"partial_rotary_factor\": 0.5}",
            new RopeParameters { PartialRotaryFactor = 0.5 }
        },
    };

    [Theory]
    [MemberData(nameof(BothGenerations))]
    public void Transformers_4_and_5_formats_read_the_same(string v4, string v5, RopeParameters expected)
    {
        Assert.Equal(expected, Parse(v4));
        Assert.Equal(expected, Parse(v5));
    }

    [Fact]
    public void No_rope_fields_at_all_is_default_rope_with_theta_10000()
    {
        Assert.Equal(new RopeParameters { RopeType = RopeType.Default, Theta = 10000 }, Parse(""));
    }

    [Fact]
    public void Top_level_values_fill_what_the_dict_lacks()
    {
        // transformers 5 setdefault()s rope_theta and partial_rotary_factor from the top level.
        var p = Parse("\"rope_theta\": 20000, \"partial_rotary_factor\": 0.25, \"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 2}");
        Assert.Equal(20000, p.Theta);
        Assert.Equal(0.25, p.PartialRotaryFactor);
        // ... but a value in the dict wins.
        Assert.Equal(30000, Parse("\"rope_theta\": 20000, \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 30000}").Theta);
    }

    [Fact]
    public void Non_empty_rope_scaling_wins_over_rope_parameters_and_empty_one_does_not()
    {
        Assert.Equal(RopeType.Linear, Parse("\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}, \"rope_parameters\": {\"rope_type\": \"default\"}").RopeType);
        Assert.Equal(RopeType.Dynamic, Parse("\"rope_scaling\": {}, \"rope_parameters\": {\"rope_type\": \"dynamic\", \"factor\": 2}").RopeType);
    }

    [Fact]
    public void Original_max_position_embeddings_defaults_to_max_and_top_level_value_wins()
    {
        // Minimal() has max_position_embeddings 256.
        Assert.Equal(256, Parse("\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2}").OriginalMaxPositionEmbeddings);
        // Phi-3 style: the pretraining length lives at the top level and takes priority.
        Assert.Equal(64, Parse("\"original_max_position_embeddings\": 64, \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2, \"original_max_position_embeddings\": 128}").OriginalMaxPositionEmbeddings);
    }

    [Fact]
    public void Yarn_factor_is_implied_by_the_two_lengths_only_when_absent()
    {
        Assert.Equal(4.0, Parse("\"rope_parameters\": {\"rope_type\": \"yarn\", \"original_max_position_embeddings\": 64}").Factor);
        // transformers 5 keeps an explicit factor even when the lengths disagree (4.x overrode it).
        Assert.Equal(2.0, Parse("\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 2, \"original_max_position_embeddings\": 64}").Factor);
    }

    [Fact]
    public void Yarn_zero_betas_fall_back_to_defaults_as_python_or_does()
    {
        var p = Parse("\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2, \"beta_fast\": 0, \"beta_slow\": null}");
        Assert.Equal(32, p.BetaFast);
        Assert.Equal(1, p.BetaSlow);
        Assert.True(p.Truncate);
    }

    [Theory]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"ntk-by-parts\", \"factor\": 2.0}", "rope_type 'ntk-by-parts' is not supported")]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"longrope\", \"short_factor\": [1, -2], \"long_factor\": [1, 1]}", "'short_factor' must be a list of positive numbers")]
    [InlineData("\"rope_scaling\": {\"type\": \"su\", \"short_factor\": [1, 1]}", "'long_factor' must be a list of positive numbers")]
    [InlineData("\"rope_scaling\": {\"type\": \"linear\"}", "'factor' is missing")]
    [InlineData("\"rope_scaling\": {\"type\": \"linear\", \"factor\": -2}", "'factor' must be positive")]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"high_freq_factor\": 4}", "'low_freq_factor' is missing")]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4, \"high_freq_factor\": 4}", "'high_freq_factor' (4) must be greater than 'low_freq_factor' (4)")]
    [InlineData("\"rope_scaling\": \"yarn\"", "'rope_scaling' must be an object")]
    [InlineData("\"rope_theta\": -1", "'rope_theta' must be positive")]
    [InlineData("\"partial_rotary_factor\": 1.5", "'partial_rotary_factor' must be in (0, 1]")]
    [InlineData("\"rope_parameters\": {\"full_attention\": {\"rope_type\": \"default\"}, \"sliding_attention\": {\"rope_type\": \"default\"}}", "per-layer-type")]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2, \"truncate\": \"no\"}", "'truncate' must be true or false")]
    public void Bad_rope_settings_name_the_field(string extra, string expected)
    {
        var e = Assert.Throws<ModelConfigException>(() => Parse(extra));
        Assert.Contains(expected, e.Message);
    }
}
