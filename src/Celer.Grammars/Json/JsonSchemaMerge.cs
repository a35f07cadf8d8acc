using System.Text.Json;
using System.Text.Json.Nodes;

namespace Celer.Grammars.Json;

/// <summary>
/// Folds an <c>allOf</c> (and a <c>$ref</c> or <c>anyOf</c>/<c>oneOf</c> with constraints beside it, which JSON Schema
/// 2020-12 reads as an allOf) into one schema that accepts exactly the values every part accepts, or refuses. Bounds
/// take the tighter side, types and enums intersect, required names unite; a property is allowed only where every part
/// allows it (by <c>properties</c> or <c>additionalProperties</c>) and its value then meets all their schemas. A single
/// anyOf/oneOf among the parts is distributed: allOf(A, anyOf(B, C)) = anyOf(allOf(A, B), allOf(A, C)). Two different
/// patterns, formats or multipleOfs, several anyOf/oneOf, and prefixItems on both sides are refused.
/// </summary>
internal sealed class JsonSchemaMerge(JsonNode document)
{
    // allOf inside allOf through $refs: deeper than this is a $ref cycle through allOf, which has no finite merge.
    private const int MaxDepth = 32;

    /// <summary>Whether a schema object is an allOf in effect: it has one, or a $ref, anyOf or oneOf with other
    /// constraints beside it.</summary>
    public static bool IsConjunction(JsonObject schema)
    {
        bool combined = schema.ContainsKey("$ref") || schema.ContainsKey("anyOf") || schema.ContainsKey("oneOf");
        return schema.ContainsKey("allOf") || combined && schema.Count(p => JsonSchemaKeywords.IsConstraint(p.Key)) > 1;
    }

    /// <summary>The merge of <paramref name="parts"/>: a schema object, or <c>false</c> when they contradict.</summary>
    public JsonNode Merge(IEnumerable<JsonNode?> parts, string path) => Merge(parts, path, 0);

    private JsonNode Merge(IEnumerable<JsonNode?> parts, string path, int depth)
    {
        var flat = new List<JsonObject>();
        foreach (var part in parts)
        {
            if (!Flatten(part, path, flat, depth, path))
            {
                return JsonValue.Create(false);
            }
        }

        var unions = flat.SelectMany(p => ((string[])["anyOf", "oneOf"]).Where(p.ContainsKey).Select(k => (Part: p, Keyword: k))).ToList();
        if (unions.Count > 1)
        {
            throw JsonSchemaKeywords.Error(unions[1].Keyword, path, $"together with another {unions[0].Keyword} is not supported (each would have to be distributed over the other)");
        }

        if (unions.Count == 1)
        {
            var (union, keyword) = unions[0];
            var rest = flat.Where(p => p != union).Append(Without(union, keyword)).ToList();
            var branches = new JsonArray();
            foreach (var branch in union[keyword]!.AsArray())
            {
                var merged = Merge(rest.Append(branch), path, depth + 1);
                if (merged is JsonObject)
                {
                    branches.Add(merged);
                }
            }

            return branches.Count == 0 ? JsonValue.Create(false) : new JsonObject { [keyword] = branches };
        }

        JsonNode result = new JsonObject();
        foreach (var part in flat)
        {
            result = MergeTwo(result.AsObject(), part, path);
            if (result is not JsonObject)
            {
                return result;
            }
        }

        return result;
    }

    // Adds the parts `node` (at `path`) stands for, following allOf and $ref; false when one of them accepts nothing.
    // `origin` is the schema whose allOf is being merged, where a $ref cycle is reported.
    private bool Flatten(JsonNode? node, string path, List<JsonObject> flat, int depth, string origin)
    {
        if (depth > MaxDepth)
        {
            throw JsonSchemaKeywords.Error("allOf", origin, "nests too deeply: a $ref cycle through allOf cannot be merged");
        }

        switch (JsonSchemaKeywords.Kind(node))
        {
            case JsonValueKind.True:
                return true;
            case JsonValueKind.False:
                return false;
            case JsonValueKind.Object:
                break;
            default:
                throw JsonSchemaKeywords.NotASchema(path);
        }

        // The referenced and allOf parts come before the keywords beside them, so a base schema's properties are
        // written before those an extension adds.
        var schema = node!.AsObject();
        JsonSchemaKeywords.Check(schema, path);
        if (path.Length > 0 && schema.ContainsKey("$id") && schema.ToJsonString().Contains("\"$ref\"", StringComparison.Ordinal))
        {
            throw JsonSchemaKeywords.Error("$ref", path, "inside a subschema with its own $id is not supported (the $id changes what the reference means)");
        }

        if (schema["$ref"] is { } reference)
        {
            string text = reference.GetValue<string>();
            string pointer = JsonSchemaPointer.FromReference(document, text) ?? throw JsonSchemaKeywords.Error("$ref", path, $"'{text}' is not supported: only references within the schema (#/...) are");
            if (!JsonSchemaPointer.TryResolve(document, pointer, out var target))
            {
                throw JsonSchemaKeywords.Error("$ref", path, $"'{text}' points to nothing");
            }

            if (!Flatten(target, pointer, flat, depth + 1, origin))
            {
                return false;
            }
        }

        if (schema["allOf"] is JsonArray all)
        {
            for (int i = 0; i < all.Count; i++)
            {
                if (!Flatten(all[i], JsonSchemaPointer.Append(JsonSchemaPointer.Append(path, "allOf"), i), flat, depth + 1, origin))
                {
                    return false;
                }
            }
        }

        flat.Add(Without(schema, "allOf", "$ref"));
        return true;
    }

