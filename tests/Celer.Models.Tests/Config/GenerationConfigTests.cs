using Xunit;
using Celer.Models.Config;

namespace Celer.Models.Tests.Config;

public class GenerationConfigTests
{
    [Fact]
    public void Llama31_generation_config()
    {
        var g = GenerationConfig.Parse("""
            {"bos_token_id": 128000, "do_sample": true, "eos_token_id": [128001, 128008, 128009],
             "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.42.3"}
            """);
        Assert.Equal(128000, g.BosTokenId);
        Assert.True(g.DoSample);
        Assert.Equal([128001, 128008, 128009], g.EosTokenIds!);
        Assert.Equal(0.6, g.Temperature);
        Assert.Equal(0.9, g.TopP);
        Assert.Null(g.TopK);
        Assert.Null(g.PadTokenId);
        Assert.Null(g.MinP);
        Assert.Null(g.RepetitionPenalty);
        Assert.Null(g.MaxNewTokens);
    }

    [Fact]
    public void Qwen3_generation_config_with_every_sampling_field()
    {
        var g = GenerationConfig.Parse("""
            {"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643], "pad_token_id": 151643,
             "temperature": 0.6, "top_k": 20, "top_p": 0.95, "min_p": 0.0, "repetition_penalty": 1.05,
             "max_new_tokens": 2048, "transformers_version": "4.51.0"}
            """);
        Assert.Equal([151645, 151643], g.EosTokenIds!);
        Assert.Equal(151643, g.PadTokenId);
        Assert.Equal(20, g.TopK);
        Assert.Equal(0.95, g.TopP);
        Assert.Equal(0.0, g.MinP);
        Assert.Equal(1.05, g.RepetitionPenalty);
        Assert.Equal(2048, g.MaxNewTokens);
    }

    [Fact]
    public void Single_eos_id_becomes_a_list_and_nulls_are_absent()
    {
        var g = GenerationConfig.Parse("""{"eos_token_id": 2, "pad_token_id": null, "temperature": null}""");
        Assert.Equal([2], g.EosTokenIds!);
        Assert.Null(g.PadTokenId);
        Assert.Null(g.Temperature);
    }

    [Fact]
    public void Missing_file_is_empty_and_present_file_is_read()
    {
        string dir = Path.Combine(Path.GetTempPath(), "celer-genconfig-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            Assert.Same(GenerationConfig.Empty, GenerationConfig.Load(dir));
            File.WriteAllText(Path.Combine(dir, "generation_config.json"), """{"top_k": 40}""");
            Assert.Equal(40, GenerationConfig.Load(dir).TopK);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("""{"temperature": "hot"}""", "'temperature' must be a finite number")]
    [InlineData("""{"top_k": 0.5}""", "'top_k' must be an integer")]
    [InlineData("""{"do_sample": 1}""", "'do_sample' must be true or false")]
    [InlineData("""{"eos_token_id": [1, "x"]}""", "'eos_token_id' must be an integer")]
    [InlineData("""{"top_k": """, "not valid JSON")]
    public void Bad_values_name_the_field(string json, string expected)
    {
        var e = Assert.Throws<ModelConfigException>(() => GenerationConfig.Parse(json));
        Assert.Contains("generation_config.json", e.Message);
        Assert.Contains(expected, e.Message);
    }
}
