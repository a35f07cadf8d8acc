using System.Net;
using Celer.Router;
using Celer.Server.Tests.Integration;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Router;

/// <summary>
/// The router's own <c>/metrics</c> after real traffic: requests by backend and status, in flight, health, time to first
/// byte, retries; and production-stack's series (rate and latency over its window, requests before and after their first
/// byte) on a clock the test moves, so their values are exact.
/// </summary>
public sealed class RouterMetricsTests
{
    private const string Completion = $$"""{"model": "{{FakeBackend.Model}}", "prompt": "Hello", "max_tokens": 1}""";

    [Fact]
    public async Task The_router_exports_its_series_after_traffic()
    {
        await using var a = await FakeBackend.StartAsync();
        await using var b = await FakeBackend.StartAsync();
        // No health check after the first: only the failed forward can eject b once it stops.
        await using var router = await RouterUnderTest.StartAsync([new(a.BaseAddress, null), new(b.BaseAddress, null)], RoutingLogic.RoundRobin,
            healthCheckInterval: TimeSpan.FromHours(1));
        // Round robin: turns 0 to 3 go to a, b, a, b.
        for (var i = 0; i < 4; i++)
            await HttpApiTests.PostOkAsync(router.Client, "/v1/completions", Completion);
        b.CompletionStatus = 500;
        await HttpApiTests.PostOkAsync(router.Client, "/v1/completions", Completion); // turn 4: a
        await HttpApiTests.PostErrorAsync(router.Client, "/v1/completions", Completion, HttpStatusCode.InternalServerError); // turn 5: b

        a.Hold();
        var held = router.PostAsync("/v1/completions", Completion); // turn 6: a
        await Poll.UntilAsync(() => a.Held == 1, TimeSpan.FromSeconds(10), "a holds a request");
        var during = await router.MetricsAsync();
        Assert.Equal(1, Value(during, "celer_router_requests_in_flight", ("backend", a)));
        Assert.Equal(0, Value(during, "celer_router_requests_in_flight", ("backend", b)));
        a.Release();
        using (var response = await held)
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        // Stopped: turn 7 goes to b, cannot connect, ejects it and is retried on a.
        await b.DisposeAsync();
        await HttpApiTests.PostOkAsync(router.Client, "/v1/completions", Completion);
        await Poll.UntilAsync(() => router.Pool.Backends.All(x => x.Load.InFlight == 0), TimeSpan.FromSeconds(10), "the router counts every request finished");

        var metrics = await router.MetricsAsync();
        Assert.All(metrics, s => Assert.True(s.Name.StartsWith(RouterMetrics.Prefix, StringComparison.Ordinal)
            || ProductionStackSeries.Any(name => s.Name.StartsWith(name, StringComparison.Ordinal)), s.Name));
        Assert.Equal(5, Requests(metrics, a, "200"));
        Assert.Equal(2, Requests(metrics, b, "200"));
        Assert.Equal(1, Requests(metrics, b, "500"));
        Assert.Equal(1, Requests(metrics, b, "unreachable"));
        Assert.DoesNotContain(metrics, s => s.Name == "celer_router_requests_total" && s.Labels["backend"] == a.BaseAddress.AbsoluteUri && s.Labels["status"] != "200");
        Assert.Equal(1, Value(metrics, "celer_router_retries_total", ("backend", b), ("model", FakeBackend.Model)));
        Assert.DoesNotContain(metrics, s => s.Name == "celer_router_retries_total" && s.Labels["backend"] == a.BaseAddress.AbsoluteUri);
        Assert.Equal(0, Value(metrics, "celer_router_requests_in_flight", ("backend", a)));
        Assert.Equal(1, Value(metrics, "celer_router_backend_healthy", ("backend", a)));
        Assert.Equal(0, Value(metrics, "celer_router_backend_healthy", ("backend", b)));
        // A 500 and a refused connection are two failures in a row, fewer than the default threshold of five.
        Assert.Equal(0, Value(metrics, "celer_router_circuit_breaker_state", ("backend", b)));

        // Every answer's first byte was timed (the 500's body too); the refused connection had none.
        Assert.Equal(5, Value(metrics, "celer_router_time_to_first_byte_seconds_count", ("backend", a), ("model", FakeBackend.Model)));
        Assert.Equal(3, Value(metrics, "celer_router_time_to_first_byte_seconds_count", ("backend", b), ("model", FakeBackend.Model)));
        Assert.Equal(5, Value(metrics, "celer_router_time_to_first_byte_seconds_bucket", ("backend", a), ("model", FakeBackend.Model), ("le", "+Inf")));
        var sum = Value(metrics, "celer_router_time_to_first_byte_seconds_sum", ("backend", a), ("model", FakeBackend.Model));
        Assert.InRange(sum, 1e-6, 30);
        var buckets = metrics.Where(s => s.Name == "celer_router_time_to_first_byte_seconds_bucket" && s.Labels["backend"] == a.BaseAddress.AbsoluteUri).ToList();
        Assert.Equal(23, buckets.Count); // vLLM's 22 time-to-first-token bounds and +Inf
        Assert.Equal(buckets.Select(s => s.Value).Order(), buckets.Select(s => s.Value)); // cumulative

        // production-stack's counters: 8 client requests, each counted once however many backends it tried.
        Assert.Equal(8, Value(metrics, "vllm:num_incoming_requests_total", ("model", FakeBackend.Model)));
        Assert.Equal(1, Value(metrics, "vllm:request_errors_total", ("server", b), ("model", FakeBackend.Model), ("error_type", nameof(HttpRequestException))));
        Assert.DoesNotContain(metrics, s => s.Name == "vllm:request_errors_total" && s.Labels["server"] == a.BaseAddress.AbsoluteUri);
        Assert.Equal(5, Latencies(metrics, a, "success"));
        Assert.Equal(2, Latencies(metrics, b, "success"));
        Assert.Equal(2, Latencies(metrics, b, "error")); // the 500 and the refused connection
        Assert.Equal(12, metrics.Count(s => s.Name == "vllm:request_latency_seconds_bucket" && s.Labels["server"] == a.BaseAddress.AbsoluteUri));
        Assert.Equal(1, Value(metrics, "vllm:healthy_pods_total", ("server", a)));
        Assert.Equal(0, Value(metrics, "vllm:healthy_pods_total", ("server", b)));
        // Engine names stay the engines': a router series by that name would be summed with the backends'.
        Assert.DoesNotContain(metrics, s => s.Name is "vllm:num_requests_running" or "vllm:num_requests_waiting");
    }

