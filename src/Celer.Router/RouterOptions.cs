using Microsoft.Extensions.Logging;

namespace Celer.Router;

/// <summary>One <c>--backend URL[,model]</c>: a Celer or vLLM server, and the model name it serves (null: ask its <c>/v1/models</c>).</summary>
public sealed record BackendSpec(Uri Url, string? Model)
{
    /// <summary>Parses <c>URL[,model]</c>; the URL must be absolute http(s).</summary>
    public static BackendSpec Parse(string value)
    {
        var comma = value.IndexOf(',', StringComparison.Ordinal);
        var url = (comma < 0 ? value : value[..comma]).Trim();
        var model = comma < 0 ? null : value[(comma + 1)..].Trim();
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            throw new ArgumentException($"--backend {value}: '{url}' is not an http(s) URL.", nameof(value));
        if (model is { Length: 0 })
            throw new ArgumentException($"--backend {value}: the model name after ',' is empty.", nameof(value));
        // Paths are appended to the base (http://host:8000/ + v1/completions), so it must end with '/'.
        if (!uri.AbsolutePath.EndsWith('/'))
            uri = new Uri(uri.AbsoluteUri + "/");
        return new BackendSpec(uri, model);
    }
}

/// <summary>How a request picks among the healthy backends serving its model.</summary>
public enum RoutingLogic
{
    /// <summary>Each model's backends in turn.</summary>
    RoundRobin,

    /// <summary>Consistent hashing on the session header, so one user's requests reach one backend (and its prefix cache).</summary>
    Session,

    /// <summary>The backend sent the longest prefix of the prompt; else the least loaded.</summary>
    PrefixAware,

    /// <summary>The lowest load scraped from the backends' <c>/metrics</c>, plus the requests sent since.</summary>
    LeastLoaded,
}

/// <summary>
/// <c>--service-discovery k8s</c>: the backends are the ready pods in <paramref name="Namespace"/> matching
/// <paramref name="LabelSelector"/>, each at <c>http://{podIP}:{Port}/</c>, as production-stack's router finds them.
/// </summary>
/// <param name="Namespace">Null: the router's own pod's namespace, from its service account.</param>
public sealed record KubernetesDiscovery(string? Namespace, string LabelSelector, int Port)
{
    /// <summary>The API server and credentials; null: the in-cluster config. Tests point it at a fake API server.</summary>
    internal KubernetesApiServer? ApiServer { get; init; }
}

/// <summary>The settings of <c>celer router</c>.</summary>
public sealed class RouterOptions
{
    /// <summary>The <c>--backend</c> list; empty with Kubernetes discovery, whose backends come and go with the pods.</summary>
    public required IReadOnlyList<BackendSpec> Backends { get; init; }

    /// <summary>Null: the backends are <see cref="Backends"/> (<c>--service-discovery static</c>).</summary>
    public KubernetesDiscovery? Kubernetes { get; init; }

    public RoutingLogic RoutingLogic { get; init; } = RoutingLogic.RoundRobin;

    /// <summary>The header whose value keys session routing (production-stack's default is <c>x-user-id</c>).</summary>
    public string SessionKey { get; init; } = "x-user-id";

    public string Host { get; init; } = "127.0.0.1";
    public int Port { get; init; } = 8001;
    public TimeSpan HealthCheckInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Time between scrapes of the backends' <c>/metrics</c> (least-loaded and prefix-aware routing); null: the health-check interval.</summary>
    public TimeSpan? MetricsScrapeInterval { get; init; }

    /// <summary>Characters per prefix-trie chunk: production-stack's 128, about 32 tokens or two 16-token KV blocks of English.</summary>
    public int PrefixChunkSize { get; init; } = 128;

    /// <summary>
    /// Chunks the prefix trie keeps, least recently used evicted: 100,000 × 128 characters is about 3M tokens of prompts,
    /// more than a few backends' KV caches hold, in about 40 MB (some 400 bytes a chunk, measured).
    /// </summary>
    public int PrefixMaxChunks { get; init; } = 100_000;

    /// <summary>Consecutive failures (no connection, or a 5xx answer) that open a backend's circuit; 0 turns the breaker off. Envoy's outlier detection also ejects after 5.</summary>
    public int CircuitBreakerThreshold { get; init; } = 5;

