using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Celer.ChatTemplates.Runtime;

/// <summary>Turns the request's JSON into the Python values transformers would hand to Jinja after <c>json.loads</c>.</summary>
internal static class JsonConversion
{
    public static object? ToValue(JsonNode? node)
    {
        switch (node)
        {
            case null:
                return null;
            case JsonObject obj:
                var dict = new PyDict();
                foreach (var (k, v) in obj) dict[k] = ToValue(v);
                return dict;
            case JsonArray arr:
                return arr.Select(ToValue).ToList();
            case JsonValue value:
                // GetValueKind works both for parsed values and for ones a caller built from CLR primitives.
                return value.GetValueKind() switch
                {
                    JsonValueKind.String => value.GetValue<string>(),
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    JsonValueKind.Null => null,
                    JsonValueKind.Number => NumberValue(value.ToJsonString()),
                    var kind => throw new TemplateRenderException($"unsupported JSON value kind {kind}"),
                };
            default:
                throw new TemplateRenderException($"unsupported JSON node {node.GetType().Name}");
        }
    }

    /// <summary>json.loads makes an int of "3" and a float of "3.0" or "3e0"; the difference shows when printed.</summary>
    private static object NumberValue(string raw)
    {
        if (raw.IndexOfAny(['.', 'e', 'E']) < 0 && long.TryParse(raw, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l))
            return l;
        return double.Parse(raw, NumberStyles.Float, CultureInfo.InvariantCulture);
    }
}