    [Fact]
    public async Task Production_stacks_series_follow_the_window_and_each_requests_phase()
    {
        await using var a = await FakeBackend.StartAsync();
        await using var b = await FakeBackend.StartAsync();
        var clock = new ManualClock();
        await using var router = await RouterUnderTest.StartAsync(new RouterOptions
        {
            Backends = [new(a.BaseAddress, null), new(b.BaseAddress, null)],
            Port = 0,
            HealthCheckInterval = TimeSpan.FromHours(1),
            RequestStatsWindow = TimeSpan.FromSeconds(60),
            TimeProvider = clock,
            LogLevel = Microsoft.Extensions.Logging.LogLevel.None,
        });
        var idle = await router.MetricsAsync();
        Assert.Equal(0, Value(idle, "vllm:current_qps", ("server", a)));
        Assert.Equal(-1, Value(idle, "vllm:avg_latency", ("server", a))); // production-stack's "none finished in the window"

        // t = 0: round robin sends turns 0 to 3 to a, b, a, b, answered at once (latency 0 on this clock).
        for (var i = 0; i < 4; i++)
            await HttpApiTests.PostOkAsync(router.Client, "/v1/completions", Completion);

        // Turn 4 (a) is held before its answer: "prefill" until its first byte.
        a.Hold();
        var held = router.PostAsync("/v1/completions", Completion);
        await Poll.UntilAsync(() => a.Held == 1, TimeSpan.FromSeconds(10), "a holds a request");
        var during = await router.MetricsAsync();
        Assert.Equal(1, Value(during, "vllm:num_prefill_requests", ("server", a)));
        Assert.Equal(0, Value(during, "vllm:num_decoding_requests", ("server", a)));
        Assert.Equal(3.0 / 60, Value(during, "vllm:current_qps", ("server", a)), 1e-12);
        Assert.Equal(2.0 / 60, Value(during, "vllm:current_qps", ("server", b)), 1e-12);
        Assert.Equal(0, Value(during, "vllm:avg_latency", ("server", a)));
        clock.Advance(TimeSpan.FromSeconds(2));
        a.Release();
        using (var response = await held)
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await Poll.UntilAsync(() => router.Pool.Backends.All(x => x.Load.InFlight == 0), TimeSpan.FromSeconds(10), "the router counts turn 4 finished");

        // Turn 5 (b), sent at t = 2, has its first byte and waits for the rest: "decoding".
        b.HoldMidAnswer();
        var streaming = router.PostAsync("/v1/completions", Completion);
        await Poll.UntilAsync(() => b.Held == 1, TimeSpan.FromSeconds(10), "b holds a request mid-answer");
        var bStats = router.Pool.Backends.Single(x => x.Url == b.BaseAddress).Stats;
        await Poll.UntilAsync(() => bStats.Read().Decoding == 1, TimeSpan.FromSeconds(10), "the router has the first byte of b's answer");
        during = await router.MetricsAsync();
        Assert.Equal(0, Value(during, "vllm:num_prefill_requests", ("server", b)));
        Assert.Equal(0, Value(during, "vllm:num_prefill_requests", ("server", a)));
        Assert.Equal(0, Value(during, "vllm:num_decoding_requests", ("server", a)));
        clock.Advance(TimeSpan.FromSeconds(4));
        b.Release();
        using (var response = await streaming)
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await Poll.UntilAsync(() => router.Pool.Backends.All(x => x.Load.InFlight == 0), TimeSpan.FromSeconds(10), "the router counts turn 5 finished");

        // t = 6: a's answers took 0, 0 and 2 s; b's 0, 0 and 4 s.
        var after = await router.MetricsAsync();
        Assert.Equal(2.0 / 3, Value(after, "vllm:avg_latency", ("server", a)), 1e-9);
        Assert.Equal(4.0 / 3, Value(after, "vllm:avg_latency", ("server", b)), 1e-9);
        Assert.Equal(3.0 / 60, Value(after, "vllm:current_qps", ("server", b)), 1e-12);
        Assert.Equal(0, Value(after, "vllm:num_decoding_requests", ("server", b)));
        Assert.Equal(6, Value(after, "vllm:num_incoming_requests_total", ("model", FakeBackend.Model)));

        // t = 60: what happened at t = 0 has left the 60 s window; b's turn 5 (sent at 2, answered at 6) has not.
        clock.Advance(TimeSpan.FromSeconds(54));
        var later = await router.MetricsAsync();
        Assert.Equal(0, Value(later, "vllm:current_qps", ("server", a)));
        Assert.Equal(1.0 / 60, Value(later, "vllm:current_qps", ("server", b)), 1e-12);
        Assert.Equal(2, Value(later, "vllm:avg_latency", ("server", a)), 1e-9);
        Assert.Equal(4, Value(later, "vllm:avg_latency", ("server", b)), 1e-9);

        // t = 66: everything has left it.
        clock.Advance(TimeSpan.FromSeconds(6));
        var gone = await router.MetricsAsync();
        Assert.Equal(0, Value(gone, "vllm:current_qps", ("server", b)));
        Assert.Equal(-1, Value(gone, "vllm:avg_latency", ("server", a)));
        Assert.Equal(-1, Value(gone, "vllm:avg_latency", ("server", b)));
        // The counters keep their history.
        Assert.Equal(6, Value(gone, "vllm:num_incoming_requests_total", ("model", FakeBackend.Model)));
    }

