using System.Net;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;
using Celer.TestSupport;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// sentence-transformers' default prompt over raw HTTP against the real server.
/// <list type="bullet">
/// <item>models/celer-tiny-py in sentence-transformers' layout with a default prompt, mean pooling and include_prompt
/// false: a text input is embedded with the prompt before it and the prompt's tokens (sentence-transformers'
/// prompt_length) left out of the mean; token ids are embedded as they are. The decoder is causal, so the expected
/// vector comes from the server's own token-id vectors: the mean of positions k..n-1 is (n·mean(all) − k·mean(first k))
/// / (n − k). <c>/score</c> prompts both texts; an input with nothing after the prompt is refused.</item>
/// <item>the bert-cross-encoder fixture with a default prompt: each pair's first text gets it, as sentence-transformers
/// 6's CrossEncoder.predict puts it.</item>
/// <item>the llama-embed-mean-prompt fixture (tools/reference/make_pooling_fixtures.py; skipped while it is missing):
/// <c>/v1/embeddings</c> of its texts against <c>SentenceTransformer.encode</c>, cosine ≥ 0.9999.</item>
/// </list>
/// </summary>
public sealed class SentenceTransformersPromptServerTests : IAsyncLifetime
{
    private const string Prompt = "Instruct: find the code that answers\nQuery: ";
    private const string PromptFixture = "llama-embed-mean-prompt";
    private readonly List<string> _dirs = [];
    private readonly List<TinyPyServer> _servers = [];

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public async ValueTask DisposeAsync()
    {
        foreach (var server in _servers)
            await server.DisposeAsync();
        foreach (var dir in _dirs)
            Directory.Delete(dir, recursive: true);
    }

