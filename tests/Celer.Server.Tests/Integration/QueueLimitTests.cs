using System.Net;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// BAD_INPUT.md #26: beyond <see cref="ServerOptions.MaxPendingRequests"/> admitted-and-unfinished
/// requests, new ones are refused with 503 and <c>Retry-After</c> (what OpenAI clients retry); once the
/// queue drains, requests are admitted again.
/// </summary>
public sealed class QueueLimitTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(15);
    private const string Stream = """{"prompt": "import os", "max_tokens": 6, "temperature": 0, "stream": true}""";

    [Fact]
    public async Task Requests_beyond_the_queue_limit_get_503_with_retry_after_until_the_queue_drains()
    {
        await using var server = await TinyPyServer.StartAsync(maxPendingRequests: 2);
        using var client = server.CreateClient();

        // The loop is held, so both admitted streams stay unfinished while the limit is probed.
        server.Executor.Close();
        var admitted = new List<HttpResponseMessage>();
        for (var i = 0; i < 2; i++)
        {
#pragma warning disable CA2000 // goes with its streamed response, which stays open (admitted) for the rest of the test
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = HttpApiTests.Json(Stream) };
#pragma warning restore CA2000
            var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, TestContext.Current.CancellationToken).WaitAsync(Bound, TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            admitted.Add(response);
        }

        // Both routes, streamed or not: the third request is over the limit. A batch of two prompts is two requests.
        var excess = new[]
        {
            ("/v1/completions", """{"prompt": "x", "max_tokens": 2}"""),
            ("/v1/completions", Stream),
            ("/v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}"""),
        };
        foreach (var (path, body) in excess)
        {
            using var refused = await client.PostJsonAsync(path, body).WaitAsync(Bound, TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter?.Delta);
            Assert.True(refused.Headers.RetryAfter!.Delta!.Value > TimeSpan.Zero);
            var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!["error"]!;
            Assert.Contains("overloaded", error["message"]!.GetValue<string>(), StringComparison.Ordinal);
        }

        server.Executor.Open();
        foreach (var response in admitted)
        {
            using (response)
            {
                var events = await SseReader.ReadAllAsync(response).WaitAsync(Bound, TestContext.Current.CancellationToken);
                Assert.Equal(SseReader.Done, events[^1]);
                Assert.DoesNotContain(events, e => e.Contains("\"error\"", StringComparison.Ordinal));
            }
        }

        // A slot is freed after the response's last byte, a moment after the client has read it.
        await Poll.UntilAsync(() => server.Admission.InFlight == 0, Bound, "both streams release their slots");
        // The slots are free again: a batch that fills the queue exactly is admitted.
        var batch = await HttpApiTests.PostOkAsync(client, "/v1/completions", """{"prompt": ["import os", "import sys"], "max_tokens": 3, "temperature": 0}""").WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Equal(2, batch["choices"]!.AsArray().Count);
    }

    [Fact]
    public async Task A_request_that_can_never_fit_the_queue_is_a_400_not_a_503()
    {
        await using var server = await TinyPyServer.StartAsync(maxPendingRequests: 8);
        using var client = server.CreateClient();

        // Nine prompts into an idle server that holds eight sequences: no retry could ever pass, so it is a 400.
        string nine = $$"""{"prompt": [{{string.Join(", ", Enumerable.Repeat("\"x\"", 9))}}], "max_tokens": 2}""";
        using var refused = await client.PostJsonAsync("/v1/completions", nine).WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        var error = JsonNode.Parse(await refused.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!["error"]!;
        Assert.Contains("9 sequences (9 prompt(s) x n=1)", error["message"]!.GetValue<string>(), StringComparison.Ordinal);

        // n counts too: one chat request with n = 9.
        using var chat = await client.PostJsonAsync("/v1/chat/completions", """{"messages": [{"role": "user", "content": "x"}], "max_tokens": 2, "n": 9}""").WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.BadRequest, chat.StatusCode);
        Assert.Contains("(1 prompt(s) x n=9)", await chat.Content.ReadAsStringAsync(TestContext.Current.CancellationToken), StringComparison.Ordinal);

        // Two prompts x n = 4 fill the queue exactly and are served.
        var full = await HttpApiTests.PostOkAsync(client, "/v1/completions", """{"prompt": ["import os", "import sys"], "n": 4, "max_tokens": 2}""").WaitAsync(Bound, TestContext.Current.CancellationToken);
        Assert.Equal(8, full["choices"]!.AsArray().Count);
    }
}
