using Celer.TestSupport;
using System.Net;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Integration;

/// <summary>models/celer-tiny-py served as an embedding model (<c>--convert embed</c>), for the score and rerank APIs.</summary>
public sealed class ScoreServerFixture : IAsyncLifetime
{
    internal TinyPyServer Server { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Server = await TinyPyServer.StartAsync(convert: "embed");

    public async ValueTask DisposeAsync()
    {
        if (Server is not null)
            await Server.DisposeAsync();
    }
}

/// <summary>
/// vLLM's <c>/score</c> and <c>/rerank</c> on an embedding model, over raw HTTP against the real server: a pair's score is
/// the cosine of the vectors <c>/v1/embeddings</c> gives for its two texts; 1 text against N broadcasts, N against N
/// pairs in order; rerank sorts best first and cuts to <c>top_n</c>; each distinct text is embedded once and counted
/// once in the usage; bad input gets OpenAI's 400 envelope with nothing left running; a generative model refuses both.
/// </summary>
public sealed class ScoreServerTests(ScoreServerFixture fixture) : IClassFixture<ScoreServerFixture>
{
    // The scores and the reference cosines come from the same float32 vectors, computed in different batches.
    private const double Tolerance = 1e-5;

    private const string Query = "How do I add two numbers in Python?";

    private static readonly string[] Documents =
    [
        "The quick brown fox jumps over the lazy dog.",
        "def add(a, b):\n    return a + b",
        "x",
        "Embeddings map text to vectors; similar texts get similar vectors.",
        "Ünïcödé and emoji 🙂",
        "1 2 3 4 5 6 7 8 9 10",
    ];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private TinyPyServer Server => fixture.Server;

    private int Tokens(string text) => Server.Model.Tokenizer!.Encode(text, addSpecialTokens: true).Length;

    private static JsonArray Array(IEnumerable<string> texts) => new([.. texts.Select(t => (JsonNode?)JsonValue.Create(t))]);

    private static string LongText() => string.Join(" ", Enumerable.Range(0, 300).Select(i => $"word{i}"));

    /// <summary>The vectors <c>/v1/embeddings</c> returns for the texts, in their order.</summary>
    private static async Task<float[][]> EmbedAsync(HttpClient client, IEnumerable<string> texts, int? truncatePromptTokens = null)
    {
        var body = new JsonObject { ["input"] = Array(texts) };
        if (truncatePromptTokens is { } k)
            body["truncate_prompt_tokens"] = k;
        var response = await HttpApiTests.PostOkAsync(client, "/v1/embeddings", body.ToJsonString());
        return [.. response["data"]!.AsArray().Select(d => d!["embedding"]!.AsArray().Select(x => x!.GetValue<float>()).ToArray())];
    }

    private static double Cosine(float[] a, float[] b)
    {
        Assert.Equal(a.Length, b.Length);
        return PoolingFixture.Cosine(a, b);
    }

    private static void AssertClose(double expected, double actual, string what) =>
        Assert.True(Math.Abs(expected - actual) <= Tolerance, $"{what}: {actual} vs the embeddings' cosine {expected}");

    private static double[] Scores(JsonNode response)
    {
        var data = response["data"]!.AsArray();
        for (var i = 0; i < data.Count; i++)
        {
            Assert.Equal(i, data[i]!["index"]!.GetValue<int>());
            Assert.Equal("score", data[i]!["object"]!.GetValue<string>());
        }
        return [.. data.Select(d => d!["score"]!.GetValue<double>())];
    }

    private Task<JsonNode> PostCountingAsync(HttpClient client, string path, string json, int engineRequests) =>
        Server.PostCountingAsync(client, path, json, engineRequests);

