using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// An LLM reranker (the shipped causal LM converted as vLLM converts Qwen3-Reranker: classifier_from_token with
/// from_2_way_softmax) behind the real server: /score and /rerank read each pair as its two texts joined (vLLM's
/// use_pad_token false), so a pair scores exactly as /classify scores the joined text, and the usage counts its tokens.
/// </summary>
public sealed class LlmRerankerServerTests : IAsyncLifetime
{
    private const string Query = "def add(a, b):\n";
    private static readonly string[] Documents = ["    return a + b\n", "import os\n", "class A:\n    pass\n"];
    private TinyPyServer? _server;

    public async ValueTask InitializeAsync() => _server = await TinyPyServer.StartAsync(
        hfOverrides: """{"architectures": ["LlamaForSequenceClassification"], "classifier_from_token": ["def", "return"], "method": "from_2_way_softmax"}""");

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_pair_scores_as_its_two_texts_joined()
    {
        using var client = _server!.CreateClient();
        var tokenizer = _server.Model.Tokenizer!;
        var score = await HttpApiTests.PostOkAsync(client, "/score", new JsonObject { ["text_1"] = Query, ["text_2"] = new JsonArray([.. Documents.Select(d => (JsonNode)d)]) }.ToJsonString());
        var data = score["data"]!.AsArray();
        Assert.Equal(Documents.Sum(d => tokenizer.Encode(Query + d).Length), score["usage"]!["prompt_tokens"]!.GetValue<int>());
        for (var j = 0; j < Documents.Length; j++)
        {
            var classified = await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = Query + Documents[j] }.ToJsonString());
            var probability = classified["data"]![0]!["probs"]![0]!.GetValue<double>();
            Assert.Equal(probability, data[j]!["score"]!.GetValue<double>(), 6);
        }

        var rerank = await HttpApiTests.PostOkAsync(client, "/rerank", new JsonObject { ["query"] = Query, ["documents"] = new JsonArray([.. Documents.Select(d => (JsonNode)d)]) }.ToJsonString());
        var order = rerank["results"]!.AsArray().Select(r => r!["relevance_score"]!.GetValue<double>()).ToArray();
        Assert.Equal(order.OrderByDescending(x => x), order);
    }
}
