using System.Text.Json;

namespace Celer.Tokenization;

/// <summary>
/// Typed accessors over the JSON of tokenizer.json / tokenizer_config.json. Every accessor
/// throws <see cref="TokenizerLoadException"/> naming the JSON path, so a malformed file never
/// surfaces as a NullReference or InvalidOperation deep inside the pipeline.
/// </summary>
internal static class TokenizerJson
{
    public static JsonDocument Parse(string json, string what)
    {
        try
        {
            return JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new TokenizerLoadException($"{what} is not valid JSON: {e.Message}", e);
        }
    }

    public static JsonElement Object(JsonElement element, string path)
    {
        if (element.ValueKind != JsonValueKind.Object)
            throw new TokenizerLoadException($"'{path}' must be a JSON object, found {element.ValueKind}.");
        return element;
    }

    /// <summary>The property, or null when it is absent or JSON null.</summary>
    public static JsonElement? Optional(JsonElement obj, string name)
    {
        if (obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null)
            return value;
        return null;
    }

    public static JsonElement Required(JsonElement obj, string name, string path) =>
        Optional(obj, name) ?? throw new TokenizerLoadException($"'{path}.{name}' is missing.");

    public static string String(JsonElement obj, string name, string path) =>
        AsString(Required(obj, name, path), $"{path}.{name}");

    public static string? OptionalString(JsonElement obj, string name, string path) =>
        Optional(obj, name) is { } v ? AsString(v, $"{path}.{name}") : null;

    public static string AsString(JsonElement value, string path) =>
        value.ValueKind == JsonValueKind.String
            ? value.GetString()!
            : throw new TokenizerLoadException($"'{path}' must be a string, found {value.ValueKind}.");

    public static bool Bool(JsonElement obj, string name, string path, bool defaultValue)
    {
        if (Optional(obj, name) is not { } v) return defaultValue;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new TokenizerLoadException($"'{path}.{name}' must be true or false, found {v.ValueKind}."),
        };
    }

    public static int Int(JsonElement obj, string name, string path, int defaultValue) =>
        Optional(obj, name) is { } v ? AsInt(v, $"{path}.{name}") : defaultValue;

    public static int AsInt(JsonElement value, string path) =>
        value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var i)
            ? i
            : throw new TokenizerLoadException($"'{path}' must be a 32-bit integer, found {Describe(value)}.");

    public static JsonElement Array(JsonElement obj, string name, string path)
    {
        var v = Required(obj, name, path);
        if (v.ValueKind != JsonValueKind.Array)
            throw new TokenizerLoadException($"'{path}.{name}' must be an array, found {v.ValueKind}.");
        return v;
    }

    /// <summary>The "type" tag that HF uses to pick a component's implementation.</summary>
    public static string Type(JsonElement obj, string path) => String(Object(obj, path), "type", path);

    private static string Describe(JsonElement value) =>
        value.ValueKind == JsonValueKind.Number ? value.GetRawText() : value.ValueKind.ToString();
}
