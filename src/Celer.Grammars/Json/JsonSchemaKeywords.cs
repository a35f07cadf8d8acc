using System.Collections.Frozen;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Celer.Grammars.Json;

/// <summary>
/// Which JSON Schema keywords the compiler understands, which it refuses, and the shape each keyword's value must
/// have. Keywords in neither list (title, description, default, examples, $comment, $defs, vendor extensions…) are
/// ignored, as validators ignore them: they never constrain a value.
/// </summary>
internal static class JsonSchemaKeywords
{
    /// <summary>Keywords that constrain a value in ways a grammar here cannot follow exactly: refused by name.</summary>
    public static FrozenSet<string> Refused { get; } = new[]
    {
        "not", "if", "then", "else", "patternProperties", "propertyNames", "dependentRequired", "dependentSchemas",
        "dependencies", "unevaluatedProperties", "unevaluatedItems", "contains", "minContains", "maxContains",
        "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor",
    }.ToFrozenSet(StringComparer.Ordinal);

    public static FrozenSet<string> StringKeywords { get; } = new[] { "minLength", "maxLength", "pattern", "format" }.ToFrozenSet(StringComparer.Ordinal);

    public static FrozenSet<string> NumberKeywords { get; } = new[] { "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf" }.ToFrozenSet(StringComparer.Ordinal);

    public static FrozenSet<string> ObjectKeywords { get; } = new[] { "properties", "required", "additionalProperties", "minProperties", "maxProperties" }.ToFrozenSet(StringComparer.Ordinal);

    public static FrozenSet<string> ArrayKeywords { get; } = new[] { "items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems" }.ToFrozenSet(StringComparer.Ordinal);

    /// <summary>Keywords that constrain a value besides <c>$ref</c>: with one of these next to it, a <c>$ref</c> is
    /// one part of an allOf (JSON Schema 2020-12) rather than the whole schema.</summary>
    public static bool IsConstraint(string keyword) =>
        keyword is "type" or "enum" or "const" or "allOf" or "anyOf" or "oneOf" or "$ref" || StringKeywords.Contains(keyword)
        || NumberKeywords.Contains(keyword) || ObjectKeywords.Contains(keyword) || ArrayKeywords.Contains(keyword) || Refused.Contains(keyword);

    public static readonly string[] TypeNames = ["null", "boolean", "integer", "number", "string", "array", "object"];

    /// <summary>The error for <paramref name="keyword"/> at <paramref name="path"/>; <paramref name="problem"/> ends the sentence.</summary>
    public static GrammarException Error(string keyword, string path, string problem) =>
        new($"JSON schema keyword '{keyword}' at {JsonSchemaPointer.Show(path)} {problem}");

    public static GrammarException NotASchema(string path) => new($"The JSON schema at {JsonSchemaPointer.Show(path)} must be an object or a boolean.");

    /// <summary>Refuses a schema object with a refused keyword or a keyword whose value has the wrong shape.</summary>
    public static void Check(JsonObject schema, string path)
    {
        foreach (var (keyword, value) in schema)
        {
            if (Refused.Contains(keyword))
            {
                throw Error(keyword, path, "is not supported");
            }

            string? problem = keyword switch
            {
                "type" => TypeProblem(value),
                "enum" or "required" or "prefixItems" => value is JsonArray ? null : "must be an array",
                "allOf" or "anyOf" or "oneOf" => value is JsonArray { Count: > 0 } ? null : "must be a non-empty array",
                "properties" => value is JsonObject ? null : "must be an object",
                "additionalProperties" or "additionalItems" => IsSchema(value) ? null : "must be a schema (an object or a boolean)",
                "items" => IsSchema(value) || value is JsonArray ? null : "must be a schema (an object or a boolean)",
                "$ref" or "pattern" or "format" => Kind(value) == JsonValueKind.String ? null : "must be a string",
                "uniqueItems" => Kind(value) is JsonValueKind.True or JsonValueKind.False ? null : "must be a boolean",
                "minLength" or "maxLength" or "minItems" or "maxItems" or "minProperties" or "maxProperties" =>
                    Count(value) is null ? "must be a non-negative integer" : null,
                "minimum" or "maximum" or "exclusiveMinimum" or "exclusiveMaximum" => Kind(value) switch
                {
                    JsonValueKind.True or JsonValueKind.False => "in its draft-04 boolean form is not supported",
                    _ => NumberProblem(value),
                },
                "multipleOf" => NumberProblem(value) ?? (Number(value) is { Sign: > 0 } ? null : "must be above zero"),
                _ => null,
            };

            if (problem is not null)
            {
                throw Error(keyword, path, problem);
            }
        }

        if (schema["required"] is JsonArray required && required.Any(r => Kind(r) != JsonValueKind.String))
        {
            throw Error("required", path, "must be an array of strings");
        }
    }

