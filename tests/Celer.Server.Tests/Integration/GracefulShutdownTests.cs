using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;
using Microsoft.Extensions.Hosting;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// BAD_INPUT.md #25: on SIGTERM (the host's StopApplication, which is what the console lifetime calls)
/// the server stops admitting — new requests and <c>/health</c> get 503 while it keeps listening — lets
/// the in-flight request finish, then stops well within the shutdown timeout.
/// </summary>
public sealed class GracefulShutdownTests
{
    private static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Stop_drains_in_flight_requests_refuses_new_ones_then_exits()
    {
        await using var server = await TinyPyServer.StartAsync(shutdownTimeout: ShutdownTimeout);
        using var client = server.CreateClient();
        var expected = (await HttpApiTests.PostOkAsync(client, "/v1/completions", """{"prompt": "class Stack:", "max_tokens": 8, "temperature": 0}"""))["choices"]![0]!["text"]!.GetValue<string>();

        // In flight: admitted, headers sent, held before its first step.
        server.Executor.Close();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = HttpApiTests.Json("""{"prompt": "class Stack:", "max_tokens": 8, "temperature": 0, "stream": true}"""),
        };
        using var inFlight = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, inFlight.StatusCode);

        // What `celer serve` does: wait for the stop signal, then stop the host (drain, then Kestrel).
        var shutdown = server.App.WaitForShutdownAsync(TestContext.Current.CancellationToken);
        server.App.Lifetime.StopApplication();
        var clock = Stopwatch.StartNew();

        using (var refused = await client.PostJsonAsync("/v1/completions", """{"prompt": "x", "max_tokens": 2}""").WaitAsync(Bound, TestContext.Current.CancellationToken))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter);
            Assert.Contains("shutting down", JsonNode.Parse(await refused.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!["error"]!["message"]!.GetValue<string>(), StringComparison.Ordinal);
        }
        using (var health = await client.GetAsync("/health", TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken))
            Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        Assert.False(shutdown.IsCompleted, "the host stopped while a request was still in flight");

        server.Executor.Open();
        var events = await SseReader.ReadAllAsync(inFlight).WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Equal(SseReader.Done, events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e)!).ToList();
        Assert.Equal(expected, string.Concat(chunks.Select(c => c["choices"]![0]!["text"]!.GetValue<string>())));
        Assert.NotNull(chunks[^1]["choices"]![0]!["finish_reason"]);

        await shutdown.WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.True(clock.Elapsed < ShutdownTimeout, $"the host took {clock.Elapsed.TotalSeconds:F1} s to stop, not less than its {ShutdownTimeout.TotalSeconds} s timeout");
        // Stopped for real: nothing listens on the port any more.
        using var fresh = new HttpClient { BaseAddress = server.BaseAddress, Timeout = Bound };
        await Assert.ThrowsAsync<HttpRequestException>(() => fresh.GetAsync("/health", TestContext.Current.CancellationToken));
    }

    /// <summary>
    /// Issue 18 #2: SIGTERM with 50 streams and 5 plain requests in flight that cannot finish within the shutdown
    /// timeout. None may be cut silently: every stream ends with a finish reason and [DONE], every plain request gets
    /// its response, and the host still stops within the timeout.
    /// </summary>
    [Fact]
    public async Task Requests_still_running_at_the_timeout_end_with_a_final_event()
    {
        var timeout = TimeSpan.FromSeconds(3);
        await using var server = await TinyPyServer.StartAsync(shutdownTimeout: timeout);
        server.Executor.StepPace = TimeSpan.FromMilliseconds(30);   // 200 tokens: far longer than the timeout
        using var client = server.CreateClient();
        const string body = """{"prompt": "import os", "max_tokens": 200, "ignore_eos": true, "temperature": 0""";
        var streams = new List<HttpResponseMessage>();
        for (int i = 0; i < 50; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = HttpApiTests.Json(body + ", \"stream\": true}") };
            streams.Add(await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken));
        }

        var plain = Enumerable.Range(0, 5).Select(_ => client.PostJsonAsync("/v1/completions", body + "}")).ToList();
        await Poll.UntilAsync(() => server.Admission.InFlight == 55, Bound, "every request admitted");
        var shutdown = server.App.WaitForShutdownAsync(TestContext.Current.CancellationToken);
        var clock = Stopwatch.StartNew();
        server.App.Lifetime.StopApplication();

        foreach (var response in streams)
        {
            using (response)
            {
                var events = await SseReader.ReadAllAsync(response).WaitAsync(Bound, TestContext.Current.CancellationToken);
                Assert.Equal(SseReader.Done, events[^1]);
                var final = JsonNode.Parse(events[^2])!["choices"]![0]!["finish_reason"];
                Assert.True(final?.GetValue<string>() is "abort" or "length", $"last event: {events[^2]}");
            }
        }

        foreach (var task in plain)
        {
            using var response = await task.WaitAsync(Bound, TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var reason = JsonNode.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!["choices"]![0]!["finish_reason"]!.GetValue<string>();
            Assert.True(reason is "abort" or "length", reason);
        }

        await shutdown.WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.True(clock.Elapsed < timeout + TimeSpan.FromSeconds(1), $"the host took {clock.Elapsed.TotalSeconds:F1} s to stop");
    }
}
