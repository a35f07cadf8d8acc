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
}

/// <summary>The settings of <c>celer router</c>.</summary>
public sealed class RouterOptions
{
    public required IReadOnlyList<BackendSpec> Backends { get; init; }
    public RoutingLogic RoutingLogic { get; init; } = RoutingLogic.RoundRobin;

    /// <summary>The header whose value keys session routing (production-stack's default is <c>x-user-id</c>).</summary>
    public string SessionKey { get; init; } = "x-user-id";

    public string Host { get; init; } = "127.0.0.1";
    public int Port { get; init; } = 8001;
    public TimeSpan HealthCheckInterval { get; init; } = TimeSpan.FromSeconds(10);
    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    /// <summary>Largest request body read (the router reads it whole to find the model); Kestrel's default.</summary>
    public long MaxRequestBodyBytes { get; init; } = 30_000_000;
}
