using System.Numerics;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Celer.Grammars.Json;

/// <summary>Schemas by type: listed values, numbers and strings here; objects and arrays in their own files.</summary>
internal sealed partial class JsonSchemaCompiler
{
    private readonly Dictionary<string, (GrammarExpr Body, (int? Min, int? Max) Lengths)> _patterns = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (GrammarExpr Body, (int? Min, int? Max) Lengths)?> _formats = new(StringComparer.Ordinal);

    private GrammarExpr? Typed(JsonObject schema, string path)
    {
        var types = schema["type"] is { } type ? (type is JsonArray a ? [.. a.Select(t => t!.GetValue<string>())] : [type.GetValue<string>()]) : (List<string>?)null;
        if (JsonSchemaKeywords.ListedValues(schema) is { } values)
        {
            return Literals(schema, values, types, path);
        }

        // Without "type", the keywords say what the value is; a schema with none of them accepts any value.
        if (types is null)
        {
            types = [];
            AddIf(types, schema, JsonSchemaKeywords.StringKeywords, "string");
            AddIf(types, schema, JsonSchemaKeywords.NumberKeywords, "number");
            AddIf(types, schema, JsonSchemaKeywords.ObjectKeywords, "object");
            AddIf(types, schema, JsonSchemaKeywords.ArrayKeywords, "array");
            if (types.Count == 0)
            {
                return _syntax.Value;
            }
        }

        var alternatives = new List<GrammarExpr?>();
        foreach (string t in types.Distinct(StringComparer.Ordinal))
        {
            alternatives.Add(t switch
            {
                "null" => GrammarExpr.Literal("null"),
                "boolean" => GrammarExpr.Choice(GrammarExpr.Literal("true"), GrammarExpr.Literal("false")),
                // An integer is a number: with both listed, the number grammar covers the integers.
                "integer" when types.Contains("number") => null,
                "integer" => Numbers(schema, path, integer: true),
                "number" => Numbers(schema, path, integer: false),
                "string" => Strings(schema, path),
                "object" => Objects(schema, path),
                _ => Arrays(schema, path),
            });
        }

        var matching = alternatives.OfType<GrammarExpr>().ToList();
        return matching.Count == 0 ? null : GrammarExpr.Choice(matching);

        static void AddIf(List<string> types, JsonObject schema, IReadOnlySet<string> keywords, string type)
        {
            if (schema.Any(p => keywords.Contains(p.Key)))
            {
                types.Add(type);
            }
        }
    }

    // enum/const: exactly the listed values (of the listed types); other constraints beside them are refused rather
    // than checked value by value.
    private GrammarExpr? Literals(JsonObject schema, List<JsonNode?> values, List<string>? types, string path)
    {
        string listing = schema.ContainsKey("enum") ? "enum" : "const";
        foreach (var (keyword, _) in schema)
        {
            if (keyword != "format" && (JsonSchemaKeywords.StringKeywords.Contains(keyword) || JsonSchemaKeywords.NumberKeywords.Contains(keyword)
                || JsonSchemaKeywords.ObjectKeywords.Contains(keyword) || JsonSchemaKeywords.ArrayKeywords.Contains(keyword)))
            {
                throw JsonSchemaKeywords.Error(keyword, path, $"together with '{listing}' is not supported");
            }
        }

        var allowed = values.Where(v => types is null || types.Any(t => HasType(v, t))).Select(v => JsonLiterals.Value(v, _syntax)).ToList();
        return allowed.Count == 0 ? null : GrammarExpr.Choice(allowed);

        static bool HasType(JsonNode? value, string type) => (JsonSchemaKeywords.Kind(value), type) switch
        {
            (JsonValueKind.Null, "null") or (JsonValueKind.True or JsonValueKind.False, "boolean") or (JsonValueKind.String, "string")
                or (JsonValueKind.Array, "array") or (JsonValueKind.Object, "object") or (JsonValueKind.Number, "number") => true,
            (JsonValueKind.Number, "integer") => JsonSchemaKeywords.Number(value) is { IsInteger: true },
            _ => false,
        };
    }

