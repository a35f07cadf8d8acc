using System.Text.Json.Nodes;
using Celer.Engine.Execution;
using Celer.Models.Weights;
using Celer.TestSupport;
using Celer.Tokenization;
using Xunit;

namespace Celer.Engine.Tests.Pooling;

/// <summary>
/// sentence-transformers' prompts: <c>config_sentence_transformers.json</c>'s <c>prompts</c> and
/// <c>default_prompt_name</c> and the Pooling module's <c>include_prompt</c> read into the pooler (on a copy of the
/// llama-embed-mean fixture), <c>prompt_length</c> with real tokenizers, and the engine leaving the prompt's rows out of
/// mean pooling across chunks. The decoder is causal, so the hidden states of an input's first k positions are those of
/// its first k tokens alone: the mean of positions k..n-1 is (n·mean(all) − k·mean(first k)) / (n − k), which the
/// excluded pooling must give however the prefill is chunked.
/// </summary>
public sealed class SentenceTransformersPromptTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("celer-st-prompt-").FullName;

    public SentenceTransformersPromptTests()
    {
        string source = Path.Combine(PoolingFixture.Root, "llama-embed-mean");
        foreach (string file in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(_dir, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private void WriteStConfig(string json) => File.WriteAllText(Path.Combine(_dir, "config_sentence_transformers.json"), json);

    private void SetIncludePrompt(string? json)
    {
        string path = Path.Combine(_dir, "1_Pooling", "config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config.Remove("include_prompt");
        if (json is not null)
        {
            config["include_prompt"] = JsonNode.Parse(json);
        }

        File.WriteAllText(path, config.ToJsonString());
    }

    [Fact]
    public void The_default_prompt_and_include_prompt_are_read_into_the_pooler()
    {
        WriteStConfig("""{"prompts": {"query": "Instruct: find code\nQuery: ", "document": ""}, "default_prompt_name": "query"}""");
        SetIncludePrompt("false");
        using (LlmEngine engine = ModelLoader.LoadOffline(SentenceTransformersParityTests.Args(Path.GetFileName(_dir)) with { Model = _dir }).Engine)
        {
            Assert.Equal(new SentenceTransformersPrompt("query", "Instruct: find code\nQuery: ", IncludePrompt: false), engine.Pooler!.DefaultPrompt);
        }

        // include_prompt defaults to true when the Pooling config does not say.
        SetIncludePrompt(null);
        Assert.True(SentenceTransformersLayout.Read(_dir)!.DefaultPrompt!.IncludePrompt);
    }

    [Theory]
    [InlineData("""{"prompts": {"query": "", "document": ""}, "default_prompt_name": null}""")]   // as sentence-transformers saves a model without one
    [InlineData("""{"prompts": {"query": "q: "}}""")]                                           // prompts but no default
    [InlineData("""{"prompts": {"query": "", "document": "d: "}, "default_prompt_name": "query"}""")]   // an empty prompt is none
    [InlineData("""{"default_prompt_name": "document"}""")]                                     // a SentenceTransformer always knows query and document
    [InlineData("""{"prompts": {"query": null}, "default_prompt_name": "query"}""")]            // a prompt saved as null is empty
    public void No_prompt_applies_unless_a_default_names_a_non_empty_one(string config)
    {
        WriteStConfig(config);
        Assert.Null(SentenceTransformersLayout.Read(_dir)!.DefaultPrompt);
    }

    [Fact]
    public void Without_config_sentence_transformers_json_there_is_no_prompt()
    {
        File.Delete(Path.Combine(_dir, "config_sentence_transformers.json"));
        Assert.Null(SentenceTransformersLayout.Read(_dir)!.DefaultPrompt);
    }

    [Theory]
    [InlineData("""{"prompts": {"query": "q: "}, "default_prompt_name": "passage"}""", "default_prompt_name 'passage' is not one of its prompts ('query', 'document')")]
    [InlineData("""{"prompts": ["q: "], "default_prompt_name": "query"}""", "prompts must be an object")]
    [InlineData("""{"prompts": {"query": 3}, "default_prompt_name": "query"}""", "prompt 'query' must be a string, got 3")]
    [InlineData("""{"prompts": {"query": "q: "}, "default_prompt_name": 1}""", "default_prompt_name must be a string or null, got 1")]
    [InlineData("""[1]""", "must hold a JSON object")]
    public void A_bad_prompt_config_fails_the_load_naming_the_field(string config, string message)
    {
        WriteStConfig(config);
        var e = Assert.Throws<ModelLoadException>(() => SentenceTransformersLayout.Read(_dir));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
        Assert.Contains("config_sentence_transformers.json", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_cross_encoder_knows_only_its_own_prompts()
    {
        WriteStConfig("""{"default_prompt_name": "query"}""");
        var e = Assert.Throws<ModelLoadException>(() => SentenceTransformersLayout.Read(_dir, crossEncoder: true));
        Assert.Contains("default_prompt_name 'query' is not one of its prompts ()", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("null")]
    [InlineData("\"false\"")]
    [InlineData("0")]
    public void A_non_boolean_include_prompt_fails_the_load(string value)
    {
        SetIncludePrompt(value);
        var e = Assert.Throws<ModelLoadException>(() => SentenceTransformersLayout.Read(_dir));
        Assert.Contains($"include_prompt must be true or false, got {value}", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Prompt_length_leaves_out_a_trailing_special_token_only()
    {
        // BERT's template wraps the prompt in [CLS] … [SEP]: the [CLS] counts, the [SEP] does not.
        Tokenizer bert = Tokenizer.FromFile(Path.Combine(RepoPaths.Fixtures, "encoders", "bert-embed-mean", "tokenizer.json"));
        var prompt = new SentenceTransformersPrompt("query", "query: ", IncludePrompt: false);
        int[] ids = bert.Encode("query: ");
        Assert.True(bert.IsSpecialToken(ids[0]) && bert.IsSpecialToken(ids[^1]));
        Assert.Equal(ids.Length - 1, prompt.Length(bert, addSpecialTokens: true));
        Assert.Equal(ids.Length - 2, prompt.Length(bert, addSpecialTokens: false));

        // A byte-level BPE with no template adds nothing: every token is the prompt's, unless the text ends in a special token.
        Tokenizer bpe = Tokenizer.FromFile(Path.Combine(RepoPaths.Root, "models", "celer-tiny-py", "tokenizer.json"));
        string instruct = "Instruct: find the function\nQuery: ";
        Assert.Equal(bpe.Encode(instruct).Length, new SentenceTransformersPrompt("q", instruct, false).Length(bpe, addSpecialTokens: true));
        Assert.Equal(bpe.Encode(instruct).Length, new SentenceTransformersPrompt("q", instruct + "<|im_end|>", false).Length(bpe, addSpecialTokens: true));
    }

    [Fact]
    public void Excluded_prompt_tokens_cannot_be_negative() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new PoolingParams { ExcludedPromptTokens = -1 });

    [Theory]
    [InlineData(1)]
    [InlineData(16)]   // the whole first chunk
    [InlineData(20)]   // past the first chunk's end
    [InlineData(39)]   // all but the last token
    public void Mean_pooling_leaves_out_the_prompt_rows_across_chunks(int excluded)
    {
        PoolingFixture fixture = PoolingFixture.Load("llama-embed-mean");
        int[] ids = fixture.Cases.Single(c => c.PromptTokenIds.Length == 40).PromptTokenIds;
        // 16-token steps: the 40 tokens run in three chunks.
        using LlmEngine engine = ModelLoader.LoadOffline(SentenceTransformersParityTests.Args("llama-embed-mean")).Engine;
        IReadOnlyList<RequestOutput> outputs = engine.Generate([
            GenerateRequest.ForPooling("all", ids, new PoolingParams()),
            GenerateRequest.ForPooling("head", ids[..excluded], new PoolingParams()),
            GenerateRequest.ForPooling("tail", ids, new PoolingParams { ExcludedPromptTokens = excluded })]);
        float[] Vector(string id) => outputs.Single(o => o.RequestId == id).PoolerOutput!;
        float[] all = Vector("all"), head = Vector("head"), tail = Vector("tail");

        int n = ids.Length;
        float[] expected = [.. all.Select((a, i) => (float)(((double)n * a - (double)excluded * head[i]) / (n - excluded)))];
        Assert.True(PoolingFixture.Cosine(expected, tail) >= 0.99999, $"cosine {PoolingFixture.Cosine(expected, tail)}");
        Assert.True(Math.Abs(PoolingFixture.Norm(tail) / PoolingFixture.Norm(expected) - 1) < 1e-4);
        Assert.True(PoolingFixture.Cosine(all, tail) < 0.9999, "leaving the prompt out must change the vector");
    }
}
