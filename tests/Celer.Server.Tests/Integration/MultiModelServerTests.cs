using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Server.Metrics;
using Celer.Server.Tests.Support;
using Celer.TestSupport;
using Microsoft.AspNetCore.Builder;
using OpenAI;
using OpenAI.Chat;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// One server of three models, each on its own engine: models/celer-tiny-py as <c>tiny</c>, its draft model (a
/// different, smaller Llama with the same tokenizer) as <c>draft</c> and <c>draft-alias</c>, and the BERT embedding
/// fixture as <c>embed</c>; with the same engine settings as the single-model <see cref="TinyPyServer"/>s the answers are
/// compared against.
/// </summary>
public sealed class MultiModelFixture : IAsyncLifetime
{
    public const string Tiny = "tiny";
    public const string Draft = "draft";
    public const string DraftAlias = "draft-alias";
    public const string Embed = "embed";
    public const int TinyMaxModelLen = 256;
    public const int DraftMaxModelLen = 192;
    public const int EmbedMaxModelLen = 128;

    /// <summary>Enough KV cache for the tests' requests; small, so three engines fit anywhere.</summary>
    public const long KvCacheBytes = 64L << 20;

    private readonly List<LoadedModel> _models = [];
    private WebApplication? _app;

    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>The draft model with the default model's tokenizer files beside it: the draft ships none of its own.</summary>
    public string DraftDirectory { get; } = Path.Combine(Path.GetTempPath(), "celer-multi-model-" + Guid.NewGuid().ToString("N"));

    public static string EmbedDirectory => EncoderServers.Require("bert-embed-mean");

    /// <summary>The engine settings of a <see cref="TinyPyServer"/> of the model, so greedy answers are comparable.</summary>
    public static EngineArgs Args(string model, string name, int maxModelLen) => new()
    {
        Model = model, ServedModelName = name, MaxModelLen = maxModelLen, MaxNumSeqs = TinyPyServer.MaxNumSeqs,
        MaxNumBatchedTokens = 512, BlockSize = 16, Seed = 0, KvCacheMemoryBytes = KvCacheBytes,
    };

    public static void WriteDraftDirectory(string directory)
    {
        Directory.CreateDirectory(directory);
        var draft = Path.Combine(RepoPaths.Root, "models", "celer-tiny-py-draft");
        foreach (var file in new[] { "config.json", "generation_config.json", "model.safetensors" })
            File.Copy(Path.Combine(draft, file), Path.Combine(directory, file));
        foreach (var file in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(ServerFixture.DefaultModel, file), Path.Combine(directory, file));
    }

    public async ValueTask InitializeAsync()
    {
        WriteDraftDirectory(DraftDirectory);
        var options = new ServerOptions { Port = 0, LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning, MaxPendingRequests = 64 };
        var toServe = new List<ModelToServe>();
        foreach (var (args, names) in new[]
                 {
                     (Args(ServerFixture.DefaultModel, Tiny, TinyMaxModelLen), new[] { Tiny }),
                     (Args(DraftDirectory, Draft, DraftMaxModelLen), [Draft, DraftAlias]),
                     (Args(EmbedDirectory, Embed, EmbedMaxModelLen), [Embed]),
                 })
        {
            var relay = new EngineStatsRelay();
            var loaded = ModelLoader.Load(args, listener: relay);
            _models.Add(loaded);
            toServe.Add(new ModelToServe(loaded, options with { ServedModelNames = names }, relay));
        }

        _app = CelerServer.Build(options, toServe);
        await _app.StartAsync();
        BaseAddress = CelerServer.GetBoundAddress(_app);
    }

    public HttpClient CreateClient() => new() { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }

        foreach (var model in _models)
            await model.DisposeAsync();
        Directory.Delete(DraftDirectory, recursive: true);
    }
}

/// <summary>Several models in one server: routing by <c>model</c>, no cross-talk, the model list, errors, metrics, health.</summary>
public sealed class MultiModelServerTests(MultiModelFixture server) : IClassFixture<MultiModelFixture>
{
    private static readonly string[] Prompts = ["def fibonacci(n):", "import os\n\nclass ", "for i in range("];
    private static readonly string[] GenerativeModels = [MultiModelFixture.Tiny, MultiModelFixture.Draft];
    private static readonly bool[] Both = [false, true];

