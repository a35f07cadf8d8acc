using System.Net;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// vLLM's <c>/classify</c> over raw HTTP against the real server, on the bert-classifier fixture (three labels) and on
/// celer-tiny-py: each input's probabilities (summing to 1, transformers' softmax of the reference logits), the label of
/// the most probable class and the number of classes, in vLLM's wire shape; the four input forms and truncation;
/// <c>/pooling</c> on a classifier answering with the same probabilities; <c>/v1/embeddings</c> refused on a classifier;
/// bad input refused before anything runs; an embedding model and a generative model refusing <c>/classify</c>.
/// </summary>
public sealed class ClassifyServerTests(EncoderServers servers) : IClassFixture<EncoderServers>
{
    private const string Classifier = "bert-classifier";

    // fp32 on the CPU against torch's fp32 over the same bf16 weights: only the order of the sums differs.
    private const float ReferenceTolerance = 1e-4f;

    // The same inputs in different batches of the same engine.
    private const float BatchTolerance = 1e-5f;

    private static readonly string[] Texts =
    [
        "I love this movie, it was great!",
        "This is the worst thing ever.",
        "The weather is okay today",
        "Numbers like 42 and 3.14 are fine",
    ];

    private static JsonArray Array(IEnumerable<string> texts) => new([.. texts.Select(t => (JsonNode?)JsonValue.Create(t))]);

    private static JsonArray Ids(IEnumerable<int> ids) => new([.. ids.Select(i => (JsonNode?)JsonValue.Create(i))]);

    private static float[] Floats(JsonNode node) => [.. node.AsArray().Select(x => x!.GetValue<float>())];

    private static float[][] Probs(JsonNode response) => [.. response["data"]!.AsArray().Select(d => Floats(d!["probs"]!))];

