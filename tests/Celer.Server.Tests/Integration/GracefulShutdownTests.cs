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

    [SkippableFact]
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
        using var inFlight = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(Bound);
        Assert.Equal(HttpStatusCode.OK, inFlight.StatusCode);

        // What `celer serve` does: wait for the stop signal, then stop the host (drain, then Kestrel).
        var shutdown = server.App.WaitForShutdownAsync();
        server.App.Lifetime.StopApplication();
        var clock = Stopwatch.StartNew();

        using (var refused = await client.PostAsync("/v1/completions", HttpApiTests.Json("""{"prompt": "x", "max_tokens": 2}""")).WaitAsync(Bound))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter);
            Assert.Contains("shutting down", JsonNode.Parse(await refused.Content.ReadAsStringAsync())!["error"]!["message"]!.GetValue<string>(), StringComparison.Ordinal);
        }
        using (var health = await client.GetAsync("/health").WaitAsync(Bound))
            Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        Assert.False(shutdown.IsCompleted, "the host stopped while a request was still in flight");

        server.Executor.Open();
        var events = await SseReader.ReadAllAsync(inFlight).WaitAsync(Bound);
        Assert.Equal(SseReader.Done, events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e)!).ToList();
        Assert.Equal(expected, string.Concat(chunks.Select(c => c["choices"]![0]!["text"]!.GetValue<string>())));
        Assert.NotNull(chunks[^1]["choices"]![0]!["finish_reason"]);

        await shutdown.WaitAsync(Bound);
        Assert.True(clock.Elapsed < ShutdownTimeout, $"the host took {clock.Elapsed.TotalSeconds:F1} s to stop, not less than its {ShutdownTimeout.TotalSeconds} s timeout");
        // Stopped for real: nothing listens on the port any more.
        using var fresh = new HttpClient { BaseAddress = server.BaseAddress, Timeout = Bound };
        await Assert.ThrowsAsync<HttpRequestException>(() => fresh.GetAsync("/health"));
    }
}
