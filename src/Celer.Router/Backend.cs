using System.Collections.Frozen;
using System.Text.Json.Nodes;

namespace Celer.Router;

/// <summary>
/// One upstream server. Its model cards and health are replaced whole by the health checker (and health is cleared
/// by a failed forward), so readers on request threads never see a half-updated backend. Its circuit breaker, load and
/// request stats are updated by the requests sent to it (and the load by scrapes of its <c>/metrics</c>).
/// </summary>
public sealed class Backend(BackendSpec spec, CircuitBreaker breaker, RequestStats stats)
{
    private volatile bool _healthy;
    private volatile ServedModels _models = new(spec.Model is null ? [] : [ConfiguredCard(spec.Model)]);

    public Uri Url { get; } = spec.Url;

    /// <summary>The model named on the command line; null when it is discovered from <c>/v1/models</c>.</summary>
    public string? ConfiguredModel { get; } = spec.Model;

    public bool IsHealthy { get => _healthy; internal set => _healthy = value; }

    public CircuitBreaker Breaker { get; } = breaker;

    public BackendLoad Load { get; } = new();

    /// <summary>Its requests over the last window, for production-stack's series of the router's <c>/metrics</c>.</summary>
    public RequestStats Stats { get; } = stats;

    /// <summary>The backend's <c>/v1/models</c> entries (or one made up for a configured name).</summary>
    public IReadOnlyList<JsonObject> ModelCards { get => _models.Cards; internal set => _models = new ServedModels(value); }

    /// <summary>Whether it serves <paramref name="model"/>; asked by every request and by the load scraper at once.</summary>
    public bool Serves(string model) => _models.Ids.Contains(model);

    public override string ToString() => Url.ToString();

    /// <summary>
    /// The cards and their ids, swapped in together. The ids are read once, by the thread that sets the cards: a parsed
    /// <see cref="JsonObject"/> builds its properties on first access, and System.Text.Json promises nothing about
    /// concurrent readers of one node.
    /// </summary>
    private sealed class ServedModels(IReadOnlyList<JsonObject> cards)
    {
        public IReadOnlyList<JsonObject> Cards { get; } = cards;
        public FrozenSet<string> Ids { get; } = cards.Select(card => (string?)card["id"]).OfType<string>().ToFrozenSet(StringComparer.Ordinal);
    }

    private static JsonObject ConfiguredCard(string model) => new()
    {
        ["id"] = model,
        ["object"] = "model",
        ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
        ["owned_by"] = "celer",
    };
}
