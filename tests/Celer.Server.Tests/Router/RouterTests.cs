using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Celer.Router;
using Celer.Server.Tests.Integration;
using Celer.Server.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Celer.Server.Tests.Router;

/// <summary>
/// <c>celer router</c> in front of real Celer servers (celer-tiny-py on loopback ports), through real HTTP: round robin
/// spreads evenly, session routing keeps a user on one backend, streams pass through unchanged, a stopped backend is
/// routed around and used again once it answers, and each model's requests reach that model's backends.
/// </summary>
public sealed class RouterTests
{
    private const string OneTokenCompletion = $$"""{"model": "{{ServerFixture.ModelName}}", "prompt": "Hello", "max_tokens": 1}""";

    [Fact]
    public async Task Round_robin_sends_each_of_three_backends_a_third_of_the_requests()
    {
        var servers = await StartServersAsync(3);
        try
        {
            await using var router = await RouterUnderTest.StartAsync(servers.Select(s => Spec(s)), RoutingLogic.RoundRobin);
            var before = servers.Select(s => s.FinishedRequests()).ToArray();

            // Eight at a time: the order among concurrent requests varies, the turn each takes does not.
            await Parallel.ForAsync(0, 300, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (_, _) =>
                await HttpApiTests.PostOkAsync(router.Client, "/v1/completions", OneTokenCompletion));

            await Poll.UntilAsync(() => servers.Select((s, i) => s.FinishedRequests() - before[i]).Sum() == 300, TimeSpan.FromSeconds(10), "300 requests finish");
            var counts = servers.Select((s, i) => s.FinishedRequests() - before[i]).ToArray();
            Assert.All(counts, count => Assert.InRange(count, 95, 105));
        }
        finally
        {
            await DisposeAllAsync(servers);
        }
    }

    [Fact]
    public async Task Session_routing_keeps_each_user_on_one_backend_and_spreads_users_over_several()
    {
        var servers = await StartServersAsync(3);
        try
        {
            await using var router = await RouterUnderTest.StartAsync(servers.Select(s => Spec(s)), RoutingLogic.Session);
            var backendOfUser = new Dictionary<string, int>();
            for (var round = 0; round < 3; round++)
            {
                for (var user = 0; user < 12; user++)
                {
                    var id = $"user-{user}";
                    var backend = await WhichBackendAsync(servers, () => router.PostAsync("/v1/completions", OneTokenCompletion, ("x-user-id", id)));
                    if (round == 0)
                        backendOfUser[id] = backend;
                    else
                        Assert.True(backendOfUser[id] == backend, $"{id} moved from backend {backendOfUser[id]} to {backend}");
                }
            }
            Assert.True(backendOfUser.Values.Distinct().Count() > 1, "every user landed on one backend");
        }
        finally
        {
            await DisposeAllAsync(servers);
        }
    }

    [Fact]
    public void Hash_ring_moves_only_the_keys_of_a_removed_backend()
    {
        var backends = Enumerable.Range(0, 3).Select(i => new Backend(new BackendSpec(new Uri($"http://10.0.0.{i}:8000/"), "m"), new CircuitBreaker(5, TimeSpan.FromSeconds(30), TimeProvider.System), new RequestStats(TimeSpan.FromSeconds(60), TimeProvider.System))).ToArray();
        var full = new HashRing(backends);
        var withoutLast = new HashRing(backends[..2]);
        var keys = Enumerable.Range(0, 3000).Select(i => $"user-{i}").ToArray();

        var shares = keys.GroupBy(full.Lookup).ToDictionary(g => g.Key, g => g.Count());
        // 160 virtual nodes each: every backend's share is within a few percent of a third.
        Assert.All(backends, b => Assert.InRange(shares[b], 800, 1200));
        Assert.All(keys.Where(k => full.Lookup(k) != backends[2]), k => Assert.Same(full.Lookup(k), withoutLast.Lookup(k)));
    }

