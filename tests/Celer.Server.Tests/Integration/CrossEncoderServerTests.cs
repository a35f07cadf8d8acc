using System.Net;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// vLLM's <c>/score</c> and <c>/rerank</c> on cross-encoders (the bert-cross-encoder and xlmr-cross-encoder fixtures)
/// over raw HTTP against the real server: one engine request per pair, encoded as the tokenizer encodes a pair, scores in
/// (0, 1) matching sentence-transformers' CrossEncoder.predict; BERT's token types reaching the engine (the pair scores
/// otherwise than the same ids sent as one input, which XLM-R, without token types, does not); rerank's order and
/// <c>top_n</c>; the usage counting every pair's tokens; vLLM's wire shape; bad input refused before anything runs.
/// </summary>
public sealed class CrossEncoderServerTests(EncoderServers servers) : IClassFixture<EncoderServers>
{
    private const string Bert = "bert-cross-encoder", Xlmr = "xlmr-cross-encoder";

    // fp32 on the CPU against torch's fp32 over the same bf16 weights: only the order of the sums differs.
    private const double ReferenceTolerance = 1e-4;

    // The same ids in different batches of the same engine.
    private const double BatchTolerance = 1e-5;

    private const string Query = "what is the capital of france?";

    private static readonly string[] Documents =
    [
        "Paris is the capital and the largest city of France.",
        "Berlin had a population of 3,520,031 people in 2019.",
        "hello",
        "The book was written by a young woman from a small town near the sea.",
    ];

    public static TheoryData<string> Models() => [Bert, Xlmr];

    private static JsonArray Array(IEnumerable<string> texts) => new([.. texts.Select(t => (JsonNode?)JsonValue.Create(t))]);

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

    private static void AssertClose(double expected, double actual, double tolerance, string what) =>
        Assert.True(Math.Abs(expected - actual) <= tolerance, $"{what}: {actual} vs {expected}");

    private static string LongText() => string.Join(" ", Enumerable.Range(0, 600).Select(i => $"word{i}"));

