using System.Text.Json;
using System.Text.Json.Nodes;

namespace Celer.Grammars.Json;

/// <summary>
/// Proofs that two schemas share no value, so that a <c>oneOf</c> can be a plain choice: a value the grammar produces
/// matches one branch, and must then match no other. The proofs follow what validators do, not what the grammar
/// emits (a branch without <c>additionalProperties</c> still accepts extra keys there): disjoint types, disjoint
/// listed values, or, for objects, a required property whose schemas are disjoint (a discriminator such as
/// <c>"kind": {"const": "cat"}</c>) or that the other branch forbids. XGrammar proves oneOf the same way.
/// </summary>
internal sealed class JsonSchemaDisjointness(Func<JsonNode?, JsonNode?> normalize)
{
    // Property schemas nest; a proof deeper than this is not worth the search.
    private const int MaxDepth = 8;

    [Flags]
    private enum JsonType
    {
        None = 0,
        Null = 1,
        Boolean = 2,
        Number = 4,
        String = 8,
        Array = 16,
        Object = 32,
        All = 63,
    }

    public bool Disjoint(JsonNode? a, JsonNode? b) => Disjoint(a, b, 0);

    private bool Disjoint(JsonNode? a, JsonNode? b, int depth)
    {
        a = normalize(a);
        b = normalize(b);
        if (IsFalse(a) || IsFalse(b))
        {
            return true;
        }

        if (depth > MaxDepth || a is not JsonObject x || b is not JsonObject y)
        {
            return false;
        }

        var common = Types(x, depth) & Types(y, depth);
        if (common == JsonType.None)
        {
            return true;
        }

        if (JsonSchemaKeywords.ListedValues(x) is { } vx && vx.All(v => Excludes(y, v)) || JsonSchemaKeywords.ListedValues(y) is { } vy && vy.All(v => Excludes(x, v)))
        {
            return true;
        }

        // Only objects can meet both: a required property they cannot agree on separates them.
        return common == JsonType.Object && (Required(x).Any(k => Forbids(y, k) || Required(y).Contains(k) && Disjoint(PropertySchema(x, k), PropertySchema(y, k), depth + 1))
            || Required(y).Any(k => Forbids(x, k)));
    }

    private JsonType Types(JsonObject schema, int depth)
    {
        var types = schema["type"] is { } t ? TypesOf(t) : JsonType.All;
        if (JsonSchemaKeywords.ListedValues(schema) is { } values)
        {
            types &= values.Aggregate(JsonType.None, (set, v) => set | TypeOf(v));
        }

        foreach (string keyword in (string[])["anyOf", "oneOf"])
        {
            if (schema[keyword] is JsonArray branches && depth <= MaxDepth)
            {
                types &= branches.Aggregate(JsonType.None, (set, branch) => set | (normalize(branch) switch
                {
                    JsonObject o => Types(o, depth + 1),
                    var n when IsFalse(n) => JsonType.None,
                    _ => JsonType.All,
                }));
            }
        }

        return types;
    }

    // Whether no value of `schema` equals `value`: by type, or by `schema`'s own list of values.
    private bool Excludes(JsonObject schema, JsonNode? value) =>
        (Types(schema, 0) & TypeOf(value)) == JsonType.None || JsonSchemaKeywords.ListedValues(schema) is { } values && !values.Any(v => JsonSchemaKeywords.SameValue(v, value));

    private bool Forbids(JsonObject schema, string key) => IsFalse(normalize(PropertySchema(schema, key)));

    // Absent additionalProperties allows any value.
    private static JsonNode? PropertySchema(JsonObject schema, string key) =>
        schema["properties"] is JsonObject p && p.TryGetPropertyValue(key, out var s) ? s : schema["additionalProperties"] ?? JsonValue.Create(true);

    private static IEnumerable<string> Required(JsonObject schema) =>
        schema["required"] is JsonArray r ? r.Select(n => n!.GetValue<string>()) : [];


    private static JsonType TypesOf(JsonNode type) => type is JsonArray names
        ? names.Aggregate(JsonType.None, (set, n) => set | TypeNamed(n!.GetValue<string>()))
        : TypeNamed(type.GetValue<string>());

    private static JsonType TypeNamed(string name) => name switch
    {
        "null" => JsonType.Null,
        "boolean" => JsonType.Boolean,
        "integer" or "number" => JsonType.Number,
        "string" => JsonType.String,
        "array" => JsonType.Array,
        _ => JsonType.Object,
    };

    private static JsonType TypeOf(JsonNode? value) => JsonSchemaKeywords.Kind(value) switch
    {
        JsonValueKind.Null => JsonType.Null,
        JsonValueKind.True or JsonValueKind.False => JsonType.Boolean,
        JsonValueKind.Number => JsonType.Number,
        JsonValueKind.String => JsonType.String,
        JsonValueKind.Array => JsonType.Array,
        _ => JsonType.Object,
    };

    private static bool IsFalse(JsonNode? node) => JsonSchemaKeywords.Kind(node) == JsonValueKind.False;
}
