using System.Text.Json.Nodes;

namespace Celer.Router;

/// <summary>
/// One upstream server. Its model cards and health are replaced whole by the health checker (and health is cleared
/// by a failed forward), so readers on request threads never see a half-updated backend.
/// </summary>
public sealed class Backend(BackendSpec spec)
{
    private volatile bool _healthy;
    private volatile IReadOnlyList<JsonObject> _modelCards = spec.Model is null ? [] : [ConfiguredCard(spec.Model)];

    public Uri Url { get; } = spec.Url;

    /// <summary>The model named on the command line; null when it is discovered from <c>/v1/models</c>.</summary>
    public string? ConfiguredModel { get; } = spec.Model;

    public bool IsHealthy { get => _healthy; internal set => _healthy = value; }

    /// <summary>The backend's <c>/v1/models</c> entries (or one made up for a configured name).</summary>
    public IReadOnlyList<JsonObject> ModelCards { get => _modelCards; internal set => _modelCards = value; }

    public bool Serves(string model) => ModelCards.Any(card => (string?)card["id"] == model);

    public override string ToString() => Url.ToString();

    private static JsonObject ConfiguredCard(string model) => new()
    {
        ["id"] = model,
        ["object"] = "model",
        ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
        ["owned_by"] = "celer",
    };
}
