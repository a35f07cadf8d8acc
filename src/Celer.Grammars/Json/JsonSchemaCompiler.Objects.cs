using System.Text.Json;
using System.Text.Json.Nodes;

namespace Celer.Grammars.Json;

/// <summary>
/// Objects: the declared properties in schema order, each optional one free to be left out, then any additional
/// properties. The commas come out right for every subset through XGrammar's construction: a chain of "tail" rules,
/// tail i being what may follow once some member has been written and properties i.. remain, each tail starting
/// with a comma; the first member is any property up to and including the first required one.
/// </summary>
internal sealed partial class JsonSchemaCompiler
{
    private GrammarExpr Objects(JsonObject schema, string path) => Nested(() =>
    {
        var declared = schema["properties"] as JsonObject ?? [];
        var required = schema["required"] is JsonArray r ? r.Select(n => n!.GetValue<string>()).Distinct(StringComparer.Ordinal).ToList() : [];
        bool hasAdditional = schema.TryGetPropertyValue("additionalProperties", out var additional);
        bool closed = hasAdditional && JsonSchemaKeywords.Kind(additional) == JsonValueKind.False;

        var members = new List<(string Name, GrammarExpr Member, bool Required)>();
        foreach (var (name, valueSchema) in declared)
        {
            bool isRequired = required.Contains(name);
            if (Schema(valueSchema, JsonSchemaPointer.Append(JsonSchemaPointer.Append(path, "properties"), name)) is { } value)
            {
                members.Add((name, Member(name, value), isRequired));
            }
            else if (isRequired)
            {
                throw JsonSchemaKeywords.Error("required", path, $"names '{name}', whose schema accepts no value");
            }
        }

        // A required name without a schema of its own takes the additional properties' schema (absent: any value).
        foreach (string name in required.Where(n => !declared.ContainsKey(n)))
        {
            var value = closed ? null : Schema(hasAdditional ? additional : JsonValue.Create(true), JsonSchemaPointer.Append(path, "additionalProperties"));
            members.Add((name, Member(name, value ?? throw JsonSchemaKeywords.Error("required", path, $"names '{name}', which additionalProperties forbids")), true));
        }

        var extra = AdditionalMember(schema, path, declared.Select(p => p.Key).Concat(required), hasAdditional, additional);
        CheckPropertyCounts(schema, path, required.Count, extra is null ? members.Count : null);
        var tail = extra is null ? GrammarExpr.Empty : _builder.Rule($"{path}/additional-tail", GrammarExpr.Star(GrammarExpr.Sequence(_syntax.Comma, extra)));
        var tails = new GrammarExpr[members.Count + 1];
        tails[members.Count] = tail;
        for (int i = members.Count - 1; i >= 1; i--)
        {
            var with = GrammarExpr.Sequence(_syntax.Comma, members[i].Member, tails[i + 1]);
            tails[i] = _builder.Rule($"{path}/tail-{i}", members[i].Required ? with : GrammarExpr.Choice(tails[i + 1], with));
        }

        var first = new List<GrammarExpr>();
        bool anyRequired = false;
        for (int k = 0; k < members.Count && !anyRequired; k++)
        {
            first.Add(GrammarExpr.Sequence(members[k].Member, tails[k + 1]));
            anyRequired = members[k].Required;
        }

        if (!anyRequired && extra is not null)
        {
            first.Add(GrammarExpr.Sequence(extra, tail));
        }

        var alternatives = new List<GrammarExpr>();
        if (first.Count > 0)
        {
            alternatives.Add(GrammarExpr.Sequence(_syntax.ObjectOpen, GrammarExpr.Choice(first), _syntax.ObjectClose));
        }

        if (!anyRequired)
        {
            alternatives.Add(_syntax.EmptyObject);
        }

        return GrammarExpr.Choice(alternatives);
    });

    private GrammarExpr Member(string name, GrammarExpr value) => GrammarExpr.Sequence(GrammarExpr.Literal(JsonLiterals.Quote(name)), _syntax.Colon, value);

    // One additional property (key, colon, value), or null when the object takes none: additionalProperties false or
    // absent (XGrammar's strict mode) or DisableAdditionalProperties; an object schema that names no property at all
    // stays open, as {"type": "object"} means any object.
    private GrammarExpr? AdditionalMember(JsonObject schema, string path, IEnumerable<string> names, bool hasAdditional, JsonNode? additional)
    {
        bool open = !schema.ContainsKey("properties") && !schema.ContainsKey("required");
        if (_options.DisableAdditionalProperties || !hasAdditional && !open)
        {
            return null;
        }

        var value = Schema(hasAdditional ? additional : JsonValue.Create(true), JsonSchemaPointer.Append(path, "additionalProperties"));
        if (value is null)
        {
            return null;
        }

        var declared = names.ToList();
        var key = declared.Count == 0 ? _syntax.String : _builder.Rule($"{path}/additional-key", JsonPropertyNames.Excluding(declared, _syntax));
        return _builder.Rule($"{path}/additional", GrammarExpr.Sequence(key, _syntax.Colon, value));
    }

    // minProperties and maxProperties only where the rest of the schema already keeps to them.
    private static void CheckPropertyCounts(JsonObject schema, string path, int required, int? most)
    {
        if (JsonSchemaKeywords.Count(schema["minProperties"]) is { } min && min > required)
        {
            throw JsonSchemaKeywords.Error("minProperties", path, "is supported only when the required properties already meet it");
        }

        if (JsonSchemaKeywords.Count(schema["maxProperties"]) is { } max && !(most <= max))
        {
            throw JsonSchemaKeywords.Error("maxProperties", path, "is supported only when the object cannot have more properties anyway");
        }
    }
}
