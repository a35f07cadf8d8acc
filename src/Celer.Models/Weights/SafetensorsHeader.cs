using System.Text.Json;

namespace Celer.Models.Weights;

/// <summary>One tensor of a safetensors header; offsets are relative to the start of the data section.</summary>
internal sealed record SafetensorsEntry(string Name, string DTypeName, int[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;
}

/// <summary>
/// Parses and validates the JSON header of a safetensors file
/// (<c>{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {..}}</c>).
/// Every check the reference Rust implementation makes is made here, so a corrupt file fails
/// with a <see cref="SafetensorsException"/> naming the file and tensor instead of a wild read:
/// known dtype, non-negative integer shape, offsets inside the data section, byte range equal to
/// elements × dtype size, no two tensors overlapping. Gaps between tensors are tolerated.
/// </summary>
internal static class SafetensorsHeader
{
    /// <summary>The Rust implementation's <c>MAX_HEADER_SIZE</c>; bounds what a corrupt length can make us allocate.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public const string MetadataKey = "__metadata__";

    /// <summary>Bits per element of every safetensors dtype (F4/F6 are packed sub-byte types).</summary>
    private static readonly Dictionary<string, int> DTypeBits = new()
    {
        ["BOOL"] = 8, ["U8"] = 8, ["I8"] = 8, ["F8_E5M2"] = 8, ["F8_E4M3"] = 8, ["F8_E8M0"] = 8,
        ["I16"] = 16, ["U16"] = 16, ["F16"] = 16, ["BF16"] = 16,
        ["I32"] = 32, ["U32"] = 32, ["F32"] = 32,
        ["I64"] = 64, ["U64"] = 64, ["F64"] = 64, ["C64"] = 64,
        ["F4"] = 4, ["F6_E2M3"] = 6, ["F6_E3M2"] = 6,
    };

    public static (Dictionary<string, SafetensorsEntry> Tensors, Dictionary<string, string> Metadata) Parse(
        byte[] headerJson, long dataLength, string file)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(headerJson);
        }
        catch (JsonException e)
        {
            throw new SafetensorsException($"'{file}': header is not valid JSON ({e.Message})", e);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new SafetensorsException($"'{file}': header must be a JSON object");
            }
            var tensors = new Dictionary<string, SafetensorsEntry>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var property in root.EnumerateObject())
            {
                if (property.Name == MetadataKey)
                {
                    ReadMetadata(property.Value, metadata, file);
                    continue;
                }
                var entry = ReadEntry(property.Name, property.Value, dataLength, file);
                if (!tensors.TryAdd(entry.Name, entry))
                {
                    throw new SafetensorsException($"'{file}': tensor '{entry.Name}' appears twice in the header");
                }
            }
            CheckNoOverlap(tensors.Values, file);
            return (tensors, metadata);
        }
    }

    private static SafetensorsEntry ReadEntry(string name, JsonElement value, long dataLength, string file)
    {
        string where = $"'{file}': tensor '{name}'";
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new SafetensorsException($"{where}: header entry must be an object");
        }
        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw new SafetensorsException($"{where}: missing string field 'dtype'");
        }
        string dtype = dtypeElement.GetString()!;
        if (!DTypeBits.TryGetValue(dtype, out int bits))
        {
            throw new SafetensorsException($"{where}: unknown dtype '{dtype}'");
        }

        long[] shapeValues = ReadNonNegativeIntegers(value, "shape", where, null);
        long[] offsets = ReadNonNegativeIntegers(value, "data_offsets", where, 2);
        var shape = new int[shapeValues.Length];
        long elements = 1;
        try
        {
            for (int i = 0; i < shape.Length; i++)
            {
                shape[i] = checked((int)shapeValues[i]);
                elements = checked(elements * shapeValues[i]);
            }
        }
        catch (OverflowException)
        {
            throw new SafetensorsException($"{where}: shape [{string.Join(",", shapeValues)}] is too large");
        }

        long begin = offsets[0], end = offsets[1];
        if (begin > end || end > dataLength)
        {
            throw new SafetensorsException(
                $"{where}: data_offsets [{begin},{end}] are outside the data section of {dataLength} bytes");
        }
        long expectedBits;
        try
        {
            expectedBits = checked(elements * bits);
        }
        catch (OverflowException)
        {
            throw new SafetensorsException($"{where}: shape [{string.Join(",", shape)}] is too large");
        }
        if (expectedBits % 8 != 0 || expectedBits / 8 != end - begin)
        {
            throw new SafetensorsException(
                $"{where}: shape [{string.Join(",", shape)}] of {dtype} needs {expectedBits / 8.0} bytes but data_offsets [{begin},{end}] hold {end - begin}");
        }
        return new SafetensorsEntry(name, dtype, shape, begin, end);
    }

    private static long[] ReadNonNegativeIntegers(JsonElement entry, string field, string where, int? exactCount)
    {
        if (!entry.TryGetProperty(field, out var array) || array.ValueKind != JsonValueKind.Array
            || (exactCount is { } n && array.GetArrayLength() != n))
        {
            string what = exactCount is { } count ? $"a list of {count} integers" : "a list of integers";
            throw new SafetensorsException($"{where}: field '{field}' must be {what}");
        }
        var values = new long[array.GetArrayLength()];
        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long v) || v < 0)
            {
                throw new SafetensorsException($"{where}: field '{field}' holds {item.GetRawText()}, not a non-negative integer");
            }
            values[i++] = v;
        }
        return values;
    }

    private static void ReadMetadata(JsonElement value, Dictionary<string, string> metadata, string file)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new SafetensorsException($"'{file}': '{MetadataKey}' must be an object of strings");
        }
        foreach (var item in value.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
            {
                throw new SafetensorsException($"'{file}': '{MetadataKey}' value for '{item.Name}' must be a string");
            }
            metadata[item.Name] = item.Value.GetString()!;
        }
    }

    private static void CheckNoOverlap(IEnumerable<SafetensorsEntry> entries, string file)
    {
        SafetensorsEntry? previous = null;
        foreach (var entry in entries.Where(e => e.ByteLength > 0).OrderBy(e => e.Begin))
        {
            if (previous is not null && entry.Begin < previous.End)
            {
                throw new SafetensorsException(
                    $"'{file}': tensor '{entry.Name}' (bytes {entry.Begin}..{entry.End}) overlaps tensor '{previous.Name}' (bytes {previous.Begin}..{previous.End})");
            }
            previous = entry;
        }
    }
}
