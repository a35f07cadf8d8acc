using System.Net;
using Celer.Engine;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// BAD_INPUT.md #23: a client that goes away mid-stream gets its request aborted and its KV blocks freed
/// at the next step boundary, seen from the engine's own statistics; the server goes on serving.
/// </summary>
public sealed class ClientDisconnectTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(15);

    /// <summary>A slow model (one step every 20 ms), so the 200-token generation would run for 4 s if nobody stopped it.</summary>
    private static readonly TimeSpan StepPace = TimeSpan.FromMilliseconds(20);

    [Theory]
    [InlineData("/v1/completions", """{"prompt": "def parse(text):", "max_tokens": 200, "ignore_eos": true, "temperature": 0, "stream": true}""")]
    [InlineData("/v1/chat/completions", """{"messages": [{"role": "user", "content": "Write a parser."}], "max_tokens": 200, "ignore_eos": true, "temperature": 0, "stream": true}""")]
    public async Task A_killed_stream_is_aborted_and_frees_its_blocks_then_serving_goes_on(string path, string body)
    {
        await using var server = await TinyPyServer.StartAsync();
        server.Executor.StepPace = StepPace;
        var engine = server.Engine;
        long abortsBefore = engine.Stats.RequestSuccess.GetValueOrDefault(FinishReason.Abort);

        // No draining on dispose: dropping the response closes the connection, as a killed process would.
#pragma warning disable CA2000 // the client disposes its handler
        using (var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = server.BaseAddress, Timeout = Bound })
#pragma warning restore CA2000
        using (var cancel = new CancellationTokenSource(Bound))
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = HttpApiTests.Json(body) };
            var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var reader = new SseReader(await response.Content.ReadAsStreamAsync(cancel.Token));
            for (var i = 0; i < 3; i++)
                Assert.NotNull(await reader.NextAsync(cancel.Token));
            Assert.True(engine.Stats.NumRunning == 1 && engine.Stats.KvCacheUsage > 0, "the request holds KV blocks while it runs");

            await cancel.CancelAsync();
            response.Dispose();
        }
        int stepsAtDisconnect = server.Executor.StepsExecuted;

        await Poll.UntilAsync(() => engine.Stats.RequestSuccess.GetValueOrDefault(FinishReason.Abort) == abortsBefore + 1, Bound, "the engine aborts the request");
        var stats = engine.Stats;
        Assert.Equal(0, stats.NumRunning);
        Assert.Equal(0, stats.NumWaiting);
        Assert.Equal(0f, stats.KvCacheUsage);
        // The abort lands within a few paced steps of the disconnect (network and thread-pool latency
        // included), far short of the ~195 steps the generation had left.
        int stepsAfter = server.Executor.StepsExecuted - stepsAtDisconnect;
        Assert.True(stepsAfter <= 25, $"{stepsAfter} steps ran after the client went away");
        Assert.True(stats.GenerationTokens < 100, $"{stats.GenerationTokens} tokens were generated for a client that left after 3 chunks");

        server.Executor.StepPace = TimeSpan.Zero;
        using var next = server.CreateClient();
        var completion = await HttpApiTests.PostOkAsync(next, "/v1/completions", """{"prompt": "def parse(text):", "max_tokens": 4, "temperature": 0, "ignore_eos": true}""").WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Equal(4, completion["usage"]!["completion_tokens"]!.GetValue<int>());
        Assert.Equal(0f, engine.Stats.KvCacheUsage);
    }
}
