namespace Celer.Tokenization.Tests;

public class TokenizerConfigTests
{
    [Fact]
    public void Reads_real_configs()
    {
        var qwen = TokenizerConfig.Load(TestAssets.TokenizerDirectory("qwen3"));
        Assert.Equal("<|im_end|>", qwen.EosToken);
        Assert.Equal("<|endoftext|>", qwen.PadToken);
        Assert.Null(qwen.BosToken);
        Assert.False(qwen.AddBosToken);
        Assert.Equal(131072, qwen.ModelMaxLength);
        Assert.StartsWith("{%- if tools %}", qwen.ChatTemplate, StringComparison.Ordinal);

        var llama2 = TokenizerConfig.Load(TestAssets.TokenizerDirectory("llama2"));
        Assert.Equal("<s>", llama2.BosToken);
        Assert.True(llama2.AddBosToken);
        Assert.False(llama2.AddEosToken);
        Assert.Null(llama2.ModelMaxLength); // int(1e30) means "no limit"
        Assert.Null(llama2.ChatTemplate);
    }

    [Fact]
    public void Token_objects_template_lists_and_jinja_file()
    {
        var dir = Directory.CreateTempSubdirectory("celer-tokcfg-");
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, TokenizerConfig.FileName), """
                {"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "model_max_length": 4096,
                 "chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]}
                """);
            var config = TokenizerConfig.Load(dir.FullName);
            Assert.Equal("<s>", config.BosToken);
            Assert.Equal(4096, config.ModelMaxLength);
            Assert.Equal("D", config.ChatTemplate);
            Assert.Equal("T", config.ChatTemplates["tool_use"]);
            Assert.Null(config.AddBosToken);

            File.WriteAllText(Path.Combine(dir.FullName, TokenizerConfig.ChatTemplateFileName), "{{ messages }}");
            Assert.Equal("{{ messages }}", TokenizerConfig.Load(dir.FullName).ChatTemplate);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void Missing_file_is_an_empty_config()
    {
        var config = TokenizerConfig.Load(Path.Combine(Path.GetTempPath(), Guid.NewGuid().ToString("N")));
        Assert.Null(config.EosToken);
        Assert.Empty(config.ChatTemplates);
    }

    [Theory]
    [InlineData("{", "not valid JSON")]
    [InlineData("""{"eos_token": 5}""", "'$.eos_token' must be a string")]
    [InlineData("""{"chat_template": 3}""", "'$.chat_template' must be a string or a list")]
    [InlineData("""{"chat_template": [{"name": "x"}]}""", "'$.chat_template[0].template' is missing")]
    [InlineData("""{"add_bos_token": "yes"}""", "must be true or false")]
    public void Malformed_config_is_a_clear_error(string json, string expectedMessagePart)
    {
        var e = Assert.Throws<TokenizerLoadException>(() => TokenizerConfig.FromJson(json));
        Assert.Contains(expectedMessagePart, e.Message, StringComparison.Ordinal);
    }
}
