using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Celer.Grammars.Tests;

/// <summary>
/// Random JSON documents from a schema, written without the grammar: mostly valid (required properties, values in
/// range, listed formats), and their mutations (a value of another type, a bound crossed by one, a property dropped,
/// added or moved), which are mostly not. The property they serve: whatever of them the grammar accepts, the
/// validator must accept too. Seeded, so a failure replays.
/// </summary>
internal sealed class JsonSchemaInstances(JsonNode document, int seed)
{
    private const int MaxDepth = 6;

    private static readonly Dictionary<string, string[]> FormatSamples = new()
    {
        ["date"] = ["2024-02-29", "1999-12-31", "2023-02-29", "2023-04-31"],
        ["date-time"] = ["2024-05-01T10:20:30Z", "2024-05-01T10:20:30.25+02:00", "2024-05-01 10:20:30Z"],
        ["time"] = ["12:34:56Z", "23:59:59.5-07:00", "24:00:00Z"],
        ["email"] = ["john.doe@example.com", "a@b.co", "not-an-email"],
        ["uuid"] = ["123e4567-e89b-12d3-a456-426614174000", "123e4567e89b12d3a456426614174000"],
        ["uri"] = ["https://example.com/a/b?x=1#frag", "http://localhost:8080/", "example.com"],
        ["ipv4"] = ["192.168.1.20", "10.0.0.1", "256.1.1.1"],
        ["ipv6"] = ["2001:db8:0:0:0:0:0:1", "fe80:0:0:0:200:f8ff:fe21:67cf"],
        ["hostname"] = ["api.example.com", "localhost", "-bad-.com"],
    };

    private static readonly string[] PatternSamples =
    [
        "abc", "ABC", "abc-123", "a1", "1.2.3", "v1.0.0", "+14155552671", "DE89370400440532013000", "SKU-12345", "en-US",
        "#ff00ff", "hello_world", "x", "my-app", "@scope/my-app", "^1.2.3", "~2.0.0", "192.168.0.1", "AB12CD", "2024-01-01",
        "user_42", "nginx:1.25", "app-7f9c", "US", "EUR", "+1-555-0100", "12345", "a.b.c", "Main St", "",
    ];

    private readonly Random _random = new(seed);
    private readonly Dictionary<string, GrammarSentences> _patterns = [];

    public JsonNode? Generate() => Value(document, 0);

    /// <summary>A copy of <paramref name="value"/> with one random change somewhere inside.</summary>
    public JsonNode? Mutate(JsonNode? value)
    {
        var copy = value?.DeepClone();
        var nodes = new List<(JsonNode? Parent, object Key, JsonNode? Node)> { (null, "", copy) };
        Collect(copy, nodes);
        var (parent, key, node) = nodes[_random.Next(nodes.Count)];
        var replacement = Changed(node);
        if (parent is null)
        {
            return replacement;
        }

        if (parent is JsonObject o && key is string name)
        {
            o[name] = replacement;
        }
        else if (parent is JsonArray a && key is int index)
        {
            a[index] = replacement;
        }

        return copy;
    }

    private static void Collect(JsonNode? node, List<(JsonNode?, object, JsonNode?)> nodes)
    {
        if (node is JsonObject o)
        {
            foreach (var (key, child) in o.ToList())
            {
                nodes.Add((o, key, child));
                Collect(child, nodes);
            }
        }
        else if (node is JsonArray a)
        {
            for (int i = 0; i < a.Count; i++)
            {
                nodes.Add((a, i, a[i]));
                Collect(a[i], nodes);
            }
        }
    }

