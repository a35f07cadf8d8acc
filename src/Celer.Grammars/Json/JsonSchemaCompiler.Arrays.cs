using System.Text.Json.Nodes;

namespace Celer.Grammars.Json;

/// <summary>
/// Arrays: prefixItems position by position, then items for the rest, between minItems and maxItems. Past minItems
/// every further element is optional, so a tuple may stop early where the schema allows it.
/// </summary>
internal sealed partial class JsonSchemaCompiler
{
    private GrammarExpr Arrays(JsonObject schema, string path) => Nested(() =>
    {
        schema = JsonSchemaMerge.DraftSevenItems(schema);
        int min = JsonSchemaKeywords.Count(schema["minItems"]) ?? 0;
        int? max = JsonSchemaKeywords.Count(schema["maxItems"]);
        var positions = new List<GrammarExpr>();
        var prefix = schema["prefixItems"] as JsonArray ?? [];
        for (int i = 0; i < prefix.Count; i++)
        {
            if (Schema(prefix[i], JsonSchemaPointer.Append(JsonSchemaPointer.Append(path, "prefixItems"), i)) is not { } item)
            {
                // Nothing fits at position i, so the array ends before it.
                max = Math.Min(max ?? i, i);
                break;
            }

            positions.Add(item);
        }

        // Without items, a tuple takes no more elements (XGrammar's strict mode); a plain array takes any.
        var rest = schema.TryGetPropertyValue("items", out var items) ? Schema(items, JsonSchemaPointer.Append(path, "items"))
            : prefix.Count == 0 ? _syntax.Value : null;
        if (rest is null)
        {
            max = Math.Min(max ?? positions.Count, positions.Count);
        }

        if (min > max)
        {
            throw JsonSchemaKeywords.Error("minItems", path, $"{min} is more than the {max} items the array can have");
        }

        if (JsonSchemaKeywords.Kind(schema["uniqueItems"]) == System.Text.Json.JsonValueKind.True && !(max <= 1))
        {
            throw JsonSchemaKeywords.Error("uniqueItems", path, "is supported only when maxItems is at most 1");
        }

        if (max == 0)
        {
            return _syntax.EmptyArray;
        }

        // What may follow once i elements are written.
        GrammarExpr Tail(int i)
        {
            if (i == max)
            {
                return GrammarExpr.Empty;
            }

            if (i < positions.Count)
            {
                var next = GrammarExpr.Sequence(_syntax.Comma, positions[i], Tail(i + 1));
                return i >= min ? GrammarExpr.Optional(next) : next;
            }

            return GrammarExpr.Repeat(GrammarExpr.Sequence(_syntax.Comma, rest!), Math.Max(0, min - i), max - i);
        }

        var nonEmpty = GrammarExpr.Sequence(_syntax.ArrayOpen, positions.Count > 0 ? positions[0] : rest!, Tail(1), _syntax.ArrayClose);
        return min == 0 ? GrammarExpr.Choice(nonEmpty, _syntax.EmptyArray) : nonEmpty;
    });
}
