using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Celer.Grammars.Json;

/// <summary>
/// A fixed JSON value (<c>const</c>, an <c>enum</c> member, a property name) as grammar text: numbers as the schema
/// wrote them, strings with only the escapes JSON requires (other characters as UTF-8 themselves), objects and arrays
/// with the layout the options allow between tokens.
/// </summary>
internal static class JsonLiterals
{
    public static GrammarExpr Value(JsonNode? value, JsonSyntax syntax)
    {
        switch (value)
        {
            case null:
                return GrammarExpr.Literal("null");
            case JsonObject o when o.Count == 0:
                return syntax.EmptyObject;
            case JsonObject o:
                var members = o.Select(p => GrammarExpr.Sequence(GrammarExpr.Literal(Quote(p.Key)), syntax.Colon, Value(p.Value, syntax)));
                return GrammarExpr.Sequence(syntax.ObjectOpen, Join(members, syntax.Comma), syntax.ObjectClose);
            case JsonArray a when a.Count == 0:
                return syntax.EmptyArray;
            case JsonArray a:
                return GrammarExpr.Sequence(syntax.ArrayOpen, Join(a.Select(item => Value(item, syntax)), syntax.Comma), syntax.ArrayClose);
            default:
                return value.GetValueKind() == JsonValueKind.String
                    ? GrammarExpr.Literal(Quote(value.GetValue<string>()))
                    : GrammarExpr.Literal(value.ToJsonString());
        }
    }

    /// <summary>A string as JSON text: '"', '\' and control characters escaped, everything else as itself.</summary>
    public static string Quote(string text)
    {
        var quoted = new StringBuilder("\"");
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            switch (c)
            {
                case '"': quoted.Append("\\\""); break;
                case '\\': quoted.Append("\\\\"); break;
                case '\b': quoted.Append("\\b"); break;
                case '\f': quoted.Append("\\f"); break;
                case '\n': quoted.Append("\\n"); break;
                case '\r': quoted.Append("\\r"); break;
                case '\t': quoted.Append("\\t"); break;
                default:
                    bool pair = char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]);
                    if (pair)
                    {
                        quoted.Append(c).Append(text[++i]);
                    }
                    else if (c < 0x20 || char.IsSurrogate(c))
                    {
                        // A lone surrogate has no UTF-8 form; the escape keeps the value what the schema said.
                        quoted.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        quoted.Append(c);
                    }

                    break;
            }
        }

        return quoted.Append('"').ToString();
    }

    private static GrammarExpr Join(IEnumerable<GrammarExpr> items, GrammarExpr separator)
    {
        var parts = new List<GrammarExpr>();
        foreach (var item in items)
        {
            if (parts.Count > 0)
            {
                parts.Add(separator);
            }

            parts.Add(item);
        }

        return GrammarExpr.Sequence(parts);
    }
}