    [Fact]
    public async Task One_text_against_N_scores_the_cosine_of_their_embeddings_embedding_the_one_text_once()
    {
        using var client = Server.CreateClient();
        var before = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var body = new JsonObject { ["model"] = ServerFixture.ModelName, ["text_1"] = Query, ["text_2"] = Array(Documents) }.ToJsonString();
        var response = await PostCountingAsync(client, "/score", body, engineRequests: 1 + Documents.Length);

        Assert.Matches("^score-[0-9a-f]{32}$", response["id"]!.GetValue<string>());
        Assert.Equal("list", response["object"]!.GetValue<string>());
        Assert.Equal(ServerFixture.ModelName, response["model"]!.GetValue<string>());
        Assert.InRange(response["created"]!.GetValue<long>(), before, before + 60);
        var tokens = Tokens(Query) + Documents.Sum(Tokens);
        Assert.Equal(tokens, response["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(tokens, response["usage"]!["total_tokens"]!.GetValue<int>());

        var vectors = await EmbedAsync(client, [Query, .. Documents]);
        var scores = Scores(response);
        Assert.Equal(Documents.Length, scores.Length);
        for (var j = 0; j < Documents.Length; j++)
            AssertClose(Cosine(vectors[0], vectors[1 + j]), scores[j], $"score of document {j}");
        Assert.True(scores.Distinct().Count() > 1, "the documents score alike");

        // /v1/score is the same route; a string against a string is one pair, a list of one against N broadcasts too.
        var v1 = await HttpApiTests.PostOkAsync(client, "/v1/score", body);
        for (var j = 0; j < Documents.Length; j++)
            AssertClose(scores[j], Scores(v1)[j], $"/v1/score document {j}");
        var single = await HttpApiTests.PostOkAsync(client, "/score", new JsonObject { ["text_1"] = Query, ["text_2"] = Documents[1] }.ToJsonString());
        AssertClose(scores[1], Assert.Single(Scores(single)), "string against string");
        var listOfOne = await HttpApiTests.PostOkAsync(client, "/score", new JsonObject { ["text_1"] = Array([Query]), ["text_2"] = Array(Documents[..2]) }.ToJsonString());
        Assert.Equal(2, Scores(listOfOne).Length);
        AssertClose(scores[1], Scores(listOfOne)[1], "[one] against N");
    }

    [Fact]
    public async Task N_texts_against_N_score_in_pairs_under_each_of_vLLMs_field_names()
    {
        using var client = Server.CreateClient();
        string[] first = ["Hello world", Documents[0], "def add(a, b):", "x"];
        string[] second = [Documents[3], "A fast fox leaps over a sleepy dog.", Documents[1], "y"];
        var response = await PostCountingAsync(client, "/score",
            new JsonObject { ["text_1"] = Array(first), ["text_2"] = Array(second) }.ToJsonString(), engineRequests: 8);
        var scores = Scores(response);
        Assert.Equal(first.Length, scores.Length);
        var vectors = await EmbedAsync(client, [.. first, .. second]);
        for (var i = 0; i < first.Length; i++)
            AssertClose(Cosine(vectors[i], vectors[first.Length + i]), scores[i], $"pair {i}");
        var tokens = first.Sum(Tokens) + second.Sum(Tokens);
        Assert.Equal(tokens, response["usage"]!["prompt_tokens"]!.GetValue<int>());

        foreach (var (one, two) in ((string, string)[])[("queries", "documents"), ("queries", "items"), ("data_1", "data_2"), ("text_1", "documents")])
        {
            var renamed = await HttpApiTests.PostOkAsync(client, "/v1/score", new JsonObject { [one] = Array(first), [two] = Array(second) }.ToJsonString());
            var renamedScores = Scores(renamed);
            for (var i = 0; i < first.Length; i++)
                AssertClose(scores[i], renamedScores[i], $"{one}/{two} pair {i}");
        }
    }

    [Fact]
    public async Task Each_distinct_text_is_embedded_and_counted_once()
    {
        using var client = Server.CreateClient();
        // Three distinct texts over six places: three engine requests, and the usage counts each text once.
        string[] first = ["alpha beta", "gamma", "alpha beta"];
        string[] second = ["gamma", "alpha beta", "delta epsilon zeta"];
        var response = await PostCountingAsync(client, "/score",
            new JsonObject { ["text_1"] = Array(first), ["text_2"] = Array(second) }.ToJsonString(), engineRequests: 3);
        Assert.Equal(Tokens("alpha beta") + Tokens("gamma") + Tokens("delta epsilon zeta"), response["usage"]!["prompt_tokens"]!.GetValue<int>());
        var vectors = await EmbedAsync(client, ["alpha beta", "gamma", "delta epsilon zeta"]);
        var scores = Scores(response);
        AssertClose(Cosine(vectors[0], vectors[1]), scores[0], "alpha beta vs gamma");
        AssertClose(scores[0], scores[1], "the same pair both ways");
        AssertClose(Cosine(vectors[0], vectors[2]), scores[2], "alpha beta vs delta");

        // A text against itself scores 1.
        var self = await PostCountingAsync(client, "/score", new JsonObject { ["text_1"] = "same text", ["text_2"] = Array(["same text", "same text"]) }.ToJsonString(), engineRequests: 1);
        Assert.All(Scores(self), s => AssertClose(1.0, s, "self"));
        Assert.Equal(Tokens("same text"), self["usage"]!["prompt_tokens"]!.GetValue<int>());
    }

    [Fact]
    public async Task Truncate_prompt_tokens_scores_the_last_k_tokens_of_every_text()
    {
        using var client = Server.CreateClient();
        string[] texts = [Documents[3], Documents[5]];
        Assert.All(texts, t => Assert.True(Tokens(t) > 3));
        var response = await HttpApiTests.PostOkAsync(client, "/score",
            new JsonObject { ["text_1"] = texts[0], ["text_2"] = texts[1], ["truncate_prompt_tokens"] = 3 }.ToJsonString());
        Assert.Equal(6, response["usage"]!["prompt_tokens"]!.GetValue<int>());
        var truncated = await EmbedAsync(client, texts, truncatePromptTokens: 3);
        AssertClose(Cosine(truncated[0], truncated[1]), Assert.Single(Scores(response)), "truncated to 3");

        // -1 cuts to the model's maximum length, so a text longer than the context is scored from its last 256 tokens.
        var longText = LongText();
        Assert.True(Tokens(longText) > TinyPyServer.MaxModelLen);
        var cut = await HttpApiTests.PostOkAsync(client, "/rerank",
            new JsonObject { ["query"] = "word", ["documents"] = Array([longText]), ["truncate_prompt_tokens"] = -1 }.ToJsonString());
        Assert.Equal(Tokens("word") + TinyPyServer.MaxModelLen, cut["usage"]!["prompt_tokens"]!.GetValue<int>());
        var cutVectors = await EmbedAsync(client, ["word", longText], truncatePromptTokens: -1);
        AssertClose(Cosine(cutVectors[0], cutVectors[1]), cut["results"]![0]!["relevance_score"]!.GetValue<double>(), "truncated to max_model_len");
    }

    [Fact]
    public async Task Rerank_sorts_the_documents_best_first_with_their_indices_and_cuts_to_top_n()
    {
        using var client = Server.CreateClient();
        var vectors = await EmbedAsync(client, [Query, .. Documents]);
        var expected = Enumerable.Range(0, Documents.Length).Select(j => Cosine(vectors[0], vectors[1 + j])).ToArray();
        var expectedOrder = Enumerable.Range(0, Documents.Length).OrderByDescending(j => expected[j]).ToArray();
        // The order is only checkable where the scores are farther apart than the tolerance.
        for (var r = 1; r < expectedOrder.Length; r++)
            Assert.True(expected[expectedOrder[r - 1]] - expected[expectedOrder[r]] > 10 * Tolerance, $"documents {expectedOrder[r - 1]} and {expectedOrder[r]} score alike");

        var tokens = Tokens(Query) + Documents.Sum(Tokens);
        var body = new JsonObject { ["model"] = ServerFixture.ModelName, ["query"] = Query, ["documents"] = Array(Documents) };
        foreach (var path in (string[])["/rerank", "/v1/rerank", "/v2/rerank"])
        {
            var response = await PostCountingAsync(client, path, body.ToJsonString(), engineRequests: 1 + Documents.Length);
            Assert.Matches("^rerank-[0-9a-f]{32}$", response["id"]!.GetValue<string>());
            Assert.Equal(ServerFixture.ModelName, response["model"]!.GetValue<string>());
            Assert.Equal(tokens, response["usage"]!["total_tokens"]!.GetValue<int>());
            Assert.Equal(tokens, response["usage"]!["prompt_tokens"]!.GetValue<int>());
            var results = response["results"]!.AsArray();
            Assert.Equal(Documents.Length, results.Count);
            for (var r = 0; r < results.Count; r++)
            {
                var index = results[r]!["index"]!.GetValue<int>();
                Assert.Equal(expectedOrder[r], index);
                Assert.Equal(Documents[index], results[r]!["document"]!["text"]!.GetValue<string>());
                AssertClose(expected[index], results[r]!["relevance_score"]!.GetValue<double>(), $"{path} result {r}");
            }
        }

        foreach (var (topN, count) in ((int, int)[])[(2, 2), (1, 1), (0, Documents.Length), (Documents.Length, Documents.Length), (100, Documents.Length)])
        {
            body["top_n"] = topN;
            var response = await HttpApiTests.PostOkAsync(client, "/v1/rerank", body.ToJsonString());
            var indices = response["results"]!.AsArray().Select(r => r!["index"]!.GetValue<int>()).ToArray();
            Assert.Equal(expectedOrder[..count], indices);
            // The usage counts every document scored, not only those returned.
            Assert.Equal(tokens, response["usage"]!["total_tokens"]!.GetValue<int>());
        }
    }

    [Fact]
    public async Task Rerank_keeps_equal_scores_in_the_documents_order_and_embeds_a_repeated_document_once()
    {
        using var client = Server.CreateClient();
        string[] documents = ["x", "def add(a, b):", "x", "Hello world"];
        var response = await PostCountingAsync(client, "/rerank",
            new JsonObject { ["query"] = "Hello", ["documents"] = Array(documents), ["return_documents"] = false }.ToJsonString(), engineRequests: 4);
        Assert.Equal(Tokens("Hello") + Tokens("x") + Tokens("def add(a, b):") + Tokens("Hello world"), response["usage"]!["total_tokens"]!.GetValue<int>());
        var results = response["results"]!.AsArray();
        var indices = results.Select(r => r!["index"]!.GetValue<int>()).ToList();
        Assert.Equal([0, 1, 2, 3], indices.Order());
        Assert.True(indices.IndexOf(0) + 1 == indices.IndexOf(2), $"the two equal documents are ranked apart or out of order: {string.Join(", ", indices)}");
        Assert.Equal(results[indices.IndexOf(0)]!["relevance_score"]!.GetValue<double>(), results[indices.IndexOf(2)]!["relevance_score"]!.GetValue<double>());
        // The documents come back whatever return_documents says (vLLM ignores it).
        Assert.All(results, r => Assert.Equal(documents[r!["index"]!.GetValue<int>()], r!["document"]!["text"]!.GetValue<string>()));
        for (var r = 1; r < results.Count; r++)
            Assert.True(results[r - 1]!["relevance_score"]!.GetValue<double>() >= results[r]!["relevance_score"]!.GetValue<double>());

        // One document as a bare string is a list of one.
        var one = await HttpApiTests.PostOkAsync(client, "/rerank", new JsonObject { ["query"] = "Hello", ["documents"] = "Hello world" }.ToJsonString());
        var only = Assert.Single(one["results"]!.AsArray())!;
        Assert.Equal(0, only["index"]!.GetValue<int>());
        Assert.Equal("Hello world", only["document"]!["text"]!.GetValue<string>());
    }

    public static TheoryData<string, string, int, string?, string> BadInputs()
    {
        var longText = LongText();
        var longScore = new JsonObject { ["text_1"] = "a", ["text_2"] = Array(["b", longText]) }.ToJsonString();
        var longQuery = new JsonObject { ["query"] = longText, ["documents"] = Array(["b"]) }.ToJsonString();
        var longDocument = new JsonObject { ["query"] = "a", ["documents"] = Array(["b", longText]) }.ToJsonString();
        const string tooLong = "maximum context length is 256 tokens. However, you requested";
        var data = new TheoryData<string, string, int, string?, string>
        {
            { "/score", """{"text_1": [], "text_2": ["a"]}""", 400, "text_1", "`text_1` cannot be empty" },
            { "/score", """{"text_1": "a", "text_2": []}""", 400, "text_2", "`text_2` cannot be empty" },
            { "/score", """{"queries": "a", "documents": []}""", 400, "documents", "`documents` cannot be empty" },
            { "/score", """{"text_1": ["a", "b"], "text_2": ["a", "b", "c"]}""", 400, "text_1", "Input lengths must be either 1:1, 1:N or N:N: got 2 in `text_1` and 3 in `text_2`" },
            { "/score", """{"text_1": ["a", "b"], "text_2": "c"}""", 400, "text_1", "Input lengths must be either 1:1, 1:N or N:N" },
            { "/v1/score", """{"queries": ["a", "b", "c"], "items": ["a", "b"]}""", 400, "queries", "Input lengths must be either 1:1, 1:N or N:N" },
            { "/score", """{"text_1": 5, "text_2": "a"}""", 400, "text_1", "`text_1` must be a string or a list of strings" },
            { "/score", """{"text_1": "a", "text_2": [1, 2]}""", 400, "text_2", "`text_2` must be a string or a list of strings" },
            { "/score", """{"text_1": "a", "text_2": ["a", null]}""", 400, "text_2", "`text_2` must be a string or a list of strings" },
            { "/score", """{"text_1": "a", "text_2": true}""", 400, "text_2", "`text_2` must be a string or a list of strings" },
            { "/score", """{"text_1": {"content": [{"type": "text", "text": "a"}]}, "text_2": "a"}""", 400, "text_1", "multimodal content needs a multimodal model" },
            { "/score", """{"text_2": "a"}""", 400, "text_1", "`text_1` (or `queries` or `data_1`) is required" },
            { "/score", """{"text_1": "a", "text_2": null}""", 400, "text_2", "`text_2` (or `documents` or `items` or `data_2`) is required" },
            { "/score", """{"text_1": "a", "queries": "b", "text_2": "c"}""", 400, "queries", "`text_1` and `queries` name the same side" },
            { "/score", """{"text_1": "", "text_2": "a"}""", 400, "text_1", "`text_1` tokenizes to no tokens" },
            { "/score", """{"text_1": "a", "text_2": ["b", ""]}""", 400, "text_2", "`text_2` tokenizes to no tokens" },
            { "/score", """{"text_1": "a", "text_2": "b", "truncate_prompt_tokens": 0}""", 400, "truncate_prompt_tokens", "-1 (the model's maximum length) or at least 1" },
            { "/score", """{"text_1": "a", "text_2": "b", "truncate_prompt_tokens": 1000}""", 400, "truncate_prompt_tokens", "is greater than max_model_len (256)" },
            { "/score", """{"text_1": "a", "text_2": "b", "truncate_prompt_tokens": "5"}""", 400, "truncate_prompt_tokens", "Invalid value for 'truncate_prompt_tokens'" },
            { "/score", """{"text_1": "a", "text_2": "b", "priority": "high"}""", 400, "priority", "Invalid value for 'priority'" },
            { "/score", longScore, 400, "text_2", tooLong },
            { "/score", """["a", "b"]""", 400, null, "must be a JSON object" },
            { "/score", """{"model": "no-such-model", "text_1": "a", "text_2": "b"}""", 404, "model", "does not exist" },
            { "/rerank", """{"query": "a", "documents": []}""", 400, "documents", "`documents` cannot be empty" },
            { "/rerank", """{"documents": ["a"]}""", 400, "query", "`query` is required" },
            { "/rerank", """{"query": "a"}""", 400, "documents", "`documents` is required" },
            { "/rerank", """{"query": ["a"], "documents": ["b"]}""", 400, "query", "`query` must be a string" },
            { "/rerank", """{"query": 5, "documents": ["b"]}""", 400, "query", "`query` must be a string" },
            { "/rerank", """{"query": "a", "documents": [1, 2]}""", 400, "documents", "`documents` must be a string or a list of strings" },
            { "/rerank", """{"query": "a", "documents": [{"text": "b"}]}""", 400, "documents", "`documents` must be a string or a list of strings" },
            { "/rerank", """{"query": "a", "documents": {"content": []}}""", 400, "documents", "multimodal content needs a multimodal model" },
            { "/rerank", """{"query": "a", "documents": ["b"], "top_n": -1}""", 400, "top_n", "`top_n` must be 0 (every document) or more, got -1" },
            { "/rerank", """{"query": "a", "documents": ["b"], "top_n": "2"}""", 400, "top_n", "Invalid value for 'top_n'" },
            { "/rerank", """{"query": "a", "documents": ["b"], "top_n": 1.5}""", 400, "top_n", "Invalid value for 'top_n'" },
            { "/rerank", """{"query": "", "documents": ["b"]}""", 400, "query", "`query` tokenizes to no tokens" },
            { "/rerank", """{"query": "a", "documents": ["b"], "truncate_prompt_tokens": -2}""", 400, "truncate_prompt_tokens", "-1 (the model's maximum length) or at least 1" },
            { "/v2/rerank", longQuery, 400, "query", tooLong },
            { "/v1/rerank", longDocument, 400, "documents", tooLong },
            { "/rerank", """{"model": "no-such-model", "query": "a", "documents": ["b"]}""", 404, "model", "does not exist" },
        };
        return data;
    }

    [Theory]
    [MemberData(nameof(BadInputs))]
    public async Task Bad_input_gets_OpenAIs_error_envelope_and_submits_nothing(string path, string body, int status, string? param, string fragment)
    {
        using var client = Server.CreateClient();
        await Server.PostRefusedAsync(client, path, body, (HttpStatusCode)status, param, fragment);
    }

    [Fact]
    public async Task A_generative_model_refuses_score_and_rerank_with_the_engines_message()
    {
        await using var generative = await TinyPyServer.StartAsync();
        using var client = generative.CreateClient();
        foreach (var (path, body) in ((string, string)[])[
            ("/score", """{"text_1": "Hello", "text_2": ["Hello world", "x"]}"""),
            ("/v1/score", """{"queries": ["a", "b"], "documents": ["c", "d"]}"""),
            ("/rerank", """{"query": "Hello", "documents": ["Hello world", "x"]}"""),
            ("/v1/rerank", """{"query": "Hello", "documents": ["Hello world"], "top_n": 1}"""),
            ("/v2/rerank", """{"query": "Hello", "documents": "Hello world"}""")])
        {
            var error = await HttpApiTests.PostErrorAsync(client, path, body, HttpStatusCode.BadRequest);
            Assert.Contains("This model is a generative model: embeddings need a pooling model", error["message"]!.GetValue<string>(), StringComparison.Ordinal);
            Assert.Equal("model", error["param"]!.GetValue<string>());
            Assert.Equal(0, generative.Admission.InFlight);
        }
        Assert.True(generative.Engine.Stats is { NumRunning: 0, NumWaiting: 0 });

        // It still generates.
        var ok = await HttpApiTests.PostOkAsync(client, "/v1/completions", """{"prompt": "Hello", "max_tokens": 2}""");
        Assert.Equal(2, ok["usage"]!["completion_tokens"]!.GetValue<int>());
    }
}