    private JsonNode? Changed(JsonNode? node)
    {
        switch (node?.GetValueKind())
        {
            case JsonValueKind.Number when _random.Next(3) > 0:
                decimal n = decimal.Parse(node.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture);
                decimal[] deltas = [1, -1, 0.001m, -0.001m, 0.5m];
                return _random.Next(4) == 0 ? JsonValue.Create(n * 10) : _random.Next(3) == 0 ? JsonValue.Create(-n) : JsonValue.Create(n + deltas[_random.Next(deltas.Length)]);
            case JsonValueKind.String when _random.Next(3) > 0:
                string s = node.GetValue<string>();
                return _random.Next(4) switch
                {
                    0 => s + "x",
                    1 when s.Length > 0 => string.Concat(s.EnumerateRunes().SkipLast(1)),
                    2 => s + "😀",
                    _ => s.ToUpperInvariant() + "\"",
                };
            case JsonValueKind.Object when _random.Next(3) > 0:
                var o = node.AsObject().DeepClone().AsObject();
                var keys = o.Select(p => p.Key).ToList();
                int op = _random.Next(3);
                if (op == 0 && keys.Count > 0)
                {
                    o.Remove(keys[_random.Next(keys.Count)]);
                }
                else if (op == 1 && keys.Count > 1)
                {
                    // Move the first property last.
                    var first = o[keys[0]]?.DeepClone();
                    o.Remove(keys[0]);
                    o[keys[0]] = first;
                }
                else
                {
                    o["unexpected"] = 1;
                }

                return o;
            case JsonValueKind.Array when _random.Next(3) > 0:
                var a = node.AsArray().DeepClone().AsArray();
                if (a.Count > 0 && _random.Next(2) == 0)
                {
                    a.RemoveAt(a.Count - 1);
                }
                else
                {
                    a.Add(a.Count > 0 ? a[0]?.DeepClone() : "x");
                }

                return a;
            default:
                JsonNode?[] others = ["x", 0, -1, 1.5, true, null, new JsonArray(), new JsonObject()];
                return others[_random.Next(others.Length)]?.DeepClone();
        }
    }

    private JsonNode? Value(JsonNode? schema, int depth)
    {
        if (schema?.GetValueKind() is JsonValueKind.True or JsonValueKind.False || schema is JsonObject { Count: 0 })
        {
            return Any(depth);
        }

        var o = schema!.AsObject();
        if (o["$ref"] is { } reference)
        {
            return depth > MaxDepth * 2 ? null : Value(Resolve(reference.GetValue<string>()), depth + 1);
        }

        if (o["allOf"] is JsonArray all)
        {
            return Value(Combine(o, all), depth + 1);
        }

        foreach (string keyword in (string[])["anyOf", "oneOf"])
        {
            if (o[keyword] is JsonArray branches)
            {
                return Value(branches[_random.Next(branches.Count)], depth + 1);
            }
        }

        if (o.TryGetPropertyValue("const", out var constant))
        {
            return constant?.DeepClone();
        }

        if (o["enum"] is JsonArray values)
        {
            return values[_random.Next(values.Count)]?.DeepClone();
        }

        var types = o["type"] is JsonArray t ? t.Select(x => x!.GetValue<string>()).ToArray()
            : o["type"] is { } single ? [single.GetValue<string>()]
            : o.ContainsKey("properties") || o.ContainsKey("required") || o.ContainsKey("additionalProperties") ? ["object"]
            : o.ContainsKey("items") || o.ContainsKey("prefixItems") ? ["array"]
            : o.ContainsKey("minLength") || o.ContainsKey("maxLength") || o.ContainsKey("pattern") || o.ContainsKey("format") ? ["string"]
            : o.ContainsKey("minimum") || o.ContainsKey("maximum") ? ["number"]
            : ["null", "boolean", "integer", "string", "array", "object"];
        return types[_random.Next(types.Length)] switch
        {
            "null" => null,
            "boolean" => _random.Next(2) == 0,
            "integer" => Number(o, integer: true),
            "number" => Number(o, integer: false),
            "string" => String(o),
            "array" => Array(o, depth),
            _ => Object(o, depth),
        };
    }