    private sealed record Ask(string Model, string Prompt, bool Chat, bool Stream);

    [Fact]
    public async Task Each_model_answers_as_its_own_single_model_server_under_interleaved_concurrent_load()
    {
        var asks = (from prompt in Prompts
                    from model in GenerativeModels
                    from chat in Both
                    from stream in Both
                    select new Ask(model, prompt, chat, stream)).ToList();
        string[] embedInputs = ["def add(a, b):", "the quick brown fox"];

        var expected = new Dictionary<Ask, string>();
        JsonNode expectedEmbeddings;
        var draftDirectory = Path.Combine(Path.GetTempPath(), "celer-multi-model-ref-" + Guid.NewGuid().ToString("N"));
        MultiModelFixture.WriteDraftDirectory(draftDirectory);
        try
        {
            foreach (var (model, directory, maxModelLen) in new[]
                     {
                         (MultiModelFixture.Tiny, ServerFixture.DefaultModel, MultiModelFixture.TinyMaxModelLen),
                         (MultiModelFixture.Draft, draftDirectory, MultiModelFixture.DraftMaxModelLen),
                     })
            {
                await using var single = await TinyPyServer.StartAsync(model: directory, maxModelLen: maxModelLen, servedModelName: model, kvCacheMemory: MultiModelFixture.KvCacheBytes);
                using var singleClient = single.CreateClient();
                foreach (var ask in asks.Where(a => a.Model == model))
                    expected[ask] = await AskAsync(singleClient, ask);
            }

            await using (var singleEmbed = await TinyPyServer.StartAsync(model: MultiModelFixture.EmbedDirectory, maxModelLen: MultiModelFixture.EmbedMaxModelLen, servedModelName: MultiModelFixture.Embed))
            {
                using var embedClient = singleEmbed.CreateClient();
                expectedEmbeddings = await EmbedAsync(embedClient, embedInputs);
            }
        }
        finally
        {
            Directory.Delete(draftDirectory, recursive: true);
        }

        // Greedy answers of two different models: if requests crossed engines, some answer would change.
        Assert.NotEqual(expected[asks[0]], expected[asks[0] with { Model = MultiModelFixture.Draft }]);

        using var client = server.CreateClient();
        var embeddings = EmbedAsync(client, embedInputs);
        var answers = await Task.WhenAll(asks.Select(ask => AskAsync(client, ask)));
        for (var i = 0; i < asks.Count; i++)
            Assert.True(expected[asks[i]] == answers[i], $"{asks[i]}: expected \"{expected[asks[i]]}\", got \"{answers[i]}\"");
        var got = (await embeddings)["data"]!.AsArray();
        var want = expectedEmbeddings["data"]!.AsArray();
        for (var i = 0; i < embedInputs.Length; i++)
            Assert.Equal(Vector(want[i]!), Vector(got[i]!));
    }

    [Fact]
    public async Task Models_lists_every_served_name_with_its_own_context_length()
    {
        using var client = server.CreateClient();
        var list = JsonNode.Parse(await client.GetStringAsync("/v1/models", TestContext.Current.CancellationToken))!["data"]!.AsArray();

        Assert.Equal(
            [
                (MultiModelFixture.Tiny, MultiModelFixture.TinyMaxModelLen), (MultiModelFixture.Draft, MultiModelFixture.DraftMaxModelLen),
                (MultiModelFixture.DraftAlias, MultiModelFixture.DraftMaxModelLen), (MultiModelFixture.Embed, MultiModelFixture.EmbedMaxModelLen),
            ],
            list.Select(card => (card!["id"]!.GetValue<string>(), card["max_model_len"]!.GetValue<int>())).ToArray());
        var alias = JsonNode.Parse(await client.GetStringAsync("/v1/models/draft-alias", TestContext.Current.CancellationToken))!;
        Assert.Equal(MultiModelFixture.DraftMaxModelLen, alias["max_model_len"]!.GetValue<int>());
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/v1/models/nope", TestContext.Current.CancellationToken)).StatusCode);
    }

