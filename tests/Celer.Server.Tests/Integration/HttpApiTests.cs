using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Celer.Server.Tests.Integration;

/// <summary>Raw HTTP against the real server: the completions API, tokenize, probes, metrics.</summary>
[Collection(ServerCollection.Name)]
public sealed class HttpApiTests(ServerFixture server)
{
    internal static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    internal static async Task<JsonNode> PostOkAsync(HttpClient client, string path, string json)
    {
        using var response = await client.PostJsonAsync(path, json);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {body}");
        return JsonNode.Parse(body)!;
    }

    /// <summary>Posts a request the server must refuse with <paramref name="status"/>; returns OpenAI's error object.</summary>
    internal static async Task<JsonNode> PostErrorAsync(HttpClient client, string path, string json, HttpStatusCode status)
    {
        using var response = await client.PostJsonAsync(path, json);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == status, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
        return JsonNode.Parse(body)!["error"]!;
    }

    [Fact]
    public async Task Completions_accept_all_four_prompt_forms_and_number_choices_prompt_major()
    {
        using var client = server.CreateClient();
        var ids = (await PostOkAsync(client, "/tokenize", """{"prompt": "Hello world"}"""))["tokens"]!.AsArray().Select(t => t!.GetValue<int>()).ToArray();

        var fromText = await PostOkAsync(client, "/v1/completions", """{"prompt": "Hello world", "max_tokens": 5, "temperature": 0}""");
        var fromIds = await PostOkAsync(client, "/v1/completions", $$"""{"prompt": [{{string.Join(",", ids)}}], "max_tokens": 5, "temperature": 0}""");
        Assert.Equal(fromText["choices"]![0]!["text"]!.GetValue<string>(), fromIds["choices"]![0]!["text"]!.GetValue<string>());
        Assert.Equal("text_completion", fromText["object"]!.GetValue<string>());

        var batch = await PostOkAsync(client, "/v1/completions", $$"""{"prompt": [[{{string.Join(",", ids)}}], [{{ids[0]}}]], "max_tokens": 3, "n": 2, "temperature": 0.8, "seed": 7}""");
        var choices = batch["choices"]!.AsArray();
        Assert.Equal([0, 1, 2, 3], choices.Select(c => c!["index"]!.GetValue<int>()));
        Assert.Equal(ids.Length + 1, batch["usage"]!["prompt_tokens"]!.GetValue<int>());

        var twoTexts = await PostOkAsync(client, "/v1/completions", """{"prompt": ["Hello world", "Hello world"], "max_tokens": 4, "temperature": 0}""");
        Assert.Equal(twoTexts["choices"]![0]!["text"]!.GetValue<string>(), twoTexts["choices"]![1]!["text"]!.GetValue<string>());
    }

    [Fact]
    public async Task Echo_with_logprobs_covers_prompt_and_completion_in_the_legacy_format()
    {
        using var client = server.CreateClient();
        var response = await PostOkAsync(client, "/v1/completions", """{"prompt": "The sky is", "max_tokens": 3, "temperature": 0, "echo": true, "logprobs": 2}""");
        var choice = response["choices"]![0]!;
        var text = choice["text"]!.GetValue<string>();
        Assert.StartsWith("The sky is", text, StringComparison.Ordinal);

        var logprobs = choice["logprobs"]!;
        var tokens = logprobs["tokens"]!.AsArray();
        var promptTokens = response["usage"]!["prompt_tokens"]!.GetValue<int>();
        Assert.Equal(promptTokens + 3, tokens.Count);
        // The first prompt token has no logprob (nothing precedes it), every other position has one.
        Assert.Null(logprobs["token_logprobs"]![0]);
        Assert.Null(logprobs["top_logprobs"]![0]);
        for (var i = 1; i < tokens.Count; i++)
        {
            Assert.True(logprobs["token_logprobs"]![i]!.GetValue<float>() <= 0);
            Assert.InRange(logprobs["top_logprobs"]![i]!.AsObject().Count, 1, 3);
        }
        var offsets = logprobs["text_offset"]!.AsArray().Select(o => o!.GetValue<int>()).ToList();
        Assert.Equal(0, offsets[0]);
        Assert.Equal(offsets.Order(), offsets);
    }

