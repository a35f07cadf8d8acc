using System.Text.Json.Serialization;

namespace Celer.Server.Protocol;

/// <summary>One entry of <c>GET /v1/models</c>, with vLLM's extra <c>root</c> and <c>max_model_len</c>.</summary>
public sealed record ModelCard(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("owned_by")] string OwnedBy,
    [property: JsonPropertyName("root")] string Root,
    [property: JsonPropertyName("parent")] string? Parent,
    [property: JsonPropertyName("max_model_len")] int MaxModelLen)
{
    [JsonPropertyName("object")] public string Object => "model";
}

public sealed record ModelList([property: JsonPropertyName("data")] IReadOnlyList<ModelCard> Data)
{
    [JsonPropertyName("object")] public string Object => "list";
}

public sealed record VersionResponse([property: JsonPropertyName("version")] string Version);
