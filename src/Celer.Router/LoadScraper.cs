using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Celer.Router;

/// <summary>
/// Scrapes each healthy backend's <c>GET /metrics</c> every interval for its queue, batch and KV usage
/// (<see cref="ScrapedLoad"/>), which least-loaded routing reads through <see cref="BackendLoad"/>. A scrape that fails
/// (no answer, a malformed exposition, none of vLLM's request gauges) drops that backend's scraped numbers, so it is
/// scored by the router's own count of requests in flight until a scrape succeeds again; each failure is logged once
/// until the backend's scrapes recover.
/// </summary>
public sealed partial class LoadScraper : BackgroundService
{
    /// <summary>vLLM's <c>/metrics</c> is some 100 KB; this bounds what a broken or hostile backend can make the router buffer.</summary>
    private const int MaxExpositionBytes = 16 << 20;

    private readonly BackendPool _pool;
    private readonly TimeSpan _interval;
    private readonly HttpClient _client;
    private readonly ILogger<LoadScraper> _logger;
    private readonly ConcurrentDictionary<Backend, string> _failing = new();

    public LoadScraper(BackendPool pool, RouterOptions options, ILogger<LoadScraper> logger)
    {
        _pool = pool;
        _logger = logger;
        _interval = options.MetricsScrapeInterval ?? options.HealthCheckInterval;
        // As for health checks: a scrape slower than the interval is a failure; 5 s caps it for long intervals.
        var timeout = TimeSpan.FromTicks(Math.Min(_interval.Ticks, TimeSpan.FromSeconds(5).Ticks));
        _client = new HttpClient { Timeout = timeout, MaxResponseContentBufferSize = MaxExpositionBytes };
        pool.BackendRemoved += backend => _failing.TryRemove(backend, out _);
    }

    /// <summary>One round of scrapes over every backend, concurrently.</summary>
    public Task ScrapeAllAsync(CancellationToken cancellationToken) =>
        Task.WhenAll(_pool.Backends.Select(backend => ScrapeAsync(backend, cancellationToken)));

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        // After the pool's first health checks (it starts first) and before the router listens: the first requests
        // already have load numbers.
        await ScrapeAllAsync(cancellationToken);
        await base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_interval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
                await ScrapeAllAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override void Dispose()
    {
        _client.Dispose();
        base.Dispose();
    }

    private async Task ScrapeAsync(Backend backend, CancellationToken cancellationToken)
    {
        if (!backend.IsHealthy)
        {
            // Not routed to; its numbers would be stale by the time it is re-admitted.
            backend.Load.Update(null);
            return;
        }

        string? failure;
        try
        {
            var exposition = await _client.GetStringAsync(new Uri(backend.Url, "metrics"), cancellationToken);
            var load = ScrapedLoad.From(PrometheusText.Parse(exposition), backend.Serves);
            backend.Load.Update(load);
            failure = load is null
                ? $"its /metrics has none of {ScrapedLoad.WaitingMetric}, {ScrapedLoad.RunningMetric} for its models"
                : null;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or FormatException
                                  && !cancellationToken.IsCancellationRequested)
        {
            backend.Load.Update(null);
            failure = e is FormatException ? $"its /metrics is malformed ({e.Message})" : e.Message;
        }

        if (failure is null)
        {
            if (_failing.TryRemove(backend, out _))
                LogRecovered(backend.Url);
        }
        else if (!_failing.TryGetValue(backend, out var previous) || previous != failure)
        {
            _failing[backend] = failure;
            LogScrapeFailed(backend.Url, failure);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Backend {Backend}'s load cannot be read, so only the router's own count of its requests is used: {Reason}")]
    private partial void LogScrapeFailed(Uri backend, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Backend {Backend}'s load is read from its /metrics again")]
    private partial void LogRecovered(Uri backend);
}
