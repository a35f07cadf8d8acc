using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// BAD_INPUT.md #26 and the batching invariant end to end: 64 greedy streams at once on an engine that
/// runs 8 sequences at a time — most of them queue — and every stream's text equals the same request
/// served alone.
/// </summary>
public sealed class ConcurrentStreamingTests
{
    private const int NumRequests = 64;
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private static readonly string[] Openings =
    [
        "def fibonacci(n):", "import numpy as np\n", "class Node:\n    def __init__(self", "for i in range(",
        "# Sort a list\ndef sort(items):", "with open(path) as f:", "if __name__ == \"__main__\":", "return sum(x for x in",
    ];

    /// <summary>Request i: chat for odd i, completions for even; a prompt of its own; 3..24 new tokens.</summary>
    private static (string Path, JsonObject Body) Request(int i)
    {
        var text = $"{Openings[i % Openings.Length]} {i}";
        var body = new JsonObject { ["max_tokens"] = 3 + (i * 7 % 22), ["temperature"] = 0 };
        if (i % 2 == 0)
        {
            body["prompt"] = text;
            return ("/v1/completions", body);
        }
        body["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = text });
        return ("/v1/chat/completions", body);
    }

    [Fact]
    public async Task Sixty_four_concurrent_streams_queue_and_each_equals_its_solo_run()
    {
        await using var server = await TinyPyServer.StartAsync(maxPendingRequests: NumRequests);
        using var client = server.CreateClient();

        var solo = new string[NumRequests];
        for (var i = 0; i < NumRequests; i++)
        {
            var (path, body) = Request(i);
            var choice = (await HttpApiTests.PostOkAsync(client, path, body.ToJsonString()))["choices"]![0]!;
            solo[i] = (choice["text"] ?? choice["message"]!["content"])!.GetValue<string>();
        }
        Assert.True(solo.Distinct().Count() > NumRequests / 2, "the requests should not all produce the same text");

        // Hold the loop until every request is admitted, so they really are concurrent (8 run, the rest wait).
        server.Executor.Close();
        var streams = new Task<HttpResponseMessage>[NumRequests];
        for (var i = 0; i < NumRequests; i++)
        {
            var (path, body) = Request(i);
            body["stream"] = true;
#pragma warning disable CA2000 // still being sent when the iteration ends; its response refers to it
            var message = new HttpRequestMessage(HttpMethod.Post, path) { Content = HttpApiTests.Json(body.ToJsonString()) };
#pragma warning restore CA2000
            streams[i] = client.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, TestContext.Current.CancellationToken);
        }
        var responses = await Task.WhenAll(streams).WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));

        var maxWaiting = 0;
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                maxWaiting = Math.Max(maxWaiting, server.Engine.Stats.NumWaiting);
                await Task.Delay(1);
            }
        }, TestContext.Current.CancellationToken);
        server.Executor.Open();
        var streamed = await Task.WhenAll(responses.Select((r, i) => ReadTextAsync(r, chat: i % 2 == 1))).WaitAsync(Bound, TestContext.Current.CancellationToken);
        await sampling.CancelAsync();
        await sampler;

        for (var i = 0; i < NumRequests; i++)
            Assert.True(solo[i] == streamed[i], $"request {i}: streamed {Quote(streamed[i])}, alone {Quote(solo[i])}");
        Assert.True(maxWaiting >= NumRequests - 2 * TinyPyServer.MaxNumSeqs, $"at most {maxWaiting} requests were seen waiting");
    }

    private static async Task<string> ReadTextAsync(HttpResponseMessage response, bool chat)
    {
        using (response)
        {
            var events = await SseReader.ReadAllAsync(response);
            Assert.Equal(SseReader.Done, events[^1]);
            var text = new StringBuilder();
            foreach (var data in events[..^1])
            {
                var choice = JsonNode.Parse(data)!["choices"]![0]!;
                text.Append((chat ? choice["delta"]!["content"] : choice["text"])?.GetValue<string>());
            }
            return text.ToString();
        }
    }

    private static string Quote(string text) => System.Text.Json.JsonSerializer.Serialize(text);
}