    private JsonNode? Any(int depth) => _random.Next(depth > 2 ? 5 : 7) switch
    {
        0 => null,
        1 => _random.Next(2) == 0,
        2 => _random.Next(-100, 100),
        3 => "text " + _random.Next(100),
        4 => Math.Round(_random.NextDouble() * 100, 2),
        5 => new JsonArray(Any(depth + 1), Any(depth + 1)),
        _ => new JsonObject { ["k" + _random.Next(10)] = Any(depth + 1) },
    };

    private JsonNode Number(JsonObject o, bool integer)
    {
        decimal lo = Bound(o, "minimum") ?? (Bound(o, "exclusiveMinimum") is { } el ? el + (integer ? 1 : 0.01m) : -1000);
        decimal hi = Bound(o, "maximum") ?? (Bound(o, "exclusiveMaximum") is { } eh ? eh - (integer ? 1 : 0.01m) : 1000);
        lo = Math.Max(lo, -1_000_000);
        hi = Math.Min(hi, 1_000_000);
        decimal value = _random.Next(4) switch
        {
            0 => lo,
            1 => hi,
            _ => lo + (hi - lo) * (decimal)_random.NextDouble(),
        };
        int decimals = integer ? 0 : Bound(o, "multipleOf") is { } step ? Math.Max(0, (int)Math.Round(-Math.Log10((double)step))) : _random.Next(4);
        value = integer ? Math.Ceiling(value) : Math.Round(value, decimals);
        return JsonValue.Create(value);
    }

    private static decimal? Bound(JsonObject o, string keyword) =>
        o[keyword] is { } n && n.GetValueKind() == JsonValueKind.Number ? decimal.Parse(n.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture) : null;

    private JsonNode String(JsonObject o)
    {
        if (o["format"] is { } format && FormatSamples.TryGetValue(format.GetValue<string>(), out var samples))
        {
            return samples[_random.Next(samples.Length)];
        }

        if (o["pattern"] is { } pattern)
        {
            // Mostly a full match of the pattern (written by the regex grammar), sometimes a stock string.
            string regex = pattern.GetValue<string>();
            if (!_patterns.TryGetValue(regex, out var matches))
            {
                _patterns[regex] = matches = new GrammarSentences(RegexGrammar.Compile(regex), seed, budget: 40);
            }

            return _random.Next(4) > 0 ? matches.Next() : PatternSamples[_random.Next(PatternSamples.Length)];
        }

        int min = (int?)Bound(o, "minLength") ?? 0;
        int max = Math.Min((int?)Bound(o, "maxLength") ?? min + 12, min + 12);
        string[] alphabet = ["a", "b", "z", "Q", " ", "7", "é", "中", "😀", "\"", "\\", "\n", "/", "-"];
        var text = new StringBuilder();
        int length = _random.Next(min, max + 1);
        for (int i = 0; i < length; i++)
        {
            text.Append(alphabet[_random.Next(alphabet.Length)]);
        }

        return text.ToString();
    }

    private JsonArray Array(JsonObject o, int depth)
    {
        var prefix = o["prefixItems"] as JsonArray ?? o["items"] as JsonArray ?? [];
        var items = o["items"] is JsonObject or JsonValue ? o["items"] : o["additionalItems"];
        int min = (int?)Bound(o, "minItems") ?? 0;
        int max = (int?)Bound(o, "maxItems") ?? min + 3;
        int count = depth > MaxDepth ? min : _random.Next(min, Math.Min(max, min + 3) + 1);
        var array = new JsonArray();
        for (int i = 0; i < count; i++)
        {
            if (i < prefix.Count)
            {
                array.Add(Value(prefix[i], depth + 1));
            }
            else if (items is not null && items.GetValueKind() != JsonValueKind.False)
            {
                array.Add(Value(items, depth + 1));
            }
            else if (prefix.Count == 0)
            {
                array.Add(Any(depth + 1));
            }
        }

        return array;
    }

