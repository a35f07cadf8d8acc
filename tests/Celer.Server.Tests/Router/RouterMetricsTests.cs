using System.Net;
using Celer.Router;
using Celer.Server.Tests.Integration;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Router;

/// <summary>The router's own <c>/metrics</c> after real traffic: requests by backend and status, in flight, health, time to first byte, retries.</summary>
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
        Assert.All(metrics, s => Assert.StartsWith(RouterMetrics.Prefix, s.Name, StringComparison.Ordinal));
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
    }

    private static double Requests(IReadOnlyList<PrometheusSample> metrics, FakeBackend backend, string status) =>
        Value(metrics, "celer_router_requests_total", ("backend", backend), ("model", FakeBackend.Model), ("status", status));

    private static double Value(IReadOnlyList<PrometheusSample> metrics, string name, params (string Label, object Value)[] labels) =>
        Assert.Single(metrics, s => s.Name == name && labels.All(l => s.Labels.GetValueOrDefault(l.Label) == Text(l.Value))).Value;

    private static string Text(object value) => value is FakeBackend backend ? backend.BaseAddress.AbsoluteUri : (string)value;
}