    public static bool IsSchema(JsonNode? node) => node is JsonObject || Kind(node) is JsonValueKind.True or JsonValueKind.False;

    public static JsonValueKind Kind(JsonNode? node) => node?.GetValueKind() ?? JsonValueKind.Null;

    /// <summary>The exact value of a JSON number; null for anything else (or a number too long to use as a bound).</summary>
    public static JsonDecimal? Number(JsonNode? node) => Kind(node) == JsonValueKind.Number ? JsonDecimal.Parse(node!.ToJsonString()) : null;

    /// <summary>A non-negative integer such as a length bound, capped at int.MaxValue; null when it is not one.</summary>
    public static int? Count(JsonNode? node) =>
        Number(node) is { IsInteger: true, Sign: >= 0 } n ? n.Floor() > int.MaxValue ? int.MaxValue : (int)n.Floor() : null;

    /// <summary>The values a schema lists (<c>const</c>, <c>enum</c>, or those in both); null when it lists none.</summary>
    public static List<JsonNode?>? ListedValues(JsonObject schema)
    {
        List<JsonNode?>? values = schema.TryGetPropertyValue("const", out var c) ? [c] : null;
        if (schema["enum"] is JsonArray e)
        {
            values = values is null ? [.. e] : [.. values.Where(v => e.Any(x => SameValue(v, x)))];
        }

        return values;
    }

    /// <summary>JSON equality as validators define it: numbers by value (1 = 1.0), objects regardless of key order.</summary>
    public static bool SameValue(JsonNode? a, JsonNode? b) => (Kind(a), Kind(b)) switch
    {
        (JsonValueKind.Number, JsonValueKind.Number) => Number(a) is { } x && Number(b) is { } y ? x.CompareTo(y) == 0 : JsonNode.DeepEquals(a, b),
        (JsonValueKind.Array, JsonValueKind.Array) => a!.AsArray().Count == b!.AsArray().Count && a.AsArray().Zip(b.AsArray()).All(p => SameValue(p.First, p.Second)),
        (JsonValueKind.Object, JsonValueKind.Object) => a!.AsObject().Count == b!.AsObject().Count
            && a.AsObject().All(p => b.AsObject().TryGetPropertyValue(p.Key, out var v) && SameValue(p.Value, v)),
        _ => JsonNode.DeepEquals(a, b),
    };

    private static string? NumberProblem(JsonNode? value) => Kind(value) != JsonValueKind.Number ? "must be a number"
        : Number(value) is null ? $"has more than {JsonDecimal.MaxDigits} digits before or after the point, which is not supported"
        : null;

    private static string? TypeProblem(JsonNode? value)
    {
        var names = value is JsonArray a ? a.ToList() : [value];
        return names.Count > 0 && names.All(n => Kind(n) == JsonValueKind.String && TypeNames.Contains(n!.GetValue<string>()))
            ? null
            : $"must be one of {string.Join(", ", TypeNames)} or a non-empty array of them";
    }
}
