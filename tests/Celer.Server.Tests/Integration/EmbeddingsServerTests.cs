using System.Buffers.Binary;
using System.ClientModel;
using System.Net;
using System.Text.Json.Nodes;
using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Server.Tests.Support;
using Celer.Tokenization;
using OpenAI;
using OpenAI.Embeddings;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// models/celer-tiny-py served as an embedding model (<c>--convert embed</c>: last-token pooling, normalized, 256
/// dimensions) next to the offline engine over the same checkpoint, which gives the reference vectors.
/// </summary>
public sealed class EmbeddingServerFixture : IAsyncLifetime
{
    private readonly Lock _offlineLock = new();
    private LlmEngine? _offline;

    internal TinyPyServer Server { get; private set; } = null!;

    /// <summary>The server's own tokenizer.</summary>
    public Tokenizer Tokenizer => Server.Model.Tokenizer!;

    public async ValueTask InitializeAsync()
    {
        Server = await TinyPyServer.StartAsync(convert: "embed");
        _offline = ModelLoader.LoadOffline(new EngineArgs
        {
            Model = ServerFixture.DefaultModel, Convert = "embed", MaxModelLen = TinyPyServer.MaxModelLen,
            MaxNumSeqs = TinyPyServer.MaxNumSeqs, MaxNumBatchedTokens = 512, BlockSize = 16, Seed = 0,
        }).Engine;
    }

    /// <summary>The offline engine's vector for the token ids.</summary>
    public float[] Offline(int[] tokenIds, bool? normalize = null)
    {
        lock (_offlineLock)
            return _offline!.Generate([GenerateRequest.ForPooling("reference", tokenIds, new PoolingParams { Normalize = normalize })])[0].PoolerOutput!;
    }

    public async ValueTask DisposeAsync()
    {
        _offline?.Dispose();
        if (Server is not null)
            await Server.DisposeAsync();
    }
}

/// <summary>
/// <c>/v1/embeddings</c> through the official OpenAI .NET client and raw HTTP, and vLLM's <c>/pooling</c>, against the real
/// server: the vectors are the offline engine's for the same token ids, in the order of the inputs, with OpenAI's shapes,
/// usage and base64 encoding; bad input gets OpenAI's 400 envelope; a pooling model refuses text generation and a
/// generative model refuses embeddings.
/// </summary>
public sealed class EmbeddingsServerTests(EmbeddingServerFixture fixture) : IClassFixture<EmbeddingServerFixture>
{
    private const int HiddenSize = 256;
    private const float Tolerance = 1e-5f;
    private const string Embeddings = "/v1/embeddings";
    private const string Pooling = "/pooling";

    private static readonly string[] Texts =
    [
        "Hello world",
        "The quick brown fox jumps over the lazy dog.",
        "x",
        "def add(a, b):\n    return a + b",
        "Embeddings map text to vectors; similar texts get similar vectors.",
        "  leading and trailing spaces  ",
        "Ünïcödé and emoji 🙂",
        "1 2 3 4 5 6 7 8 9 10",
    ];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private TinyPyServer Server => fixture.Server;

    private static EmbeddingClient Client(TinyPyServer server) =>
        new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") })
            .GetEmbeddingClient(ServerFixture.ModelName);

    private int[] Encode(string text) => fixture.Tokenizer.Encode(text, addSpecialTokens: true);

    private static int[] LongIds(int length) => [.. Enumerable.Range(0, length).Select(t => (t * 37 % 8000) + 10)];