    [Fact]
    public async Task Streamed_completion_is_sse_chunks_then_usage_then_done()
    {
        using var client = server.CreateClient();
        var whole = await PostOkAsync(client, "/v1/completions", """{"prompt": "Once upon", "max_tokens": 6, "temperature": 0}""");

        using var response = await client.PostJsonAsync("/v1/completions", """{"prompt": "Once upon", "max_tokens": 6, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        var events = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e, StringComparison.Ordinal));
        Assert.Equal("data: [DONE]", events[^1]);

        var chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        var usage = chunks[^1];
        Assert.Empty(usage["choices"]!.AsArray());
        Assert.Equal(whole["usage"]!["completion_tokens"]!.GetValue<int>(), usage["usage"]!["completion_tokens"]!.GetValue<int>());
        var text = string.Concat(chunks[..^1].Select(c => c["choices"]![0]!["text"]!.GetValue<string>()));
        Assert.Equal(whole["choices"]![0]!["text"]!.GetValue<string>(), text);
        Assert.NotNull(chunks[^2]["choices"]![0]!["finish_reason"]);
        Assert.All(chunks, c => Assert.StartsWith("cmpl-", c["id"]!.GetValue<string>(), StringComparison.Ordinal));
    }

    /// <summary>
    /// vLLM's <c>stream_options.continuous_usage_stats</c> (issue 18 #5): with <c>include_usage</c>, every chunk
    /// carries its choice's usage so far: the prompt's tokens, and the tokens that choice has generated up to and
    /// including the chunk; the final usage chunk sums every choice.
    /// </summary>
    [Fact]
    public async Task Continuous_usage_stats_put_each_choices_running_usage_in_every_chunk()
    {
        using var client = server.CreateClient();
        using var response = await client.PostJsonAsync("/v1/completions",
            """{"prompt": ["Once upon", "def f(x):"], "n": 2, "max_tokens": 5, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true, "continuous_usage_stats": true}}""");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = (await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken)).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        string[] texts = ["Once upon", "def f(x):"];
        var prompts = texts.Select(p => Tokenize(client, p)).ToArray();
        var last = new int[4];
        foreach (var chunk in chunks[..^1])
        {
            var choice = chunk["choices"]![0]!;
            int index = choice["index"]!.GetValue<int>();
            var usage = chunk["usage"]!;
            int completion = usage["completion_tokens"]!.GetValue<int>();
            Assert.Equal(await prompts[index / 2], usage["prompt_tokens"]!.GetValue<int>());
            Assert.Equal(usage["prompt_tokens"]!.GetValue<int>() + completion, usage["total_tokens"]!.GetValue<int>());
            Assert.True(completion >= last[index] && completion <= 5, $"choice {index}: {completion} after {last[index]}");
            last[index] = completion;
        }

        Assert.All(last, tokens => Assert.Equal(5, tokens));
        var total = chunks[^1]["usage"]!;
        Assert.Empty(chunks[^1]["choices"]!.AsArray());
        Assert.Equal(20, total["completion_tokens"]!.GetValue<int>());

        // Chat: the role chunk has 0 completion tokens, the last delta all of them.
        using var chat = await client.PostJsonAsync("/v1/chat/completions",
            """{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true, "continuous_usage_stats": true}}""");
        var chatChunks = (await chat.Content.ReadAsStringAsync(TestContext.Current.CancellationToken)).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)[..^1]
            .Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.Equal(0, chatChunks[0]["usage"]!["completion_tokens"]!.GetValue<int>());
        Assert.Equal(4, chatChunks[^2]["usage"]!["completion_tokens"]!.GetValue<int>());
        Assert.All(chatChunks, c => Assert.NotNull(c["usage"]));

        // Without continuous_usage_stats only the final chunk has usage.
        using var plain = await client.PostJsonAsync("/v1/completions", """{"prompt": "x", "max_tokens": 3, "stream": true, "stream_options": {"include_usage": true}}""");
        var plainChunks = (await plain.Content.ReadAsStringAsync(TestContext.Current.CancellationToken)).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)[..^1]
            .Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.All(plainChunks[..^1], c => Assert.Null(c["usage"]));

        static async Task<int> Tokenize(HttpClient client, string prompt) =>
            (await PostOkAsync(client, "/tokenize", new JsonObject { ["prompt"] = prompt }.ToJsonString()))["count"]!.GetValue<int>();
    }

    [Fact]
    public async Task Streamed_chat_sends_the_role_first_and_finish_reason_last()
    {
        using var client = server.CreateClient();
        using var response = await client.PostJsonAsync("/v1/chat/completions", """{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "temperature": 0, "stream": true}""");
        var events = (await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken)).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.Equal("assistant", chunks[0]["choices"]![0]!["delta"]!["role"]!.GetValue<string>());
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c["object"]!.GetValue<string>()));
        Assert.NotNull(chunks[^1]["choices"]![0]!["finish_reason"]);
        Assert.All(chunks[..^1], c => Assert.Null(c["choices"]![0]!["finish_reason"]));
    }

    [Fact]
    public async Task Tokenize_and_detokenize_round_trip()
    {
        using var client = server.CreateClient();
        var tokenized = await PostOkAsync(client, "/tokenize", """{"prompt": "round trip text", "add_special_tokens": false}""");
        Assert.Equal(server.MaxModelLen, tokenized["max_model_len"]!.GetValue<int>());
        Assert.Equal(tokenized["tokens"]!.AsArray().Count, tokenized["count"]!.GetValue<int>());
        var detokenized = await PostOkAsync(client, "/detokenize", $$"""{"tokens": {{tokenized["tokens"]!.ToJsonString()}}}""");
        Assert.Equal("round trip text", detokenized["prompt"]!.GetValue<string>());

        var chat = await PostOkAsync(client, "/tokenize", """{"messages": [{"role": "user", "content": "Hi"}]}""");
        Assert.True(chat["count"]!.GetValue<int>() > tokenized["count"]!.GetValue<int>() - 3);
    }

    [Fact]
    public async Task Models_health_ping_and_version_answer()
    {
        using var client = server.CreateClient();
        var models = JsonNode.Parse(await client.GetStringAsync("/v1/models", TestContext.Current.CancellationToken))!;
        Assert.Equal(ServerFixture.ModelName, models["data"]![0]!["id"]!.GetValue<string>());
        Assert.Equal(server.MaxModelLen, models["data"]![0]!["max_model_len"]!.GetValue<int>());
        // vLLM's ModelCard, which has no task field: a pooling model's card looks like any other.
        Assert.Equal(["created", "id", "max_model_len", "object", "owned_by", "parent", "permission", "root"],
            models["data"]![0]!.AsObject().Select(p => p.Key).Order(StringComparer.Ordinal));
        var permission = Assert.Single(models["data"]![0]!["permission"]!.AsArray())!;
        Assert.Matches("^modelperm-[0-9a-f]{32}$", permission["id"]!.GetValue<string>());
        Assert.Equal("model_permission", permission["object"]!.GetValue<string>());
        Assert.True(permission["allow_sampling"]!.GetValue<bool>());
        Assert.Equal("*", permission["organization"]!.GetValue<string>());

        using var anonymous = server.CreateClient(authorized: false);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/health", TestContext.Current.CancellationToken)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/ping", TestContext.Current.CancellationToken)).StatusCode);
        Assert.NotNull(JsonNode.Parse(await anonymous.GetStringAsync("/version", TestContext.Current.CancellationToken))!["version"]);
    }

    [Fact]
    public async Task Metrics_use_vllm_names_and_counters_move()
    {
        using var client = server.CreateClient(authorized: false);
        var before = ParseMetrics(await client.GetStringAsync("/metrics", TestContext.Current.CancellationToken));
        using var authorized = server.CreateClient();
        await PostOkAsync(authorized, "/v1/completions", """{"prompt": "Metrics move", "max_tokens": 4, "temperature": 0, "ignore_eos": true}""");
        var after = ParseMetrics(await client.GetStringAsync("/metrics", TestContext.Current.CancellationToken));

        const string labels = "{model_name=\"" + ServerFixture.ModelName + "\",engine=\"0\"}";
        Assert.True(after["vllm:generation_tokens_total" + labels] >= before.GetValueOrDefault("vllm:generation_tokens_total" + labels) + 4);
        Assert.True(after["vllm:prompt_tokens_total" + labels] > before.GetValueOrDefault("vllm:prompt_tokens_total" + labels));
        Assert.True(after["vllm:e2e_request_latency_seconds_count" + labels] >= before.GetValueOrDefault("vllm:e2e_request_latency_seconds_count" + labels) + 1);
        foreach (var name in new[] { "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc" })
            Assert.Contains(name + labels, after.Keys);
    }

    /// <summary>Prometheus text format: every sample line is <c>name{labels} value</c>; comments start with '#'.</summary>
    private static Dictionary<string, double> ParseMetrics(string text)
    {
        var samples = new Dictionary<string, double>();
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