    private static void AssertClose(float[] expected, float[] actual, float tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"{what}[{i}]: {actual[i]} vs {expected[i]}");
    }

    private static string LongText() => string.Join(" ", Enumerable.Range(0, 600).Select(i => $"word{i}"));

    [Fact]
    public async Task Classify_returns_each_inputs_probabilities_the_label_of_the_most_probable_class_and_the_number_of_classes()
    {
        var server = await servers.ServerAsync(Classifier);
        var labels = EncoderServers.Labels(Classifier);
        var tokenizer = server.Model.Tokenizer!;
        using var client = server.CreateClient();
        var before = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var response = await server.PostCountingAsync(client, "/classify",
            new JsonObject { ["model"] = ServerFixture.ModelName, ["input"] = Array(Texts) }.ToJsonString(), engineRequests: Texts.Length);

        Assert.Matches("^classify-[0-9a-f]{32}$", response["id"]!.GetValue<string>());
        Assert.Equal("list", response["object"]!.GetValue<string>());
        Assert.Equal(ServerFixture.ModelName, response["model"]!.GetValue<string>());
        Assert.InRange(response["created"]!.GetValue<long>(), before, before + 60);
        var tokens = Texts.Sum(t => tokenizer.Encode(t, addSpecialTokens: true).Length);
        Assert.Equal(tokens, response["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(tokens, response["usage"]!["total_tokens"]!.GetValue<int>());
        Assert.Equal(0, response["usage"]!["completion_tokens"]!.GetValue<int>());

        var data = response["data"]!.AsArray();
        Assert.Equal(Texts.Length, data.Count);
        for (var i = 0; i < data.Count; i++)
        {
            var probs = Floats(data[i]!["probs"]!);
            Assert.Equal(i, data[i]!["index"]!.GetValue<int>());
            Assert.Equal(labels.Length, probs.Length);
            Assert.Equal(labels.Length, data[i]!["num_classes"]!.GetValue<int>());
            Assert.All(probs, p => Assert.InRange(p, 0f, 1f));
            Assert.True(Math.Abs(probs.Sum(p => (double)p) - 1) < 1e-5, $"input {i}: the probabilities sum to {probs.Sum()}");
            Assert.Equal(labels[System.Array.IndexOf(probs, probs.Max())], data[i]!["label"]!.GetValue<string>());
        }
        Assert.True(Probs(response).Select(p => p[0]).Distinct().Count() > 1, "every input classifies alike");
    }

    [Fact]
    public async Task Classify_matches_transformers_softmax_for_the_reference_texts()
    {
        var server = await servers.ServerAsync(Classifier);
        var reference = EncoderServers.Reference(Classifier);
        Assert.SkipWhen(reference is null, $"{Classifier} has no reference.json");
        var cases = reference!["cases"]!.AsArray();
        using var client = server.CreateClient();
        var ids = cases.Select(c => c!["prompt_token_ids"]!.AsArray().Select(x => x!.GetValue<int>()).ToArray()).ToArray();
        var fromIds = await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = new JsonArray([.. ids.Select(i => (JsonNode)Ids(i))]) }.ToJsonString());
        for (var i = 0; i < cases.Count; i++)
            AssertClose(Floats(cases[i]!["probs"]!), Probs(fromIds)[i], ReferenceTolerance, $"case {i} from its ids");

        // From the text, wherever Celer's tokenizer gives transformers' ids (the tokenizer's own tests cover the rest).
        var tokenizer = server.Model.Tokenizer!;
        for (var i = 0; i < cases.Count; i++)
        {
            var text = cases[i]!["text"]!.GetValue<string>();
            if (!tokenizer.Encode(text, addSpecialTokens: true).SequenceEqual(ids[i]))
                continue;
            var fromText = await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = text }.ToJsonString());
            AssertClose(Floats(cases[i]!["probs"]!), Probs(fromText)[0], ReferenceTolerance, $"case {i} from its text");
        }
    }

    [Fact]
    public async Task Classify_takes_every_input_form_and_truncates_to_the_last_k_tokens()
    {
        var server = await servers.ServerAsync(Classifier);
        var tokenizer = server.Model.Tokenizer!;
        using var client = server.CreateClient();
        var expected = Probs(await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = Array(Texts[..2]) }.ToJsonString()));
        var ids = Texts[..2].Select(t => tokenizer.Encode(t, addSpecialTokens: true)).ToArray();

        var one = await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = Texts[0] }.ToJsonString());
        AssertClose(expected[0], Assert.Single(Probs(one)), BatchTolerance, "a string");
        var tokenIds = await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = Ids(ids[1]) }.ToJsonString());
        AssertClose(expected[1], Assert.Single(Probs(tokenIds)), BatchTolerance, "token ids");
        var lists = await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = new JsonArray(Ids(ids[0]), Ids(ids[1])) }.ToJsonString());
        AssertClose(expected[0], Probs(lists)[0], BatchTolerance, "lists of token ids [0]");
        AssertClose(expected[1], Probs(lists)[1], BatchTolerance, "lists of token ids [1]");

        // add_special_tokens: false leaves out [CLS] and [SEP].
        var bare = await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = Texts[0], ["add_special_tokens"] = false }.ToJsonString());
        Assert.Equal(tokenizer.Encode(Texts[0], addSpecialTokens: false).Length, bare["usage"]!["prompt_tokens"]!.GetValue<int>());

        // truncate_prompt_tokens keeps the last k tokens, as /v1/embeddings does; -1 cuts to the model's maximum length.
        var cut = await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = Texts[0], ["truncate_prompt_tokens"] = 4 }.ToJsonString());
        Assert.Equal(4, cut["usage"]!["prompt_tokens"]!.GetValue<int>());
        var lastFour = await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = Ids(ids[0][^4..]) }.ToJsonString());
        AssertClose(Probs(lastFour)[0], Probs(cut)[0], BatchTolerance, "truncated to 4");
        var longText = LongText();
        Assert.True(tokenizer.Encode(longText).Length > EncoderServers.MaxModelLen);
        var longest = await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = longText, ["truncate_prompt_tokens"] = -1 }.ToJsonString());
        Assert.Equal(EncoderServers.MaxModelLen, longest["usage"]!["prompt_tokens"]!.GetValue<int>());
    }

    [Fact]
    public async Task Pooling_on_a_classifier_answers_with_the_class_probabilities_and_embeddings_are_refused()
    {
        var server = await servers.ServerAsync(Classifier);
        using var client = server.CreateClient();
        var classified = Probs(await HttpApiTests.PostOkAsync(client, "/classify", new JsonObject { ["input"] = Array(Texts) }.ToJsonString()));
        var pooled = await server.PostCountingAsync(client, "/pooling", new JsonObject { ["input"] = Array(Texts) }.ToJsonString(), engineRequests: Texts.Length);
        Assert.Matches("^pool-[0-9a-f]{32}$", pooled["id"]!.GetValue<string>());
        var data = pooled["data"]!.AsArray();
        for (var i = 0; i < Texts.Length; i++)
        {
            Assert.Equal("pooling", data[i]!["object"]!.GetValue<string>());
            AssertClose(classified[i], Floats(data[i]!["data"]!), BatchTolerance, $"/pooling input {i}");
        }

        await server.PostRefusedAsync(client, "/v1/embeddings", """{"input": "I love this movie"}""", HttpStatusCode.BadRequest, "model",
            "This model is a classifier: it scores and classifies (/classify, /score, /rerank) and computes no embeddings.");
        await server.PostRefusedAsync(client, "/pooling", """{"input": "I love this movie", "normalize": true}""", HttpStatusCode.BadRequest, "normalize",
            "dimensions and normalize apply to embeddings");

        // The classifier still classifies.
        Assert.Single(Probs(await HttpApiTests.PostOkAsync(client, "/classify", """{"input": "fine"}""")));
    }

    public static TheoryData<string, int, string?, string> BadInputs()
    {
        var longText = LongText();
        return new TheoryData<string, int, string?, string>
        {
            { """{"input": []}""", 400, "input", "`input` cannot be empty" },
            { """{}""", 400, "input", "`input` is required" },
            { """{"input": null}""", 400, "input", "`input` is required" },
            { """{"input": 5}""", 400, "input", "`input` must be a string, a list of strings" },
            { """{"input": ["a", 5]}""", 400, "input", "`input` must be a string, a list of strings" },
            { """{"input": [[]]}""", 400, "input", "`input` cannot be an empty list of token ids" },
            { """{"input": [101, 99999999, 102]}""", 400, "input", "Token id 99999999 is out of vocabulary" },
            { """{"input": [101, -1, 102]}""", 400, "input", "Token id -1 is out of vocabulary" },
            { """{"input": "a", "add_special_tokens": false, "truncate_prompt_tokens": 0}""", 400, "truncate_prompt_tokens", "-1 (the model's maximum length) or at least 1" },
            { """{"input": "a", "truncate_prompt_tokens": 1000}""", 400, "truncate_prompt_tokens", $"is greater than max_model_len ({EncoderServers.MaxModelLen})" },
            { """{"input": "a", "truncate_prompt_tokens": "5"}""", 400, "truncate_prompt_tokens", "Invalid value for 'truncate_prompt_tokens'" },
            { new JsonObject { ["input"] = longText }.ToJsonString(), 400, "input", $"maximum context length is {EncoderServers.MaxModelLen} tokens. However, you requested" },
            { new JsonObject { ["input"] = new JsonArray("fine", longText) }.ToJsonString(), 400, "input", "tokens in the input for classification" },
            { """{"input": "a", "use_activation": "no"}""", 400, "use_activation", "Invalid value for 'use_activation'" },
            { """{"input": "a", "messages": [{"role": "user", "content": "a"}]}""", 400, "messages", "Send either `input` or `messages`, not both" },
            { """{"input": "a", "priority": "high"}""", 400, "priority", "Invalid value for 'priority'" },
            { """["a"]""", 400, null, "must be a JSON object" },
            { """{"model": "no-such-model", "input": "a"}""", 404, "model", "does not exist" },
        };
    }

    [Theory]
    [MemberData(nameof(BadInputs))]
    public async Task Bad_input_gets_OpenAIs_error_envelope_and_submits_nothing(string body, int status, string? param, string fragment)
    {
        var server = await servers.ServerAsync(Classifier);
        using var client = server.CreateClient();
        await server.PostRefusedAsync(client, "/classify", body, (HttpStatusCode)status, param, fragment);
    }

    [Fact]
    public async Task An_embedding_model_and_a_generative_model_refuse_classify_with_the_engines_message()
    {
        foreach (var (convert, message) in ((string?, string)[])[
            ("embed", "This model is an embedding model: it has no classifier head to classify or score pairs with."),
            (null, "This model is a generative model: classification and scores need a classifier")])
        {
            await using var server = await TinyPyServer.StartAsync(convert: convert);
            using var client = server.CreateClient();
            await server.PostRefusedAsync(client, "/classify", """{"input": ["Hello", "world"]}""", HttpStatusCode.BadRequest, "model", message);
            await server.PostRefusedAsync(client, "/classify", """{"input": [1, 2, 3]}""", HttpStatusCode.BadRequest, "model", message);
            // What the server refuses itself comes first, on any model.
            await server.PostRefusedAsync(client, "/classify", """{"input": []}""", HttpStatusCode.BadRequest, "input", "`input` cannot be empty");
        }
    }

    /// <summary>
    /// vLLM's <c>use_activation: false</c> (<c>activation</c>, <c>softmax</c> in older versions, which win over it): the
    /// raw logits, whose softmax is what the default request answers.
    /// </summary>
    [Fact]
    public async Task Use_activation_false_returns_the_logits_whose_softmax_is_the_default_answer()
    {
        var server = await servers.ServerAsync(Classifier);
        using var client = server.CreateClient();
        float[] Probs(JsonNode response) => [.. response["data"]![0]!["probs"]!.AsArray().Select(v => v!.GetValue<float>())];
        var probs = Probs(await HttpApiTests.PostOkAsync(client, "/classify", """{"input": "I love this movie"}"""));
        foreach (var body in (string[])[
            """{"input": "I love this movie", "use_activation": false}""",
            """{"input": "I love this movie", "activation": false, "use_activation": true}""",
            """{"input": "I love this movie", "softmax": false, "activation": true}"""])
        {
            var logits = Probs(await HttpApiTests.PostOkAsync(client, "/classify", body));
            Assert.Equal(probs.Length, logits.Length);
            Assert.True(logits.Any(x => x < 0 || x > 1) || Math.Abs(logits.Sum() - 1) > 1e-3, $"{body}: {string.Join(", ", logits)} look like probabilities");
            var max = logits.Max();
            var sum = logits.Sum(x => Math.Exp(x - max));
            for (var i = 0; i < logits.Length; i++)
                Assert.Equal(probs[i], Math.Exp(logits[i] - max) / sum, 1e-5);
        }

        var withSoftmax = Probs(await HttpApiTests.PostOkAsync(client, "/classify", """{"input": "I love this movie", "softmax": true, "use_activation": false}"""));
        Assert.Equal(probs, withSoftmax);
    }

    [Fact]
    public async Task The_response_has_vLLMs_field_names_and_nothing_else()
    {
        var server = await servers.ServerAsync(Classifier);
        using var client = server.CreateClient();
        var response = await HttpApiTests.PostOkAsync(client, "/classify", """{"input": "I love this movie"}""");
        Assert.Equal(["created", "data", "id", "model", "object", "usage"], response.AsObject().Select(p => p.Key).Order(StringComparer.Ordinal));
        Assert.Equal(["index", "label", "num_classes", "probs"], response["data"]![0]!.AsObject().Select(p => p.Key).Order(StringComparer.Ordinal));
        Assert.Equal(["completion_tokens", "prompt_tokens", "total_tokens"], response["usage"]!.AsObject().Select(p => p.Key).Order(StringComparer.Ordinal));
    }
}