    [Fact]
    public async Task A_stream_passes_through_with_the_same_chunks_as_from_the_backend_and_ends_with_done()
    {
        var servers = await StartServersAsync(1);
        try
        {
            await using var router = await RouterUnderTest.StartAsync([Spec(servers[0])], RoutingLogic.RoundRobin);
            var chat = $$"""{"model": "{{ServerFixture.ModelName}}", "messages": [{"role": "user", "content": "Count to five"}], "max_tokens": 12, "temperature": 0, "stream": true}""";
            using var direct = servers[0].CreateClient();

            using var fromBackend = await PostStreamAsync(direct, chat, requestId: null);
            var backendEvents = await SseReader.ReadAllAsync(fromBackend);
            using var fromRouter = await PostStreamAsync(router.Client, chat, requestId: "my-request-7");
            Assert.Equal("text/event-stream", fromRouter.Content.Headers.ContentType?.MediaType);
            Assert.Equal("my-request-7", fromRouter.Headers.GetValues(RequestForwarder.RequestIdHeader).Single());
            var routerEvents = await SseReader.ReadAllAsync(fromRouter);

            Assert.Equal(SseReader.Done, routerEvents[^1]);
            Assert.Equal(Contents(backendEvents), Contents(routerEvents));
            Assert.True(Contents(routerEvents).Count > 2, "the stream has several chunks");
        }
        finally
        {
            await DisposeAllAsync(servers);
        }
    }