    private GrammarExpr Numbers(JsonObject schema, string path, bool integer)
    {
        var (lower, lowerKeyword) = Tighter(schema, "minimum", "exclusiveMinimum", lower: true);
        var (upper, upperKeyword) = Tighter(schema, "maximum", "exclusiveMaximum", lower: false);
        int? fractionDigits = null;
        if (JsonSchemaKeywords.Number(schema["multipleOf"]) is { } step)
        {
            fractionDigits = DecimalsAllMultiples(step)
                ?? throw JsonSchemaKeywords.Error("multipleOf", path, $"{step} is not supported: only a divisor of 1 (such as 1 or 0.5) or, for numbers, of 10^-k (such as 0.01), where every integer or every k-decimal number is a multiple");
            if (integer)
            {
                fractionDigits = null;
            }
        }

        if (integer || fractionDigits == 0)
        {
            BigInteger? lo = lower is { } l ? l.Exclusive ? l.Value.Floor() + 1 : l.Value.Ceiling() : null;
            BigInteger? hi = upper is { } u ? u.Exclusive ? u.Value.Ceiling() - 1 : u.Value.Floor() : null;
            if (lo > hi)
            {
                throw JsonSchemaKeywords.Error(lowerKeyword!, path, $"leaves no integer up to '{upperKeyword}'");
            }

            return lo is null && hi is null ? _syntax.Integer : JsonNumberRanges.Integers(lo, hi);
        }

        if (lower is null && upper is null && fractionDigits is null)
        {
            return _syntax.Number;
        }

        return JsonNumberRanges.Decimals(lower, upper, fractionDigits)
            ?? throw JsonSchemaKeywords.Error(lowerKeyword ?? upperKeyword ?? "multipleOf", path, "leaves no number in range");
    }

    // The most decimals k such that every number with k decimals is a multiple of `step` (10^-k / step is an
    // integer); null when even integers are not all multiples.
    private static int? DecimalsAllMultiples(JsonDecimal step)
    {
        for (int k = -step.Exponent; k >= 0; k--)
        {
            if ((BigInteger.Pow(10, -step.Exponent - k) % step.Mantissa).IsZero)
            {
                return k;
            }
        }

        return null;
    }

    // The stricter of a bound and its exclusive form (on a tie the exclusive one), and which keyword it came from.
    private static (NumberBound? Bound, string? Keyword) Tighter(JsonObject schema, string inclusive, string exclusive, bool lower)
    {
        var inc = JsonSchemaKeywords.Number(schema[inclusive]);
        var exc = JsonSchemaKeywords.Number(schema[exclusive]);
        if (exc is { } e && (inc is not { } i || (lower ? e >= i : e <= i)))
        {
            return (new NumberBound(e, true), exclusive);
        }

        return inc is { } value ? (new NumberBound(value, false), inclusive) : (null, null);
    }

    // A pattern is matched by the string's text as written, so only characters that need no escape are allowed in it.
    // A format beside a pattern is left to the pattern (format is an annotation); a format that does not imply the
    // length bounds gives way to them.
    private GrammarExpr Strings(JsonObject schema, string path)
    {
        int min = JsonSchemaKeywords.Count(schema["minLength"]) ?? 0;
        int? max = JsonSchemaKeywords.Count(schema["maxLength"]);
        if (min > max)
        {
            throw JsonSchemaKeywords.Error("minLength", path, $"{min} is above maxLength {max}");
        }

        bool bounded = min > 0 || max is not null;
        bool Implied((int? Min, int? Max) lengths) => lengths.Min >= min && (max is null || lengths.Max <= max);
        if (schema["pattern"] is { } pattern)
        {
            var (body, lengths) = Pattern(pattern.GetValue<string>(), path);
            if (bounded && !Implied(lengths))
            {
                throw JsonSchemaKeywords.Error(lengths.Min < min ? "minLength" : "maxLength", path, "together with 'pattern' is supported only when the pattern implies it");
            }

            return JsonSyntax.Quoted(body);
        }

        if (schema["format"] is { } format && Format(format.GetValue<string>()) is { } known && (!bounded || Implied(known.Lengths)))
        {
            return JsonSyntax.Quoted(known.Body);
        }

        return bounded ? JsonSyntax.Quoted(GrammarExpr.Repeat(_syntax.Char, min, max)) : _syntax.String;
    }

    private (GrammarExpr Body, (int? Min, int? Max) Lengths) Pattern(string pattern, string path)
    {
        if (_patterns.TryGetValue(pattern, out var known))
        {
            return known;
        }

        Grammar own;
        try
        {
            var builder = new GrammarBuilder();
            own = builder.Build(RegexGrammar.ToExpr(pattern, builder, fullMatch: false));
        }
        catch (GrammarException e)
        {
            throw JsonSchemaKeywords.Error("pattern", path, $"'{pattern}' cannot be compiled: {e.Message}");
        }

        var narrowed = SubgrammarImport.Narrow(own, JsonSyntax.UnescapedBytes);
        var lengths = CodePointLengths.Of(GrammarExpr.Ref(narrowed.Root), narrowed.Rules);
        if (lengths.Min is null)
        {
            throw JsonSchemaKeywords.Error("pattern", path, $"'{pattern}' matches no string that can be written without escapes ('\"', '\\' and control characters are left out)");
        }

        return _patterns[pattern] = (SubgrammarImport.Import(_builder, narrowed, "pattern"), lengths);
    }

    private (GrammarExpr Body, (int? Min, int? Max) Lengths)? Format(string name)
    {
        if (!_formats.TryGetValue(name, out var known))
        {
            known = JsonStringFormats.Body(name) is { } body ? (_builder.Rule($"format-{name}", body), CodePointLengths.Of(body, [])) : null;
            _formats[name] = known;
        }

        return known;
    }
}