    // The schema both objects describe, or false.
    private static JsonNode MergeTwo(JsonObject a, JsonObject b, string path)
    {
        a = DraftSevenItems(a);
        b = DraftSevenItems(b);
        var result = new JsonObject();
        foreach (string keyword in a.Select(p => p.Key).Concat(b.Select(p => p.Key)).Distinct(StringComparer.Ordinal).ToList())
        {
            bool inA = a.TryGetPropertyValue(keyword, out var va), inB = b.TryGetPropertyValue(keyword, out var vb);
            // Properties and items are merged together below; additionalItems means nothing without a draft-07 tuple.
            if (keyword is "properties" or "additionalProperties" or "items" or "prefixItems" or "additionalItems" || !JsonSchemaKeywords.IsConstraint(keyword))
            {
                continue;
            }

            if (!inA || !inB)
            {
                result[keyword] = (inA ? va : vb)?.DeepClone();
                continue;
            }

            JsonNode? merged = keyword switch
            {
                "type" => Types(va!, vb!),
                "minimum" or "exclusiveMinimum" => Pick(va!, vb!, larger: true),
                "maximum" or "exclusiveMaximum" => Pick(va!, vb!, larger: false),
                "minLength" or "minItems" or "minProperties" => Pick(va!, vb!, larger: true),
                "maxLength" or "maxItems" or "maxProperties" => Pick(va!, vb!, larger: false),
                "required" => new JsonArray([.. va!.AsArray().Concat(vb!.AsArray()).Select(n => n!.GetValue<string>()).Distinct(StringComparer.Ordinal).Select(n => (JsonNode)n)]),
                "uniqueItems" => JsonValue.Create(va!.GetValue<bool>() || vb!.GetValue<bool>()),
                _ when JsonNode.DeepEquals(va, vb) => va!.DeepClone(),
                "enum" or "const" => null,
                _ => throw JsonSchemaKeywords.Error(keyword, path, "appears with two different values under allOf, which is not supported"),
            };

            if (merged is not null)
            {
                result[keyword] = merged;
            }
        }

        if (JsonSchemaKeywords.ListedValues(a) is { } valuesA && JsonSchemaKeywords.ListedValues(b) is { } valuesB)
        {
            // Both parts list their values: only the values in both remain.
            result.Remove("const");
            result["enum"] = new JsonArray([.. valuesA.Where(x => valuesB.Any(y => JsonSchemaKeywords.SameValue(x, y))).Select(x => x?.DeepClone())]);
        }

        if (result["type"] is JsonArray { Count: 0 } || result["enum"] is JsonArray { Count: 0 })
        {
            return JsonValue.Create(false);
        }

        MergeProperties(a, b, result);
        MergeItems(a, b, result, path);
        return result;
    }

    // A property is allowed where both parts allow it, with both parts' schemas for its value.
    private static void MergeProperties(JsonObject a, JsonObject b, JsonObject result)
    {
        if (!a.ContainsKey("properties") && !b.ContainsKey("properties") && !a.ContainsKey("additionalProperties") && !b.ContainsKey("additionalProperties"))
        {
            return;
        }

        var names = Names(a).Concat(Names(b)).Distinct(StringComparer.Ordinal).ToList();
        if (names.Count > 0)
        {
            var properties = new JsonObject();
            foreach (string name in names)
            {
                properties[name] = Both(ValueSchema(a, name), ValueSchema(b, name));
            }

            result["properties"] = properties;
        }

        if (a.ContainsKey("additionalProperties") || b.ContainsKey("additionalProperties"))
        {
            result["additionalProperties"] = Both(a["additionalProperties"] ?? JsonValue.Create(true), b["additionalProperties"] ?? JsonValue.Create(true));
        }

        static IEnumerable<string> Names(JsonObject o) => o["properties"] is JsonObject p ? p.Select(x => x.Key) : [];

        // Absent additionalProperties allows anything.
        static JsonNode? ValueSchema(JsonObject o, string name) =>
            o["properties"] is JsonObject p && p.TryGetPropertyValue(name, out var s) ? s : o["additionalProperties"] ?? JsonValue.Create(true);
    }

