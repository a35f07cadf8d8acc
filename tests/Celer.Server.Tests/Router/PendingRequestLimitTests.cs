using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Celer.Router;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Router;

/// <summary>
/// <c>--max-pending-requests</c> through real HTTP, with a backend that holds its answers: requests over the bound get
/// 503 with <c>Retry-After</c> at once and never reach a backend, a slot is held until the answer's end (a stream's too)
/// and freed by a client that leaves, and the refusals are counted in the router's <c>/metrics</c>.
/// </summary>
public sealed class PendingRequestLimitTests
{
    private const string Completion = $$"""{"model": "{{FakeBackend.Model}}", "prompt": "Hello", "max_tokens": 1}""";
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task With_n_slots_n_plus_k_concurrent_requests_get_exactly_k_503s_while_the_backend_holds_n()
    {
        const int slots = 3, over = 2;
        await using var backend = await FakeBackend.StartAsync();
        await using var router = await StartAsync(backend, slots);
        backend.Hold();

        var requests = Enumerable.Range(0, slots + over).Select(_ => router.PostAsync("/v1/completions", Completion)).ToArray();
        await Poll.UntilAsync(() => backend.Held == slots && requests.Count(r => r.IsCompleted) == over, Wait,
            $"the backend holds {slots} requests and {over} are answered");
        foreach (var refused in requests.Where(r => r.IsCompleted))
            await AssertOverloadedAsync(await refused, slots);
        Assert.Equal(slots, backend.Completions);
        var during = await router.MetricsAsync();
        Assert.Equal(over, Value(during, "celer_router_rejected_requests_total"));
        Assert.Equal(slots, Value(during, "celer_router_pending_requests"));
        Assert.Equal(slots, Value(during, "celer_router_max_pending_requests"));

        backend.Release();
        foreach (var admitted in requests.Where(r => r.Result.StatusCode != HttpStatusCode.ServiceUnavailable))
        {
            using var response = await admitted;
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Equal(slots, requests.Count(r => r.Result.StatusCode == HttpStatusCode.OK));
        await Poll.UntilAsync(() => router.PendingRequests == 0, Wait, "every slot is given back");
        // All slots free again: as many at once as there are slots all get through.
        var after = await Task.WhenAll(Enumerable.Range(0, slots).Select(_ => router.PostAsync("/v1/completions", Completion)));
        Assert.All(after, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.Equal(2 * slots, backend.Completions);
        Assert.Equal(over, Value(await router.MetricsAsync(), "celer_router_rejected_requests_total"));
        foreach (var response in requests.Select(r => r.Result).Concat(after))
            response.Dispose();
    }

    [Fact]
    public async Task A_streamed_answer_holds_its_slot_until_its_end()
    {
        await using var backend = await FakeBackend.StartAsync();
        await using var router = await StartAsync(backend, slots: 1);
        backend.HoldMidAnswer();

        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(Completion, Encoding.UTF8, "application/json") };
        using var streamed = await router.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.OK, streamed.StatusCode);
        var body = await streamed.Content.ReadAsStreamAsync(TestContext.Current.CancellationToken);
        var first = new byte[1];
        Assert.Equal(1, await body.ReadAsync(first, TestContext.Current.CancellationToken));

        // Status and first bytes sent, the rest to come: the slot is still the stream's.
        using (var refused = await router.PostAsync("/v1/completions", Completion))
            await AssertOverloadedAsync(refused, slots: 1);

        backend.Release();
        using var reader = new StreamReader(body);
        var rest = await reader.ReadToEndAsync(TestContext.Current.CancellationToken);
        Assert.Contains("\"text_completion\"", rest, StringComparison.Ordinal);
        await Poll.UntilAsync(() => router.PendingRequests == 0, Wait, "the stream's end gives its slot back");
        using var next = await router.PostAsync("/v1/completions", Completion);
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_client_that_leaves_frees_its_slot(bool midAnswer)
    {
        await using var backend = await FakeBackend.StartAsync();
        await using var router = await StartAsync(backend, slots: 1);
        if (midAnswer)
            backend.HoldMidAnswer();
        else
            backend.Hold();

        // A client that closes its connection on leaving, rather than reading the rest of the answer to reuse it.
        using var handler = new SocketsHttpHandler { MaxResponseDrainSize = 0 };
        using (var leaving = new HttpClient(handler, disposeHandler: false) { BaseAddress = router.Client.BaseAddress })
        using (var leave = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken))
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(Completion, Encoding.UTF8, "application/json") };
            var sent = leaving.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, leave.Token);
            await Poll.UntilAsync(() => backend.Held == 1, Wait, "the backend holds the request");
            using (var refused = await router.PostAsync("/v1/completions", Completion))
                await AssertOverloadedAsync(refused, slots: 1);

            if (midAnswer)
            {
                // Headers and a first byte in hand: the client leaves by dropping the answer.
                (await sent).Dispose();
            }
            else
            {
                // Still waiting for the answer: the client leaves by cancelling.
                await leave.CancelAsync();
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sent);
            }
        }

        // The hold is never released, so only the client's leaving can have freed the slot.
        await Poll.UntilAsync(() => router.PendingRequests == 0 && backend.Held == 0, Wait, "the leaving client's slot is given back");
        var next = router.PostAsync("/v1/completions", Completion);
        await Poll.UntilAsync(() => backend.Held == 1 || next.IsCompleted, Wait, "the next request is admitted and held");
        Assert.Equal(1, backend.Held);
        backend.Release();
        using var response = await next;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(1, Value(await router.MetricsAsync(), "celer_router_rejected_requests_total"));
    }

    [Fact]
    public async Task Connections_past_twice_the_slots_are_closed_unanswered()
    {
        await using var backend = await FakeBackend.StartAsync();
        await using var router = await StartAsync(backend, slots: 1);
        var address = router.Client.BaseAddress!;

        // A client's keep-alive pool: two connections, each served once and left open, fill Kestrel's
        // MaxConcurrentConnections of 2 × 1 slot.
        using var idle1 = await ConnectAsync(address);
        using var idle2 = await ConnectAsync(address);
        foreach (var idle in new[] { idle1, idle2 })
            Assert.StartsWith("HTTP/1.1 200 ", await GetHealthAsync(idle, address, keepAlive: true), StringComparison.Ordinal);

        using (var third = await ConnectAsync(address))
            Assert.Equal("", await GetHealthAsync(third, address, keepAlive: false));

        // One of the pool closed: new connections are served again.
        idle1.Close();
        var deadline = DateTime.UtcNow + Wait;
        while (true)
        {
            using var next = await ConnectAsync(address);
            if ((await GetHealthAsync(next, address, keepAlive: false)).StartsWith("HTTP/1.1 200 ", StringComparison.Ordinal))
                break;
            Assert.True(DateTime.UtcNow < deadline, "a connection is served once an idle one closed");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    private static async Task<Socket> ConnectAsync(Uri address)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(address.Host, address.Port, TestContext.Current.CancellationToken);
        return socket;
    }

    /// <summary>
    /// Sends <c>GET /health</c> and reads the answer's head (with <paramref name="keepAlive"/>) or all of it until the router
    /// closes the connection; "" when the connection was closed with no answer.
    /// </summary>
    private static async Task<string> GetHealthAsync(Socket socket, Uri address, bool keepAlive)
    {
        var ct = TestContext.Current.CancellationToken;
        var request = $"GET /health HTTP/1.1\r\nHost: {address.Authority}\r\n{(keepAlive ? "" : "Connection: close\r\n")}\r\n";
        var answer = new StringBuilder();
        var buffer = new byte[4096];
        try
        {
            await socket.SendAsync(Encoding.ASCII.GetBytes(request), ct);
            int read;
            while ((read = await socket.ReceiveAsync(buffer, ct)) > 0)
            {
                answer.Append(Encoding.ASCII.GetString(buffer, 0, read));
                // /health answers 200 with an empty body: the head is the whole answer.
                if (keepAlive && answer.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                    break;
            }
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.Shutdown)
        {
            // Closed with a reset rather than a FIN: no answer either.
        }
        return answer.ToString();
    }

    private static Task<RouterUnderTest> StartAsync(FakeBackend backend, int slots) =>
        RouterUnderTest.StartAsync([new(backend.BaseAddress, null)], RoutingLogic.RoundRobin, maxPendingRequests: slots);

    private static async Task AssertOverloadedAsync(HttpResponseMessage response, int slots)
    {
        var body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.True(response.StatusCode == HttpStatusCode.ServiceUnavailable, $"{(int)response.StatusCode}: {body}");
        Assert.Equal(TimeSpan.FromSeconds(1), response.Headers.RetryAfter?.Delta);
        var error = JsonNode.Parse(body)!["error"]!;
        Assert.Equal("ServiceUnavailableError", (string?)error["type"]);
        Assert.Equal($"The router is overloaded: all of its {slots} request slots (--max-pending-requests) are in use. Retry later.", (string?)error["message"]);
    }

    private static double Value(IReadOnlyList<PrometheusSample> metrics, string name) => metrics.Single(s => s.Name == name).Value;
}
