using System.Text.Json;

namespace Celer.Models.Config;

/// <summary>
/// Typed reads of HF JSON fields with errors that name the file and the field. HF writes
/// <c>null</c> for unset values, so an explicit null reads as "absent" everywhere here.
/// </summary>
internal static class JsonFields
{
    public static bool TryGet(JsonElement obj, string name, out JsonElement value)
    {
        if (obj.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null)
        {
            return true;
        }
        value = default;
        return false;
    }

    public static int RequiredInt(JsonElement obj, string name, string file) =>
        OptionalInt(obj, name, file) ?? throw new ModelConfigException($"{file}: required field '{name}' is missing");

    public static int? OptionalInt(JsonElement obj, string name, string file) =>
        TryGet(obj, name, out var v) ? ToInt(v, name, file) : null;

    public static double RequiredDouble(JsonElement obj, string name, string file) =>
        OptionalDouble(obj, name, file) ?? throw new ModelConfigException($"{file}: required field '{name}' is missing");

    public static double? OptionalDouble(JsonElement obj, string name, string file)
    {
        if (!TryGet(obj, name, out var v))
        {
            return null;
        }
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d))
        {
            throw Wrong(name, file, "a finite number", v);
        }
        return d;
    }

    public static bool? OptionalBool(JsonElement obj, string name, string file)
    {
        if (!TryGet(obj, name, out var v))
        {
            return null;
        }
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Wrong(name, file, "true or false", v),
        };
    }

    public static string? OptionalString(JsonElement obj, string name, string file)
    {
        if (!TryGet(obj, name, out var v))
        {
            return null;
        }
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw Wrong(name, file, "a string", v);
    }

    /// <summary>Token-id fields such as <c>eos_token_id</c> are an int or a list of ints.</summary>
    public static int[]? OptionalIntOrIntList(JsonElement obj, string name, string file)
    {
        if (!TryGet(obj, name, out var v))
        {
            return null;
        }
        if (v.ValueKind != JsonValueKind.Array)
        {
            return [ToInt(v, name, file)];
        }
        var ids = new int[v.GetArrayLength()];
        int i = 0;
        foreach (var item in v.EnumerateArray())
        {
            ids[i++] = ToInt(item, name, file);
        }
        return ids;
    }

    private static int ToInt(JsonElement v, string name, string file)
    {
        if (v.ValueKind == JsonValueKind.Number)
        {
            if (v.TryGetInt32(out int i))
            {
                return i;
            }
            // Python writes some integer fields as floats (e.g. "factor"-style 8.0); accept integral values.
            if (v.TryGetDouble(out double d) && d == Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue)
            {
                return (int)d;
            }
        }
        throw Wrong(name, file, "an integer", v);
    }

    private static ModelConfigException Wrong(string name, string file, string expected, JsonElement got)
    {
        string text = got.GetRawText();
        if (text.Length > 60)
        {
            text = text[..60] + "…";
        }
        return new ModelConfigException($"{file}: field '{name}' must be {expected}, got {text}");
    }
}
