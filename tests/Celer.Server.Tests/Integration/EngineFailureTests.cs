using System.Net;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// BAD_INPUT.md #24: the engine loop throws mid-generation (the executor fails a step). Every
/// in-flight request ends with a generic error — a 500 for a plain response, an error event then
/// <c>[DONE]</c> for a stream — <c>/health</c> turns 503, and nothing hangs.
/// </summary>
public sealed class EngineFailureTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task In_flight_requests_end_with_a_generic_error_and_health_turns_503()
    {
        await using var server = await TinyPyServer.StartAsync();
        using var client = server.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/health", TestContext.Current.CancellationToken)).StatusCode);

        // Hold the loop so both requests are admitted and unfinished when the fault hits.
        server.Executor.Close();
        const string LongGeneration = """{"prompt": "def fibonacci(n):", "max_tokens": 200, "ignore_eos": true, "temperature": 0""";
        using var streamRequest = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = HttpApiTests.Json(LongGeneration + ", \"stream\": true}") };
        using var streamed = await client.SendAsync(streamRequest, HttpCompletionOption.ResponseHeadersRead, TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, streamed.StatusCode);
        var plain = client.PostJsonAsync("/v1/completions", LongGeneration + "}");
        // The held loop publishes no stats; the server's gate shows both admitted.
        await Poll.UntilAsync(() => server.Admission.InFlight == 2, Bound, "both requests are admitted");

        // Let steps run until the stream has sent tokens and both requests are in the engine, then fail the next one.
        using var reader = new SseReader(await streamed.Content.ReadAsStreamAsync(TestContext.Current.CancellationToken));
        server.Executor.Open();
        Assert.NotNull((await reader.NextAsync(TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken))!["choices"]);
        await Poll.UntilAsync(() => server.Engine.Stats.NumRunning == 2, Bound, "both requests run");
        server.Executor.FailNextStep();

        using var plainResponse = await plain.WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.InternalServerError, plainResponse.StatusCode);
        AssertGenericError(JsonNode.Parse(await plainResponse.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!);

        var events = await reader.ReadToEndAsync(TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Equal(SseReader.Done, events[^1]);
        var error = JsonNode.Parse(events[^2])!;
        AssertGenericError(error);
        // Every event before the error is an ordinary chunk.
        Assert.All(events[..^2], e => Assert.NotNull(JsonNode.Parse(e)!["choices"]));

        Assert.True(server.Engine.IsDead);
        using var health = await client.GetAsync("/health", TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        // A request after the death is refused at once: this replica is out of service, another may not be.
        using var late = await client.PostJsonAsync("/v1/completions", """{"prompt": "x", "max_tokens": 2}""").WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, late.StatusCode);
        Assert.True(late.Headers.RetryAfter is not null, "503 without Retry-After");
        AssertGenericError(JsonNode.Parse(await late.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!);
    }

    /// <summary>OpenAI's envelope with nothing of the exception in it: no path, address, type name or stack frame.</summary>
    private static void AssertGenericError(JsonNode body)
    {
        var message = body["error"]!["message"]!.GetValue<string>();
        Assert.False(string.IsNullOrWhiteSpace(message));
        foreach (var leak in new[] { "/opt/secret", "kernel.cu", "0xdeadbeef", "Injected", "Exception", " at " })
            Assert.DoesNotContain(leak, body.ToJsonString(), StringComparison.Ordinal);
    }
}
