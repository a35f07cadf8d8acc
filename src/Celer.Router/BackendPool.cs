using System.Text.Json.Nodes;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Celer.Router;

/// <summary>
/// The backends and their health. Every interval each backend's <c>GET /health</c> is asked (and, for a backend given
/// without a model name, its <c>GET /v1/models</c>); one that fails is ejected from routing, one that answers again is
/// re-admitted. A forward that cannot connect ejects its backend at once, without waiting for the next check. Requests go
/// to the healthy backends whose circuit breaker lets them through. The set of backends is fixed (<c>--backend</c>) or
/// follows the pods that <see cref="KubernetesPodWatcher"/> sees ready; it is swapped whole, so readers never lock.
/// </summary>
public sealed partial class BackendPool : BackgroundService
{
    private readonly HttpClient _probe;
    private readonly RouterOptions _options;
    private readonly ILogger<BackendPool> _logger;
    private readonly Lock _membership = new();
    private volatile Backend[] _backends;

    public BackendPool(RouterOptions options, ILogger<BackendPool> logger)
    {
        _options = options;
        _logger = logger;
        _backends = [.. options.Backends.Select(NewBackend)];
        // A probe slower than the interval counts as a failure, between 1 s (a loaded machine answers a short interval's
        // probe late, and one failure ejects: the next round simply starts later) and 5 s (long intervals).
        var timeout = TimeSpan.FromTicks(Math.Clamp(options.HealthCheckInterval.Ticks, TimeSpan.FromSeconds(1).Ticks, TimeSpan.FromSeconds(5).Ticks));
        _probe = new HttpClient { Timeout = timeout };
    }

    public IReadOnlyList<Backend> Backends => _backends;

    /// <summary>Raised when a backend leaves routing (a failed check or forward, or its removal), so what was kept about it can go.</summary>
    public event Action<Backend>? BackendEjected;

    /// <summary>Raised when a backend leaves the pool for good (its pod went), so per-backend series and state can go too.</summary>
    public event Action<Backend>? BackendRemoved;

    /// <summary>
    /// Adds a backend at <paramref name="spec"/>'s URL, unless it is one already, and checks it at once, so it takes
    /// requests without waiting for the next round.
    /// </summary>
    public async Task AddAsync(BackendSpec spec, CancellationToken cancellationToken)
    {
        Backend backend;
        lock (_membership)
        {
            if (_backends.Any(b => b.Url == spec.Url))
                return;
            backend = NewBackend(spec);
            _backends = [.. _backends, backend];
        }
        LogAdded(backend.Url);
        await CheckAsync(backend, cancellationToken);
    }

    /// <summary>Removes the backend at <paramref name="url"/>, if there is one: requests in flight to it finish, no new one goes.</summary>
    public void Remove(Uri url)
    {
        Backend? backend;
        lock (_membership)
        {
            backend = _backends.FirstOrDefault(b => b.Url == url);
            if (backend is null)
                return;
            _backends = [.. _backends.Where(b => b != backend)];
        }
        LogRemoved(url);
        if (backend.IsHealthy)
        {
            backend.IsHealthy = false;
            BackendEjected?.Invoke(backend);
        }
        BackendRemoved?.Invoke(backend);
    }

    /// <summary>The healthy backends serving <paramref name="model"/>, in command-line order (or the order their pods became ready).</summary>
    public IReadOnlyList<Backend> HealthyFor(string model) => [.. Backends.Where(b => b.IsHealthy && b.Serves(model))];

    /// <summary>The backends a request for <paramref name="model"/> may go to: healthy, and their circuit not open.</summary>
    public IReadOnlyList<Backend> RoutableFor(string model) => [.. HealthyFor(model).Where(b => b.Breaker.AllowsRequests)];

    /// <summary>Whether any backend, healthy or not, serves <paramref name="model"/>: else the model does not exist.</summary>
    public bool AnyServes(string model) => Backends.Any(b => b.Serves(model));

    /// <summary>The model names the healthy backends serve, each once.</summary>
    public IReadOnlyList<string> HealthyModels() =>
        [.. Backends.Where(b => b.IsHealthy).SelectMany(b => b.ModelCards).Select(card => (string?)card["id"]).OfType<string>().Distinct(StringComparer.Ordinal)];

    public bool AnyHealthy => Backends.Any(b => b.IsHealthy);

    /// <summary>A forward could not reach the backend: stop routing to it until a health check passes.</summary>
    public void Eject(Backend backend, Exception reason)
    {
        if (!backend.IsHealthy)
            return;
        LogEjected(backend.Url, reason.Message);
        backend.IsHealthy = false;
        BackendEjected?.Invoke(backend);
    }

    /// <summary>One round of checks over every backend, concurrently.</summary>
    public Task CheckAllAsync(CancellationToken cancellationToken) =>
        Task.WhenAll(Backends.Select(backend => CheckAsync(backend, cancellationToken)));

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        // The first round runs before the router listens, so its first requests already have backends.
        await CheckAllAsync(cancellationToken);
        await base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_options.HealthCheckInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
                await CheckAllAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override void Dispose()
    {
        _probe.Dispose();
        base.Dispose();
    }

    private Backend NewBackend(BackendSpec spec) =>
        new(spec, new CircuitBreaker(_options.CircuitBreakerThreshold, _options.CircuitBreakerCooldown, _options.TimeProvider),
            new RequestStats(_options.RequestStatsWindow, _options.TimeProvider));

    private async Task CheckAsync(Backend backend, CancellationToken cancellationToken)
    {
        bool healthy;
        try
        {
            using var health = await _probe.GetAsync(new Uri(backend.Url, "health"), cancellationToken);
            healthy = health.IsSuccessStatusCode;
            if (healthy && backend.ConfiguredModel is null)
                backend.ModelCards = await DiscoverModelsAsync(backend, cancellationToken);
            healthy &= backend.ModelCards.Count > 0;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or System.Text.Json.JsonException or InvalidOperationException
                                  && !cancellationToken.IsCancellationRequested)
        {
            healthy = false;
        }

        // A backend removed while its check was in flight stays out: re-admitting it would only log a false "routing to it".
        if (Array.IndexOf(_backends, backend) < 0)
            return;
        var wasHealthy = backend.IsHealthy;
        backend.IsHealthy = healthy;
        if (healthy && !wasHealthy)
            LogAdmitted(backend.Url);
        else if (!healthy && wasHealthy)
        {
            LogEjected(backend.Url, "health check failed");
            BackendEjected?.Invoke(backend);
        }
    }

    private async Task<IReadOnlyList<JsonObject>> DiscoverModelsAsync(Backend backend, CancellationToken cancellationToken)
    {
        var body = await _probe.GetStringAsync(new Uri(backend.Url, "v1/models"), cancellationToken);
        var data = JsonNode.Parse(body)?["data"] as JsonArray ?? throw new InvalidOperationException("no data array in /v1/models");
        return [.. data.OfType<JsonObject>().Where(card => card["id"] is JsonValue).Select(card => (JsonObject)card.DeepClone())];
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Backend {Backend} ejected from routing: {Reason}")]
    private partial void LogEjected(Uri backend, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Backend {Backend} is healthy: routing to it")]
    private partial void LogAdmitted(Uri backend);

    [LoggerMessage(Level = LogLevel.Information, Message = "Backend {Backend} added")]
    private partial void LogAdded(Uri backend);

    [LoggerMessage(Level = LogLevel.Information, Message = "Backend {Backend} removed")]
    private partial void LogRemoved(Uri backend);
}
