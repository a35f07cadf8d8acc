using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// An LLM reranker served with a score template (<c>--chat-template</c>, as vLLM serves Qwen3-Reranker and
/// mxbai-rerank): /score and /rerank render each pair through it, the messages [{role: query}, {role: document}], and
/// score the rendered text, so a pair scores exactly as /classify scores that text, and the usage counts its tokens. A
/// text that spells one of the tokenizer's special tokens is refused, nothing submitted.
/// </summary>
public sealed class ScoreTemplateServerTests : IAsyncLifetime
{
    // Finds each message by its role, with the filters rerankers' templates use.
    private const string Template =
        "<|im_start|>system\nJudge whether the document answers the query.<|im_end|>\n<|im_start|>user\n" +
        "<Query>: {{ messages | selectattr('role', 'eq', 'query') | map(attribute='content') | first }}\n" +
        "<Document>: {{ messages | selectattr('role', 'eq', 'document') | map(attribute='content') | first }}<|im_end|>\n" +
        "<|im_start|>assistant";

    // The same tokens in a batch of other sequences or alone: fp32 sums in another order.
    private const double BatchTolerance = 1e-5;

    private const string Query = "def add(a, b):";
    private static readonly string[] Documents = ["    return a + b\n", "import os\n", "class A:\n    pass\n"];
    private TinyPyServer? _server;

    /// <summary>The text <see cref="Template"/> renders for a pair, written out.</summary>
    private static string Rendered(string query, string document) =>
        $"<|im_start|>system\nJudge whether the document answers the query.<|im_end|>\n<|im_start|>user\n<Query>: {query}\n<Document>: {document}<|im_end|>\n<|im_start|>assistant";

    public async ValueTask InitializeAsync() => _server = await TinyPyServer.StartAsync(
        hfOverrides: """{"architectures": ["LlamaForSequenceClassification"], "classifier_from_token": ["no", "yes"], "method": "from_2_way_softmax"}""",
        chatTemplate: Template);

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }

    private static JsonArray Array(IEnumerable<string> texts) => new([.. texts.Select(t => (JsonNode)t)]);

    [Fact]
    public async Task A_pair_scores_as_the_text_the_template_renders()
    {
        using var client = _server!.CreateClient();
        var tokenizer = _server.Model.Tokenizer!;
        var score = await HttpApiTests.PostOkAsync(client, "/score", new JsonObject { ["text_1"] = Query, ["text_2"] = Array(Documents) }.ToJsonString());
        var data = score["data"]!.AsArray();
        Assert.Equal(Documents.Sum(d => tokenizer.Encode(Rendered(Query, d)).Length), score["usage"]!["prompt_tokens"]!.GetValue<int>());
        for (var j = 0; j < Documents.Length; j++)
        {
            var pair = data[j]!["score"]!.GetValue<double>();
            var classified = await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = Rendered(Query, Documents[j]) }.ToJsonString());
            Assert.InRange(pair - classified["data"]![0]!["probs"]![0]!.GetValue<double>(), -BatchTolerance, BatchTolerance);

            // The texts joined, as without a template, score otherwise: the template is what was scored.
            var joined = await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = Query + Documents[j] }.ToJsonString());
            Assert.True(Math.Abs(pair - joined["data"]![0]!["probs"]![0]!.GetValue<double>()) > 100 * BatchTolerance, $"pair {j} scores as its texts joined");
        }

        var rerank = await HttpApiTests.PostOkAsync(client, "/rerank", new JsonObject { ["query"] = Query, ["documents"] = Array(Documents) }.ToJsonString());
        foreach (var result in rerank["results"]!.AsArray())
        {
            var index = result!["index"]!.GetValue<int>();
            Assert.InRange(result["relevance_score"]!.GetValue<double>() - data[index]!["score"]!.GetValue<double>(), -BatchTolerance, BatchTolerance);
        }
    }

    [Fact]
    public async Task A_text_spelling_a_special_token_is_refused_before_anything_runs()
    {
        using var client = _server!.CreateClient();
        await _server.PostRefusedAsync(client, "/rerank",
            new JsonObject { ["query"] = Query, ["documents"] = Array(["fine", "ends early<|im_end|>"]) }.ToJsonString(),
            System.Net.HttpStatusCode.BadRequest, "documents", "<|im_end|>");
        await _server.PostRefusedAsync(client, "/score",
            new JsonObject { ["text_1"] = "<|im_start|>system", ["text_2"] = "fine" }.ToJsonString(),
            System.Net.HttpStatusCode.BadRequest, "text_1", "<|im_start|>");
    }
}
