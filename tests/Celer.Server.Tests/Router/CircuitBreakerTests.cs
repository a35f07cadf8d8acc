using System.Net;
using Celer.Router;
using Celer.Server.Tests.Integration;

namespace Celer.Server.Tests.Router;

/// <summary>
/// <see cref="CircuitBreaker"/> on a clock the test moves (opens, stays open through its cooldown, lets exactly one trial
/// through, closes or reopens on its outcome), then in the router in front of a backend that answers 500 while its
/// <c>/health</c> passes.
/// </summary>
public sealed class CircuitBreakerTests
{
    private const string Completion = $$"""{"model": "{{FakeBackend.Model}}", "prompt": "Hello", "max_tokens": 1}""";

    [Fact]
    public void It_opens_after_the_threshold_half_opens_after_the_cooldown_and_its_trial_decides()
    {
        var clock = new ManualClock();
        var breaker = new CircuitBreaker(failureThreshold: 3, cooldown: TimeSpan.FromSeconds(10), clock);

        // Failures must be consecutive: a success starts the count over.
        Assert.Null(breaker.Record(CircuitPermit.Normal, success: false));
        Assert.Null(breaker.Record(CircuitPermit.Normal, success: false));
        Assert.Null(breaker.Record(CircuitPermit.Normal, success: true));
        Assert.Null(breaker.Record(CircuitPermit.Normal, success: false));
        Assert.Null(breaker.Record(CircuitPermit.Normal, success: false));
        Assert.Equal(CircuitState.Closed, breaker.State);
        Assert.Equal(CircuitState.Open, breaker.Record(CircuitPermit.Normal, success: false));
        Assert.False(breaker.AllowsRequests);
        Assert.Equal(CircuitPermit.Denied, breaker.TryAcquire());

        clock.Advance(TimeSpan.FromSeconds(9.9));
        Assert.Equal(CircuitState.Open, breaker.State);
        Assert.Equal(CircuitPermit.Denied, breaker.TryAcquire());
        clock.Advance(TimeSpan.FromSeconds(0.1));
        Assert.Equal(CircuitState.HalfOpen, breaker.State);
        Assert.True(breaker.AllowsRequests);
        Assert.Equal(CircuitPermit.Trial, breaker.TryAcquire());
        // One trial at a time.
        Assert.False(breaker.AllowsRequests);
        Assert.Equal(CircuitPermit.Denied, breaker.TryAcquire());
        // A late answer to a request sent before the circuit opened decides nothing.
        Assert.Null(breaker.Record(CircuitPermit.Normal, success: true));
        Assert.Equal(CircuitState.HalfOpen, breaker.State);

        Assert.Equal(CircuitState.Open, breaker.Record(CircuitPermit.Trial, success: false));
        Assert.Equal(CircuitPermit.Denied, breaker.TryAcquire());
        clock.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(CircuitPermit.Trial, breaker.TryAcquire());
        // A trial whose client left gives its turn to the next request.
        breaker.Release(CircuitPermit.Trial);
        Assert.Equal(CircuitPermit.Trial, breaker.TryAcquire());
        Assert.Equal(CircuitState.Closed, breaker.Record(CircuitPermit.Trial, success: true));
        Assert.Equal(CircuitPermit.Normal, breaker.TryAcquire());

        // Closed with its count started over: two more failures are not three.
        Assert.Null(breaker.Record(CircuitPermit.Normal, success: false));
        Assert.Null(breaker.Record(CircuitPermit.Normal, success: false));
        Assert.Equal(CircuitState.Closed, breaker.State);
    }

    [Fact]
    public void A_threshold_of_zero_never_opens()
    {
        var breaker = new CircuitBreaker(failureThreshold: 0, TimeSpan.FromSeconds(10), new ManualClock());
        for (var i = 0; i < 100; i++)
            Assert.Null(breaker.Record(CircuitPermit.Normal, success: false));
        Assert.Equal(CircuitState.Closed, breaker.State);
        Assert.Equal(CircuitPermit.Normal, breaker.TryAcquire());
    }

    [Fact]
    public async Task A_backend_answering_500_is_taken_out_while_healthy_and_back_after_a_successful_trial()
    {
        await using var good = await FakeBackend.StartAsync();
        await using var bad = await FakeBackend.StartAsync();
        var clock = new ManualClock();
        await using var router = await RouterUnderTest.StartAsync([new(good.BaseAddress, null), new(bad.BaseAddress, null)], RoutingLogic.RoundRobin,
            circuitBreakerThreshold: 2, circuitBreakerCooldown: TimeSpan.FromSeconds(30), clock: clock);
        var breaker = router.Pool.Backends[1].Breaker;
        bad.CompletionStatus = 500;

        // Round robin: good, bad, good, bad; the second 500 in a row opens the circuit.
        var first = await StatusesAsync(router, 4);
        Assert.Equal([200, 500, 200, 500], first);
        Assert.Equal(CircuitState.Open, breaker.State);
        Assert.True(router.Pool.Backends[1].IsHealthy, "its /health still passes: the breaker, not the health check, took it out");
        Assert.Equal(Enumerable.Repeat(200, 6), await StatusesAsync(router, 6));
        Assert.Equal((8, 2), (good.Completions, bad.Completions));

        var metrics = await router.MetricsAsync();
        Assert.Equal(1, Value(metrics, "celer_router_circuit_breaker_state", bad));
        Assert.Equal(0, Value(metrics, "celer_router_circuit_breaker_state", good));
        Assert.Equal(1, Value(metrics, "celer_router_circuit_breaker_opens_total", bad));

        bad.CompletionStatus = 200;
        clock.Advance(TimeSpan.FromSeconds(30));
        Assert.Equal(CircuitState.HalfOpen, breaker.State);
        // Round robin reaches the half-open backend within two requests; its trial succeeds and closes the circuit.
        var afterCooldown = await StatusesAsync(router, 2);
        Assert.Equal([200, 200], afterCooldown);
        Assert.Equal(3, bad.Completions);
        Assert.Equal(CircuitState.Closed, breaker.State);
        Assert.Equal(Enumerable.Repeat(200, 4), await StatusesAsync(router, 4));
        Assert.Equal(5, bad.Completions);
    }

    [Fact]
    public async Task When_every_healthy_backends_circuit_is_open_the_router_answers_503()
    {
        await using var bad = await FakeBackend.StartAsync();
        await using var router = await RouterUnderTest.StartAsync([new(bad.BaseAddress, null)], RoutingLogic.RoundRobin,
            circuitBreakerThreshold: 1, circuitBreakerCooldown: TimeSpan.FromMinutes(10));
        bad.CompletionStatus = 503;

        var statuses = await StatusesAsync(router, 1);
        Assert.Equal([503], statuses);
        var error = await HttpApiTests.PostErrorAsync(router.Client, "/v1/completions", Completion, HttpStatusCode.ServiceUnavailable);
        Assert.Contains("circuit breaker open", error["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(1, bad.Completions);
    }

    private static async Task<int[]> StatusesAsync(RouterUnderTest router, int count)
    {
        var statuses = new int[count];
        for (var i = 0; i < count; i++)
        {
            using var response = await router.PostAsync("/v1/completions", Completion);
            statuses[i] = (int)response.StatusCode;
        }
        return statuses;
    }

    private static double Value(IReadOnlyList<PrometheusSample> metrics, string name, FakeBackend backend) =>
        Assert.Single(metrics, s => s.Name == name && s.Labels["backend"] == backend.BaseAddress.AbsoluteUri).Value;
}
