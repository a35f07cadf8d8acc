using System.Net;
using System.Text;
using Celer.Router;
using Celer.Server.Tests.Integration;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Router;

/// <summary>
/// Least-loaded routing over backends whose <c>/metrics</c> the test writes (the load a real server has cannot be set),
/// and over real Celer servers, one of them kept busy, whose <c>/metrics</c> the router reads as they are.
/// </summary>
public sealed class LeastLoadedRoutingTests
{
    private const string Completion = $$"""{"model": "{{FakeBackend.Model}}", "prompt": "Hello", "max_tokens": 1}""";

    [Fact]
    public async Task Requests_go_to_the_backend_whose_metrics_show_fewer_waiting_requests_and_follow_the_next_scrape()
    {
        await using var a = await FakeBackend.StartAsync();
        await using var b = await FakeBackend.StartAsync();
        a.MetricsText = FakeBackend.LoadMetrics(waiting: 5, running: 4, kvUsage: 0.8);
        b.MetricsText = FakeBackend.LoadMetrics(waiting: 0, running: 4, kvUsage: 0.8);
        await using var router = await RouterUnderTest.StartAsync([new(a.BaseAddress, null), new(b.BaseAddress, null)], RoutingLogic.LeastLoaded);

        await SendAsync(router, 6);
        Assert.Equal((0, 6), (a.Completions, b.Completions));

        a.MetricsText = FakeBackend.LoadMetrics(waiting: 0, running: 1, kvUsage: 0.1);
        await Poll.UntilAsync(() => router.Pool.Backends[0].Load.Scraped?.Running == 1, TimeSpan.FromSeconds(10), "the router scrapes a's new load");
        await SendAsync(router, 4);
        Assert.Equal((4, 6), (a.Completions, b.Completions));
    }

    [Fact]
    public async Task The_load_is_summed_over_engines_of_the_backends_model_and_other_models_are_left_out()
    {
        await using var a = await FakeBackend.StartAsync();
        await using var b = await FakeBackend.StartAsync();
        a.MetricsText = FakeBackend.LoadMetrics(waiting: 1, running: 1, kvUsage: 0.5); // score 2.5
        // Two engines of the model (score 0 + 2 + 0.2 = 2.2) and another model's heavy load on the same server.
        b.MetricsText = $$"""
            # TYPE vllm:num_requests_waiting gauge
            vllm:num_requests_waiting{model_name="{{FakeBackend.Model}}",engine="0"} 0
            vllm:num_requests_waiting{model_name="{{FakeBackend.Model}}",engine="1"} 0
            vllm:num_requests_waiting{model_name="other-model",engine="0"} 100
            vllm:num_requests_running{engine="1",model_name="{{FakeBackend.Model}}"} 1
            vllm:num_requests_running{model_name="{{FakeBackend.Model}}",engine="0"} 1
            vllm:num_requests_running{model_name="other-model",engine="0"} 100
            vllm:kv_cache_usage_perc{model_name="{{FakeBackend.Model}}",engine="0"} 0.1
            vllm:kv_cache_usage_perc{model_name="{{FakeBackend.Model}}",engine="1"} 0.3
            vllm:kv_cache_usage_perc{model_name="other-model",engine="0"} NaN
            vllm:time_to_first_token_seconds_bucket{model_name="{{FakeBackend.Model}}",engine="0",le="+Inf"} 12
            """;
        await using var router = await RouterUnderTest.StartAsync([new(a.BaseAddress, null), new(b.BaseAddress, null)], RoutingLogic.LeastLoaded,
            metricsScrapeInterval: TimeSpan.FromHours(1));

        Assert.Equal(new ScrapedLoad(Waiting: 0, Running: 2, KvCacheUsage: 0.2), router.Pool.Backends[1].Load.Scraped);
        Assert.Equal(2.2, router.Pool.Backends[1].Load.Score, 9);
        await SendAsync(router, 3);
        Assert.Equal((0, 3), (a.Completions, b.Completions));
    }

    [Fact]
    public async Task A_malformed_metrics_page_is_ignored_and_the_backend_scored_by_the_routers_own_count()
    {
        await using var a = await FakeBackend.StartAsync();
        await using var b = await FakeBackend.StartAsync();
        a.MetricsText = "vllm:num_requests_waiting{model_name=\"" + FakeBackend.Model + "\" 3\n";
        b.MetricsText = FakeBackend.LoadMetrics(waiting: 3, running: 0, kvUsage: 0);
        await using var router = await RouterUnderTest.StartAsync([new(a.BaseAddress, null), new(b.BaseAddress, null)], RoutingLogic.LeastLoaded);

        Assert.Null(router.Pool.Backends[0].Load.Scraped);
        // a scores its requests in flight, 0 between these one-at-a-time requests; b scores 3.
        await SendAsync(router, 3);
        Assert.Equal((3, 0), (a.Completions, b.Completions));

        a.MetricsText = FakeBackend.LoadMetrics(waiting: 9, running: 0, kvUsage: 0);
        await Poll.UntilAsync(() => router.Pool.Backends[0].Load.Scraped is not null, TimeSpan.FromSeconds(10), "a's fixed /metrics is scraped");
        await SendAsync(router, 2);
        Assert.Equal((3, 2), (a.Completions, b.Completions));
    }

