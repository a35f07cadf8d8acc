using System.Text.Json.Serialization;

namespace Celer.Server.Protocol;

/// <summary>
/// One entry of <c>GET /v1/models</c>, with vLLM's extra <c>root</c>, <c>max_model_len</c> and <c>permission</c>. Like
/// vLLM's ModelCard it says nothing of the model's task: a client learns that an endpoint is refused from its 400.
/// </summary>
public sealed record ModelCard(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("owned_by")] string OwnedBy,
    [property: JsonPropertyName("root")] string Root,
    [property: JsonPropertyName("parent")] string? Parent,
    [property: JsonPropertyName("max_model_len")] int MaxModelLen)
{
    [JsonPropertyName("object")] public string Object => "model";

    /// <summary>Whether the model sleeps (<c>/sleep</c>); only for a model served with <c>--enable-sleep-mode</c>.</summary>
    [JsonPropertyName("is_sleeping")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public bool? IsSleeping { get; init; }

    /// <summary>vLLM's one default permission entry, which clients written against OpenAI's older API read.</summary>
    [JsonPropertyName("permission")] public IReadOnlyList<ModelPermission> Permission { get; } = [new ModelPermission(Created)];
}

/// <summary>vLLM's <c>ModelPermission</c> with its default values (OpenAI's retired permission object).</summary>
public sealed record ModelPermission([property: JsonPropertyName("created")] long Created)
{
    [JsonPropertyName("id")] public string Id { get; } = "modelperm-" + Guid.NewGuid().ToString("N");
    [JsonPropertyName("object")] public string Object => "model_permission";
    [JsonPropertyName("allow_create_engine")] public bool AllowCreateEngine => false;
    [JsonPropertyName("allow_sampling")] public bool AllowSampling => true;
    [JsonPropertyName("allow_logprobs")] public bool AllowLogprobs => true;
    [JsonPropertyName("allow_search_indices")] public bool AllowSearchIndices => false;
    [JsonPropertyName("allow_view")] public bool AllowView => true;
    [JsonPropertyName("allow_fine_tuning")] public bool AllowFineTuning => false;
    [JsonPropertyName("organization")] public string Organization => "*";
    [JsonPropertyName("group")] public string? Group => null;
    [JsonPropertyName("is_blocking")] public bool IsBlocking => false;
}

public sealed record ModelList([property: JsonPropertyName("data")] IReadOnlyList<ModelCard> Data)
{
    [JsonPropertyName("object")] public string Object => "list";
}

public sealed record VersionResponse([property: JsonPropertyName("version")] string Version);

/// <summary>vLLM's <c>GET /is_sleeping</c> answer.</summary>
public sealed record IsSleepingResponse([property: JsonPropertyName("is_sleeping")] bool IsSleeping);