    private static void AssertClose(float[] expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= Tolerance, $"{what}[{i}]: {actual[i]} vs the offline engine's {expected[i]}");
    }

    private static double Norm(ReadOnlySpan<float> vector)
    {
        double sum = 0;
        foreach (var x in vector)
            sum += (double)x * x;
        return Math.Sqrt(sum);
    }

    private static float[] Floats(JsonNode array) => [.. array.AsArray().Select(x => x!.GetValue<float>())];

    private static float[] DecodeBase64(string base64)
    {
        var bytes = Convert.FromBase64String(base64);
        Assert.Equal(0, bytes.Length % sizeof(float));
        var values = new float[bytes.Length / sizeof(float)];
        for (var i = 0; i < values.Length; i++)
            values[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(i * sizeof(float)));
        return values;
    }

    [Fact]
    public async Task String_and_list_inputs_give_unit_vectors_equal_to_the_offline_engines()
    {
        var single = (await Client(Server).GenerateEmbeddingAsync(Texts[1], cancellationToken: Ct)).Value;
        Assert.Equal(0, single.Index);
        var vector = single.ToFloats().Span;
        Assert.Equal(HiddenSize, vector.Length);
        Assert.Equal(1.0, Norm(vector), 4);
        AssertClose(fixture.Offline(Encode(Texts[1])), vector, "single");

        // Every input is its own engine request, all running at once; the order of the data is the inputs'.
        var list = (await Client(Server).GenerateEmbeddingsAsync(Texts, cancellationToken: Ct)).Value;
        Assert.Equal(Texts.Length, list.Count);
        Assert.Equal(ServerFixture.ModelName, list.Model);
        for (var i = 0; i < Texts.Length; i++)
        {
            Assert.Equal(i, list[i].Index);
            var v = list[i].ToFloats().Span;
            Assert.Equal(HiddenSize, v.Length);
            Assert.Equal(1.0, Norm(v), 4);
            AssertClose(fixture.Offline(Encode(Texts[i])), v, $"input {i}");
        }
        Assert.NotEqual(list[0].ToFloats().ToArray(), list[1].ToFloats().ToArray());
    }

    [Fact]
    public async Task Float_and_base64_encodings_carry_the_same_vectors_in_OpenAIs_shape()
    {
        using var client = Server.CreateClient();
        var before = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var floats = await HttpApiTests.PostOkAsync(client, Embeddings, """{"model": "celer-tiny", "input": ["Hello world", "x"], "user": "someone"}""");
        var base64 = await HttpApiTests.PostOkAsync(client, Embeddings, """{"input": ["Hello world", "x"], "encoding_format": "base64"}""");

        foreach (var response in (JsonNode[])[floats, base64])
        {
            Assert.Matches("^embd-[0-9a-f]{32}$", response["id"]!.GetValue<string>());
            Assert.Equal("list", response["object"]!.GetValue<string>());
            Assert.Equal(ServerFixture.ModelName, response["model"]!.GetValue<string>());
            Assert.InRange(response["created"]!.GetValue<long>(), before, before + 60);
            Assert.Equal(2, response["data"]!.AsArray().Count);
        }
        Assert.NotEqual(floats["id"]!.GetValue<string>(), base64["id"]!.GetValue<string>());

        string[] texts = ["Hello world", "x"];
        for (var i = 0; i < texts.Length; i++)
        {
            var expected = fixture.Offline(Encode(texts[i]));
            var floatItem = floats["data"]![i]!;
            var base64Item = base64["data"]![i]!;
            Assert.Equal("embedding", floatItem["object"]!.GetValue<string>());
            Assert.Equal(i, floatItem["index"]!.GetValue<int>());
            Assert.Equal(i, base64Item["index"]!.GetValue<int>());
            var fromFloats = Floats(floatItem["embedding"]!);
            var fromBase64 = DecodeBase64(base64Item["embedding"]!.GetValue<string>());
            AssertClose(expected, fromFloats, $"float {i}");
            AssertClose(expected, fromBase64, $"base64 {i}");
            AssertClose(fromFloats, fromBase64, $"float vs base64 {i}");
        }
    }

    [Fact]
    public async Task Token_id_inputs_embed_those_ids()
    {
        int[][] inputs = [[1, 2, 3], [500, 17, 4000, 8191], [42]];
        var list = (await Client(Server).GenerateEmbeddingsAsync(inputs.Select(ids => new ReadOnlyMemory<int>(ids)), cancellationToken: Ct)).Value;
        Assert.Equal(inputs.Length, list.Count);
        for (var i = 0; i < inputs.Length; i++)
            AssertClose(fixture.Offline(inputs[i]), list[i].ToFloats().Span, $"ids {i}");
        Assert.Equal(inputs.Sum(ids => ids.Length), list.Usage.InputTokenCount);

        // One flat list of ids is one input.
        using var client = Server.CreateClient();
        var flat = await HttpApiTests.PostOkAsync(client, Embeddings, """{"input": [500, 17, 4000, 8191]}""");
        Assert.Single(flat["data"]!.AsArray());
        AssertClose(fixture.Offline(inputs[1]), Floats(flat["data"]![0]!["embedding"]!), "flat ids");
    }

    [Fact]
    public async Task Usage_counts_the_input_tokens_after_truncation()
    {
        var list = (await Client(Server).GenerateEmbeddingsAsync(Texts[..3], cancellationToken: Ct)).Value;
        var tokens = Texts[..3].Sum(t => Encode(t).Length);
        Assert.Equal(tokens, list.Usage.InputTokenCount);
        Assert.Equal(tokens, list.Usage.TotalTokenCount);

        using var client = Server.CreateClient();
        var raw = await HttpApiTests.PostOkAsync(client, Embeddings, """{"input": [[4, 5], [1, 2, 3]]}""");
        Assert.Equal(5, raw["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(5, raw["usage"]!["total_tokens"]!.GetValue<int>());
        Assert.Null(raw["usage"]!["completion_tokens"]);

        // truncate_prompt_tokens keeps the last k tokens of each input, as vLLM's left truncation.
        var text = Texts[4];
        var ids = Encode(text);
        Assert.True(ids.Length > 3);
        var truncated = await HttpApiTests.PostOkAsync(client, Embeddings, $$"""{"input": "{{text}}", "truncate_prompt_tokens": 3}""");
        Assert.Equal(3, truncated["usage"]!["prompt_tokens"]!.GetValue<int>());
        AssertClose(fixture.Offline(ids[^3..]), Floats(truncated["data"]![0]!["embedding"]!), "truncated to 3");

        // -1: the model's maximum length, so an input longer than the context is embedded from its last 256 tokens.
        var longIds = LongIds(300);
        var cut = await HttpApiTests.PostOkAsync(client, Embeddings,
            $$"""{"input": [{{string.Join(",", longIds)}}], "truncate_prompt_tokens": -1}""");
        Assert.Equal(TinyPyServer.MaxModelLen, cut["usage"]!["prompt_tokens"]!.GetValue<int>());
        AssertClose(fixture.Offline(longIds[^TinyPyServer.MaxModelLen..]), Floats(cut["data"]![0]!["embedding"]!), "truncated to max_model_len");
        // A k longer than the input leaves it whole.
        var whole = await HttpApiTests.PostOkAsync(client, Embeddings, """{"input": [1, 2, 3], "truncate_prompt_tokens": 100}""");
        Assert.Equal(3, whole["usage"]!["prompt_tokens"]!.GetValue<int>());
    }

    [Fact]
    public async Task Pooling_endpoint_returns_vLLMs_shape_and_honours_normalize()
    {
        using var client = Server.CreateClient();
        var response = await HttpApiTests.PostOkAsync(client, Pooling, """{"model": "celer-tiny", "input": ["Hello world", "x"]}""");
        Assert.Matches("^pool-[0-9a-f]{32}$", response["id"]!.GetValue<string>());
        Assert.Equal("list", response["object"]!.GetValue<string>());
        Assert.Equal(ServerFixture.ModelName, response["model"]!.GetValue<string>());
        Assert.True(response["created"]!.GetValue<long>() > 0);
        var helloIds = Encode("Hello world");
        var xIds = Encode("x");
        Assert.Equal(helloIds.Length + xIds.Length, response["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(helloIds.Length + xIds.Length, response["usage"]!["total_tokens"]!.GetValue<int>());
        var data = response["data"]!.AsArray();
        Assert.Equal(2, data.Count);
        for (var i = 0; i < 2; i++)
        {
            Assert.Equal("pooling", data[i]!["object"]!.GetValue<string>());
            Assert.Equal(i, data[i]!["index"]!.GetValue<int>());
        }
        AssertClose(fixture.Offline(helloIds), Floats(data[0]!["data"]!), "pooling text");
        AssertClose(fixture.Offline(xIds), Floats(data[1]!["data"]!), "pooling second text");
        var ids = await HttpApiTests.PostOkAsync(client, Pooling, """{"input": [[1, 2, 3]]}""");
        AssertClose(fixture.Offline([1, 2, 3]), Floats(ids["data"]![0]!["data"]!), "pooling ids");

        // base64 works there too; normalize: false gives the raw last hidden state.
        var base64 = await HttpApiTests.PostOkAsync(client, Pooling, """{"input": "Hello world", "encoding_format": "base64", "normalize": false}""");
        var raw = DecodeBase64(base64["data"]![0]!["data"]!.GetValue<string>());
        AssertClose(fixture.Offline(helloIds, normalize: false), raw, "unnormalized");
        Assert.True(Math.Abs(Norm(raw) - 1) > 1e-3, $"the unnormalized vector has norm {Norm(raw)}");

        var embedded = await HttpApiTests.PostOkAsync(client, Embeddings, """{"input": "Hello world", "normalize": false}""");
        AssertClose(raw, Floats(embedded["data"]![0]!["embedding"]!), "embeddings normalize: false");
    }

    [Fact]
    public async Task Chat_messages_embed_the_rendered_conversations_token_ids()
    {
        using var client = Server.CreateClient();
        const string messages = """[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello world"}]""";
        foreach (var (path, field) in ((string, string)[])[(Embeddings, "embedding"), (Pooling, "data")])
        {
            foreach (var addGenerationPrompt in (bool?[])[null, false, true])
            {
                var flag = addGenerationPrompt is { } f ? $$""", "add_generation_prompt": {{(f ? "true" : "false")}}""" : "";
                // vLLM's default for an embedding chat request is no generation prompt; /tokenize's is one, so it is always given there.
                var tokenized = await HttpApiTests.PostOkAsync(client, "/tokenize",
                    $$"""{"messages": {{messages}}, "add_generation_prompt": {{(addGenerationPrompt == true ? "true" : "false")}}}""");
                var ids = tokenized["tokens"]!.AsArray().Select(t => t!.GetValue<int>()).ToArray();

                var chat = await HttpApiTests.PostOkAsync(client, path, $$"""{"model": "celer-tiny", "messages": {{messages}}{{flag}}}""");
                var byIds = await HttpApiTests.PostOkAsync(client, path, $$"""{"input": [{{string.Join(",", ids)}}]}""");
                Assert.Single(chat["data"]!.AsArray());
                var vector = Floats(chat["data"]![0]![field]!);
                AssertClose(Floats(byIds["data"]![0]![field]!), vector, $"{path} messages, add_generation_prompt {addGenerationPrompt}");
                AssertClose(fixture.Offline(ids), vector, $"{path} messages against the offline engine");
                Assert.Equal(ids.Length, chat["usage"]!["prompt_tokens"]!.GetValue<int>());
                Assert.Equal(ids.Length, chat["usage"]!["total_tokens"]!.GetValue<int>());
            }
        }

        // The generation prompt adds tokens, and truncate_prompt_tokens cuts the rendered conversation on the left.
        var withPrompt = await HttpApiTests.PostOkAsync(client, "/tokenize", $$"""{"messages": {{messages}}, "add_generation_prompt": true}""");
        var withoutPrompt = await HttpApiTests.PostOkAsync(client, "/tokenize", $$"""{"messages": {{messages}}, "add_generation_prompt": false}""");
        Assert.True(withPrompt["count"]!.GetValue<int>() > withoutPrompt["count"]!.GetValue<int>());
        var allIds = withoutPrompt["tokens"]!.AsArray().Select(t => t!.GetValue<int>()).ToArray();
        var truncated = await HttpApiTests.PostOkAsync(client, Embeddings, $$"""{"messages": {{messages}}, "truncate_prompt_tokens": 3}""");
        Assert.Equal(3, truncated["usage"]!["prompt_tokens"]!.GetValue<int>());
        AssertClose(fixture.Offline(allIds[^3..]), Floats(truncated["data"]![0]!["embedding"]!), "messages truncated to 3");
    }

    public static TheoryData<string, string, int, string?, string> BadInputs()
    {
        var tooLong = $$"""{"input": [{{string.Join(",", LongIds(300))}}]}""";
        var data = new TheoryData<string, string, int, string?, string>();
        foreach (var path in (string[])[Embeddings, Pooling])
        {
            data.Add(path, """{"input": []}""", 400, "input", "`input` cannot be empty");
            data.Add(path, """{"input": ""}""", 400, "input", "tokenizes to no tokens");
            data.Add(path, """{"input": ["a", ""]}""", 400, "input", "tokenizes to no tokens");
            data.Add(path, """{"input": [[]]}""", 400, "input", "empty list of token ids");
            data.Add(path, """{"input": [1, 2, 99999]}""", 400, "input", "Token id 99999 is out of vocabulary");
            data.Add(path, """{"input": [[1], [8192]]}""", 400, "input", "Token id 8192 is out of vocabulary");
            data.Add(path, """{"input": [1, -5]}""", 400, "input", "Token id -5 is out of vocabulary");
            data.Add(path, """{"input": [1, "a"]}""", 400, "input", "must be integers");
            data.Add(path, """{"input": [1.5]}""", 400, "input", "must be integers");
            data.Add(path, """{"input": ["a", 1]}""", 400, "input", "must be a string, a list of strings");
            data.Add(path, """{"input": ["a", [1, 2]]}""", 400, "input", "must be a string, a list of strings");
            data.Add(path, """{"input": 5}""", 400, "input", "must be a string, a list of strings");
            data.Add(path, """{"input": {"text": "a"}}""", 400, "input", "must be a string, a list of strings");
            data.Add(path, """{"input": [true]}""", 400, "input", "must be a string, a list of strings");
            data.Add(path, """{"model": "celer-tiny"}""", 400, "input", "`input` is required");
            data.Add(path, """{"input": "a", "messages": [{"role": "user", "content": "a"}]}""", 400, "messages", "either `input` or `messages`, not both");
            data.Add(path, """{"messages": []}""", 400, "messages", "at least one message");
            data.Add(path, """{"messages": "hi"}""", 400, "messages", "must be a non-empty array");
            data.Add(path, """{"messages": [{"role": "robot", "content": "a"}]}""", 400, "messages[0].role", "is not one of");
            data.Add(path, """{"messages": [{"role": "user", "content": "a"}], "add_generation_prompt": true, "continue_final_message": true}""",
                400, "continue_final_message", "Cannot set both");
            data.Add(path, """{"input": "a", "encoding_format": "int8"}""", 400, "encoding_format", "\"float\" or \"base64\"");
            data.Add(path, """{"input": "a", "encoding_format": 5}""", 400, "encoding_format", "Invalid value for 'encoding_format'");
            data.Add(path, """{"input": "a", "dimensions": "64"}""", 400, "dimensions", "Invalid value for 'dimensions'");
            data.Add(path, """{"input": "a", "dimensions": 0}""", 400, "dimensions", "must be at least 1");
            data.Add(path, """{"input": "a", "dimensions": -3}""", 400, "dimensions", "must be at least 1");
            data.Add(path, """{"input": "a", "dimensions": 64}""", 400, "dimensions", "does not support matryoshka representation");
            data.Add(path, """{"input": "a", "truncate_prompt_tokens": 0}""", 400, "truncate_prompt_tokens", "-1 (the model's maximum length) or at least 1");
            data.Add(path, """{"input": "a", "truncate_prompt_tokens": -2}""", 400, "truncate_prompt_tokens", "-1 (the model's maximum length) or at least 1");
            data.Add(path, """{"input": "a", "truncate_prompt_tokens": 1000}""", 400, "truncate_prompt_tokens", "is greater than max_model_len (256)");
            data.Add(path, """{"input": "a", "normalize": "yes"}""", 400, "normalize", "Invalid value for 'normalize'");
            data.Add(path, tooLong, 400, "input", "maximum context length is 256 tokens. However, you requested 300 tokens");
            data.Add(path, """{"model": "no-such-model", "input": "a"}""", 404, "model", "does not exist");
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(BadInputs))]
    public async Task Bad_input_gets_OpenAIs_error_envelope(string path, string body, int status, string? param, string fragment)
    {
        using var client = Server.CreateClient();
        var error = await HttpApiTests.PostErrorAsync(client, path, body, (HttpStatusCode)status);
        Assert.Contains(fragment, error["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(param, error["param"]?.GetValue<string>());
        Assert.Equal(status == 404 ? "NotFoundError" : "BadRequestError", error["type"]!.GetValue<string>());
        Assert.Equal(0, Server.Admission.InFlight);
    }

    [Fact]
    public async Task A_refused_input_aborts_the_batch_and_the_server_keeps_serving()
    {
        using var client = Server.CreateClient();
        var error = await HttpApiTests.PostErrorAsync(client, Embeddings, $$"""{"input": [[1, 2, 3], [4, 5], [{{string.Join(",", LongIds(300))}}]]}""", HttpStatusCode.BadRequest);
        Assert.Equal("context_length_exceeded", error["code"]!.GetValue<string>());
        Assert.Equal(0, Server.Admission.InFlight);
        // The inputs submitted before the refused one were aborted.
        await Poll.UntilAsync(() => Server.Engine.Stats is { NumRunning: 0, NumWaiting: 0 }, TimeSpan.FromSeconds(10), "the batch's first inputs are aborted");

        // The OpenAI client sees the engine's refusal as a 400.
        var matryoshka = await Assert.ThrowsAsync<ClientResultException>(() =>
            Client(Server).GenerateEmbeddingAsync("a", new EmbeddingGenerationOptions { Dimensions = 64 }, Ct));
        Assert.Equal(400, matryoshka.Status);
        Assert.Contains("matryoshka", matryoshka.GetRawResponse()!.Content.ToString(), StringComparison.Ordinal);

        var ok = (await Client(Server).GenerateEmbeddingAsync("still serving", cancellationToken: Ct)).Value;
        Assert.Equal(HiddenSize, ok.ToFloats().Length);
    }

    [Fact]
    public async Task A_pooling_model_refuses_text_generation()
    {
        using var client = Server.CreateClient();
        var chat = await HttpApiTests.PostErrorAsync(client, "/v1/chat/completions", """{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}""", HttpStatusCode.BadRequest);
        Assert.Contains("pooling model", chat["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal("model", chat["param"]!.GetValue<string>());
        var completion = await HttpApiTests.PostErrorAsync(client, "/v1/completions", """{"prompt": "hi", "max_tokens": 2}""", HttpStatusCode.BadRequest);
        Assert.Contains("does not generate text", completion["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(0, Server.Admission.InFlight);
    }

    [Fact]
    public async Task A_generative_model_refuses_embeddings_and_pooling()
    {
        await using var generative = await TinyPyServer.StartAsync();
        using var client = generative.CreateClient();
        foreach (var path in (string[])[Embeddings, Pooling])
        {
            var error = await HttpApiTests.PostErrorAsync(client, path, """{"input": ["Hello world", "x"]}""", HttpStatusCode.BadRequest);
            Assert.Contains("This model is a generative model: embeddings need a pooling model", error["message"]!.GetValue<string>(), StringComparison.Ordinal);
            Assert.Equal("model", error["param"]!.GetValue<string>());
        }

        var refused = await Assert.ThrowsAsync<ClientResultException>(() => Client(generative).GenerateEmbeddingAsync("Hello world", cancellationToken: Ct));
        Assert.Equal(400, refused.Status);
        Assert.Equal(0, generative.Admission.InFlight);

        // It still generates.
        var ok = await HttpApiTests.PostOkAsync(client, "/v1/completions", """{"prompt": "Hello", "max_tokens": 2}""");
        Assert.Equal(2, ok["usage"]!["completion_tokens"]!.GetValue<int>());
    }
}