    /// <summary>How long an open circuit keeps its backend out before one trial request; Envoy's base ejection time.</summary>
    public TimeSpan CircuitBreakerCooldown { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The sliding window of production-stack's per-backend request stats (<c>vllm:current_qps</c>, <c>vllm:avg_latency</c>):
    /// its <c>--request-stats-window</c>, 60 s by default.
    /// </summary>
    public TimeSpan RequestStatsWindow { get; init; } = TimeSpan.FromSeconds(60);

    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    /// <summary>The clock circuit-breaker cooldowns and the request stats' window are timed on (a test's own moves only when told).</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>
    /// Client requests being forwarded (body read, sent, or answer being copied back; a stream until its end) beyond
    /// which new ones get 503 with <c>Retry-After</c> (<see cref="PendingRequestLimit"/>). The server's flag bounds the
    /// sequences one engine holds (1024 by default); the router holds per request one client connection, one backend
    /// connection, the body and a 16 KB copy buffer whatever its <c>n</c>, so it counts requests. 4096 is four servers'
    /// default queues, past which a router in front of a few backends would mostly pass on their 503s, while 4096 backend
    /// connections stay far below loopback's ~28,000 ephemeral ports per backend and 4096 copy buffers take 64 MB. A
    /// router in front of many backends should raise it to about 1024 per backend.
    /// </summary>
    public int MaxPendingRequests { get; init; } = 4096;

    /// <summary>Largest request body read (the router reads it whole to find the model); Kestrel's default.</summary>
    public long MaxRequestBodyBytes { get; init; } = 30_000_000;

    /// <summary>Whether the routing logic reads the backends' load, so their <c>/metrics</c> must be scraped.</summary>
    public bool ScrapesLoad => RoutingLogic is RoutingLogic.LeastLoaded or RoutingLogic.PrefixAware;

    /// <summary>The longest interval a <see cref="PeriodicTimer"/> takes (2^32 − 2 ms, some 49.7 days).</summary>
    private static readonly TimeSpan MaxInterval = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    /// <exception cref="ArgumentException">A setting is out of range; the message names its flag.</exception>
    public void Validate()
    {
        if (Kubernetes is null && Backends.Count == 0)
            throw new ArgumentException("--backend: at least one is required with --service-discovery static.");
        if (Kubernetes is { } k8s)
        {
            if (Backends.Count > 0)
                throw new ArgumentException("--backend: not taken with --service-discovery k8s, whose backends are the pods.");
            // An empty selector would make every pod of the namespace a backend, the router's own included.
            if (string.IsNullOrWhiteSpace(k8s.LabelSelector))
                throw new ArgumentException("--k8s-label-selector: required with --service-discovery k8s (which pods are backends, e.g. app=celer).");
            if (k8s.Namespace is { } ns && string.IsNullOrWhiteSpace(ns))
                throw new ArgumentException("--k8s-namespace: must not be empty.");
            if (k8s.Port is < 1 or > 65535)
                throw new ArgumentException($"--k8s-port {k8s.Port}: must be a port number, 1 to 65535.");
        }
        CheckInterval("--health-check-interval", HealthCheckInterval);
        if (MetricsScrapeInterval is { } scrape)
            CheckInterval("--metrics-scrape-interval", scrape);
        CheckInterval("--request-stats-window", RequestStatsWindow);
        if (PrefixChunkSize < 1)
            throw new ArgumentException($"--prefix-chunk-size {PrefixChunkSize}: must be at least 1 character.");
        if (PrefixMaxChunks < 1)
            throw new ArgumentException($"--prefix-max-chunks {PrefixMaxChunks}: must be at least 1.");
        if (CircuitBreakerThreshold < 0)
            throw new ArgumentException($"--circuit-breaker-threshold {CircuitBreakerThreshold}: must be 0 (off) or more.");
        if (MaxPendingRequests < 1)
            throw new ArgumentException($"--max-pending-requests {MaxPendingRequests}: must be at least 1.");
        if (!(CircuitBreakerCooldown > TimeSpan.Zero))
            throw new ArgumentException($"--circuit-breaker-cooldown {CircuitBreakerCooldown.TotalSeconds}: must be a positive number of seconds.");
    }

    private static void CheckInterval(string flag, TimeSpan interval)
    {
        if (!(interval > TimeSpan.Zero && interval <= MaxInterval))
            throw new ArgumentException($"{flag} {interval.TotalSeconds}: must be a positive number of seconds, at most {MaxInterval.TotalSeconds}.");
    }
}