    [Fact]
    public async Task An_alias_reaches_its_model_and_the_answer_names_the_first_served_name()
    {
        using var client = server.CreateClient();
        var byName = await HttpApiTests.PostOkAsync(client, "/v1/completions", """{"model": "draft", "prompt": "def f(x):", "max_tokens": 8, "temperature": 0}""");
        var byAlias = await HttpApiTests.PostOkAsync(client, "/v1/completions", """{"model": "draft-alias", "prompt": "def f(x):", "max_tokens": 8, "temperature": 0}""");

        Assert.Equal(byName["choices"]![0]!["text"]!.GetValue<string>(), byAlias["choices"]![0]!["text"]!.GetValue<string>());
        Assert.Equal(MultiModelFixture.Draft, byAlias["model"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("/v1/completions", """{"prompt": "x", "max_tokens": 1}""")]
    [InlineData("/v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}""")]
    [InlineData("/v1/embeddings", """{"input": "x"}""")]
    [InlineData("/pooling", """{"input": "x"}""")]
    [InlineData("/score", """{"text_1": "x", "text_2": "y"}""")]
    [InlineData("/rerank", """{"query": "x", "documents": ["y"]}""")]
    [InlineData("/classify", """{"input": "x"}""")]
    [InlineData("/tokenize", """{"prompt": "x"}""")]
    [InlineData("/detokenize", """{"tokens": [1]}""")]
    public async Task Every_route_refuses_a_missing_model_and_an_unknown_one(string path, string body)
    {
        using var client = server.CreateClient();
        var missing = await HttpApiTests.PostErrorAsync(client, path, body, HttpStatusCode.BadRequest);
        Assert.Equal("The server serves several models (tiny, draft, embed); name one in `model`.", missing["message"]!.GetValue<string>());
        Assert.Equal("model", missing["param"]!.GetValue<string>());
        Assert.Equal("BadRequestError", missing["type"]!.GetValue<string>());

        var unknown = await HttpApiTests.PostErrorAsync(client, path, body.Insert(1, "\"model\": \"nope\", "), HttpStatusCode.NotFound);
        Assert.Equal("The model `nope` does not exist.", unknown["message"]!.GetValue<string>());
        Assert.Equal("model_not_found", unknown["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task Tokenize_and_pooling_routes_use_the_named_models_tokenizer_and_engine()
    {
        using var client = server.CreateClient();
        var tiny = await HttpApiTests.PostOkAsync(client, "/tokenize", """{"model": "tiny", "prompt": "def add(a, b):"}""");
        var embed = await HttpApiTests.PostOkAsync(client, "/tokenize", """{"model": "embed", "prompt": "def add(a, b):"}""");

        Assert.Equal(MultiModelFixture.TinyMaxModelLen, tiny["max_model_len"]!.GetValue<int>());
        Assert.Equal(MultiModelFixture.EmbedMaxModelLen, embed["max_model_len"]!.GetValue<int>());
        Assert.NotEqual(tiny["tokens"]!.ToJsonString(), embed["tokens"]!.ToJsonString());
        var text = await HttpApiTests.PostOkAsync(client, "/detokenize", $$"""{"model": "tiny", "tokens": {{tiny["tokens"]!.ToJsonString()}}}""");
        Assert.Equal("def add(a, b):", text["prompt"]!.GetValue<string>());

        var score = await HttpApiTests.PostOkAsync(client, "/score", """{"model": "embed", "text_1": "a cat", "text_2": ["a cat", "a dog"]}""");
        Assert.Equal(MultiModelFixture.Embed, score["model"]!.GetValue<string>());
        // The generative models answer the pooling routes with the engine's refusal, not the embedding model's vectors.
        var refused = await HttpApiTests.PostErrorAsync(client, "/v1/embeddings", """{"model": "tiny", "input": "x"}""", HttpStatusCode.BadRequest);
        Assert.Contains("generative model", refused["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Metrics_export_each_models_series_under_its_own_name_and_each_family_once()
    {
        using var client = server.CreateClient();
        var before = ParseSamples(await client.GetStringAsync("/metrics", TestContext.Current.CancellationToken));
        await HttpApiTests.PostOkAsync(client, "/v1/completions", """{"model": "tiny", "prompt": "x = ", "max_tokens": 3, "temperature": 0, "ignore_eos": true}""");
        await HttpApiTests.PostOkAsync(client, "/v1/completions", """{"model": "draft", "prompt": "x = ", "max_tokens": 3, "temperature": 0, "ignore_eos": true}""");
        await HttpApiTests.PostOkAsync(client, "/v1/completions", """{"model": "draft", "prompt": "y = ", "max_tokens": 3, "temperature": 0, "ignore_eos": true}""");

        // The finished counters are published with the engines' stats, which may trail the answers by a moment.
        string text = "";
        Dictionary<string, double> after = [];
        await Poll.UntilAsync(() =>
        {
            text = client.GetStringAsync("/metrics").GetAwaiter().GetResult();
            after = ParseSamples(text);
            return Delta("tiny") == 1 && Delta("draft") == 2;
        }, TimeSpan.FromSeconds(10), "both engines count their finished requests");

        double Delta(string model)
        {
            var key = $$"""vllm:request_success_total{model_name="{{model}}",engine="0",finished_reason="length"}""";
            return after.GetValueOrDefault(key) - before.GetValueOrDefault(key);
        }

        foreach (var model in new[] { MultiModelFixture.Tiny, MultiModelFixture.Draft, MultiModelFixture.Embed })
        {
            foreach (var name in new[] { "vllm:num_requests_running", "vllm:kv_cache_usage_perc", "vllm:prompt_tokens_total" })
                Assert.Contains($$"""{{name}}{model_name="{{model}}",engine="0"}""", after.Keys);
        }

        Assert.Equal(6, after[$$"""vllm:generation_tokens_total{model_name="draft",engine="0"}"""] - before.GetValueOrDefault($$"""vllm:generation_tokens_total{model_name="draft",engine="0"}"""));
        var typeLines = text.Split('\n').Where(line => line.StartsWith("# TYPE ", StringComparison.Ordinal)).ToList();
        Assert.Equal(typeLines.Count, typeLines.Distinct(StringComparer.Ordinal).Count());
        Assert.DoesNotContain(after.Keys, key => key.Contains("model_name=\"draft-alias\"", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_OpenAI_client_reaches_each_model_by_name()
    {
        var client = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") });
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 8, Temperature = 0 };
        ChatMessage[] conversation = [new UserChatMessage("Write a loop.")];
        using var http = server.CreateClient();

        foreach (var model in GenerativeModels)
        {
            var completion = (await client.GetChatClient(model).CompleteChatAsync(conversation, options, TestContext.Current.CancellationToken)).Value;
            Assert.Equal(model, completion.Model);
            Assert.Equal(await AskAsync(http, new Ask(model, "Write a loop.", Chat: true, Stream: false), maxTokens: 8), completion.Content[0].Text);
        }

        var models = (await client.GetOpenAIModelClient().GetModelsAsync(TestContext.Current.CancellationToken)).Value;
        Assert.Equal([MultiModelFixture.Tiny, MultiModelFixture.Draft, MultiModelFixture.DraftAlias, MultiModelFixture.Embed], models.Select(m => m.Id).ToArray());
    }

    [Fact]
    public async Task Health_is_200_only_while_every_engine_runs_and_a_dead_engine_leaves_the_other_model_serving()
    {
        var draftDirectory = Path.Combine(Path.GetTempPath(), "celer-multi-model-dead-" + Guid.NewGuid().ToString("N"));
        MultiModelFixture.WriteDraftDirectory(draftDirectory);
        var options = new ServerOptions { Port = 0, LogLevel = Microsoft.Extensions.Logging.LogLevel.None };
        InterceptingExecutor? draftExecutor = null;
        await using var tiny = ModelLoader.Load(MultiModelFixture.Args(ServerFixture.DefaultModel, MultiModelFixture.Tiny, MultiModelFixture.TinyMaxModelLen));
        await using var draft = ModelLoader.Load(
            MultiModelFixture.Args(draftDirectory, MultiModelFixture.Draft, MultiModelFixture.DraftMaxModelLen),
            wrapExecutor: runner => draftExecutor = new InterceptingExecutor(runner));
        var app = CelerServer.Build(options, [new ModelToServe(tiny, options), new ModelToServe(draft, options)]);
        try
        {
            await app.StartAsync(TestContext.Current.CancellationToken);
            using var client = new HttpClient { BaseAddress = CelerServer.GetBoundAddress(app), Timeout = TimeSpan.FromSeconds(30) };
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health", TestContext.Current.CancellationToken)).StatusCode);

            draftExecutor!.FailNextStep();
            using var failed = await client.PostJsonAsync("/v1/completions", """{"model": "draft", "prompt": "x", "max_tokens": 4}""");
            Assert.Equal(HttpStatusCode.InternalServerError, failed.StatusCode);
            await Poll.UntilAsync(() => draft.Engine.IsDead, TimeSpan.FromSeconds(10), "the draft engine dies");

            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await client.GetAsync("/health", TestContext.Current.CancellationToken)).StatusCode);
            await HttpApiTests.PostErrorAsync(client, "/v1/completions", """{"model": "draft", "prompt": "x", "max_tokens": 4}""", HttpStatusCode.ServiceUnavailable);
            await HttpApiTests.PostOkAsync(client, "/v1/completions", """{"model": "tiny", "prompt": "x", "max_tokens": 4}""");
        }
        finally
        {
            draftExecutor?.Open();
            await app.StopAsync(CancellationToken.None);
            await app.DisposeAsync();
            Directory.Delete(draftDirectory, recursive: true);
        }
    }

    [Fact]
    public async Task Two_models_under_one_name_are_refused_when_the_server_is_built()
    {
        // Refused before the server is built: the check needs only the names, so the same loaded model is given twice here.
        await using var model = ModelLoader.Load(MultiModelFixture.Args(ServerFixture.DefaultModel, MultiModelFixture.Tiny, 64));
        var options = new ServerOptions { Port = 0, LogLevel = Microsoft.Extensions.Logging.LogLevel.None };
        var error = Assert.Throws<ArgumentException>(() => CelerServer.Build(options, [new ModelToServe(model, options), new ModelToServe(model, options with { ServedModelNames = ["other", MultiModelFixture.Tiny] })]));
        Assert.StartsWith("The served model name `tiny` is given to two models", error.Message, StringComparison.Ordinal);
    }

    private static async Task<string> AskAsync(HttpClient client, Ask ask, int maxTokens = 16)
    {
        var path = ask.Chat ? "/v1/chat/completions" : "/v1/completions";
        var input = ask.Chat
            ? $"\"messages\": [{{\"role\": \"user\", \"content\": {JsonValue.Create(ask.Prompt).ToJsonString()}}}]"
            : $"\"prompt\": {JsonValue.Create(ask.Prompt).ToJsonString()}";
        var body = $$"""{"model": "{{ask.Model}}", {{input}}, "max_tokens": {{maxTokens}}, "temperature": 0, "stream": {{(ask.Stream ? "true" : "false")}}}""";
        if (!ask.Stream)
        {
            var answer = await HttpApiTests.PostOkAsync(client, path, body);
            Assert.Equal(ask.Model, answer["model"]!.GetValue<string>());
            var choice = answer["choices"]![0]!;
            return (ask.Chat ? choice["message"]!["content"] : choice["text"])!.GetValue<string>();
        }

        using var response = await client.PostJsonAsync(path, body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = new StringBuilder();
        foreach (var data in (await SseReader.ReadAllAsync(response))[..^1])
        {
            var chunk = JsonNode.Parse(data)!;
            Assert.Equal(ask.Model, chunk["model"]!.GetValue<string>());
            if (chunk["choices"]!.AsArray() is [var choice, ..])
                text.Append((ask.Chat ? choice!["delta"]!["content"] : choice!["text"])?.GetValue<string>());
        }

        return text.ToString();
    }

    private static Task<JsonNode> EmbedAsync(HttpClient client, string[] inputs) =>
        HttpApiTests.PostOkAsync(client, "/v1/embeddings", $$"""{"model": "embed", "input": {{new JsonArray([.. inputs.Select(i => JsonValue.Create(i))]).ToJsonString()}}}""");

    private static float[] Vector(JsonNode item) => [.. item["embedding"]!.AsArray().Select(v => v!.GetValue<float>())];

    /// <summary>Prometheus text format: every sample line is <c>name{labels} value</c>; comments start with '#'.</summary>
    private static Dictionary<string, double> ParseSamples(string text)
    {
        var samples = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
                continue;
            var space = line.LastIndexOf(' ');
            samples[line[..space]] = double.Parse(line[(space + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        }

        return samples;
    }
}