    [Fact]
    public async Task A_client_leaving_mid_stream_cancels_the_request_on_the_backend()
    {
        var servers = await StartServersAsync(1);
        try
        {
            await using var router = await RouterUnderTest.StartAsync([Spec(servers[0])], RoutingLogic.RoundRobin);
            // 200 tokens at 20 ms a step would run 4 s: long enough that only a cancellation ends it within the wait below.
            servers[0].Executor.StepPace = TimeSpan.FromMilliseconds(20);
            var completion = $$"""{"model": "{{ServerFixture.ModelName}}", "prompt": "Hello", "max_tokens": 200, "min_tokens": 200, "stream": true}""";
            // A client that closes its connection on leaving, rather than reading the rest of the answer to reuse it.
            using var handler = new SocketsHttpHandler { MaxResponseDrainSize = 0 };
            using var leaving = new HttpClient(handler, disposeHandler: false) { BaseAddress = router.Client.BaseAddress };
            using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(completion, Encoding.UTF8, "application/json") })
            using (var response = await leaving.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, TestContext.Current.CancellationToken))
            {
                using var reader = new SseReader(await response.Content.ReadAsStreamAsync(TestContext.Current.CancellationToken));
                Assert.NotNull(await reader.NextAsync(TestContext.Current.CancellationToken));
                Assert.Equal(1, servers[0].Admission.InFlight);
            }

            await Poll.UntilAsync(() => servers[0].Admission.InFlight == 0 && servers[0].Engine.Stats.NumRunning == 0, TimeSpan.FromSeconds(2), "the backend aborts the request");
            Assert.True(servers[0].Executor.StepsExecuted < 150, $"{servers[0].Executor.StepsExecuted} steps ran: the request was not cancelled");
        }
        finally
        {
            await DisposeAllAsync(servers);
        }
    }

    [Fact]
    public async Task A_stopped_backend_is_routed_around_and_used_again_once_it_answers_on_its_port()
    {
        var servers = await StartServersAsync(2);
        try
        {
            await using var router = await RouterUnderTest.StartAsync(servers.Select(s => Spec(s)), RoutingLogic.RoundRobin);
            var port = servers[1].BaseAddress.Port;
            var usedBoth = await SendAsync(router, servers, 10);
            Assert.Equal([5, 5], usedBoth);

            // Stopped between requests: the next one sent there cannot connect, is retried on the other and ejects it.
            await servers[1].DisposeAsync();
            servers.RemoveAt(1);
            for (var i = 0; i < 20; i++)
                await HttpApiTests.PostOkAsync(router.Client, "/v1/completions", OneTokenCompletion);
            Assert.False(router.Pool.Backends[1].IsHealthy);

            servers.Add(await TinyPyServer.StartAsync(port: port));
            await Poll.UntilAsync(() => router.Pool.Backends[1].IsHealthy, TimeSpan.FromSeconds(10), "the restarted backend passes a health check");
            var afterRestart = await SendAsync(router, servers, 10);
            Assert.Equal([5, 5], afterRestart);

            using var healthy = await router.Client.GetAsync("/health", TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.OK, healthy.StatusCode);
            await DisposeAllAsync(servers);
            servers.Clear();
            await Poll.UntilAsync(() => !router.Pool.AnyHealthy, TimeSpan.FromSeconds(10), "both backends are ejected");
            using var unhealthy = await router.Client.GetAsync("/health", TestContext.Current.CancellationToken);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, unhealthy.StatusCode);
            await HttpApiTests.PostErrorAsync(router.Client, "/v1/completions", OneTokenCompletion, HttpStatusCode.ServiceUnavailable);
        }
        finally
        {
            await DisposeAllAsync(servers);
        }
    }

    [Fact]
    public async Task A_request_to_a_backend_that_refuses_connections_is_retried_on_another_and_the_backend_ejected()
    {
        var servers = await StartServersAsync(2);
        try
        {
            // No health check after the first: only the failed forward can eject the stopped backend.
            await using var router = await RouterUnderTest.StartAsync(servers.Select(s => Spec(s)), RoutingLogic.RoundRobin, TimeSpan.FromHours(1));
            var warm = await SendAsync(router, servers, 2);
            Assert.Equal([1, 1], warm);

            await servers[1].DisposeAsync();
            servers.RemoveAt(1);
            Assert.True(router.Pool.Backends[1].IsHealthy);
            var afterStop = await SendAsync(router, servers, 10);
            Assert.Equal([10], afterStop);
            Assert.False(router.Pool.Backends[1].IsHealthy);
        }
        finally
        {
            await DisposeAllAsync(servers);
        }
    }

    [Fact]
    public async Task A_backend_refusing_connections_at_startup_is_admitted_when_it_starts_answering()
    {
        var servers = await StartServersAsync(1);
        var port = FreePort();
        try
        {
            await using var router = await RouterUnderTest.StartAsync(
                [Spec(servers[0]), new BackendSpec(new Uri($"http://127.0.0.1:{port}/"), ServerFixture.ModelName)], RoutingLogic.RoundRobin);
            Assert.False(router.Pool.Backends[1].IsHealthy);
            var beforeStart = await SendAsync(router, servers, 4);
            Assert.Equal([4], beforeStart);

            servers.Add(await TinyPyServer.StartAsync(port: port));
            await Poll.UntilAsync(() => router.Pool.Backends[1].IsHealthy, TimeSpan.FromSeconds(10), "the late backend passes a health check");
            var afterStart = await SendAsync(router, servers, 4);
            Assert.Equal([2, 2], afterStart);
        }
        finally
        {
            await DisposeAllAsync(servers);
        }
    }

    [Fact]
    public async Task Each_model_is_routed_to_its_backends_and_an_unknown_model_gets_the_servers_own_404()
    {
        var servers = new List<TinyPyServer>();
        try
        {
            servers.Add(await TinyPyServer.StartAsync(servedModelName: "model-a"));
            servers.Add(await TinyPyServer.StartAsync(servedModelName: "model-b"));
            var (a, b) = (servers[0], servers[1]);
            // One name given on the command line, one read from the backend's /v1/models.
            await using var router = await RouterUnderTest.StartAsync([Spec(a, "model-a"), Spec(b)], RoutingLogic.RoundRobin);

            using var models = await router.Client.GetAsync("/v1/models", TestContext.Current.CancellationToken);
            var ids = JsonNode.Parse(await models.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!["data"]!.AsArray().Select(m => m!["id"]!.GetValue<string>());
            Assert.Equal(["model-a", "model-b"], ids.Order());

            var toA = await SendAsync(router, servers, 3, "model-a");
            Assert.Equal([3, 0], toA);
            var toB = await SendAsync(router, servers, 3, "model-b");
            Assert.Equal([0, 3], toB);

            const string unknown = """{"model": "model-c", "prompt": "Hello", "max_tokens": 1}""";
            using var direct = a.CreateClient();
            using var fromServer = await direct.PostJsonAsync("/v1/completions", unknown);
            using var fromRouter = await router.PostAsync("/v1/completions", unknown);
            Assert.Equal(HttpStatusCode.NotFound, fromRouter.StatusCode);
            // Byte for byte the server's own answer.
            Assert.Equal(await fromServer.Content.ReadAsStringAsync(TestContext.Current.CancellationToken), await fromRouter.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
            var error = await HttpApiTests.PostErrorAsync(router.Client, "/v1/completions", unknown, HttpStatusCode.NotFound);
            Assert.Equal("The model `model-c` does not exist.", error["message"]!.GetValue<string>());

            await HttpApiTests.PostErrorAsync(router.Client, "/v1/completions", "[1, 2]", HttpStatusCode.BadRequest);
            await HttpApiTests.PostErrorAsync(router.Client, "/v1/completions", """{"prompt": "Hello"}""", HttpStatusCode.BadRequest);
        }
        finally
        {
            await DisposeAllAsync(servers);
        }
    }

    internal static BackendSpec Spec(TinyPyServer server, string? model = null) => new(server.BaseAddress, model);

    internal static async Task<List<TinyPyServer>> StartServersAsync(int count)
    {
        var servers = new List<TinyPyServer>();
        for (var i = 0; i < count; i++)
            servers.Add(await TinyPyServer.StartAsync());
        return servers;
    }

    internal static async Task DisposeAllAsync(IEnumerable<TinyPyServer> servers)
    {
        foreach (var server in servers)
            await server.DisposeAsync();
    }

    /// <summary>Sends <paramref name="count"/> one-token completions one after another; returns how many each server finished.</summary>
    private static async Task<long[]> SendAsync(RouterUnderTest router, IReadOnlyList<TinyPyServer> servers, int count, string model = ServerFixture.ModelName)
    {
        var before = servers.Select(s => s.FinishedRequests()).ToArray();
        var body = $$"""{"model": "{{model}}", "prompt": "Hello", "max_tokens": 1}""";
        for (var i = 0; i < count; i++)
            await HttpApiTests.PostOkAsync(router.Client, "/v1/completions", body);
        await Poll.UntilAsync(() => servers.Select((s, i) => s.FinishedRequests() - before[i]).Sum() == count, TimeSpan.FromSeconds(10), $"{count} requests finish");
        return [.. servers.Select((s, i) => s.FinishedRequests() - before[i])];
    }

    /// <summary>Runs one request and returns the index of the server that finished it.</summary>
    internal static async Task<int> WhichBackendAsync(IReadOnlyList<TinyPyServer> servers, Func<Task<HttpResponseMessage>> send)
    {
        var before = servers.Select(s => s.FinishedRequests()).ToArray();
        using (var response = await send())
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        await Poll.UntilAsync(() => servers.Select((s, i) => s.FinishedRequests() - before[i]).Sum() == 1, TimeSpan.FromSeconds(10), "the request finishes");
        return servers.Select((s, i) => s.FinishedRequests() - before[i]).ToList().IndexOf(1);
    }

    private static async Task<HttpResponseMessage> PostStreamAsync(HttpClient client, string json, string? requestId)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        if (requestId is not null)
            request.Headers.Add(RequestForwarder.RequestIdHeader, requestId);
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return response;
    }

    /// <summary>Each chunk's delta content (ids and timestamps differ between two runs; the text must not).</summary>
    private static List<string> Contents(List<string> events) =>
        [.. events.Where(e => e != SseReader.Done).Select(e => JsonNode.Parse(e)!["choices"]![0]!["delta"]!["content"]?.GetValue<string>() ?? "")];

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
