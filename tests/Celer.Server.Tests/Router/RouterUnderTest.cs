using System.Text;
using Celer.Router;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Celer.Server.Tests.Router;

/// <summary>The router on an ephemeral loopback port, with a client for it.</summary>
internal sealed class RouterUnderTest : IAsyncDisposable
{
    /// <summary>Short, so ejection and re-admission show up within a test's few seconds.</summary>
    public static readonly TimeSpan HealthCheckInterval = TimeSpan.FromMilliseconds(200);

    private readonly WebApplication _app;

    private RouterUnderTest(WebApplication app)
    {
        _app = app;
        Client = new HttpClient { BaseAddress = CelerRouter.GetBoundAddress(app), Timeout = TimeSpan.FromSeconds(30) };
    }

    public HttpClient Client { get; }
    public BackendPool Pool => _app.Services.GetRequiredService<BackendPool>();

    /// <summary>Slots of <c>--max-pending-requests</c> taken now.</summary>
    public int PendingRequests => _app.Services.GetRequiredService<PendingRequestLimit>().InFlight;

    /// <param name="healthCheckInterval">Null: <see cref="HealthCheckInterval"/>.</param>
    /// <param name="metricsScrapeInterval">Null: the health-check interval, as on the command line.</param>
    /// <param name="circuitBreakerCooldown">Null: the default, 30 s.</param>
    /// <param name="clock">The circuit breakers' clock (null: the system's).</param>
    /// <param name="maxPendingRequests">Null: the default.</param>
    public static async Task<RouterUnderTest> StartAsync(
        IEnumerable<BackendSpec> backends, RoutingLogic routing, TimeSpan? healthCheckInterval = null, TimeSpan? metricsScrapeInterval = null,
        int prefixChunkSize = 128, int circuitBreakerThreshold = 5, TimeSpan? circuitBreakerCooldown = null, TimeProvider? clock = null,
        int? maxPendingRequests = null)
    {
        var defaults = new RouterOptions { Backends = [] };
        return await StartAsync(new RouterOptions
        {
            Backends = [.. backends],
            RoutingLogic = routing,
            Port = 0,
            HealthCheckInterval = healthCheckInterval ?? HealthCheckInterval,
            MetricsScrapeInterval = metricsScrapeInterval,
            PrefixChunkSize = prefixChunkSize,
            CircuitBreakerThreshold = circuitBreakerThreshold,
            CircuitBreakerCooldown = circuitBreakerCooldown ?? TimeSpan.FromSeconds(30),
            TimeProvider = clock ?? TimeProvider.System,
            MaxPendingRequests = maxPendingRequests ?? defaults.MaxPendingRequests,
            LogLevel = Microsoft.Extensions.Logging.LogLevel.None,
        });
    }

    public static async Task<RouterUnderTest> StartAsync(RouterOptions options)
    {
        var app = CelerRouter.Build(options);
        await app.StartAsync();
        return new RouterUnderTest(app);
    }

    public async Task<HttpResponseMessage> PostAsync(string path, string json, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        foreach (var (name, value) in headers)
            request.Headers.Add(name, value);
        return await Client.SendAsync(request);
    }

    /// <summary>The router's own <c>/metrics</c>, parsed.</summary>
    public async Task<IReadOnlyList<PrometheusSample>> MetricsAsync()
    {
        using var response = await Client.GetAsync("/metrics", TestContext.Current.CancellationToken);
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        return PrometheusText.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken));
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