    private string CopyModel(string source)
    {
        var dir = Directory.CreateTempSubdirectory("celer-st-prompt-").FullName;
        _dirs.Add(dir);
        foreach (var file in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(dir, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        return dir;
    }

    private static void WritePrompt(string dir) => File.WriteAllText(Path.Combine(dir, "config_sentence_transformers.json"),
        new JsonObject { ["prompts"] = new JsonObject { ["query"] = Prompt, ["document"] = "" }, ["default_prompt_name"] = "query" }.ToJsonString());

    private async Task<TinyPyServer> StartAsync(string dir, string? convert = null, int? maxModelLen = TinyPyServer.MaxModelLen)
    {
        var server = await TinyPyServer.StartAsync(model: dir, convert: convert, maxModelLen: maxModelLen);
        _servers.Add(server);
        return server;
    }

    /// <summary>celer-tiny-py as a sentence-transformers embedder: Transformer, then mean pooling without the prompt.</summary>
    private async Task<TinyPyServer> TinyPyEmbedderAsync()
    {
        var dir = CopyModel(ServerFixture.DefaultModel);
        await File.WriteAllTextAsync(Path.Combine(dir, "modules.json"), """
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
            """, TestContext.Current.CancellationToken);
        Directory.CreateDirectory(Path.Combine(dir, "1_Pooling"));
        await File.WriteAllTextAsync(Path.Combine(dir, "1_Pooling", "config.json"),
            """{"word_embedding_dimension": 256, "pooling_mode_mean_tokens": true, "include_prompt": false}""", TestContext.Current.CancellationToken);
        WritePrompt(dir);
        return await StartAsync(dir, convert: "embed");
    }

    private static JsonArray Array(params int[] ids) => new([.. ids.Select(i => (JsonNode?)JsonValue.Create(i))]);

    private static async Task<float[]> EmbedAsync(HttpClient client, JsonNode input)
    {
        var response = await HttpApiTests.PostOkAsync(client, "/v1/embeddings", new JsonObject { ["input"] = input }.ToJsonString());
        return [.. response["data"]![0]!["embedding"]!.AsArray().Select(v => v!.GetValue<float>())];
    }

    [Fact]
    public async Task A_text_is_embedded_after_the_default_prompt_whose_tokens_the_mean_leaves_out()
    {
        var server = await TinyPyEmbedderAsync();
        var tokenizer = server.Model.Tokenizer!;
        using var client = server.CreateClient();
        const string text = "def add(a, b): return a + b";
        var full = tokenizer.Encode(Prompt + text);
        // sentence-transformers' prompt_length: this tokenizer adds no special tokens, so every prompt token counts.
        var k = tokenizer.Encode(Prompt).Length;
        var n = full.Length;

        var response = await HttpApiTests.PostOkAsync(client, "/v1/embeddings", new JsonObject { ["input"] = text }.ToJsonString());
        float[] prompted = [.. response["data"]![0]!["embedding"]!.AsArray().Select(v => v!.GetValue<float>())];
        Assert.Equal(n, response["usage"]!["prompt_tokens"]!.GetValue<int>());

        // Token ids are embedded as they are: no prompt, every token pooled.
        var all = await EmbedAsync(client, Array(full));
        var head = await EmbedAsync(client, Array(full[..k]));
        float[] expected = [.. all.Select((a, i) => (float)(((double)n * a - (double)k * head[i]) / (n - k)))];
        var cosine = PoolingFixture.Cosine(expected, prompted);
        Assert.True(cosine >= 0.99999, $"cosine {cosine}");
        Assert.True(Math.Abs(PoolingFixture.Norm(prompted) / PoolingFixture.Norm(expected) - 1) < 1e-4);

        // /pooling takes the same path.
        var pooling = await HttpApiTests.PostOkAsync(client, "/pooling", new JsonObject { ["input"] = new JsonArray(text) }.ToJsonString());
        float[] pooled = [.. pooling["data"]![0]!["data"]!.AsArray().Select(v => v!.GetValue<float>())];
        Assert.True(PoolingFixture.Cosine(prompted, pooled) >= 0.99999);
    }

    [Fact]
    public async Task Score_embeds_both_texts_after_the_prompt()
    {
        var server = await TinyPyEmbedderAsync();
        var tokenizer = server.Model.Tokenizer!;
        using var client = server.CreateClient();
        const string query = "how do I add two numbers?", document = "def add(a, b): return a + b";

        var score = (await HttpApiTests.PostOkAsync(client, "/score",
            new JsonObject { ["text_1"] = query, ["text_2"] = document }.ToJsonString()))["data"]![0]!["score"]!.GetValue<double>();
        var prompted = PoolingFixture.Cosine(await EmbedAsync(client, query), await EmbedAsync(client, document));
        Assert.True(Math.Abs(prompted - score) < 1e-5, $"score {score}, cosine of the prompted vectors {prompted}");
        var bare = PoolingFixture.Cosine(await EmbedAsync(client, Array(tokenizer.Encode(query))), await EmbedAsync(client, Array(tokenizer.Encode(document))));
        Assert.True(Math.Abs(bare - score) > 1e-3, $"the score {score} must not be the unprompted texts' {bare}");
    }

    [Fact]
    public async Task An_input_with_nothing_after_the_prompt_is_refused()
    {
        var server = await TinyPyEmbedderAsync();
        using var client = server.CreateClient();
        var error = await HttpApiTests.PostErrorAsync(client, "/v1/embeddings", """{"input": ["fine", ""]}""", HttpStatusCode.BadRequest);
        Assert.Equal("input", error["param"]!.GetValue<string>());
        Assert.Contains("`input` 1 has no tokens after the model's default prompt 'query'", error["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(0, server.Executor.StepsExecuted);   // refused before anything was submitted
    }

    [Fact]
    public async Task A_cross_encoder_puts_the_prompt_before_each_pairs_first_text()
    {
        var source = EncoderServers.Require("bert-cross-encoder");
        var plain = await StartAsync(source, maxModelLen: EncoderServers.MaxModelLen);
        var dir = CopyModel(source);
        WritePrompt(dir);
        var prompted = await StartAsync(dir, maxModelLen: EncoderServers.MaxModelLen);
        const string query = "what is the capital of france?";
        var documents = new JsonArray("Paris is the capital of France.", "hello");

        static async Task<double[]> ScoresAsync(TinyPyServer server, string text1, JsonArray text2)
        {
            using var client = server.CreateClient();
            var response = await HttpApiTests.PostOkAsync(client, "/score", new JsonObject { ["text_1"] = text1, ["text_2"] = text2.DeepClone() }.ToJsonString());
            return [.. response["data"]!.AsArray().Select(d => d!["score"]!.GetValue<double>())];
        }

        var withPrompt = await ScoresAsync(prompted, query, documents);
        var byHand = await ScoresAsync(plain, Prompt + query, documents);
        var without = await ScoresAsync(plain, query, documents);
        for (var j = 0; j < withPrompt.Length; j++)
        {
            Assert.True(Math.Abs(withPrompt[j] - byHand[j]) < 1e-5, $"document {j}: {withPrompt[j]} vs {byHand[j]}");
            Assert.True(Math.Abs(withPrompt[j] - without[j]) > 1e-6, $"document {j}: the prompt changed nothing");
        }
    }

    [Fact]
    public async Task Embeddings_match_sentence_transformers_encode_with_its_default_prompt()
    {
        var dir = Path.Combine(PoolingFixture.Root, PromptFixture);
        Assert.SkipUnless(File.Exists(Path.Combine(dir, "reference.json")) && File.Exists(Path.Combine(dir, "tokenizer.json")),
            $"The pooling fixture {PromptFixture} is not in {PoolingFixture.Root} yet (tools/reference/make_pooling_fixtures.py --only {PromptFixture} writes it).");
        var reference = JsonNode.Parse(await File.ReadAllTextAsync(Path.Combine(dir, "reference.json"), TestContext.Current.CancellationToken))!;
        var texts = reference["texts"]!.AsArray();
        var server = await StartAsync(dir, maxModelLen: null);
        using var client = server.CreateClient();

        var response = await HttpApiTests.PostOkAsync(client, "/v1/embeddings",
            new JsonObject { ["input"] = new JsonArray([.. texts.Select(t => (JsonNode?)JsonValue.Create(t!["text"]!.GetValue<string>()))]) }.ToJsonString());
        var data = response["data"]!.AsArray();
        var prompt = reference["prompt"]!.GetValue<string>();
        var tokens = 0;
        for (var i = 0; i < texts.Count; i++)
        {
            // The same tokens as HF's tokenizer gave sentence-transformers, so a difference is the pooling's.
            int[] expectedIds = [.. texts[i]!["input_ids"]!.AsArray().Select(v => v!.GetValue<int>())];
            Assert.Equal(expectedIds, server.Model.Tokenizer!.Encode(prompt + texts[i]!["text"]!.GetValue<string>()));
            tokens += expectedIds.Length;
            float[] expected = [.. texts[i]!["embedding"]!.AsArray().Select(v => v!.GetValue<float>())];
            float[] actual = [.. data[i]!["embedding"]!.AsArray().Select(v => v!.GetValue<float>())];
            var cosine = PoolingFixture.Cosine(expected, actual);
            Assert.True(cosine >= 0.9999, $"text {i}: cosine {cosine}");
            Assert.True(Math.Abs(PoolingFixture.Norm(actual) / PoolingFixture.Norm(expected) - 1) < 1e-3, $"text {i}: norms differ");
        }
        Assert.Equal(tokens, response["usage"]!["prompt_tokens"]!.GetValue<int>());
    }
}