    /// <summary>The probability <c>/classify</c> gives for these ids as one input (all of token type 0).</summary>
    private static async Task<double> ClassifyIdsAsync(HttpClient client, int[] ids)
    {
        var response = await HttpApiTests.PostOkAsync(client, "/classify",
            new JsonObject { ["input"] = new JsonArray([.. ids.Select(i => (JsonNode?)JsonValue.Create(i))]) }.ToJsonString());
        return Assert.Single(response["data"]![0]!["probs"]!.AsArray())!.GetValue<double>();
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task Score_runs_one_engine_request_per_pair_and_counts_every_pairs_tokens(string name)
    {
        var server = await servers.ServerAsync(name);
        var tokenizer = server.Model.Tokenizer!;
        using var client = server.CreateClient();
        var before = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var response = await server.PostCountingAsync(client, "/score",
            new JsonObject { ["model"] = ServerFixture.ModelName, ["text_1"] = Query, ["text_2"] = Array(Documents) }.ToJsonString(),
            engineRequests: Documents.Length);

        Assert.Matches("^score-[0-9a-f]{32}$", response["id"]!.GetValue<string>());
        Assert.Equal("list", response["object"]!.GetValue<string>());
        Assert.Equal(ServerFixture.ModelName, response["model"]!.GetValue<string>());
        Assert.InRange(response["created"]!.GetValue<long>(), before, before + 60);
        var tokens = Documents.Sum(d => tokenizer.EncodeWithTypes(Query, d).InputIds.Length);
        Assert.Equal(tokens, response["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(tokens, response["usage"]!["total_tokens"]!.GetValue<int>());
        Assert.Equal(0, response["usage"]!["completion_tokens"]!.GetValue<int>());
        var scores = Scores(response);
        Assert.Equal(Documents.Length, scores.Length);
        Assert.All(scores, s => Assert.True(s is > 0 and < 1, $"score {s} is not in (0, 1)"));
        Assert.True(scores.Distinct().Count() > 1, "every pair scores alike");

        // N against N pairs in order, under each of vLLM's names; a repeated pair is scored (and counted) again.
        string[] first = [Query, "who wrote the book?", Query];
        string[] second = [Documents[0], Documents[3], Documents[0]];
        var paired = await server.PostCountingAsync(client, "/v1/score",
            new JsonObject { ["queries"] = Array(first), ["documents"] = Array(second) }.ToJsonString(), engineRequests: 3);
        var pairedScores = Scores(paired);
        AssertClose(scores[0], pairedScores[0], BatchTolerance, "pair 0 against the 1:N request");
        AssertClose(pairedScores[0], pairedScores[2], BatchTolerance, "the repeated pair");
        Assert.Equal(first.Zip(second).Sum(p => tokenizer.EncodeWithTypes(p.First, p.Second).InputIds.Length), paired["usage"]!["prompt_tokens"]!.GetValue<int>());
        var single = await HttpApiTests.PostOkAsync(client, "/score", new JsonObject { ["data_1"] = first[1], ["data_2"] = second[1] }.ToJsonString());
        AssertClose(pairedScores[1], Assert.Single(Scores(single)), BatchTolerance, "string against string");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task Scores_match_the_cross_encoders_reference(string name)
    {
        var server = await servers.ServerAsync(name);
        var reference = EncoderServers.Reference(name);
        Assert.SkipWhen(reference is null, $"{name} has no reference.json");
        var tokenizer = server.Model.Tokenizer!;
        using var client = server.CreateClient();
        var compared = 0;
        foreach (var pair in reference!["pairs"]!.AsArray())
        {
            string query = pair!["query"]!.GetValue<string>(), document = pair["document"]!.GetValue<string>();
            // Only where Celer's tokenizer gives transformers' ids and types (the tokenizer's own tests cover the rest);
            // XLM-R's tokenizer gives no types (null).
            var encoded = tokenizer.EncodeWithTypes(query, document);
            if (!encoded.InputIds.SequenceEqual(pair["prompt_token_ids"]!.AsArray().Select(x => x!.GetValue<int>()))
                || (pair["token_type_ids"] is JsonArray types && !encoded.TokenTypeIds.SequenceEqual(types.Select(x => x!.GetValue<int>()))))
                continue;
            var response = await HttpApiTests.PostOkAsync(client, "/score", new JsonObject { ["text_1"] = query, ["text_2"] = document }.ToJsonString());
            AssertClose(pair["score"]!.GetValue<double>(), Assert.Single(Scores(response)), ReferenceTolerance, $"({query}, {document[..Math.Min(20, document.Length)]})");
            Assert.Equal(encoded.InputIds.Length, response["usage"]!["prompt_tokens"]!.GetValue<int>());
            compared++;
        }
        Assert.True(compared > 0, "no reference pair tokenizes as transformers tokenizes it");
    }

    /// <summary>
    /// <c>use_activation: false</c> (or the older <c>activation</c>, which wins over it): the raw logit, which the
    /// fixtures' cross-encoder activation (sigmoid) turns into the default score.
    /// </summary>
    [Theory]
    [MemberData(nameof(Models))]
    public async Task Use_activation_false_returns_the_raw_logit_under_the_score(string name)
    {
        var server = await servers.ServerAsync(name);
        using var client = server.CreateClient();
        const string Pair = """ "text_1": "What is the capital of France?", "text_2": ["Paris is the capital of France.", "Bananas are yellow."] """;
        var scores = Scores(await HttpApiTests.PostOkAsync(client, "/score", "{" + Pair + "}"));
        foreach (var extra in (string[])[""" "use_activation": false""", """ "activation": false, "use_activation": true"""])
        {
            var logits = Scores(await HttpApiTests.PostOkAsync(client, "/score", "{" + Pair + "," + extra + "}"));
            Assert.Equal(scores.Length, logits.Length);
            for (var i = 0; i < scores.Length; i++)
            {
                Assert.NotEqual(scores[i], logits[i]);
                AssertClose(scores[i], 1 / (1 + Math.Exp(-logits[i])), 1e-6, $"{extra} pair {i}");
            }
        }

        var reranked = await HttpApiTests.PostOkAsync(client, "/rerank", """{"query": "a", "documents": ["b"], "use_activation": false}""");
        var raw = Assert.Single(Scores(await HttpApiTests.PostOkAsync(client, "/score", """{"text_1": "a", "text_2": "b", "use_activation": false}""")));
        AssertClose(raw, reranked["results"]![0]!["relevance_score"]!.GetValue<double>(), 1e-6, "rerank");
    }

    [Fact]
    public async Task Bert_pairs_reach_the_engine_with_their_token_types()
    {
        var server = await servers.ServerAsync(Bert);
        var tokenizer = server.Model.Tokenizer!;
        using var client = server.CreateClient();
        var scores = Scores(await HttpApiTests.PostOkAsync(client, "/score", new JsonObject { ["text_1"] = Query, ["text_2"] = Array(Documents) }.ToJsonString()));
        var differences = new double[Documents.Length];
        for (var j = 0; j < Documents.Length; j++)
        {
            var encoded = tokenizer.EncodeWithTypes(Query, Documents[j]);
            Assert.Contains(1, encoded.TokenTypeIds);
            // The same ids as one input have token type 0 throughout: only the types differ.
            differences[j] = Math.Abs(scores[j] - await ClassifyIdsAsync(client, encoded.InputIds));
        }
        Assert.True(differences.Max() > 100 * BatchTolerance, $"the pairs score as their ids with no token types: differences {string.Join(", ", differences)}");
    }

    [Fact]
    public async Task Xlmr_pairs_have_no_token_types_so_they_score_as_their_ids()
    {
        var server = await servers.ServerAsync(Xlmr);
        var tokenizer = server.Model.Tokenizer!;
        using var client = server.CreateClient();
        var scores = Scores(await HttpApiTests.PostOkAsync(client, "/score", new JsonObject { ["text_1"] = Query, ["text_2"] = Array(Documents) }.ToJsonString()));
        for (var j = 0; j < Documents.Length; j++)
        {
            var encoded = tokenizer.EncodeWithTypes(Query, Documents[j]);
            AssertClose(await ClassifyIdsAsync(client, encoded.InputIds), scores[j], BatchTolerance, $"document {j} as its ids");
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public async Task Rerank_orders_the_documents_by_their_cross_encoder_scores(string name)
    {
        var server = await servers.ServerAsync(name);
        var tokenizer = server.Model.Tokenizer!;
        using var client = server.CreateClient();
        var expected = Scores(await HttpApiTests.PostOkAsync(client, "/score", new JsonObject { ["text_1"] = Query, ["text_2"] = Array(Documents) }.ToJsonString()));
        var expectedOrder = Enumerable.Range(0, Documents.Length).OrderByDescending(j => expected[j]).ToArray();
        for (var r = 1; r < expectedOrder.Length; r++)
            Assert.True(expected[expectedOrder[r - 1]] - expected[expectedOrder[r]] > 10 * BatchTolerance, $"documents {expectedOrder[r - 1]} and {expectedOrder[r]} score alike");
        var tokens = Documents.Sum(d => tokenizer.EncodeWithTypes(Query, d).InputIds.Length);

        var body = new JsonObject { ["model"] = ServerFixture.ModelName, ["query"] = Query, ["documents"] = Array(Documents) };
        foreach (var path in (string[])["/rerank", "/v1/rerank", "/v2/rerank"])
        {
            var response = await server.PostCountingAsync(client, path, body.ToJsonString(), engineRequests: Documents.Length);
            Assert.Matches("^rerank-[0-9a-f]{32}$", response["id"]!.GetValue<string>());
            Assert.Equal(tokens, response["usage"]!["prompt_tokens"]!.GetValue<int>());
            Assert.Equal(tokens, response["usage"]!["total_tokens"]!.GetValue<int>());
            var results = response["results"]!.AsArray();
            Assert.Equal(expectedOrder, results.Select(r => r!["index"]!.GetValue<int>()));
            foreach (var result in results)
            {
                var index = result!["index"]!.GetValue<int>();
                Assert.Equal(Documents[index], result["document"]!["text"]!.GetValue<string>());
                AssertClose(expected[index], result["relevance_score"]!.GetValue<double>(), BatchTolerance, $"{path} document {index}");
            }
        }

        body["top_n"] = 2;
        var top = await HttpApiTests.PostOkAsync(client, "/rerank", body.ToJsonString());
        Assert.Equal(expectedOrder[..2], top["results"]!.AsArray().Select(r => r!["index"]!.GetValue<int>()));
        Assert.Equal(tokens, top["usage"]!["total_tokens"]!.GetValue<int>());
    }

    /// <summary>
    /// truncate_prompt_tokens cuts a pair as HF's tokenizer does (longest first, then the template): the scores are those of
    /// the pairs the tokenizer truncates, and a pair longer than the context scores once truncated to it.
    /// </summary>
    [Theory]
    [MemberData(nameof(Models))]
    public async Task Truncation_cuts_each_pair_longest_first(string name)
    {
        var server = await servers.ServerAsync(name);
        var tokenizer = server.Model.Tokenizer!;
        using var client = server.CreateClient();
        const int keep = 12;
        var body = new JsonObject { ["text_1"] = Query, ["text_2"] = Array(Documents), ["truncate_prompt_tokens"] = keep };
        var response = await HttpApiTests.PostOkAsync(client, "/score", body.ToJsonString());
        var scores = Scores(response);
        var full = Scores(await HttpApiTests.PostOkAsync(client, "/score", new JsonObject { ["text_1"] = Query, ["text_2"] = Array(Documents) }.ToJsonString()));
        var encoded = Documents.Select(d => tokenizer.EncodeWithTypes(Query, d, maxLength: keep)).ToArray();
        Assert.All(encoded, e => Assert.True(e.InputIds.Length <= keep));
        Assert.Equal(encoded.Sum(e => e.InputIds.Length), response["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Contains(Enumerable.Range(0, Documents.Length), j => Math.Abs(scores[j] - full[j]) > 10 * BatchTolerance);
        if (name == Xlmr)
        {
            // No token types: a truncated pair scores as its ids do (BERT's types are checked by the tests above).
            for (var j = 0; j < Documents.Length; j++)
                AssertClose(await ClassifyIdsAsync(client, encoded[j].InputIds), scores[j], BatchTolerance, $"document {j} truncated");
        }

        var longText = LongText();
        var all = new JsonObject { ["query"] = Query, ["documents"] = new JsonArray(longText), ["truncate_prompt_tokens"] = -1 };
        var result = await HttpApiTests.PostOkAsync(client, "/rerank", all.ToJsonString());
        Assert.Equal(tokenizer.EncodeWithTypes(Query, longText, maxLength: EncoderServers.MaxModelLen).InputIds.Length, result["usage"]!["prompt_tokens"]!.GetValue<int>());
    }

    public static TheoryData<string, string, string, int, string?, string> BadInputs()
    {
        var longText = LongText();
        var data = new TheoryData<string, string, string, int, string?, string>();
        foreach (var name in (string[])[Bert, Xlmr])
        {
            data.Add(name, "/score", """{"text_1": "a", "text_2": "b", "truncate_prompt_tokens": 2}""", 400, "truncate_prompt_tokens", "`truncate_prompt_tokens` (2) is too small for a pair");
            data.Add(name, "/rerank", """{"query": "a", "documents": ["b"], "truncate_prompt_tokens": 0}""", 400, "truncate_prompt_tokens", "`truncate_prompt_tokens` must be -1");
            data.Add(name, "/score", """{"text_1": "a", "text_2": "b", "use_activation": 0}""", 400, "use_activation", "Invalid value for 'use_activation'");
            data.Add(name, "/score", new JsonObject { ["text_1"] = "a", ["text_2"] = new JsonArray("b", longText) }.ToJsonString(), 400, "text_2", $"maximum context length is {EncoderServers.MaxModelLen} tokens. However, you requested");
            data.Add(name, "/score", new JsonObject { ["text_1"] = longText, ["text_2"] = "b" }.ToJsonString(), 400, "text_1", "tokens in the input for score");
            data.Add(name, "/rerank", new JsonObject { ["query"] = longText, ["documents"] = new JsonArray("b") }.ToJsonString(), 400, "query", $"maximum context length is {EncoderServers.MaxModelLen} tokens");
            data.Add(name, "/v1/rerank", new JsonObject { ["query"] = "a", ["documents"] = new JsonArray("b", longText) }.ToJsonString(), 400, "documents", $"maximum context length is {EncoderServers.MaxModelLen} tokens");
            data.Add(name, "/score", """{"text_1": ["a", "b"], "text_2": ["a", "b", "c"]}""", 400, "text_1", "Input lengths must be either 1:1, 1:N or N:N");
            data.Add(name, "/score", """{"text_1": [], "text_2": ["a"]}""", 400, "text_1", "`text_1` cannot be empty");
            data.Add(name, "/rerank", """{"query": "a", "documents": []}""", 400, "documents", "`documents` cannot be empty");
            data.Add(name, "/rerank", """{"query": "a", "documents": ["b"], "top_n": -1}""", 400, "top_n", "`top_n` must be 0 (every document) or more");
            data.Add(name, "/v1/embeddings", """{"input": "a"}""", 400, "model", "This model is a classifier");
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(BadInputs))]
    public async Task Bad_input_gets_OpenAIs_error_envelope_and_submits_nothing(string name, string path, string body, int status, string? param, string fragment)
    {
        var server = await servers.ServerAsync(name);
        using var client = server.CreateClient();
        await server.PostRefusedAsync(client, path, body, (HttpStatusCode)status, param, fragment);
    }

    [Fact]
    public async Task A_classifier_with_several_labels_refuses_to_score_pairs()
    {
        var server = await servers.ServerAsync("bert-classifier");
        using var client = server.CreateClient();
        foreach (var (path, body) in ((string, string)[])[
            ("/score", """{"text_1": "a", "text_2": ["b", "c"]}"""),
            ("/rerank", """{"query": "a", "documents": ["b", "c"]}""")])
        {
            await server.PostRefusedAsync(client, path, body, HttpStatusCode.BadRequest, "model", "Scoring pairs needs a cross-encoder with one output; this classifier has 3 labels");
        }
    }

    [Fact]
    public async Task The_responses_have_vLLMs_field_names_and_nothing_else()
    {
        var server = await servers.ServerAsync(Bert);
        using var client = server.CreateClient();
        static string[] Keys(JsonNode? node) => [.. node!.AsObject().Select(p => p.Key).Order(StringComparer.Ordinal)];

        var score = await HttpApiTests.PostOkAsync(client, "/score", """{"text_1": "a", "text_2": "b"}""");
        Assert.Equal(["created", "data", "id", "model", "object", "usage"], Keys(score));
        Assert.Equal(["index", "object", "score"], Keys(score["data"]![0]));
        Assert.Equal(["completion_tokens", "prompt_tokens", "total_tokens"], Keys(score["usage"]));

        var rerank = await HttpApiTests.PostOkAsync(client, "/rerank", """{"query": "a", "documents": ["b"]}""");
        Assert.Equal(["id", "model", "results", "usage"], Keys(rerank));
        Assert.Equal(["document", "index", "relevance_score"], Keys(rerank["results"]![0]));
        Assert.Equal(["text"], Keys(rerank["results"]![0]!["document"]));
        Assert.Equal(["prompt_tokens", "total_tokens"], Keys(rerank["usage"]));
    }
}