    private JsonObject Object(JsonObject o, int depth)
    {
        var result = new JsonObject();
        var required = o["required"] is JsonArray r ? r.Select(x => x!.GetValue<string>()).ToHashSet() : [];
        if (o["properties"] is JsonObject properties)
        {
            foreach (var (name, schema) in properties)
            {
                if (required.Contains(name) || (depth <= MaxDepth && _random.Next(5) < 3))
                {
                    result[name] = Value(schema, depth + 1);
                }
            }
        }

        foreach (string name in required.Where(n => !result.ContainsKey(n)))
        {
            result[name] = Any(depth + 1);
        }

        var additional = o["additionalProperties"];
        bool open = additional is JsonObject || additional?.GetValueKind() == JsonValueKind.True || !o.ContainsKey("properties") && !o.ContainsKey("required");
        if (open && _random.Next(2) == 0)
        {
            result["extra_" + _random.Next(100)] = additional is JsonObject ? Value(additional, depth + 1) : Any(depth + 1);
        }

        return result;
    }

    // allOf, roughly: the parts' properties and required names together, the first type.
    private JsonObject Combine(JsonObject o, JsonArray parts)
    {
        var combined = new JsonObject();
        var properties = new JsonObject();
        var required = new JsonArray();
        foreach (var part in parts.Append(o))
        {
            var p = part is JsonObject { } obj && obj["$ref"] is { } reference ? Resolve(reference.GetValue<string>()) as JsonObject : part as JsonObject;
            if (p is null)
            {
                continue;
            }

            foreach (var (key, value) in p)
            {
                if (key == "properties")
                {
                    foreach (var (name, schema) in value!.AsObject())
                    {
                        properties[name] = schema?.DeepClone();
                    }
                }
                else if (key == "required")
                {
                    foreach (var name in value!.AsArray())
                    {
                        required.Add(name?.DeepClone());
                    }
                }
                else if (key is not "allOf" and not "$ref" && !combined.ContainsKey(key))
                {
                    combined[key] = value?.DeepClone();
                }
            }
        }

        combined["properties"] = properties;
        combined["required"] = required;
        return combined;
    }

    private JsonNode? Resolve(string reference)
    {
        JsonNode? node = document;
        foreach (string token in Uri.UnescapeDataString(reference.TrimStart('#')).Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            node = node?[token.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal)];
        }

        return node;
    }
}

/// <summary>JSON text with chosen separators, strings escaped only where JSON requires (as the grammar writes them).</summary>
internal static class JsonText
{
    public static string Write(JsonNode? node, string comma = ",", string colon = ":")
    {
        var text = new StringBuilder();
        Append(node, text, comma, colon);
        return text.ToString();
    }

    private static void Append(JsonNode? node, StringBuilder text, string comma, string colon)
    {
        switch (node)
        {
            case JsonObject o:
                text.Append('{');
                bool first = true;
                foreach (var (key, value) in o)
                {
                    text.Append(first ? "" : comma);
                    first = false;
                    AppendString(key, text);
                    text.Append(colon);
                    Append(value, text, comma, colon);
                }

                text.Append('}');
                break;
            case JsonArray a:
                text.Append('[');
                for (int i = 0; i < a.Count; i++)
                {
                    text.Append(i == 0 ? "" : comma);
                    Append(a[i], text, comma, colon);
                }

                text.Append(']');
                break;
            case null:
                text.Append("null");
                break;
            default:
                if (node.GetValueKind() == JsonValueKind.String)
                {
                    AppendString(node.GetValue<string>(), text);
                }
                else
                {
                    text.Append(node.ToJsonString());
                }

                break;
        }
    }

    private static void AppendString(string value, StringBuilder text)
    {
        text.Append('"');
        foreach (char c in value)
        {
            text.Append(c switch
            {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\t' => "\\t",
                '\r' => "\\r",
                < ' ' => $"\\u{(int)c:x4}",
                _ => c.ToString(),
            });
        }

        text.Append('"');
    }
}