    /// <summary>production-stack's series that <see cref="RouterMetrics"/> exports (histograms by their base name).</summary>
    private static readonly string[] ProductionStackSeries =
    [
        "vllm:current_qps", "vllm:avg_latency", "vllm:num_prefill_requests", "vllm:num_decoding_requests", "vllm:healthy_pods_total",
        "vllm:num_incoming_requests_total", "vllm:request_errors_total", "vllm:request_latency_seconds",
    ];

    private static double Latencies(IReadOnlyList<PrometheusSample> metrics, FakeBackend backend, string status) =>
        Value(metrics, "vllm:request_latency_seconds_count", ("server", backend), ("model", FakeBackend.Model), ("status", status));

    private static double Requests(IReadOnlyList<PrometheusSample> metrics, FakeBackend backend, string status) =>
        Value(metrics, "celer_router_requests_total", ("backend", backend), ("model", FakeBackend.Model), ("status", status));

    private static double Value(IReadOnlyList<PrometheusSample> metrics, string name, params (string Label, object Value)[] labels) =>
        Assert.Single(metrics, s => s.Name == name && labels.All(l => s.Labels.GetValueOrDefault(l.Label) == Text(l.Value))).Value;

    private static string Text(object value) => value is FakeBackend backend ? backend.BaseAddress.AbsoluteUri : (string)value;
}
