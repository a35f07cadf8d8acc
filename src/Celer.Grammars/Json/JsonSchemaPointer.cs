using System.Text.Json.Nodes;

namespace Celer.Grammars.Json;

/// <summary>JSON Pointers (RFC 6901) into the schema document: the paths in error messages and the targets of <c>$ref</c>.</summary>
internal static class JsonSchemaPointer
{
    /// <summary>The path one level down: '~' and '/' in the token escaped as ~0 and ~1.</summary>
    public static string Append(string path, string token) => path + "/" + token.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);

    public static string Append(string path, int index) => path + "/" + index.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>A path for a message: the pointer, or "the root".</summary>
    public static string Show(string path) => path.Length == 0 ? "the root" : path;

    /// <summary>The pointer a "#..." reference names (its fragment, percent-decoded), also when spelled with the root's
    /// $id in front; null for anything else, such as another document or an anchor name.</summary>
    public static string? FromReference(JsonNode document, string reference)
    {
        if (document is JsonObject root && root["$id"]?.GetValueKind() == System.Text.Json.JsonValueKind.String
            && root["$id"]!.GetValue<string>().TrimEnd('#') is { Length: > 0 } id && reference.StartsWith(id, StringComparison.Ordinal))
        {
            reference = reference[id.Length..];
            reference = reference.Length == 0 ? "#" : reference;
        }

        if (!reference.StartsWith('#'))
        {
            return null;
        }

        string fragment = Uri.UnescapeDataString(reference[1..]);
        return fragment.Length == 0 || fragment.StartsWith('/') ? fragment : null;
    }

    /// <summary>The node at <paramref name="pointer"/>, if there is one.</summary>
    public static bool TryResolve(JsonNode document, string pointer, out JsonNode? node)
    {
        node = document;
        if (pointer.Length == 0)
        {
            return true;
        }

        foreach (string escaped in pointer[1..].Split('/'))
        {
            string token = escaped.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            switch (node)
            {
                case JsonObject o when o.TryGetPropertyValue(token, out var child):
                    node = child;
                    break;
                case JsonArray a when int.TryParse(token, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int i) && i < a.Count:
                    node = a[i];
                    break;
                default:
                    node = null;
                    return false;
            }
        }

        return true;
    }
}