    // Item i must meet both parts' schema for position i: their prefixItems there, else their items.
    private static void MergeItems(JsonObject a, JsonObject b, JsonObject result, string path)
    {
        bool inA = a.ContainsKey("prefixItems"), inB = b.ContainsKey("prefixItems");
        if (inA && inB && !JsonNode.DeepEquals(a["prefixItems"], b["prefixItems"]))
        {
            throw JsonSchemaKeywords.Error("prefixItems", path, "appears in two parts of an allOf, which is not supported");
        }

        if (inA && inB)
        {
            result["prefixItems"] = a["prefixItems"]!.DeepClone();
        }
        else if (inA || inB)
        {
            var (prefixed, other) = inA ? (a, b) : (b, a);
            var otherItems = other["items"] ?? JsonValue.Create(true);
            result["prefixItems"] = new JsonArray([.. prefixed["prefixItems"]!.AsArray().Select(p => Both(p, otherItems))]);
        }

        // Beyond a tuple, absent items allows anything; without a tuple, absent items stays absent.
        if (a.ContainsKey("items") || b.ContainsKey("items"))
        {
            result["items"] = Both(a["items"] ?? (inA ? JsonValue.Create(true) : null), b["items"] ?? (inB ? JsonValue.Create(true) : null));
        }
    }

    // A schema meeting both (null: absent on that side).
    private static JsonNode? Both(JsonNode? a, JsonNode? b)
    {
        if (a is null || IsTrue(a))
        {
            return b?.DeepClone() ?? a?.DeepClone();
        }

        if (b is null || IsTrue(b))
        {
            return a.DeepClone();
        }

        if (IsFalse(a) || IsFalse(b))
        {
            return JsonValue.Create(false);
        }

        return JsonNode.DeepEquals(a, b) ? a.DeepClone() : new JsonObject { ["allOf"] = new JsonArray(a.DeepClone(), b.DeepClone()) };
    }

    private static bool IsTrue(JsonNode node) => JsonSchemaKeywords.Kind(node) == JsonValueKind.True || node is JsonObject { Count: 0 };

    private static bool IsFalse(JsonNode node) => JsonSchemaKeywords.Kind(node) == JsonValueKind.False;

    private static JsonArray Types(JsonNode a, JsonNode b)
    {
        var left = TypeSet(a);
        var right = TypeSet(b);
        var common = left.Where(right.Contains).ToList();
        // An integer is a number: integer ∩ number is integer.
        if (left.Contains("integer") && right.Contains("number") || left.Contains("number") && right.Contains("integer"))
        {
            common.Add("integer");
        }

        return new JsonArray([.. common.Distinct(StringComparer.Ordinal).Select(t => (JsonNode)t)]);

        static List<string> TypeSet(JsonNode t) => t is JsonArray array ? [.. array.Select(x => x!.GetValue<string>())] : [t.GetValue<string>()];
    }

    private static JsonNode Pick(JsonNode a, JsonNode b, bool larger)
    {
        bool aWins = JsonSchemaKeywords.Number(a)!.Value.CompareTo(JsonSchemaKeywords.Number(b)!.Value) > 0 == larger;
        return (aWins ? a : b).DeepClone();
    }

    // Draft-07 tuples (items as an array, additionalItems for the rest) in 2020-12 form.
    public static JsonObject DraftSevenItems(JsonObject schema)
    {
        if (schema["items"] is not JsonArray tuple)
        {
            return schema;
        }

        var copy = Without(schema, "items", "additionalItems");
        copy["prefixItems"] = tuple.DeepClone();
        if (schema.TryGetPropertyValue("additionalItems", out var rest))
        {
            copy["items"] = rest?.DeepClone();
        }

        return copy;
    }

    private static JsonObject Without(JsonObject schema, params string[] keywords)
    {
        var copy = new JsonObject();
        foreach (var (keyword, value) in schema)
        {
            if (!keywords.Contains(keyword))
            {
                copy[keyword] = value?.DeepClone();
            }
        }

        return copy;
    }
}
