using System.Diagnostics;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Integration;

namespace Celer.Server.Tests.Cli;

/// <summary>
/// <c>celer serve</c> as an operator runs it, in its own process: SIGTERM (what Kubernetes sends a pod) lets the
/// in-flight request finish, then the process exits 0. It used to die at once with exit code 143, cutting streams.
/// </summary>
public sealed class ServeShutdownTests
{
    private const int MaxTokens = 200;

    [Fact]
    public async Task Sigterm_drains_the_in_flight_stream_and_exits_cleanly()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "POSIX signals");
        await using var serve = await ServeProcess.StartAsync(ServerFixture.DefaultModel, "--port", "0", "--max-num-seqs", "4");
        Process server = serve.Process;
        var log = serve.Log;
        var drainOutput = Task.Run(async () =>
        {
            while (await server.StandardOutput.ReadLineAsync() is { } more)
            {
                log.Enqueue(more);
            }
        }, TestContext.Current.CancellationToken);

        using var client = serve.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = HttpApiTests.Json($$"""{"prompt": "def fibonacci(n):", "max_tokens": {{MaxTokens}}, "stream": true, "ignore_eos": true}"""),
        };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, TestContext.Current.CancellationToken);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(TestContext.Current.CancellationToken));
        var chunks = new List<JsonNode>();
        bool signalled = false, done = false;
        while (await reader.ReadLineAsync(TestContext.Current.CancellationToken) is { } sse)
        {
            if (!sse.StartsWith("data: ", StringComparison.Ordinal))
            {
                continue;
            }

            if (sse == "data: [DONE]")
            {
                done = true;
                break;
            }

            chunks.Add(JsonNode.Parse(sse["data: ".Length..])!);
            if (!signalled)
            {
                // The first token is out: the request is in flight when the signal lands.
                using var kill = Process.Start("kill", ["-TERM", $"{server.Id}"]);
                await kill.WaitForExitAsync(TestContext.Current.CancellationToken);
                signalled = true;
            }
        }

        Assert.True(done, "the stream ended without [DONE]");
        // "length": all max_tokens were generated after the signal, not cut short.
        Assert.Equal("length", chunks[^1]["choices"]![0]!["finish_reason"]!.GetValue<string>());
        await server.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken);
        await drainOutput;
        Assert.True(server.ExitCode == 0, $"exit code {server.ExitCode}: {string.Join('\n', log)}");
        Assert.Contains(log, l => l.Contains("waiting for 1 in-flight request(s) to finish", StringComparison.Ordinal));
    }
}