    [Fact]
    public async Task Requests_sent_since_the_last_scrape_count_against_their_backend()
    {
        await using var a = await FakeBackend.StartAsync();
        await using var b = await FakeBackend.StartAsync();
        a.MetricsText = b.MetricsText = FakeBackend.LoadMetrics(waiting: 0, running: 0, kvUsage: 0);
        // One scrape, at startup: from then on only the router's own count tells the backends apart.
        await using var router = await RouterUnderTest.StartAsync([new(a.BaseAddress, null), new(b.BaseAddress, null)], RoutingLogic.LeastLoaded,
            metricsScrapeInterval: TimeSpan.FromHours(1));

        a.Hold();
        var held = router.PostAsync("/v1/completions", Completion); // equal scores: the first in turn, a
        await Poll.UntilAsync(() => a.Held == 1, TimeSpan.FromSeconds(10), "a holds the first request");
        // Round robin would send every other request to a; a's one request in flight sends them all to b.
        await SendAsync(router, 4, heldElsewhere: 1);
        Assert.Equal((1, 4), (a.Completions, b.Completions));

        a.Release();
        using (var response = await held)
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await Poll.UntilAsync(() => router.Pool.Backends[0].Load.Score == 0, TimeSpan.FromSeconds(10), "a's request leaves the count");
    }

    [Fact]
    public async Task A_real_servers_queue_read_from_its_metrics_sends_requests_to_the_idle_one()
    {
        var servers = await RouterTests.StartServersAsync(2);
        var streams = new List<HttpResponseMessage>();
        var (busy, idle) = (servers[0], servers[1]);
        try
        {
            await using var router = await RouterUnderTest.StartAsync(servers.Select(s => RouterTests.Spec(s)), RoutingLogic.LeastLoaded);
            // Ten long generations on a server of eight sequences: eight run, the rest wait. Each step is slowed so
            // none ends before the gate holds the engine loop, which freezes the numbers /metrics shows.
            busy.Executor.StepPace = TimeSpan.FromMilliseconds(20);
            using var direct = busy.CreateClient();
            var body = $$"""{"model": "{{ServerFixture.ModelName}}", "prompt": "Hello", "max_tokens": 200, "min_tokens": 200, "stream": true}""";
            for (var i = 0; i < 10; i++)
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
                streams.Add(await direct.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, TestContext.Current.CancellationToken));
            }
            await Poll.UntilAsync(() => busy.Engine.Stats is { NumRunning: > 0, NumWaiting: > 0 } stats && stats.NumRunning + stats.NumWaiting == 10,
                TimeSpan.FromSeconds(10), "the busy server runs some and queues the rest");
            busy.Executor.Close();
            // The loop finishes the step it is in and parks; the router's scrape then matches the server's own numbers.
            await Poll.UntilAsync(() => router.Pool.Backends[0].Load.Scraped is { } load
                    && load.Running == busy.Engine.Stats.NumRunning && load.Waiting == busy.Engine.Stats.NumWaiting,
                TimeSpan.FromSeconds(10), "the router reads the busy server's queue");
            var scraped = router.Pool.Backends[0].Load.Scraped!;
            Assert.True(scraped is { Waiting: > 0, KvCacheUsage: > 0 }, $"scraped {scraped}");
            Assert.Equal(busy.Engine.Stats.KvCacheUsage, scraped.KvCacheUsage, 6);

            var before = (busy.FinishedRequests(), idle.FinishedRequests());
            for (var i = 0; i < 4; i++)
                await HttpApiTests.PostOkAsync(router.Client, "/v1/completions", $$"""{"model": "{{ServerFixture.ModelName}}", "prompt": "Hello", "max_tokens": 1}""");
            await Poll.UntilAsync(() => idle.FinishedRequests() - before.Item2 == 4, TimeSpan.FromSeconds(10), "the idle server finishes all four");
            Assert.Equal(before.Item1, busy.FinishedRequests());
        }
        finally
        {
            busy.Executor.Open();
            foreach (var stream in streams)
                stream.Dispose();
            await RouterTests.DisposeAllAsync(servers);
        }
    }

    /// <summary>
    /// Sends <paramref name="count"/> completions one after another, each answered 200. The client can have the whole
    /// answer a moment before the router counts the request finished, so each waits for the router's count too.
    /// </summary>
    private static async Task SendAsync(RouterUnderTest router, int count, int heldElsewhere = 0)
    {
        for (var i = 0; i < count; i++)
        {
            await HttpApiTests.PostOkAsync(router.Client, "/v1/completions", Completion);
            await Poll.UntilAsync(() => router.Pool.Backends.Sum(b => b.Load.InFlight) == heldElsewhere, TimeSpan.FromSeconds(10), "the router counts the request finished");
        }
    }
}
